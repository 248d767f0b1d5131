"""Settlement rules against hand-worked numbers: kW to 1e-6, MW and MWh to 1e-9, hourly kWh as
filed (3 decimals, compared exactly), cents and Wh exactly.

The scene: PJM, America/New_York. The event day is Wednesday 2026-12-02 (EST, UTC-5); the
hourly history runs from Wednesday 2026-11-18 to the event day, 15 days, and holds Thanksgiving
(Thursday 2026-11-26, a NERC holiday) and an earlier event of the resource (Monday 2026-11-30).
Hours are 0-based local hours: index h is hour ending h+1 (HE h+1).

    d   date   day                    d   date   day
    0   11-18  Wed                    8   11-26  Thu  Thanksgiving: never a candidate
    1   11-19  Thu                    9   11-27  Fri
    2   11-20  Fri                   10   11-28  Sat
    3   11-21  Sat                   11   11-29  Sun
    4   11-22  Sun                   12   11-30  Mon  past event day: never a candidate
    5   11-23  Mon                   13   12-01  Tue
    6   11-24  Tue                   14   12-02  Wed  the event day
    7   11-25  Wed

An event at 14:00 local (index 14, HE15) is adjusted on the 3 hours ending 1 hour before it:
indexes 10, 11, 12 (HE11-HE13)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from nexwatt_settlement.baselines import ParticipationModel
from nexwatt_settlement.domain import (
    NO_BASELINE,
    BaselineMethod,
    Due,
    Fleet,
    History,
    Program,
    Reading,
    Readings,
    Settlement,
    attribute,
    baseline_accuracy,
    build_report,
    changed,
    day_baseline_kw,
    diff,
    hourly_csv,
    hourly_report,
    intervals_csv,
    performance_money,
    performance_pct,
    resample,
    settle,
    slot_edges_s,
)
from nexwatt_settlement.market_time import MarketClock
from nexwatt_settlement.money import PerformanceRates
from nexwatt_shared.contracts import DataQuality, HourlyDelivery, Quality, SettlementFiled

TOL_KW = 1e-6
TOL_MW = 1e-9  # MW and MWh
EASTERN = ZoneInfo("America/New_York")
DER = ParticipationModel.DER_AGGREGATOR
DR = ParticipationModel.DEMAND_RESPONSE
HXY = BaselineMethod.HIGH_X_OF_Y
HXY_NAME = "pjm-high-x-of-y-adjusted"

FIRST_DAY = date(2026, 11, 18)
EVENT_DAY = date(2026, 12, 2)
THANKSGIVING = date(2026, 11, 26)
PAST_EVENT = date(2026, 11, 30)
N_DAYS = 15
DAYS = [FIRST_DAY + timedelta(days=d) for d in range(N_DAYS)]
ADJUSTMENT_HOURS = slice(10, 13)  # HE11-HE13, for an event starting at index 14
# Round illustrative rates, not PJM's [$/MW per 5-minute interval].
RATES = PerformanceRates(
    charge_usd_per_mw_interval=10.0, bonus_usd_per_mw_interval=4.0, source="test: round numbers"
)


def settled(
    due: Due, fleet: Fleet, readings: Sequence[Reading], history: History, program: Program
) -> Settlement:
    """`settle` given readings as rows, the way the store's columns are built from them."""
    return settle(due, fleet, Readings.of(fleet, readings), history, program)


def close(actual: object, expected: object, tol: float) -> None:
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    """A local (Eastern) wall-clock time as UTC."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=EASTERN).astimezone(UTC)


def program(
    model: ParticipationModel = DER, method: BaselineMethod = HXY, accuracy_days: int = 10
) -> Program:
    return Program(
        model=model,
        method=method,
        clock=MarketClock(),
        coverage_threshold=0.9,
        rates=RATES,
        accuracy_days=accuracy_days,
    )


def fleet(
    asset_ids: Sequence[str],
    cohorts: Sequence[str] | None = None,
    subscribers: Sequence[str] | None = None,
    accredited_kw: Sequence[float] | None = None,
) -> Fleet:
    n = len(asset_ids)
    return Fleet(
        asset_ids=list(asset_ids),
        cohorts=list(cohorts or ["east"] * n),
        subscribers=list(subscribers or asset_ids),
        accredited_kw=np.array(accredited_kw or [10.0] * n, dtype=float),
    )


def history(day_kw: Sequence[Sequence[float]]) -> History:
    """Flat days: day_kw[asset][d] for all 24 hours of day d [kW] (NaN: not covered)."""
    hourly = np.repeat(np.array(day_kw, dtype=float)[:, :, None], 24, axis=2)
    return History(first_day=FIRST_DAY, hourly_kw=hourly, event_days=frozenset({PAST_EVENT}))


def flat(kw: float) -> list[float]:
    return [kw] * N_DAYS


def five_minute(asset_id: str, start: datetime, kw: Sequence[float | None]) -> list[Reading]:
    return [Reading(asset_id, start + timedelta(minutes=5 * i), 300, v) for i, v in enumerate(kw)]


def hour_rows(rows: Sequence[HourlyDelivery]) -> list[tuple[str, int, float, float, float]]:
    """The hourly report as (date, hour ending, baseline, metered, delivered kWh) rows."""
    return [(r.date, r.hour_ending, r.baseline_kwh, r.metered_kwh, r.reduction_kwh) for r in rows]


def due(start: datetime, minutes: int, mw_requested: float = 0.01, iid: str = "I-1") -> Due:
    """One revision in force, asking `mw_requested` from the window's start."""
    end = start + timedelta(minutes=minutes)
    return Due(iid, "NXW-PJM-1", start, end, (0.0,), (mw_requested,), 0.009, revision=1)


# --- resample ----------------------------------------------------------------------------------


def test_intervals_are_weighted_by_their_overlap_with_each_slot() -> None:
    # One 5-minute interval straddling two slots: [150, 450) s at 6 kW over slots [0, 300) and
    # [300, 600): 150 s in each -> mean 6 * 150/300 = 3.0 kW, covered 0.5, in both.
    # Plus five 1-minute intervals of another asset over [300, 600) at 1, 2, 3, 4, 5 kW:
    # slot 2 mean (1 + 2 + 3 + 4 + 5) * 60/300 = 3.0 kW, covered 1.0; slot 1 nothing.
    mean_kw, covered = resample(
        asset_index=np.array([0, 1, 1, 1, 1, 1]),
        start_s=np.array([150.0, 300.0, 360.0, 420.0, 480.0, 540.0]),
        end_s=np.array([450.0, 360.0, 420.0, 480.0, 540.0, 600.0]),
        value_kw=np.array([6.0, 1.0, 2.0, 3.0, 4.0, 5.0]),
        n_assets=2,
        edges_s=np.array([0.0, 300.0, 600.0]),
    )
    close(mean_kw, [[3.0, 3.0], [0.0, 3.0]], TOL_KW)
    close(covered, [[0.5, 0.5], [0.0, 1.0]], TOL_KW)


