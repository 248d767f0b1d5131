-- The fleet's state of charge when each program day's event window opened (issue 10): the
-- energy-weighted SoC and backup reserve of the resource's reporting batteries, first seen
-- within the window's opening minutes, in the resource's market time. Sizing draws the
-- share of the fleet's battery energy an event can count on from these days.
CREATE TABLE soc_at_window_start (
    resource_id  text             NOT NULL,
    local_date   date             NOT NULL,
    soc_pct      double precision NOT NULL,
    reserve_pct  double precision NOT NULL,
    assets       integer          NOT NULL,
    as_of        timestamptz      NOT NULL,
    PRIMARY KEY (resource_id, local_date)
);
