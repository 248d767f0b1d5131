-- Issue 11: instructions have revisions (updates and cancellations) and kinds (events, tests);
-- commands go per gateway; what each asset delivered of what it was commanded is kept.
ALTER TABLE commands DROP CONSTRAINT commands_instruction_id_fkey;
ALTER TABLE instructions
    ADD COLUMN revision  integer NOT NULL DEFAULT 1,
    ADD COLUMN kind      text    NOT NULL DEFAULT 'event',
    ADD COLUMN cancelled boolean NOT NULL DEFAULT false,
    ADD COLUMN content   jsonb,  -- the instruction as received, to tell a replay from a reuse
    ADD COLUMN mw_acknowledged double precision,
    ADD COLUMN assets_replaced integer;
ALTER TABLE instructions DROP CONSTRAINT instructions_pkey;
ALTER TABLE instructions ADD PRIMARY KEY (instruction_id, revision);

-- One row per asset.command message (a gateway's setpoints, or one part of them); the bytes
-- sent are in the outbox under the same id.
CREATE TABLE command_messages (
    command_id     text PRIMARY KEY,
    instruction_id text               NOT NULL,
    revision       integer            NOT NULL,
    round          integer            NOT NULL,  -- 0: first; 1: replacements
    gateway_id     text               NOT NULL,
    asset_ids      text[]             NOT NULL,
    setpoints_kw   double precision[] NOT NULL,
    limits_kw      double precision[] NOT NULL,
    recorded_at    timestamptz        NOT NULL DEFAULT now()
);
CREATE INDEX command_messages_instruction ON command_messages (instruction_id, revision);

-- Each asset.command-ack message as received (the first under its command id): its data as
-- the gateway sent it (a version-1 ack keeps its own shape).
CREATE TABLE ack_messages (
    command_id     text        PRIMARY KEY,
    instruction_id text        NOT NULL,
    gateway_id     text        NOT NULL,
    data           jsonb       NOT NULL,
    acked_at       timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now()
);

-- What each asset delivered (its battery telemetry) of what it acknowledged, per window: the
-- history its performance ratio comes from. Every replica measures; the first row stands.
CREATE TABLE performance (
    instruction_id text             NOT NULL,
    asset_id       text             NOT NULL,
    commanded_kwh  double precision NOT NULL,
    delivered_kwh  double precision NOT NULL,
    recorded_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (instruction_id, asset_id)
);

-- Which subscribers took part in which event (one row per instruction revision), for the
-- program's limits per season.
CREATE TABLE participation (
    instruction_id text             NOT NULL,
    revision       integer          NOT NULL,
    kind           text             NOT NULL,
    window_start   timestamptz      NOT NULL,
    hours          double precision NOT NULL,
    subscribers    text[]           NOT NULL,
    PRIMARY KEY (instruction_id, revision)
);
CREATE INDEX participation_window ON participation (window_start);
