-- The historian: one row per normalized reading (contract v2), partitioned by month of the
-- interval start so that old months can be detached or dropped whole. A reading carries some
-- channels (`<channel>_quality` not NULL); the series policy (`nexwatt_shared.series`) keeps
-- each asset channel's intervals from overlapping, so a channel is stored once per interval.
CREATE TABLE readings (
    asset_id           text             NOT NULL,
    interval_start     timestamptz      NOT NULL,
    interval_s         integer          NOT NULL,
    channels           text             NOT NULL,  -- the channels carried, e.g. 'battery_kw+soc_pct'
    pv_kw              double precision,
    load_kw            double precision,
    battery_kw         double precision,
    net_kw             double precision,
    soc_pct            double precision,
    pv_kw_quality      text,  -- actual / estimated / questionable / missing; NULL: not carried
    load_kw_quality    text,
    battery_kw_quality text,
    net_kw_quality     text,
    soc_pct_quality    text,
    devices_reporting  integer,
    devices_total      integer,
    vendor             text,
    endpoint           text,
    event_id           text             NOT NULL,
    received_at        timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (asset_id, interval_start, channels)
) PARTITION BY RANGE (interval_start);

-- Create the month's partition holding `at` unless it exists; safe when replicas race.
CREATE FUNCTION readings_partition(at timestamptz) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    month_start timestamptz := date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    name text := 'readings_' || to_char(month_start AT TIME ZONE 'UTC', 'YYYY_MM');
BEGIN
    IF to_regclass(name) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF readings FOR VALUES FROM (%L) TO (%L)',
            name, month_start, month_start + interval '1 month');
    END IF;
EXCEPTION WHEN duplicate_table THEN
    NULL;  -- another replica created it first
END $$;

-- Readings stored by contract v1 (every channel but SoC required) move into the historian.
-- Months in UTC, whatever the session's time zone (the partitions are UTC months).
SELECT readings_partition(m)
FROM (SELECT DISTINCT date_trunc('month', interval_start, 'UTC') AS m FROM interval_readings) months;
INSERT INTO readings (asset_id, interval_start, interval_s, channels, pv_kw, load_kw,
                      battery_kw, net_kw, soc_pct, pv_kw_quality, load_kw_quality,
                      battery_kw_quality, net_kw_quality, soc_pct_quality, event_id, received_at)
SELECT asset_id, interval_start, interval_s,
       'pv_kw+load_kw+battery_kw+net_kw' || CASE WHEN soc_pct IS NULL THEN '' ELSE '+soc_pct' END,
       pv_kw, load_kw, battery_kw, net_kw, soc_pct, 'actual', 'actual', 'actual', 'actual',
       CASE WHEN soc_pct IS NULL THEN NULL ELSE 'actual' END, event_id, received_at
FROM interval_readings;
DROP TABLE interval_readings;