def test_one_five_and_fifteen_minute_intervals_with_gaps_and_outside_the_window() -> None:
    # Slots [0, 300), [300, 600), [600, 900).
    # Asset 0, a 15-minute interval [-120, 780) at 3 kW: 300 s in slot 1 and in slot 2
    #   (3.0 kW, covered 1.0), 180 s in slot 3 -> 3 * 180/300 = 1.8 kW, covered 0.6.
    # Asset 1, 1-minute intervals [0, 60) 1 kW, [60, 120) 2 kW, [240, 300) 4 kW (a 2-minute gap):
    #   slot 1 (60*1 + 60*2 + 60*4)/300 = 420/300 = 1.4 kW, covered 180/300 = 0.6;
    #   a 5-minute interval [450, 750) at 10 kW: 150 s in slot 2 and in slot 3 ->
    #   10 * 150/300 = 5.0 kW, covered 0.5, in each.
    # Asset 2, intervals only before [-900, 0) and after [900, 1800) the window at 50 kW:
    #   they touch its edges but overlap nothing -> 0 kW, covered 0.
    mean_kw, covered = resample(
        asset_index=np.array([0, 1, 1, 1, 1, 2, 2]),
        start_s=np.array([-120.0, 0.0, 60.0, 240.0, 450.0, -900.0, 900.0]),
        end_s=np.array([780.0, 60.0, 120.0, 300.0, 750.0, 0.0, 1800.0]),
        value_kw=np.array([3.0, 1.0, 2.0, 4.0, 10.0, 50.0, 50.0]),
        n_assets=3,
        edges_s=slot_edges_s(900.0),
    )
    close(mean_kw, [[3.0, 3.0, 1.8], [1.4, 5.0, 5.0], [0.0, 0.0, 0.0]], TOL_KW)
    close(covered, [[1.0, 1.0, 0.6], [0.6, 0.5, 0.5], [0.0, 0.0, 0.0]], TOL_KW)


def test_a_window_that_is_not_whole_slots_ends_with_a_short_slot() -> None:
    assert slot_edges_s(900.0).tolist() == [0.0, 300.0, 600.0, 900.0]
    assert slot_edges_s(1000.0).tolist() == [0.0, 300.0, 600.0, 900.0, 1000.0]
    # A 5-minute interval [900, 1200) at 6 kW over the short slot [900, 1000): 100 s ->
    # 6 * 100/100 = 6.0 kW, covered 1.0.
    mean_kw, covered = resample(
        np.array([0]),
        np.array([900.0]),
        np.array([1200.0]),
        np.array([6.0]),
        1,
        slot_edges_s(1000.0),
    )
    close(mean_kw, [[0.0, 0.0, 0.0, 6.0]], TOL_KW)
    close(covered, [[0.0, 0.0, 0.0, 1.0]], TOL_KW)


# --- High X of Y on the asset's hourly history ----------------------------------------------------
# Asset A's battery output [kW], flat over each day; the event is 14:00-14:15 on d14.
#   weekdays, newest first:  d13 2.0 | d12 9.0 past event: skipped | d9 4.0 | d8 9.0 holiday:
#   skipped | d7 3.0 | d6 1.0 | d5 2.0 | d2 5.0, d1 5.0, d0 5.0 (older than the 5 most recent)
#   weekends (d3, d4, d10, d11) 8.0: not like-days of a Wednesday.
# Low usage: candidates d0 d1 d2 d5 d6 d7 d9 d13: (5+5+5+2+1+3+4+2)/8 = 27/8 = 3.375 kW;
#   0.25 * 3.375 = 0.84375 kW: none below, all eligible.
# The 5 most recent eligible: d13 2.0, d9 4.0, d7 3.0, d6 1.0, d5 2.0; the highest 4 drop d6:
#   CBL = (2.0 + 4.0 + 3.0 + 2.0) / 4 = 2.75 kW.
#   (Counting Thanksgiving: d13, d9, d8, d7, d6 -> (9+4+3+2)/4 = 4.5; counting the past event
#   day: d13, d12, d9, d7, d6 -> (9+4+3+2)/4 = 4.5; reaching to d2: 5.0 would enter.)
# The event day reads 3.0, 3.5, 4.0 kW at indexes 10, 11, 12: adjustment
#   ((3.0-2.75) + (3.5-2.75) + (4.0-2.75)) / 3 = (0.25 + 0.75 + 1.25)/3 = 0.75 kW
#   -> baseline 2.75 + 0.75 = 3.5 kW.
A_DAY_KW = [5.0, 5.0, 5.0, 8.0, 8.0, 2.0, 1.0, 3.0, 9.0, 4.0, 8.0, 8.0, 9.0, 2.0, 0.0]
A_WINDOW_KW = [3.0, 3.5, 4.0]
# Asset B: 0.5 kW on every day, but it charges at 4 kW (-4.0) in the adjustment window to get
# ready: adjustment (-4.0 - 0.5) = -4.5 kW -> baseline 0.5 - 4.5 = -4.0 kW, clipped to 0.
B_DAY_KW = flat(0.5)
B_WINDOW_KW = [-4.0, -4.0, -4.0]


def hxy_history() -> History:
    made = history([A_DAY_KW, B_DAY_KW])
    made.hourly_kw[0, 14, ADJUSTMENT_HOURS] = A_WINDOW_KW
    made.hourly_kw[1, 14, ADJUSTMENT_HOURS] = B_WINDOW_KW
    return made


def test_day_baseline_high_4_of_5_skips_holiday_and_past_event_and_adjusts() -> None:
    assert (DAYS[8], DAYS[12], DAYS[14]) == (THANKSGIVING, PAST_EVENT, EVENT_DAY)
    made = hxy_history()
    got = day_baseline_kw(
        HXY,
        made.hourly_kw[:, :14],
        DAYS[:14],
        made.event_days,
        made.hourly_kw[:, 14],
        EVENT_DAY,
        14,
        15,
    )
    # A: 2.75 + 0.75 = 3.5 kW in every hour; B: 0.5 - 4.5 = -4.0 kW (not clipped here).
    close(got, [np.full(24, 3.5), np.full(24, -4.0)], TOL_KW)


