-- The asset record's battery and PV ratings (issue 10). NULL keeps "not given": the record's
-- defaults (`BatteryRatings.power_ratings`) apply, as for records stored before these existed.
ALTER TABLE assets
    ADD COLUMN battery_continuous_kw  double precision,
    ADD COLUMN battery_peak_kw        double precision,
    ADD COLUMN round_trip_efficiency  double precision NOT NULL DEFAULT 0.9,
    ADD COLUMN coupling               text NOT NULL DEFAULT 'dc',
    ADD COLUMN pv_dc_kw               double precision,
    ADD COLUMN pv_mounting            text NOT NULL DEFAULT 'fixed';
