"""settlement: what each dispatched resource delivered, measured against a baseline and filed.

Consumes `dispatch.instruction`, `dispatch.confirmed`, `telemetry.interval` and
`asset.registered`; keeps in PostgreSQL what settling needs (telemetry `battery_kw` and `net_kw`
as one series per asset and channel, long: overlapping readings are refused). Each resource
runs on its own event-time watermark: the time most of its enrolled assets' battery telemetry
has reached (`nexwatt_shared.event_time`). Once that
reaches `window_end + grace` (`NEXWATT_SETTLEMENT_GRACE_S`, late telemetry's chance to arrive),
each confirmed instruction without a report is settled: the `SettlementFiled` event (event id
`settlement:<instruction_id>`, `filed_at` = the watermark) is recorded with the report, then
published from that record, so a replica or a replay never files a second content.
Rejected instructions get no report.

Baseline `mgo-pre-window-mean` (for now; PJM's customer baseline methods come later): a
device-level baseline in the style of CAISO's "Meter Generator Output" for behind-the-meter
storage. Only the battery is measured, never the household's load:
- an asset's baseline is the time-weighted mean of its metered `battery_kw` over
  `NEXWATT_SETTLEMENT_BASELINE_LOOKBACK_S` (default 1800 s) immediately before the window; an
  asset with no telemetry there has baseline 0 (counted and logged);
- its delivery is its metered `battery_kw` minus that baseline, per 5-minute settlement slot;
- the resource's delivery is the sum over its enrolled assets. Time without telemetry, or
  with a battery interval reported missing or questionable, contributes 0 (neither metered
  output nor baseline is counted for it; counted and logged as incomplete asset slots).
The formulas are in `nexwatt_settlement.domain`.
"""
