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
    -- Lifecycle in event time, for churn: when the asset's current spell in the program began
    -- (first seen enrolled or suspended; again after an unenrolment) and when it ended.
    ADD COLUMN enrolled_at            timestamptz,
    ADD COLUMN unenrolled_at          timestamptz,
    -- The writing transaction: rows changed since a reader's last snapshot are those with
    -- txid >= that snapshot's xmin (a few are read twice; none is missed).
    ADD COLUMN txid                   xid8 NOT NULL DEFAULT pg_current_xact_id();

UPDATE assets SET
    asset_type = CASE WHEN has_pv THEN 'solar_storage' ELSE 'storage' END,
    battery_continuous_kw = least(capacity_kw, 10 * storage_kwh),
    battery_peak_kw = least(capacity_kw, 10 * storage_kwh),
    pv_dc_kw = CASE WHEN has_pv THEN capacity_kw ELSE 0 END,
    enrolled_at = CASE WHEN status IN ('enrolled', 'suspended') THEN updated_at END,
    unenrolled_at = CASE WHEN status = 'unenrolled' THEN updated_at END;

ALTER TABLE assets
    ALTER COLUMN asset_type SET NOT NULL,
    ALTER COLUMN battery_continuous_kw SET NOT NULL,
    ALTER COLUMN battery_peak_kw SET NOT NULL,
    ALTER COLUMN pv_dc_kw SET NOT NULL;
CREATE INDEX assets_txid ON assets (txid);

ALTER TABLE latest_channels ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX latest_channels_txid ON latest_channels (txid);
