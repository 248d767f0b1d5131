-- Every version of every asset's record, so enrolment is read as of a window, not as of now.
CREATE TABLE asset_versions (
    asset_id       text             NOT NULL,
    version        integer          NOT NULL,
    resource_id    text             NOT NULL,
    cohort         text             NOT NULL,
    subscriber_id  text,
    capacity_kw    double precision NOT NULL,  -- the asset's accredited share
    status         text             NOT NULL,
    updated_at     timestamptz      NOT NULL,
    PRIMARY KEY (asset_id, version)
);
CREATE INDEX asset_versions_resource ON asset_versions (resource_id, asset_id);
-- Records kept before this migration have no time: they hold for every window.
INSERT INTO asset_versions (asset_id, version, resource_id, cohort, capacity_kw, status, updated_at)
SELECT asset_id, version, resource_id, cohort, 0, status, '2000-01-01T00:00:00Z' FROM assets;
DROP TABLE assets;

-- Hourly energy per asset, channel and local market day (market_time): what baselines read.
-- Each is 24 little-endian float64, one per local hour. Telemetry stored before this
-- migration is not rolled up.
CREATE TABLE hourly (
    asset_id   text  NOT NULL,
    channel    text  NOT NULL,
    day        date  NOT NULL,
    kwh        bytea NOT NULL,  -- energy measured in the hour [kWh]
    covered_s  bytea NOT NULL,  -- time measured in the hour [s]
    PRIMARY KEY (asset_id, channel, day)
);

-- A window's life: waiting for its data, filed (preliminary or restated), final.
ALTER TABLE instructions
    ADD COLUMN state text NOT NULL DEFAULT 'waiting',
    -- Measured asset-seconds inside the window seen so far, and the assets expected: a cheap
    -- hint of completeness per batch; the settlement's own count decides.
    ADD COLUMN covered_s double precision NOT NULL DEFAULT 0,
    ADD COLUMN assets_expected integer,
    ADD COLUMN dirty boolean NOT NULL DEFAULT false;  -- data arrived since the last filing
UPDATE instructions SET state = 'final'
WHERE instruction_id IN (SELECT instruction_id FROM reports);
CREATE INDEX instructions_open ON instructions (resource_id) WHERE state <> 'final';

-- One row per version of a window's report.
ALTER TABLE reports
    ADD COLUMN version integer NOT NULL DEFAULT 1,
    ADD COLUMN data_quality text NOT NULL DEFAULT 'final';
ALTER TABLE reports DROP CONSTRAINT reports_pkey;
ALTER TABLE reports ADD PRIMARY KEY (instruction_id, version);
CREATE INDEX reports_filed ON reports (filed_at);

-- Each version's money per subscriber (the event carries it per cohort).
CREATE TABLE payouts (
    instruction_id  text    NOT NULL,
    version         integer NOT NULL,
    cohort          text    NOT NULL,
    subscriber_id   text    NOT NULL,
    assets          integer NOT NULL,
    delivered_wh    bigint  NOT NULL,
    cents           bigint  NOT NULL,
    PRIMARY KEY (instruction_id, version, cohort, subscriber_id)
);