def test_day_baseline_early_event_cuts_the_adjustment_window_at_midnight() -> None:
    # Event at 02:00 (index 2): the window shrinks to the 1 hour ending 1 hour before it,
    # index 0. A reads 4.75 there: adjustment 4.75 - 2.75 = 2.0 -> 4.75 kW.
    # Event at 01:00 (index 1): no hour left for the window -> the CBL unadjusted, 2.75 kW.
    made = history([A_DAY_KW])
    today = made.hourly_kw[:, 14].copy()
    today[0, 0] = 4.75
    for start, expected in [(2, 4.75), (1, 2.75)]:
        got = day_baseline_kw(
            HXY, made.hourly_kw[:, :14], DAYS[:14], made.event_days, today, EVENT_DAY, start, 4
        )
        close(got, [np.full(24, expected)], TOL_KW)


def test_day_baseline_hour_before_on_hourly_data() -> None:
    # The hour just before the event, for every hour: index 13 of the event day (HE14).
    today = np.zeros((1, 24))
    today[0, 13] = 2.5
    before = np.zeros((1, 14, 24))
    args = (before, DAYS[:14], frozenset(), today, EVENT_DAY)
    close(day_baseline_kw(BaselineMethod.HOUR_BEFORE, *args, 14, 15), [np.full(24, 2.5)], TOL_KW)
    # An event at midnight has no hour before on the day: NaN.
    assert np.isnan(day_baseline_kw(BaselineMethod.HOUR_BEFORE, *args, 0, 1)).all()


# --- settle --------------------------------------------------------------------------------------


def test_der_high_x_of_y_and_a_battery_charging_before_the_event_is_credited_once() -> None:
    # Window 14:00-14:15 local = 19:00-19:15 UTC, three slots, DER model (battery_kw).
    # A: baseline 3.5 kW (above); discharges 6.0, 7.0, 5.0 -> credited 2.5, 3.5, 1.5 kW.
    # B: baseline -4.0 clipped to 0 kW; discharges 5.0 -> credited 5.0 kW per slot. Unclipped,
    #    the 4 kW it charged before the event would be credited again: 5 - (-4) = 9 kW.
    #
    # per slot   baseline [kW]   metered [kW]     delivered [kW]
    #   1        3.5 + 0 = 3.5   6 + 5 = 11       2.5 + 5 = 7.5
    #   2        3.5             7 + 5 = 12       3.5 + 5 = 8.5
    #   3        3.5             5 + 5 = 10       1.5 + 5 = 6.5
    # window mean (7.5 + 8.5 + 6.5)/3 = 7.5 kW = 0.0075 MW; energy 22.5 kW * 5/60 h
    #   = 1.875 kWh = 0.001875 MWh
    # per asset: A (2.5 + 3.5 + 1.5) * 5/60 = 0.625 kWh; B 15 * 5/60 = 1.25 kWh
    start = local(EVENT_DAY, 14)
    readings = [
        *five_minute("A", start, [6.0, 7.0, 5.0]),
        *five_minute("B", start, [5.0, 5.0, 5.0]),
    ]
    got = settled(due(start, 15), fleet(["A", "B"]), readings, hxy_history(), program(DER))

    close(got.baseline_mw, [0.0035] * 3, TOL_MW)
    close(got.metered_mw, [0.011, 0.012, 0.010], TOL_MW)
    close(got.delivered_mw, [0.0075, 0.0085, 0.0065], TOL_MW)
    close(got.asset_delivered_mwh, [0.000625, 0.00125], TOL_MW)
    close(got.window_mw, 0.0075, TOL_MW)
    close(got.delivered_mwh, 0.001875, TOL_MW)
    close(got.coverage_pct, 100.0, 1e-9)
    assert got.methods.tolist() == [HXY_NAME, HXY_NAME]
    assert got.assets_metered == 2
    # One local hour: 2026-12-02 hour 14 = HE15. baseline 3.5 kW * 0.25 h = 0.875 kWh;
    # metered 33 kW * 5/60 h = 2.75 kWh; delivered 1.875 kWh.
    assert hour_rows(got.hours) == [("2026-12-02", 15, 0.875, 2.75, 1.875)]


def der_and_dr_scene(model: ParticipationModel) -> Settlement:
    """One battery discharging 5 kW into a household drawing 1 kW, for 5 minutes at 14:00.
    Demand response reads the site meter: net_kw = 5 - 1 = +4 kW (export), history -1 kW
    (1 kW import) on every day. DER reads the battery: 5 kW, history 0 kW (idle)."""
    start = local(EVENT_DAY, 14)
    if model == DR:
        made, value = history([flat(-1.0)]), 4.0
    else:
        made, value = history([flat(0.0)]), 5.0
    return settled(
        due(start, 5), fleet(["A"]), five_minute("A", start, [value]), made, program(model)
    )


def test_demand_response_credits_the_avoided_load_not_the_export() -> None:
    # Site load = -net_kw: history 1 kW on all days -> CBL 1.0, adjustment (1 - 1) = 0 ->
    # baseline 1.0 kW. Metered load -4 kW (export); export not credited:
    # credited = 1.0 - max(-4, 0) = 1.0 kW. The metered figure is the site load, -4 kW.
    got = der_and_dr_scene(DR)
    close(got.baseline_mw, [0.001], TOL_MW)
    close(got.metered_mw, [-0.004], TOL_MW)
    close(got.delivered_mw, [0.001], TOL_MW)
    close(got.delivered_mwh, 1.0 / 12 / 1000, TOL_MW)  # 1 kW * 5/60 h


def test_der_aggregator_credits_the_whole_discharge() -> None:
    # Battery history 0 kW -> baseline 0; credited = 5 - 0 = 5.0 kW, the 4 kW export included.
    got = der_and_dr_scene(DER)
    close(got.baseline_mw, [0.0], TOL_MW)
    close(got.metered_mw, [0.005], TOL_MW)
    close(got.delivered_mw, [0.005], TOL_MW)
    close(got.delivered_mwh, 5.0 / 12 / 1000, TOL_MW)  # 5 kW * 5/60 h


