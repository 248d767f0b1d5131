-- Every revision of every instruction (a higher one replaces the lower mid-event, or calls the
-- event off), each kept once: a window is settled on the revisions dispatch answered and did
-- not reject. Instructions kept before this migration were revision 1 of an event.
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

-- One answer per revision; a redelivery changes nothing (the first stands).
ALTER TABLE confirmations ADD COLUMN revision integer NOT NULL DEFAULT 1;
ALTER TABLE confirmations ALTER COLUMN revision DROP DEFAULT;
ALTER TABLE confirmations DROP CONSTRAINT confirmations_pkey;
ALTER TABLE confirmations ADD PRIMARY KEY (instruction_id, revision);

-- The window's row keeps its life (state, coverage), the first revision's window, and where
-- settling ends: the window's end, or where a cancellation in force cut it; NULL while no
-- revision asking for delivery is in force. A new state, 'cancelled': called off at or before
-- the window's start, nothing to settle.
ALTER TABLE instructions DROP COLUMN mw, DROP COLUMN issued_at, ADD COLUMN settled_end timestamptz;
UPDATE instructions i SET settled_end = i.window_end
WHERE EXISTS (SELECT 1 FROM confirmations c
              WHERE c.instruction_id = i.instruction_id AND c.status <> 'rejected');
DROP INDEX instructions_open;
CREATE INDEX instructions_open ON instructions (resource_id) WHERE state IN ('waiting', 'filed');
