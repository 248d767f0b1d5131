-- Every revision of every instruction (a higher one replaces the lower mid-event, or calls the
-- event off), each kept once: a window is settled on the revisions in force (`domain.Revision`:
-- answered, and not rejected or commanded all the same). Instructions kept before this
-- migration were revision 1 of an event.
CREATE TABLE instruction_revisions (
    instruction_id  text             NOT NULL,
    revision        integer          NOT NULL,
    resource_id     text             NOT NULL,
    mw              double precision NOT NULL,
    window_start    timestamptz      NOT NULL,
    window_end      timestamptz      NOT NULL,
    issued_at       timestamptz      NOT NULL,
    kind            text             NOT NULL,  -- event / test
    cancelled       boolean          NOT NULL,
    PRIMARY KEY (instruction_id, revision)
);
INSERT INTO instruction_revisions (instruction_id, revision, resource_id, mw, window_start,
                                   window_end, issued_at, kind, cancelled)
SELECT instruction_id, 1, resource_id, mw, window_start, window_end, issued_at, 'event', false
FROM instructions;

-- One answer per revision; a redelivery changes nothing (the first stands). With it, how many
-- assets dispatch commanded (a revision answered rejected after its commands went out is in
-- force: the gateways may apply them) and when the commands start (the request's start; NULL
-- in answers that do not say). Answers kept before this migration are read as commanding
-- nothing when rejected, the rule they were settled by.
ALTER TABLE confirmations
    ADD COLUMN revision integer NOT NULL DEFAULT 1,
    ADD COLUMN assets_commanded integer NOT NULL DEFAULT 0,
    ADD COLUMN commands_start timestamptz;
ALTER TABLE confirmations ALTER COLUMN revision DROP DEFAULT,
                          ALTER COLUMN assets_commanded DROP DEFAULT;
ALTER TABLE confirmations DROP CONSTRAINT confirmations_pkey;
ALTER TABLE confirmations ADD PRIMARY KEY (instruction_id, revision);

-- The window's row keeps its life (state, coverage), the first revision's window, and where
-- settling ends: the window's end, or where a cancellation in force cut it; NULL while no
-- revision asking for delivery is in force (and in a filed window nothing is left of: a
-- version withdrawing it is due). A new state, 'cancelled': called off at or before the
-- window's start, nothing to settle (or, once filed, withdrawn); never settled again.
ALTER TABLE instructions DROP COLUMN mw, DROP COLUMN issued_at, ADD COLUMN settled_end timestamptz;
UPDATE instructions i SET settled_end = i.window_end
WHERE EXISTS (SELECT 1 FROM confirmations c
              WHERE c.instruction_id = i.instruction_id AND c.status <> 'rejected');
DROP INDEX instructions_open;
CREATE INDEX instructions_open ON instructions (resource_id) WHERE state IN ('waiting', 'filed');