def fallback_scene() -> tuple[Due, Fleet, Settlement]:
    # DER, window 14:00-14:15, three assets:
    # A: 1.0 kW on every day -> High 4 of 5 = 1.0, adjustment 0 -> baseline 1.0 kW.
    # C: history only from d9 (11-27): eligible weekdays d9, d13 -> 2 < 5: no High X of Y.
    #    5-minute data 13:15-14:00: 30 min at 1.0 kW, 15 min at 2.0 kW; 2700 s of 3600 s
    #    measured (0.75 >= 0.5) -> Hour Before = (1800*1.0 + 900*2.0)/2700 = 4/3 kW.
    # D: no history; 5-minute data 13:40-14:00 only, 1200 s (1/3 < 0.5 of the hour) -> no
    #    baseline at all: "none", credited 0, its metered kW left out (but it covers time).
    # In the window A 4.0, C 5.0, D 6.0 kW in every slot:
    #   delivered = (4 - 1) + (5 - 4/3) = 3 + 11/3 = 20/3 kW; baseline 1 + 4/3 = 7/3 kW;
    #   metered 4 + 5 = 9 kW (D's 6 kW not counted).
    nan = float("nan")
    made = history([flat(1.0), [nan] * 9 + [3.0] * 6, [nan] * N_DAYS])
    start = local(EVENT_DAY, 14)
    readings = [
        *five_minute("A", start, [4.0] * 3),
        *five_minute("C", local(EVENT_DAY, 13, 15), [1.0] * 6 + [2.0] * 3),
        *five_minute("C", start, [5.0] * 3),
        *five_minute("D", local(EVENT_DAY, 13, 40), [3.0] * 4),
        *five_minute("D", start, [6.0] * 3),
    ]
    the_due, the_fleet = due(start, 15), fleet(["A", "C", "D"])
    return the_due, the_fleet, settled(the_due, the_fleet, readings, made, program(DER))


def test_fallback_to_hour_before_and_an_asset_without_any_baseline() -> None:
    _, _, got = fallback_scene()
    assert got.methods.tolist() == [HXY_NAME, "hour-before", NO_BASELINE]
    close(got.baseline_mw, [7 / 3 / 1000] * 3, TOL_MW)
    close(got.metered_mw, [0.009] * 3, TOL_MW)
    close(got.delivered_mw, [20 / 3 / 1000] * 3, TOL_MW)
    # per asset: A 3 kW * 0.25 h = 0.75 kWh; C 11/3 * 0.25 = 11/12 kWh; D 0
    close(got.asset_delivered_mwh, [0.00075, 11 / 12 / 1000, 0.0], TOL_MW)
    close(got.coverage_pct, 100.0, 1e-9)  # D's data covers its time though it is not credited
    assert got.assets_metered == 3


def test_hour_before_program_settles_every_asset_on_the_five_minute_data() -> None:
    # Method Hour Before: the hourly history is not read. A: 13:00-14:00 at 2.0 kW (12
    # intervals, covered 1.0) -> baseline 2.0; discharging 3.0 -> credited 1.0 kW.
    start = local(EVENT_DAY, 14)
    readings = [*five_minute("A", local(EVENT_DAY, 13), [2.0] * 12), Reading("A", start, 300, 3.0)]
    got = settled(
        due(start, 5),
        fleet(["A"]),
        readings,
        history([flat(9.0)]),
        program(DER, BaselineMethod.HOUR_BEFORE),
    )
    assert got.methods.tolist() == ["hour-before"]
    close(got.baseline_mw, [0.002], TOL_MW)
    close(got.delivered_mw, [0.001], TOL_MW)


def test_a_missing_or_questionable_interval_is_uncovered_time_not_zero_kw() -> None:
    # DER, A's history 1.0 kW flat -> baseline 1.0 kW. Window 14:00-14:25, five slots:
    #   slot 1: 5.0 actual                  -> metered 5.0, covered 1, delivered 5 - 1 = 4.0
    #   slot 2: reported missing (no value) -> covered 0: baseline 0, delivered 0 (a metered
    #           0 kW would have been 0 - 1 = -1.0)
    #   slot 3: 9.0 questionable            -> not measured: as slot 2, delivered 0
    #   slot 4: 3.0 estimated               -> measured: delivered 3 - 1 = 2.0
    #   slot 5: 1-minute 4.0 kW for 3 minutes, then 2 missing minutes:
    #           metered 4 * 180/300 = 2.4, covered 0.6, baseline 1.0 * 0.6 = 0.6,
    #           delivered 2.4 - 0.6 = 1.8
    # Also X, not enrolled: ignored.
    # coverage (1 + 0 + 0 + 1 + 0.6)/5 = 52 %; window mean (4 + 0 + 0 + 2 + 1.8)/5 = 1.56 kW;
    # energy 7.8 kW * 5/60 h = 0.65 kWh = 0.00065 MWh
    start = local(EVENT_DAY, 14)
    at = [start + timedelta(minutes=m) for m in range(25)]
    readings = [
        Reading("A", at[0], 300, 5.0),
        Reading("A", at[5], 300, None, Quality.MISSING),
        Reading("A", at[10], 300, 9.0, Quality.QUESTIONABLE),
        Reading("A", at[15], 300, 3.0, Quality.ESTIMATED),
        *[Reading("A", at[20 + m], 60, 4.0) for m in range(3)],
        *[Reading("A", at[23 + m], 60, None, Quality.MISSING) for m in range(2)],
        Reading("X", at[0], 300, 100.0),
    ]
    got = settled(due(start, 25), fleet(["A"]), readings, history([flat(1.0)]), program(DER))
    close(got.coverage, [1.0, 0.0, 0.0, 1.0, 0.6], TOL_KW)
    close(got.baseline_mw, [0.001, 0.0, 0.0, 0.001, 0.0006], TOL_MW)
    close(got.metered_mw, [0.005, 0.0, 0.0, 0.003, 0.0024], TOL_MW)
    close(got.delivered_mw, [0.004, 0.0, 0.0, 0.002, 0.0018], TOL_MW)
    close(got.coverage_pct, 52.0, 1e-9)
    close(got.window_mw, 0.00156, TOL_MW)
    close(got.delivered_mwh, 0.00065, TOL_MW)
    assert got.assets_metered == 1


def test_coverage_is_over_every_enrolled_asset_silent_ones_included() -> None:
    # Window 14:00-14:15 on d14. A: full history, 3 slots measured at 2.0 kW (baseline 1.0).
    # E: enrolled, no history, nothing in the hour before or the window: it still counts
    #    for coverage (its data may be on its way), and it is not credited ("none").
    # coverage = A's 3 measured slots / (2 enrolled assets * 3 slots) = 50 %.
    start = local(EVENT_DAY, 14)
    readings = five_minute("A", start, [2.0] * 3)
    made = history([flat(1.0), [float("nan")] * N_DAYS])
    got = settled(due(start, 15), fleet(["A", "E"]), readings, made, program(DER))
    assert got.assets_metered == 1
    assert list(got.methods) == [HXY_NAME, NO_BASELINE]
    close(got.coverage_pct, 50.0, 1e-9)
    close(got.delivered_mw, [0.001] * 3, TOL_MW)  # A: 2 - 1 kW; E: not credited


