-- Each asset's newest record: the highest version wins, whatever order they arrive in.
CREATE TABLE assets (
    asset_id            text             PRIMARY KEY,
    resource_id         text             NOT NULL,
    status              text             NOT NULL,
    capacity_kw         double precision NOT NULL,
    storage_kwh         double precision NOT NULL,
    backup_reserve_pct  double precision NOT NULL,
    version             integer          NOT NULL,
    updated_at          timestamptz      NOT NULL
);
CREATE INDEX assets_resource ON assets (resource_id);

-- Each asset's newest telemetry interval; replaced only by a later one. Kept even before the
-- asset's record arrives (the topics are not ordered with each other).
CREATE TABLE latest_telemetry (
    asset_id        text             PRIMARY KEY,
    interval_start  timestamptz      NOT NULL,
    interval_end    timestamptz      NOT NULL,
    pv_kw           double precision NOT NULL,
    soc_pct         double precision
);

-- The snapshot last published per resource: what the next one is compared to, what GET serves.
CREATE TABLE snapshots (
    resource_id  text        PRIMARY KEY,
    as_of        timestamptz NOT NULL,
    snapshot     jsonb       NOT NULL
);
