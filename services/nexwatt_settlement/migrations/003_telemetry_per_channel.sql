-- Telemetry becomes long (contract v2): one row per asset, channel and interval, so channels
-- of one asset may come at different resolutions and a channel may be reported missing.
CREATE TABLE telemetry_channels (
    asset_id        text             NOT NULL,
    channel         text             NOT NULL,  -- battery_kw or net_kw
    interval_start  timestamptz      NOT NULL,
    interval_s      integer          NOT NULL,
    value           double precision,           -- NULL: reported missing or refused
    quality         text             NOT NULL,  -- actual / estimated / questionable / missing
    PRIMARY KEY (asset_id, channel, interval_start)
);

-- Rows stored by contract v1 carried both channels, measured.
INSERT INTO telemetry_channels (asset_id, channel, interval_start, interval_s, value, quality)
SELECT t.asset_id, c.channel, t.interval_start, t.interval_s, c.value, 'actual'
FROM telemetry t
CROSS JOIN LATERAL (VALUES ('battery_kw', t.battery_kw), ('net_kw', t.net_kw)) AS c(channel, value);

DROP TABLE telemetry;
ALTER TABLE telemetry_channels RENAME TO telemetry;
ALTER TABLE telemetry RENAME CONSTRAINT telemetry_channels_pkey TO telemetry_pkey;
-- The series check reads an asset's stored intervals around new ones, over every channel.
CREATE INDEX telemetry_asset_start ON telemetry (asset_id, interval_start);