def test_a_window_across_midnight_does_not_baseline_on_its_own_first_day() -> None:
    # Window 23:55 on d13 (Tue 12-01) - 00:05 on d14 (Wed 12-02), DER. A as in the High X of Y
    # scene, but d13 reads 20.0 kW. d13 is a day of this event, so the CBL of 12-02 hour 0
    # must skip it, like the past event day:
    #   candidates d0 d1 d2 d5 d6 d7 d9: (5+5+5+2+1+3+4)/7 = 25/7 = 3.571 kW, low-usage
    #   threshold 0.893: none; 5 most recent d9 4, d7 3, d6 1, d5 2, d2 5 -> (5+4+3+2)/4
    #   = 3.5 kW. Event at index 0: no adjustment window -> baseline 3.5 kW.
    # Got 8.0 kW: with d13 as a candidate (mean 45/8 = 5.625, d6 low-usage), the 5 most recent
    # are d13 20, d9 4, d7 3, d5 2, d2 5 -> (20+5+4+3)/4 = 8.0.
    # The first slot (12-01 hour 23) is 3.5 + adjustment (20 - 3.5) = 20.0 kW either way.
    day_kw = [*A_DAY_KW[:13], 20.0, 0.0]
    start = local(date(2026, 12, 1), 23, 55)
    got = settled(
        due(start, 10),
        fleet(["A"]),
        five_minute("A", start, [30.0, 30.0]),
        history([day_kw]),
        program(DER),
    )
    close(got.baseline_mw, [0.020, 0.0035], TOL_MW)


# --- The hourly ISO report -------------------------------------------------------------------


def test_a_window_across_an_hour_gives_two_hourly_rows() -> None:
    # DER, A's history 1.0 flat -> baseline 1.0. Window 14:50-15:10 local: slots 14:50, 14:55
    # in hour 14 (HE15), 15:00, 15:05 in hour 15 (HE16). Events [14, 16): the adjustment
    # window is still indexes 10-12. A discharges 3, 4, 5, 6 kW -> delivered 2, 3, 4, 5 kW.
    # HE15: baseline 1 kW * 600 s = 1/6 kWh -> 0.167; metered (3 + 4)/12 = 0.58333 -> 0.583;
    #       delivered (2 + 3)/12 = 0.41667 -> 0.417
    # HE16: baseline 0.167; metered (5 + 6)/12 = 0.91667 -> 0.917; delivered 9/12 = 0.75
    start = local(EVENT_DAY, 14, 50)
    got = settled(
        due(start, 20),
        fleet(["A"]),
        five_minute("A", start, [3.0, 4.0, 5.0, 6.0]),
        history([flat(1.0)]),
        program(DER),
    )
    assert hour_rows(got.hours) == [
        ("2026-12-02", 15, 0.167, 0.583, 0.417),
        ("2026-12-02", 16, 0.167, 0.917, 0.75),
    ]
    assert hourly_csv(got.hours) == (
        "registration_id,date,hour_ending,baseline_kwh,metered_kwh,reduction_kwh\n"
        "NXW-PJM-1,2026-12-02,15,0.167,0.583,0.417\n"
        "NXW-PJM-1,2026-12-02,16,0.167,0.917,0.750\n"
    )


def test_hourly_report_sums_slots_per_local_hour_across_midnight() -> None:
    # Three 5-minute slots: 23:50 and 23:55 of 12-02 (hour 23, HE24), 00:00 of 12-03 (HE1).
    # kWh = MW * 1000 * 300 s / 3600 = MW * 1000/12:
    #   HE24 baseline (0.0012 + 0.0012) * 1000/12 = 0.2; metered (0.006 + 0.0048) = 0.9;
    #        delivered (0.0048 + 0.0036) = 0.7
    #   HE1  baseline 0.0012 -> 0.1; metered 0.0024 -> 0.2; delivered 0.0012 -> 0.1
    rows = hourly_report(
        "R-1",
        [EVENT_DAY, EVENT_DAY, date(2026, 12, 3)],
        np.array([23, 23, 0]),
        np.array([300.0, 300.0, 300.0]),
        np.array([0.0012, 0.0012, 0.0012]),
        np.array([0.006, 0.0048, 0.0024]),
        np.array([0.0048, 0.0036, 0.0012]),
    )
    assert hour_rows(rows) == [
        ("2026-12-02", 24, 0.2, 0.9, 0.7),
        ("2026-12-03", 1, 0.1, 0.2, 0.1),
    ]


# --- Money ----------------------------------------------------------------------------------------


SLOTS_S = np.full(12, 300.0)  # an hour of 5-minute assessment intervals
EVERY_SLOT = np.ones(12, dtype=bool)  # a request in force in each


def slots_mw(mw: float) -> np.ndarray:
    return np.full(12, mw)


def test_performance_money_charges_a_shortfall() -> None:
    # Asked 0.5 MW, delivered 0.4 MW over 12 intervals: shortfall 0.1 MW;
    # charge 0.1 MW * 10 $/MW-interval * 12 = $12.00 = 1200 cents; no bonus; net -1200.
    got = performance_money(slots_mw(0.5), slots_mw(0.4), SLOTS_S, EVERY_SLOT, RATES, EVENT_DAY)
    assert got.delivery_year == "2026/27"
    assert got.expected_mw == 0.5
    close(got.shortfall_mw, 0.1, TOL_MW)
    assert got.intervals == 12
    assert (got.charge_rate_usd_per_mw_interval, got.bonus_rate_usd_per_mw_interval) == (10.0, 4.0)
    assert (got.charge_cents, got.bonus_cents, got.net_cents) == (1200, 0, -1200)


def test_performance_money_pays_a_bonus_for_over_performance() -> None:
    # Asked 0.5 MW, delivered 0.53 MW over 12 intervals: shortfall -0.03 MW;
    # bonus 0.03 * 4 $/MW-interval * 12 = $1.44 = 144 cents; no charge; net +144.
    # May 2026 is in delivery year 2025/26.
    got = performance_money(
        slots_mw(0.5), slots_mw(0.53), SLOTS_S, EVERY_SLOT, RATES, date(2026, 5, 29)
    )
    assert got.delivery_year == "2025/26"
    close(got.shortfall_mw, -0.03, TOL_MW)
    assert (got.charge_cents, got.bonus_cents, got.net_cents) == (0, 144, 144)


