-- One row per asset and interval: the natural key makes redelivery harmless.
CREATE TABLE interval_readings (
    asset_id        text             NOT NULL,
    interval_start  timestamptz      NOT NULL,
    interval_s      integer          NOT NULL,
    pv_kw           double precision NOT NULL,
    load_kw         double precision NOT NULL,
    battery_kw      double precision NOT NULL,
    net_kw          double precision NOT NULL,
    soc_pct         double precision,
    event_id        text             NOT NULL,
    received_at     timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (asset_id, interval_start)
);
CREATE INDEX interval_readings_start ON interval_readings (interval_start);
