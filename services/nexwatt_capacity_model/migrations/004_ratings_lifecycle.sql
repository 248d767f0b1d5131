-- Issue 10: what accreditation and churn need per asset, and a cheap "what changed" for the
-- in-memory books each replica keeps per resource.
--
-- Ratings are stored resolved (defaults filled in by `BatteryRatings.power_ratings`), so every
-- row is complete. Rows from before this migration get the defaults of a record without
-- ratings, and cohort NULL: such a row takes its record again at the same version (the upsert
-- lets it), so a replay of asset.registered fills it in.
ALTER TABLE assets
    ADD COLUMN asset_type             text,
    ADD COLUMN cohort                 text,
    ADD COLUMN battery_continuous_kw  double precision,
    ADD COLUMN battery_peak_kw        double precision,
    ADD COLUMN round_trip_efficiency  double precision NOT NULL DEFAULT 0.9,
    ADD COLUMN coupling               text NOT NULL DEFAULT 'dc',
    ADD COLUMN pv_dc_kw               double precision,
    ADD COLUMN pv_mounting            text NOT NULL DEFAULT 'fixed',
    -- The writing transaction: rows changed since a reader's last snapshot are those with
    -- txid >= that snapshot's xmin (a few are read twice; none is missed).
    ADD COLUMN txid                   xid8 NOT NULL DEFAULT pg_current_xact_id();

UPDATE assets SET
    asset_type = CASE WHEN has_pv THEN 'solar_storage' ELSE 'storage' END,
    battery_continuous_kw = least(capacity_kw, 10 * storage_kwh),
    battery_peak_kw = least(capacity_kw, 10 * storage_kwh),
    pv_dc_kw = CASE WHEN has_pv THEN capacity_kw ELSE 0 END;

ALTER TABLE assets
    ALTER COLUMN asset_type SET NOT NULL,
    ALTER COLUMN battery_continuous_kw SET NOT NULL,
    ALTER COLUMN battery_peak_kw SET NOT NULL,
    ALTER COLUMN pv_dc_kw SET NOT NULL;
CREATE INDEX assets_txid ON assets (txid);

ALTER TABLE latest_channels ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX latest_channels_txid ON latest_channels (txid);

-- Every version of every asset record seen, in event time, for churn: an asset's spells in the
-- program (from enrolled or suspended until unenrolled, again after a re-enrolment) are read
-- from it in version order. History begins where this store began: the assets' current
-- versions below, and a compacted topic replayed from scratch holds only each newest one.
CREATE TABLE asset_history (
    asset_id     text        NOT NULL,
    version      integer     NOT NULL,
    status       text        NOT NULL,
    resource_id  text        NOT NULL,
    cohort       text,
    at           timestamptz NOT NULL,
    PRIMARY KEY (asset_id, version)
);
CREATE INDEX asset_history_resource ON asset_history (resource_id);
INSERT INTO asset_history (asset_id, version, status, resource_id, cohort, at)
SELECT asset_id, version, status, resource_id, NULL, updated_at FROM assets;