def test_performance_money_prices_each_interval_on_its_own() -> None:
    # Asked 0.01 MW for an hour; 0.02 MW in the first 6 intervals, 0 in the last 6: the mean
    # meets the request, yet 6 intervals are short by 0.01 MW and 6 over by 0.01 MW.
    # charge 6 * 0.01 * 10 $ = $0.60 = 60 cents; bonus 6 * 0.01 * 4 $ = $0.24 = 24 cents;
    # net -36 cents. A 2-minute last slot short by 0.01 MW counts 2/5 of an interval:
    # 0.01 * 10 * 0.4 = $0.04 = 4 cents.
    delivered = np.array([0.02] * 6 + [0.0] * 6)
    got = performance_money(slots_mw(0.01), delivered, SLOTS_S, EVERY_SLOT, RATES, EVENT_DAY)
    close(got.shortfall_mw, 0.0, TOL_MW)
    assert (got.charge_cents, got.bonus_cents, got.net_cents) == (60, 24, -36)
    asked = np.array([0.01])
    short = performance_money(
        asked, np.array([0.0]), np.array([120.0]), np.array([True]), RATES, EVENT_DAY
    )
    assert (short.charge_cents, short.intervals) == (4, 1)


def performance_of(asset_mwh: Sequence[float]) -> Settlement:
    """A settlement whose only figures `attribute` reads are the assets' energies [MWh]."""
    zero = np.zeros(1)
    return Settlement(
        edges_s=np.array([0.0, 300.0]),
        baseline_mw=zero,
        metered_mw=zero,
        delivered_mw=zero,
        coverage=np.ones(1),
        asset_delivered_mwh=np.array(asset_mwh, dtype=float),
        methods=np.array([HXY_NAME] * len(asset_mwh), dtype=object),
        window_mw=0.0,
        delivered_mwh=float(sum(asset_mwh)),
        coverage_pct=100.0,
        billing_complete=False,
        assets_metered=len(asset_mwh),
        hours=[],
    )


# Four assets: east = a1, a2 (subscriber S1, 5 kW each), a3 (S2, 10 kW); west = a4 (S3, 10 kW).
# Delivered: a1 3 kWh, a2 1 kWh, a3 -1 kWh (it charged), a4 2 kWh.
#   east: 20 kW accredited, 3 + 1 - 1 = 3 kWh; west: 10 kW, 2 kWh; total 5 kWh.
MONEY_FLEET = fleet(
    ["a1", "a2", "a3", "a4"],
    cohorts=["east", "east", "east", "west"],
    subscribers=["S1", "S1", "S2", "S3"],
    accredited_kw=[5.0, 5.0, 10.0, 10.0],
)
MONEY_MWH = [0.003, 0.001, -0.001, 0.002]


def test_a_charge_is_split_by_accredited_kw() -> None:
    # -1000 cents by accredited kW 20 : 10 -> 666.67 : 333.33, floored 666 + 333 = 999, the
    # last cent to east (remainder 2/3 > 1/3): east -667, west -333. (By delivered energy,
    # 3 : 2, it would have been -600 : -400.)
    # east's -667 by subscribers' kW S1 10 : S2 10 -> 333.5 each, floored 333 + 333, the cent
    # to the lower index (a tie): S1 -334, S2 -333. S2 charged though it delivered nothing.
    cohorts, payouts = attribute(MONEY_FLEET, performance_of(MONEY_MWH), -1000)
    assert [(c.cohort, c.assets, c.accredited_kw, c.performance_cents) for c in cohorts] == [
        ("east", 3, 20.0, -667),
        ("west", 1, 10.0, -333),
    ]
    assert [(p.subscriber_id, p.cohort, p.assets, p.delivered_wh, p.cents) for p in payouts] == [
        ("S1", "east", 2, 4000, -334),
        ("S2", "east", 1, -1000, -333),
        ("S3", "west", 1, 2000, -333),
    ]
    assert sum(c.performance_cents for c in cohorts) == -1000
    for c in cohorts:
        assert sum(p.cents for p in payouts if p.cohort == c.cohort) == c.performance_cents


def test_a_bonus_is_split_by_delivered_energy() -> None:
    # +1001 cents by delivered energy east 3 kWh : west 2 kWh -> 600.6 : 400.4, floored
    # 600 + 400 = 1000, the last cent to east (0.6 > 0.4): east 601, west 400.
    # east's 601 by subscribers' energy S1 4 kWh : S2 max(-1, 0) = 0 -> S1 601, S2 0.
    # Shares of the 5 kWh: east 60 %, west 40 %.
    cohorts, payouts = attribute(MONEY_FLEET, performance_of(MONEY_MWH), 1001)
    assert [(c.cohort, c.delivered_mwh, c.share_pct, c.performance_cents) for c in cohorts] == [
        ("east", 0.003, 60.0, 601),
        ("west", 0.002, 40.0, 400),
    ]
    assert [(p.subscriber_id, p.cents) for p in payouts] == [("S1", 601), ("S2", 0), ("S3", 400)]
    assert sum(c.performance_cents for c in cohorts) == 1001
    for c in cohorts:
        assert sum(p.cents for p in payouts if p.cohort == c.cohort) == c.performance_cents


def test_a_bonus_with_no_energy_delivered_goes_by_accredited_kw_and_no_money_is_zero() -> None:
    # Nothing delivered (all <= 0): +300 cents by kW 20 : 10 -> east 200, west 100;
    # east's 200 by S1 10 : S2 10 -> 100 each.
    cohorts, payouts = attribute(MONEY_FLEET, performance_of([0.0, 0.0, -0.001, 0.0]), 300)
    assert [c.performance_cents for c in cohorts] == [200, 100]
    assert [p.cents for p in payouts] == [100, 100, 100]
    # No money: everyone 0; no fleet: nothing.
    cohorts, payouts = attribute(MONEY_FLEET, performance_of(MONEY_MWH), 0)
    assert [c.performance_cents for c in cohorts] == [0, 0]
    assert [p.cents for p in payouts] == [0, 0, 0]
    assert attribute(fleet([]), performance_of([]), 500) == ([], [])


