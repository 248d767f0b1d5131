"""settlement: what each dispatched resource delivered, measured against PJM-style customer
baselines, filed in versions, and priced.

Consumes `dispatch.instruction`, `dispatch.confirmed`, `telemetry.interval` and
`asset.registered`; keeps in PostgreSQL what settling needs: every version of every asset's
record (enrolment is read as of the window), telemetry `battery_kw` and `net_kw` as one series
per asset and channel, and their hourly roll-up in market time (`market_time`) that baselines
read.

A confirmed window is filed once its data is in, never on "the newest reading": when its
enrolled assets have measured data for `NEXWATT_SETTLEMENT_COVERAGE_THRESHOLD_PCT` of their
slot-time, or when that coverage has stopped growing for `NEXWATT_SETTLEMENT_STALL_S` (offline
assets are not waited for until the deadline), version 1 is filed *preliminary*. Data arriving
later for the window (or the hours before it that its baseline reads) files the next version,
*restated*, with the diff to the Wh (at most one per NEXWATT_SETTLEMENT_RESTATE_EVERY_S); once
`NEXWATT_SETTLEMENT_FINAL_AFTER_S` (60 days) have passed since the window, it is filed *final*
and later data is kept but not settled into it (logged, counted). Each version's event (id
`settlement:<instruction_id>:v<version>`) is recorded with the report, then published from that
record, so a replica or a replay never files a second content.

Every revision of an instruction and dispatch's answer to each are kept; a revision is in force
once answered, and not rejected or rejected after its commands went out (`assets_commanded` >
0: the gateways may apply them); it takes effect when its commands start (the answer's
`commands_start`; else its issue time). A window is settled on its first revision's window,
ended by a cancellation in force (one at or before the start leaves nothing to settle: state
'cancelled', no report), each slot asking what the revision in force then asked; slots before
the first request are reported asking 0 and left out of the money. An instruction no revision
of which is in force gets no report. A filed window a cancellation then leaves nothing of (it
came into force late) is withdrawn: one more version, final, asking 0 MW, with no interval
assessed and no money, the data as measured; the window is then 'cancelled', never settled
again. A capability test (`kind` test) is filed like an event but priced at 0. A revision or an
answer arriving after a filing restates the window (after the final version it is kept and
logged). dispatch's answers to a reused instruction id (`is_conflict_answer`) are ignored: they
do not answer the instruction.

Each asset's baseline is the resource's method (`NEXWATT_SETTLEMENT_BASELINE_METHOD`: High 4 of
5 / 2 of 3 with the symmetric additive adjustment, Match Day, or Hour Before), with Hour Before
from the 5-minute data as the fallback; what is measured and whether export counts follow the
participation model. Each report carries the hourly ISO-format report, every method's accuracy
(relative RMSE) on the resource's recent non-event days, and the window priced as Performance
Assessment Intervals, split to cohorts (and to subscribers, in the `payouts` table) to the
cent. The formulas are in `nexwatt_settlement.domain`, `baselines` and `money`.
"""
