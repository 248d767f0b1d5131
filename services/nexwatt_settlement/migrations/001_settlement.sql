-- Each asset's newest record (highest version wins): which resource and cohort it counts for.
CREATE TABLE assets (
    asset_id     text    PRIMARY KEY,
    resource_id  text    NOT NULL,
    cohort       text    NOT NULL,
    status       text    NOT NULL,
    version      integer NOT NULL
);
CREATE INDEX assets_resource ON assets (resource_id);

-- Metered intervals, once each: the natural key makes redelivery harmless.
CREATE TABLE telemetry (
    asset_id        text             NOT NULL,
    interval_start  timestamptz      NOT NULL,
    interval_s      integer          NOT NULL,
    battery_kw      double precision NOT NULL,
    net_kw          double precision NOT NULL,
    PRIMARY KEY (asset_id, interval_start)
);

CREATE TABLE instructions (
    instruction_id  text             PRIMARY KEY,
    resource_id     text             NOT NULL,
    mw              double precision NOT NULL,
    window_start    timestamptz      NOT NULL,
    window_end      timestamptz      NOT NULL,
    issued_at       timestamptz      NOT NULL
);

CREATE TABLE confirmations (
    instruction_id  text             PRIMARY KEY,
    resource_id     text             NOT NULL,
    status          text             NOT NULL,
    reason          text,
    mw_requested    double precision NOT NULL,
    mw_confirmed    double precision NOT NULL,
    confirmed_at    timestamptz      NOT NULL
);

-- One report per instruction: its presence is what stops a second one.
CREATE TABLE reports (
    instruction_id  text             PRIMARY KEY,
    report_id       text             NOT NULL,
    resource_id     text             NOT NULL,
    filed_at        timestamptz      NOT NULL,
    delivered_mw    double precision NOT NULL,
    report          jsonb            NOT NULL
);