# --- Versions: build_report, diff, changed ------------------------------------------------------
# DER, window 14:50-15:10 (HE15, HE16), requested 0.004 MW.
# A (east, S1): history 1.0 flat -> baseline 1.0; discharges 3, 4, 5, 6 kW -> delivered 2..5.
# B (west, S2): history 0 flat -> baseline 0; 1 kW in every slot -> delivered 1 kW.
# Version 1 is filed before A's last interval (15:05) arrived; version 2 has it.
#
#            v1: A delivered 2, 3, 4, -; B 1, 1, 1, 1     v2: A 2, 3, 4, 5; B 1, 1, 1, 1
# HE15 kWh   baseline 2/12 = 0.167, metered (3+4+1+1)/12 = 0.75, delivered (2+3+1+1)/12 = 0.583
#            (the same in both versions)
# HE16 kWh   v1: baseline 1/12 = 0.083 (A's last slot uncovered), metered (5+1+1)/12 = 0.583,
#                delivered (4+1+1)/12 = 0.5
#            v2: baseline 0.167, metered (5+6+1+1)/12 = 1.083, delivered (4+5+1+1)/12 = 0.917
# delivered  v1 (3+4+5+1)/12 = 13/12 kWh -> 1083 Wh; v2 18/12 = 1.5 kWh -> 1500 Wh: +417
# baseline   v1 0.167 + 0.083 -> 250 Wh; v2 0.167 + 0.167 -> 334 Wh: +84 (the filed hours)
# metered    v1 0.75 + 0.583 -> 1333 Wh; v2 0.75 + 1.083 -> 1833 Wh: +500
# coverage   v1 per slot 1, 1, 1, 0.5 (A's last slot missing) -> 3.5/4 = 87.5 %; v2 100 %: +12.5
# cohorts    east v1 (2+3+4)/12 = 0.75 kWh -> 750 Wh; v2 14/12 -> 0.001167 MWh -> 1167 Wh: +417;
#            west 4/12 kWh in both: unchanged, not listed
# money      each 5-minute interval priced on its own, 0.004 MW owed in each:
#            v1 delivers 0.003, 0.004, 0.005, 0.001 MW: short 0.001 and 0.003 -> charge
#            0.004 * 10 $ = $0.04 = 4 cents; over 0.001 -> bonus 0.001 * 4 $ = $0.004 -> 0 cents
#            v2 delivers 0.003, 0.004, 0.005, 0.006 MW: short 0.001 -> charge $0.01 = 1 cent;
#            over 0.001 + 0.002 -> bonus 0.003 * 4 $ = $0.012 -> 1 cent; net 0
VERSION_START = local(EVENT_DAY, 14, 50)
VERSION_FLEET = fleet(["A", "B"], cohorts=["east", "west"], subscribers=["S1", "S2"])


def filed(a_kw: Sequence[float], previous: SettlementFiled | None) -> SettlementFiled:
    the_due = due(VERSION_START, 20, 0.004, iid="I-7")
    readings = [
        *five_minute("A", VERSION_START, a_kw),
        *five_minute("B", VERSION_START, [1.0] * 4),
    ]
    made = history([flat(1.0), flat(0.0)])
    the_program = program(DER)
    result = settled(the_due, VERSION_FLEET, readings, made, the_program)
    quality = DataQuality.PRELIMINARY if previous is None else DataQuality.RESTATED
    report, _ = build_report(
        the_due, VERSION_FLEET, result, [], the_program, quality, previous, VERSION_START
    )
    return report


def test_version_1_has_no_predecessor() -> None:
    v1 = filed([3.0, 4.0, 5.0], None)
    assert (v1.version, v1.report_id, v1.supersedes, v1.diff) == (1, "SR-I-7-v1", None, None)
    assert v1.data_quality == DataQuality.PRELIMINARY
    assert (v1.participation_model, v1.baseline_method) == ("der-aggregator", HXY_NAME)
    assert v1.baseline_methods == {HXY_NAME: 2}
    assert (v1.assets_enrolled, v1.assets_metered) == (2, 2)
    assert v1.coverage_pct == 87.5
    assert v1.coverage_threshold_pct == 90.0
    # 13/12 kWh over 1/3 h = 3.25 kW = 0.00325 MW; 0.00325/0.004 = 81.25 %
    close(v1.delivered_mwh, 0.001083, TOL_MW)
    close(v1.delivered_mw, 0.00325, TOL_MW)
    assert v1.performance_pct == 81.25
    # charge 4 cents, bonus 0 (see above); the window's mean shortfall 0.004 - 0.00325 =
    # 0.00075 MW. The 4 cents go to the cohorts by accredited kW 10 : 10 -> 2 : 2.
    assert (v1.performance.charge_cents, v1.performance.bonus_cents) == (4, 0)
    assert v1.performance.net_cents == -4
    close(v1.performance.shortfall_mw, 0.00075, TOL_MW)
    assert [(c.cohort, c.performance_cents) for c in v1.cohorts] == [("east", -2), ("west", -2)]
    assert v1.intervals_csv == (
        "interval_start,baseline_mw,metered_mw,delivered_mw,coverage_pct,requested_mw\n"
        "2026-12-02T19:50:00Z,0.0010,0.0040,0.0030,100.0,0.0040\n"
        "2026-12-02T19:55:00Z,0.0010,0.0050,0.0040,100.0,0.0040\n"
        "2026-12-02T20:00:00Z,0.0010,0.0060,0.0050,100.0,0.0040\n"
        "2026-12-02T20:05:00Z,0.0000,0.0010,0.0010,50.0,0.0040\n"
    )
    assert (v1.mw_requested, v1.mw_confirmed, v1.revision, v1.kind) == (0.004, 0.009, 1, "event")


def test_version_2_supersedes_version_1_and_says_what_changed() -> None:
    v1 = filed([3.0, 4.0, 5.0], None)
    v2 = filed([3.0, 4.0, 5.0, 6.0], v1)
    assert (v2.version, v2.report_id, v2.supersedes) == (2, "SR-I-7-v2", "SR-I-7-v1")
    assert v2.data_quality == DataQuality.RESTATED
    assert v2.diff is not None
    assert v2.diff.previous_report_id == "SR-I-7-v1"
    assert (v2.diff.delivered_wh, v2.diff.baseline_wh, v2.diff.metered_wh) == (417, 84, 500)
    assert v2.diff.coverage_pct == 12.5
    assert v2.diff.assets_metered == 0
    assert v2.diff.hours_wh == {"2026-12-02 HE16": 417}
    assert v2.diff.cohorts_wh == {"east": 417}
    assert changed(v2.diff)
    assert (v2.performance.charge_cents, v2.performance.bonus_cents) == (1, 1)
    assert v2.performance.net_cents == 0


def test_the_same_data_again_changes_nothing() -> None:
    v1 = filed([3.0, 4.0, 5.0, 6.0], None)
    v2 = filed([3.0, 4.0, 5.0, 6.0], v1)
    assert v2.diff is not None
    assert not changed(v2.diff)
    assert (v2.diff.delivered_wh, v2.diff.hours_wh, v2.diff.cohorts_wh) == (0, {}, {})
    assert not changed(diff(v1, v1))


def test_changed_sees_a_coverage_change_alone() -> None:
    v1 = filed([3.0, 4.0, 5.0, 6.0], None)
    d = diff(v1, v1).model_copy(update={"coverage_pct": 0.5})
    assert changed(d)


