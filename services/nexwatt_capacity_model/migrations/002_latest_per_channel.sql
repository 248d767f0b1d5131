-- Contract v2: each channel of an asset has its own newest value and its own interval end (a
-- reading need not carry every channel, and channels come at different resolutions). value
-- NULL: the newest interval of that channel was reported missing or questionable (unknown).
CREATE TABLE latest_channels (
    asset_id      text             NOT NULL,
    channel       text             NOT NULL,  -- pv_kw or soc_pct
    interval_end  timestamptz      NOT NULL,
    value         double precision,
    quality       text             NOT NULL,
    PRIMARY KEY (asset_id, channel)
);

-- A v1 row carried PV always and SoC when known (NULL: unknown, now quality missing).
INSERT INTO latest_channels (asset_id, channel, interval_end, value, quality)
SELECT t.asset_id, c.channel, t.interval_end, c.value,
       CASE WHEN c.value IS NULL THEN 'missing' ELSE 'actual' END
FROM latest_telemetry t
CROSS JOIN LATERAL (VALUES ('pv_kw', t.pv_kw), ('soc_pct', t.soc_pct)) AS c(channel, value);

DROP TABLE latest_telemetry;
