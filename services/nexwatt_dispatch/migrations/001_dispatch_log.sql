-- The dispatch log: every instruction, what was commanded, and what the gateways answered.
CREATE TABLE instructions (
    instruction_id    text PRIMARY KEY,
    resource_id       text             NOT NULL,
    mw_requested      double precision NOT NULL,
    window_start      timestamptz      NOT NULL,
    window_end        timestamptz      NOT NULL,
    issued_at         timestamptz      NOT NULL,
    received_at       timestamptz      NOT NULL DEFAULT now(),
    status            text,
    reason            text,
    mw_confirmed      double precision,
    assets_commanded  integer,
    assets_dispatched integer,
    processing_ms     double precision,
    confirmed_event   jsonb            -- the published dispatch.confirmed, re-sent on replay
);

CREATE TABLE commands (
    command_id     text PRIMARY KEY,
    instruction_id text             NOT NULL REFERENCES instructions,
    asset_id       text             NOT NULL,
    limit_kw       double precision NOT NULL,
    setpoint_kw    double precision NOT NULL
);
CREATE INDEX commands_instruction ON commands (instruction_id);

CREATE TABLE command_acks (
    command_id     text PRIMARY KEY,
    instruction_id text             NOT NULL,
    asset_id       text             NOT NULL,
    accepted       boolean          NOT NULL,
    setpoint_kw    double precision NOT NULL,
    reason         text,
    acked_at       timestamptz      NOT NULL,
    received_at    timestamptz      NOT NULL DEFAULT now()
);