def test_csv_never_prints_a_negative_zero_and_performance_without_a_request() -> None:
    # -0.00001 MW rounds to -0.0000 at 4 decimals: printed 0.0000
    tiny = replace(performance_of([0.0]), baseline_mw=np.array([-0.00001]))
    csv = intervals_csv(VERSION_START, tiny, np.array([0.0]))
    assert csv.splitlines()[1] == "2026-12-02T19:50:00Z,0.0000,0.0000,0.0000,100.0,0.0000"
    assert performance_pct(0.5, 0.0) == 0.0


# --- Baseline accuracy ------------------------------------------------------------------------
# Demand response: two sites, load = -net_kw. Weekday like-days: A 2.0 kW and B 1.0 kW in every
# hour (total 3.0 kW); weekends 7.0 each, Thanksgiving and the past event day 9.0 each: none of
# them is a test day or (for High X of Y and Match Day) a candidate. Event [14, 16).
# Test days (weekday, not holiday, not event, before 12-02): d0 d1 d2 d5 d6 d7 d9 d13 = 8.
# Days each method can serve:
#   High 4 of 5 needs 5 eligible weekdays before the test day: d7 (d0 d1 d2 d5 d6), d9, d13 = 3
#   Match Day needs 3 non-event like-days before it: d5 (d0 d1 d2), d6, d7, d9, d13 = 5
#   Hour Before (index 13 of the day itself) and Same Day (3+2: indexes 10-12 and 17-18): 8
LOAD_DAY_KW = [2.0, 2.0, 2.0, 7.0, 7.0, 2.0, 2.0, 2.0, 9.0, 2.0, 7.0, 7.0, 9.0, 2.0, 2.0]


def accuracy_history(bump_hour_before_kw: float = 0.0) -> History:
    a = np.array(LOAD_DAY_KW)
    b = np.where(a == 2.0, 1.0, a)
    made = history([-a, -b])
    made.hourly_kw[0, :, 13] -= bump_hour_before_kw  # net_kw: more import is more load
    return made


def test_constant_load_gives_every_method_zero_rrmse() -> None:
    got = {
        a.method: a for a in baseline_accuracy(accuracy_history(), EVENT_DAY, 14, 16, program(DR))
    }
    assert list(got) == [HXY_NAME, "pjm-match-day", "hour-before", "pjm-same-day-3+2"]
    # Every prediction 3.0 kW against 3.0 kW: RMSE 0 / mean 3.0 = 0 %, accepted (< 20 %).
    assert {m: (a.rrmse_pct, a.accepted, a.note) for m, a in got.items()} == {
        m: (0.0, True, None) for m in got
    }
    assert {m: a.days for m, a in got.items()} == {
        HXY_NAME: 3,
        "pjm-match-day": 5,
        "hour-before": 8,
        "pjm-same-day-3+2": 8,
    }
    # Only the 2 most recent test days (d9, d13): every method can serve both.
    fewer = baseline_accuracy(accuracy_history(), EVENT_DAY, 14, 16, program(DR, accuracy_days=2))
    assert [a.days for a in fewer] == [2, 2, 2, 2]


def test_a_busier_hour_before_misleads_only_hour_before() -> None:
    # A draws 1.5 kW more at index 13 on every day: total 4.5 kW there, 3.0 kW elsewhere.
    # Hour Before predicts 4.5 for the event hours 14, 15 against 3.0: RMSE 1.5, mean 3.0 ->
    # 50 %, not accepted. High X of Y reads indexes 10-12 and 14-15, Same Day 10-12 and 17-18,
    # Match Day compares outside 13-16: all 0 %.
    got = {
        a.method: a
        for a in baseline_accuracy(accuracy_history(1.5), EVENT_DAY, 14, 16, program(DR))
    }
    assert (got["hour-before"].rrmse_pct, got["hour-before"].accepted) == (50.0, False)
    for method in (HXY_NAME, "pjm-match-day", "pjm-same-day-3+2"):
        assert (got[method].rrmse_pct, got[method].accepted) == (0.0, True)


def test_an_hour_some_assets_miss_is_scaled_up_from_the_assets_present() -> None:
    # B equal to A (2.0 kW on weekdays); B misses all of d13: total there 2 * 2.0 (A scaled by
    # 2 assets / 1 present) = 4.0 kW, as on the other days -> still 0 % everywhere.
    made = accuracy_history()
    made.hourly_kw[1] = made.hourly_kw[0]
    made.hourly_kw[1, 13] = np.nan
    got = baseline_accuracy(made, EVENT_DAY, 14, 16, program(DR))
    assert [(a.rrmse_pct, a.accepted) for a in got] == [(0.0, True)] * 4


def test_no_positive_load_has_no_rrmse() -> None:
    # DER: the batteries idle (0 kW) on every day: a relative RMSE divides by the mean, 0.
    got = baseline_accuracy(history([flat(0.0), flat(0.0)]), EVENT_DAY, 14, 16, program(DER))
    assert [(a.rrmse_pct, a.accepted, a.days) for a in got] == [(None, False, 0)] * 4
    assert {a.note for a in got} == {"relative RMSE needs a positive mean actual load"}


def test_report_counts_the_assets_per_method_used() -> None:
    the_due, the_fleet, result = fallback_scene()
    report, payouts = build_report(
        the_due,
        the_fleet,
        result,
        [],
        program(DER),
        DataQuality.PRELIMINARY,
        None,
        local(EVENT_DAY, 14, 20),
    )
    assert report.baseline_methods == {HXY_NAME: 1, "hour-before": 1, NO_BASELINE: 1}
    assert report.filed_at == local(EVENT_DAY, 14, 20)
    assert [p.subscriber_id for p in payouts] == ["A", "C", "D"]  # no subscriber: the asset id


def test_billing_complete_only_when_every_assets_window_is_billing_quality_data() -> None:
    # A and B, 15-minute window, 5-minute readings. A's three are billing-quality (a utility's
    # meter data); B's first two are, its last comes from its inverter's cloud: not complete.
    # With B's last one billing-quality too: complete.
    start = local(EVENT_DAY, 14)
    the_fleet = fleet(["A", "B"])
    made = history([flat(1.0), flat(1.0)])

    def readings(b_last_billing: bool) -> list[Reading]:
        at = [start + timedelta(minutes=5 * k) for k in range(3)]
        return [
            *[Reading("A", t, 300, 2.0, billing=True) for t in at],
            *[Reading("B", t, 300, 2.0, billing=k < 2 or b_last_billing) for k, t in enumerate(at)],
        ]

    partly = settled(due(start, 15), the_fleet, readings(False), made, program(DER))
    wholly = settled(due(start, 15), the_fleet, readings(True), made, program(DER))
    assert (partly.billing_complete, wholly.billing_complete) == (False, True)
    close(partly.delivered_mw, wholly.delivered_mw, TOL_MW)  # the same numbers either way
