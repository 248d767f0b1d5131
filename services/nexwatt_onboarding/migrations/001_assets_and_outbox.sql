-- Each asset's latest record; `version` grows with every change.
CREATE TABLE assets (
    asset_id              text             PRIMARY KEY,
    status                text             NOT NULL,
    asset_type            text             NOT NULL,
    inverter              text             NOT NULL,
    vendor                text             NOT NULL,
    capacity_kw           double precision NOT NULL,
    storage_kwh           double precision NOT NULL,
    backup_reserve_pct    double precision NOT NULL,
    meter_id              text             NOT NULL,
    iso                   text             NOT NULL,
    iso_zone              text             NOT NULL,
    resource_id           text             NOT NULL,
    subscriber_id         text,
    cohort                text             NOT NULL,
    telemetry_interval_s  integer          NOT NULL,
    version               integer          NOT NULL,
    updated_at            timestamptz      NOT NULL
);
CREATE INDEX assets_resource ON assets (resource_id, status);

-- Transactional outbox: written in the same transaction as the asset row, published to
-- asset.registered in `id` order (per asset) by the relays, then marked sent. `event_id` is the
-- CloudEvent id, the same on every (re)publication of a row.
CREATE TABLE outbox (
    id          bigserial   PRIMARY KEY,
    event_id    text        NOT NULL UNIQUE,
    asset_id    text        NOT NULL,
    version     integer     NOT NULL,
    payload     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL,
    sent_at     timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
CREATE INDEX outbox_unsent_per_asset ON outbox (asset_id, id) WHERE sent_at IS NULL;
