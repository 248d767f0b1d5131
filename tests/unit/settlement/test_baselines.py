"""Baseline methods against hand-worked numbers, to 1e-6 kW.

Hours are 0-based indexes: index h is hour ending h+1 (HE h+1), so the event HE13-HE17 is the
index range [12, 17)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from nexwatt_settlement.baselines import (
    PJM_ADDITIVE_ADJUSTMENT,
    PJM_ECONOMIC_CBL,
    PJM_MATCH_DAY,
    DayKind,
    ParticipationModel,
    accepted,
    credited_kw,
    firm_service_level,
    guaranteed_load_drop,
    high_x_of_y,
    hour_before,
    match_day,
    peak_load_contribution_kw,
    relative_rmse,
    same_day,
    symmetric_additive_adjustment,
)

TOL_KW = 1e-6
WD, WE = DayKind.WEEKDAY, DayKind.WEEKEND
HE13, HE17 = 12, 17  # the event HE13-HE17 as [start, end) indexes


def close(actual: object, expected: object) -> None:
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOL_KW)


# --- High X of Y -----------------------------------------------------------------------------
# Twelve days before a weekday event, oldest first, each flat over its 24 hours [kW]:
#   d0  Mon  9.0
#   d1  Tue  3.0
#   d2  Wed  3.4
#   d3  Thu  9.5  event day     -> excluded
#   d4  Fri  2.4
#   d5  Sat  1.0  weekend       -> not a weekday
#   d6  Sun  1.0  weekend       -> not a weekday
#   d7  Mon  8.0  holiday       -> excluded
#   d8  Tue  2.2
#   d9  Wed  0.3
#   d10 Thu  2.6
#   d11 Fri  2.8
DAY_KW = [9.0, 3.0, 3.4, 9.5, 2.4, 1.0, 1.0, 8.0, 2.2, 0.3, 2.6, 2.8]
KINDS = [WD, WD, WD, WD, WD, WE, WE, WD, WD, WD, WD, WD]
EVENT_DAYS = [False, False, False, True] + [False] * 8
HOLIDAYS = [False] * 7 + [True] + [False] * 4
HISTORY_KW = np.repeat(np.array(DAY_KW)[:, None], 24, axis=1)


def cbl(history_kw: np.ndarray, kind: DayKind = WD, params=PJM_ECONOMIC_CBL) -> np.ndarray:
    return high_x_of_y(history_kw, KINDS, EVENT_DAYS, HOLIDAYS, kind, HE13, HE17, params)


def test_high_4_of_5_skips_event_day_holiday_and_low_usage_day() -> None:
    # Candidates (weekdays within the 45-day lookback, not event days, not holidays):
    #   d0 9.0, d1 3.0, d2 3.4, d4 2.4, d8 2.2, d9 0.3, d10 2.6, d11 2.8
    #   mean = 25.7 / 8 = 3.2125; low-usage threshold 0.25 * 3.2125 = 0.803125 -> d9 (0.3) out
    # Eligible, newest first: d11 2.8, d10 2.6, d8 2.2, d4 2.4, d2 3.4 | d1 3.0, d0 9.0 (too old)
    # Highest 4 of those 5: 3.4, 2.8, 2.6, 2.4 (d8 2.2 dropped) -> (3.4+2.8+2.6+2.4)/4 = 2.8
    # (Counting d9 would have made the 5 d11, d10, d9, d8, d4 and the baseline 2.5.)
    close(cbl(HISTORY_KW), np.full(24, 2.8))


def test_high_x_of_y_per_asset_with_a_missing_hour() -> None:
    # Asset 1 misses one reading on d11 -> d11 is not a candidate for asset 1 only.
    #   candidates: 25.7 - 2.8 = 22.9 over 7 days = 3.271429; threshold 0.817857 -> d9 out
    #   newest 5 eligible: d10 2.6, d8 2.2, d4 2.4, d2 3.4, d1 3.0
    #   highest 4: 3.4, 3.0, 2.6, 2.4 -> 11.4 / 4 = 2.85
    # Asset 0 as in the test above: 2.8.
    gap = HISTORY_KW.copy()
    gap[11, 3] = np.nan
    close(cbl(np.stack([HISTORY_KW, gap])), [np.full(24, 2.8), np.full(24, 2.85)])


def test_high_2_of_3_weekend_ranks_days_by_event_period_load() -> None:
    # Four intervals a day; the event is interval 2. Weekend days, oldest first, then a weekday:
    #   w0 [9, 9, 1.0, 9]   event-period 1.0  (4th newest weekend day: outside the 3)
    #   w1 [1, 1, 3.0, 1]   event-period 3.0  (daily mean 1.5)
    #   w2 [2, 2, 2.0, 2]   event-period 2.0  (daily mean 2.0)
    #   w3 [5, 5, 1.5, 5]   event-period 1.5  (daily mean 4.125)
    #   d4 weekday [20] * 4 -> not a like-day
    # Low usage: mean (1 + 3 + 2 + 1.5) / 4 = 1.875, threshold 0.46875: none.
    # Highest 2 of w1, w2, w3 by event-period load: w1, w2 -> [1.5, 1.5, 2.5, 1.5]
    # (by daily mean it would have been w3, w2).
    history = [[9, 9, 1.0, 9], [1, 1, 3.0, 1], [2, 2, 2.0, 2], [5, 5, 1.5, 5], [20, 20, 20, 20]]
    baseline = high_x_of_y(
        history,
        day_kind=[WE, WE, WE, WE, WD],
        event_day=[False] * 5,
        holiday=[False] * 5,
        event_day_kind=WE,
        event_start=2,
        event_end=3,
    )
    close(baseline, [1.5, 1.5, 2.5, 1.5])


def test_high_x_of_y_without_enough_eligible_days_raises() -> None:
    # Weekend event: only d5 and d6 are weekend days -> 2 < 3.
    with pytest.raises(ValueError, match="fewer than 3 eligible weekend days"):
        cbl(HISTORY_KW, kind=WE)
    # A 5-day lookback keeps d7..d11: d8, d10, d11 eligible (d7 holiday, d9 low usage) -> 3 < 5.
    with pytest.raises(ValueError, match="fewer than 5 eligible weekday days in the last 5"):
        cbl(HISTORY_KW, params=replace(PJM_ECONOMIC_CBL, lookback_days=5))


# --- Symmetric additive adjustment -----------------------------------------------------------
# Baseline 2.8 flat; event starts HE13 (index 12): the window is the 3 hours ending 1 hour
# before it, HE9-HE11 = indexes 8, 9, 10. Every other hour (HE8 and HE12 included) reads
# 50 kW, which must not count.
def event_day_kw(window_kw: list[float]) -> np.ndarray:
    actual = np.full(24, 50.0)
    actual[8:11] = window_kw
    return actual


def test_additive_adjustment_moves_the_baseline_up_and_down() -> None:
    # Up:   (3.3-2.8 + 3.5-2.8 + 3.4-2.8) / 3 = (0.5+0.7+0.6)/3 = +0.6 -> 3.4
    # Down: (2.0-2.8 + 2.2-2.8 + 2.1-2.8) / 3 = (-0.8-0.6-0.7)/3 = -0.7 -> 2.1
    baseline = np.full(24, 2.8)
    actual = np.stack([event_day_kw([3.3, 3.5, 3.4]), event_day_kw([2.0, 2.2, 2.1])])
    adjusted = symmetric_additive_adjustment(np.stack([baseline, baseline]), actual, HE13)
    close(adjusted, [np.full(24, 3.4), np.full(24, 2.1)])


def test_additive_adjustment_cap_and_missing_hour() -> None:
    # Cap 0.4 kW: +0.6 -> +0.4 (3.2), -0.7 -> -0.4 (2.4).
    capped = replace(PJM_ADDITIVE_ADJUSTMENT, cap_kw=0.4)
    baseline = np.full(24, 2.8)
    for window_kw, expected in (([3.3, 3.5, 3.4], 3.2), ([2.0, 2.2, 2.1], 2.4)):
        adjusted = symmetric_additive_adjustment(baseline, event_day_kw(window_kw), HE13, 1, capped)
        close(adjusted, np.full(24, expected))
    # HE10 missing: (0.5 + 0.6) / 2 = 0.55 -> 3.35
    close(
        symmetric_additive_adjustment(baseline, event_day_kw([3.3, np.nan, 3.4]), HE13),
        np.full(24, 3.35),
    )
    with pytest.raises(ValueError, match="no readings in the adjustment window"):
        symmetric_additive_adjustment(baseline, event_day_kw([np.nan] * 3), HE13)


def test_additive_adjustment_window_on_five_minute_data() -> None:
    # 12 intervals an hour, event at 12:00 = interval 144: window 08:00-11:00 = 96..131.
    # Baseline 1.0; actual 2.0 there (elsewhere 9.0) -> +1.0 -> 2.0.
    actual = np.full(288, 9.0)
    actual[96:132] = 2.0
    close(symmetric_additive_adjustment(np.ones(288), actual, 144, 12), np.full(288, 2.0))


# --- Same Day (3+2) --------------------------------------------------------------------------
def same_day_kw() -> np.ndarray:
    hourly = np.full(24, 5.0)
    hourly[8:11] = [1.0, 1.2, 1.4]  # HE9, HE10, HE11
    hourly[11] = 9.0  # HE12: skipped
    hourly[12:17] = 0.2  # HE13-HE17: the event
    hourly[17] = 9.0  # HE18: skipped
    hourly[18:20] = [2.0, 1.9]  # HE19, HE20
    return hourly


def test_same_day_he13_to_he17_uses_he9_11_and_he19_20() -> None:
    # Asset 0: (1.0 + 1.2 + 1.4 + 2.0 + 1.9) / 5 = 7.5 / 5 = 1.5
    # Asset 1, HE10 missing: (1.0 + 1.4 + 2.0 + 1.9) / 4 = 6.3 / 4 = 1.575
    gap = same_day_kw()
    gap[9] = np.nan
    close(same_day(np.stack([same_day_kw(), gap]), HE13, HE17), [1.5, 1.575])


def test_same_day_edge_cases() -> None:
    with pytest.raises(ValueError, match="Same Day needs hours"):
        same_day(same_day_kw(), 20, 23)  # HE21-HE23: HE25 and HE26 would be needed
    missing = same_day_kw()
    missing[[8, 9, 10, 18, 19]] = np.nan
    with pytest.raises(ValueError, match="no readings in the Same Day hours"):
        same_day(missing, HE13, HE17)


# --- Match Day -------------------------------------------------------------------------------
# Event HE13-HE17; compared hours: indexes 0-10 and 18-23 (17 hours; 11 and 17 are adjacent).
# Event day reads 2.0 kW outside the event. History (outside the event / during it) [kW]:
#   d0  2.1 / 4.0             distance 17 * 0.1^2 = 0.17
#   d1  3.0 / 7.0             distance 17 * 1.0^2 = 17
#   d2  1.9 / 5.0             distance 0.17
#   d3  2.0 / 10.0 event day  excluded
#   d4  2.0 / 6.0, but 9.0 at the adjacent hours 11 and 17: distance 0
#   d5  2.5 / 8.0             distance 17 * 0.5^2 = 4.25
def match_history_kw() -> np.ndarray:
    days = []
    for outside_kw, event_kw in ((2.1, 4.0), (3.0, 7.0), (1.9, 5.0), (2.0, 10.0), (2.0, 6.0)):
        day = np.full(24, outside_kw)
        day[HE13:HE17] = event_kw
        days.append(day)
    days[4][[11, 17]] = 9.0
    last = np.full(24, 2.5)
    last[HE13:HE17] = 8.0
    return np.stack([*days, last])


MATCH_EVENT_DAYS = [False, False, False, True, False, False]
MATCH_TODAY_KW = np.where((np.arange(24) >= HE13) & (np.arange(24) < HE17), 0.5, 2.0)


def test_match_day_picks_the_three_closest_non_event_days() -> None:
    # Closest: d4 (0), d0 (0.17), d2 (0.17).
    #   event hours: (6.0 + 4.0 + 5.0) / 3 = 5.0
    #   index 0:     (2.0 + 2.1 + 1.9) / 3 = 2.0
    #   index 11:    (9.0 + 2.1 + 1.9) / 3 = 13/3
    baseline = match_day(match_history_kw(), MATCH_EVENT_DAYS, MATCH_TODAY_KW, HE13, HE17)
    close(baseline[HE13:HE17], np.full(5, 5.0))
    close(baseline[[0, 11]], [2.0, 13 / 3])


def test_match_day_adjacent_hours_and_missing_readings() -> None:
    # Comparing the adjacent hours too: d4's distance is 2 * 7.0^2 = 98, so d5 (4.25) joins
    # d0 and d2: event hours (4.0 + 5.0 + 8.0) / 3 = 17/3.
    no_gap = replace(PJM_MATCH_DAY, adjacent_hours=0)
    baseline = match_day(match_history_kw(), MATCH_EVENT_DAYS, MATCH_TODAY_KW, HE13, HE17, no_gap)
    close(baseline[HE13:HE17], np.full(5, 17 / 3))
    # Asset 1: d4 misses a reading (not a candidate) -> d0, d2, d5 -> 17/3; its event day
    # misses index 0, which just drops out of the distances.
    history = np.stack([match_history_kw(), match_history_kw()])
    history[1, 4, 3] = np.nan
    today = np.stack([MATCH_TODAY_KW, MATCH_TODAY_KW])
    today[1, 0] = np.nan
    baseline = match_day(history, MATCH_EVENT_DAYS, today, HE13, HE17)
    close(baseline[:, HE13:HE17], [np.full(5, 5.0), np.full(5, 17 / 3)])


def test_match_day_without_enough_candidates_raises() -> None:
    # d2, d3 (event day), d4: two candidates for three.
    with pytest.raises(ValueError, match="Match Day needs 3 non-event days"):
        match_day(match_history_kw()[2:5], [False, True, False], MATCH_TODAY_KW, HE13, HE17)


# --- Hour Before -----------------------------------------------------------------------------
def test_hour_before_on_five_minute_data() -> None:
    # Event at interval 24 (02:00); the hour before is intervals 12..23 reading 1, 2, ..., 12.
    #   mean = 78 / 12 = 6.5; with interval 23 (12 kW) missing: 66 / 11 = 6.0
    load = np.full(36, 100.0)
    load[12:24] = np.arange(1.0, 13.0)
    gap = load.copy()
    gap[23] = np.nan
    close(hour_before(np.stack([load, gap]), 24, 12), [6.5, 6.0])
    with pytest.raises(ValueError, match="not in the data"):
        hour_before(load, 6, 12)


# --- Firm Service Level / Guaranteed Load Drop -----------------------------------------------
def test_firm_service_level() -> None:
    # PLC 10, FSL 4 -> committed 6.
    #   metered 3.5: credited 10 - 3.5 = 6.5, shortfall 0, compliant
    #   metered 5.0: credited 10 - 5.0 = 5.0, shortfall 5 - 4 = 1.0, not compliant
    result = firm_service_level(10.0, 4.0, [3.5, 5.0])
    close(result.reduction_kw, [6.5, 5.0])
    close(result.committed_kw, 6.0)
    close(result.shortfall_kw, [0.0, 1.0])
    assert result.compliant.tolist() == [True, False]


def test_guaranteed_load_drop() -> None:
    # Baseline 8, GLD 3.
    #   metered 4.5: credited 8 - 4.5 = 3.5 >= 3, shortfall 0
    #   metered 6.0: credited 8 - 6.0 = 2.0, shortfall 3 - 2 = 1.0
    result = guaranteed_load_drop(8.0, 3.0, [4.5, 6.0])
    close(result.reduction_kw, [3.5, 2.0])
    close(result.shortfall_kw, [0.0, 1.0])
    assert result.compliant.tolist() == [True, False]


# --- Peak Load Contribution ------------------------------------------------------------------
def test_peak_load_contribution() -> None:
    # Peaks at hours 14, 15, 16, 38, 39 reading 4, 5, 6, 3, 2: (4+5+6+3+2) / 5 = 4.0
    load = np.ones(48)
    load[[14, 15, 16, 38, 39]] = [4.0, 5.0, 6.0, 3.0, 2.0]
    close(peak_load_contribution_kw(load, [14, 15, 16, 38, 39]), 4.0)
    with pytest.raises(ValueError, match="5 distinct peak hours"):
        peak_load_contribution_kw(load, [14, 15, 16, 38])
    with pytest.raises(ValueError, match="5 distinct peak hours"):
        peak_load_contribution_kw(load, [14, 15, 16, 38, 38])


# --- Relative RMSE ---------------------------------------------------------------------------
def test_relative_rmse_accepted_and_refused() -> None:
    # Actual 2, 4, 6, 8: mean 5.
    #   baseline 2.5, 3.5, 6.5, 7.5: errors +-0.5 -> RMSE 0.5 -> 0.5/5 = 0.10  accepted
    #   baseline 3, 3, 7, 7:         errors +-1.0 -> RMSE 1.0 -> 1.0/5 = 0.20  refused (not below)
    #   baseline 0.5, 5.5, 4.5, 9.5: errors +-1.5 -> RMSE 1.5 -> 1.5/5 = 0.30  refused
    actual = [2.0, 4.0, 6.0, 8.0]
    baselines = [[2.5, 3.5, 6.5, 7.5], [3.0, 3.0, 7.0, 7.0], [0.5, 5.5, 4.5, 9.5]]
    rrmse = relative_rmse(baselines, actual)
    close(rrmse, [0.10, 0.20, 0.30])
    assert accepted(rrmse).tolist() == [True, False, False]


def test_relative_rmse_skips_missing_samples_and_needs_positive_load() -> None:
    # Sample 2 missing: actual 2, 4, 8 (mean 14/3); errors 0.5, -0.5, -0.5 -> RMSE 0.5
    #   -> 0.5 / (14/3) = 1.5/14
    close(relative_rmse([2.5, 3.5, 6.5, 7.5], [2.0, 4.0, np.nan, 8.0]), 1.5 / 14)
    with pytest.raises(ValueError, match="positive mean actual load"):
        relative_rmse([1.0, 1.0], [-1.0, 1.0])


# --- Participation models --------------------------------------------------------------------
def test_five_kw_discharge_into_one_kw_load() -> None:
    # Demand response (site meter, export not credited): 1 - max(1 - 5, 0) = 1 kW
    # DER aggregator (export counted): 5 kW
    assert credited_kw(5.0, 1.0, ParticipationModel.DEMAND_RESPONSE) == pytest.approx(1.0)
    assert credited_kw(5.0, 1.0, ParticipationModel.DER_AGGREGATOR) == pytest.approx(5.0)


def test_participation_models_vectorized() -> None:
    # Load 1 kW; discharge 5, 0.5, -2 (charging):
    #   demand response: 1 - max(1-5, 0) = 1;  1 - max(1-0.5, 0) = 0.5;  1 - max(1+2, 0) = -2
    #   DER aggregator:  5, 0.5, -2
    discharge = [5.0, 0.5, -2.0]
    close(credited_kw(discharge, 1.0, ParticipationModel.DEMAND_RESPONSE), [1.0, 0.5, -2.0])
    close(credited_kw(discharge, 1.0, ParticipationModel.DER_AGGREGATOR), [5.0, 0.5, -2.0])
