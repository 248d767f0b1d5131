"""Settlement math against hand-worked numbers. Tolerance: abs=1e-9 on MW/MWh figures (a
milliwatt), 1e-6 on percentages; cohort shares are filed to 3 decimals and compared exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from nexwatt_settlement.domain import (
    BASELINE_METHOD,
    Due,
    Reading,
    build_report,
    cohort_summary,
    intervals_csv,
    performance_pct,
    resample,
    settle,
    slot_edges_s,
)

WINDOW_START = datetime(2026, 3, 12, 10, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return WINDOW_START + timedelta(minutes=minutes)


def one_minute(asset_id: str, first_minute: int, kw: list[float]) -> list[Reading]:
    return [Reading(asset_id, at(first_minute + i), 60, v) for i, v in enumerate(kw)]


def five_minute(asset_id: str, first_minute: int, kw: list[float]) -> list[Reading]:
    return [Reading(asset_id, at(first_minute + 5 * i), 300, v) for i, v in enumerate(kw)]


def test_two_assets_one_and_five_minute_telemetry_fifteen_minute_window() -> None:
    # Window 10:00-10:15 (three 5-minute slots), lookback 30 min (09:30-10:00), 0.012 MW asked.
    #
    # A (cohort east), 1-minute telemetry:
    #   09:20-09:30 at 100 kW: before the lookback, ignored
    #   09:30-09:45 at 0.5 kW, 09:45-10:00 at 1.5 kW -> baseline (0.5*900 + 1.5*900)/1800 = 1.0 kW
    #   10:00-10:10 at 5.0 kW; 10:10-10:14 at 6.0 kW; 10:14-10:15 missing
    #   slot 1, 2: metered 5.0, covered 1.0, delivered 5.0 - 1.0       = 4.0 kW
    #   slot 3:    metered 6.0*240/300 = 4.8, covered 240/300 = 0.8,
    #              delivered 4.8 - 1.0*0.8                             = 4.0 kW
    # B (cohort west), 5-minute telemetry:
    #   09:50-09:55 at -3.0, 09:55-10:00 at -1.0 (charging; only 600 s of the lookback)
    #     -> baseline (-3*300 - 1*300)/600 = -2.0 kW
    #   10:00 3.0, 10:05 4.0, 10:10 2.0 -> delivered 5.0, 6.0, 4.0 kW
    #   10:15-10:20 at 50 kW: after the window, ignored
    # C (cohort east): enrolled, no telemetry at all -> contributes 0, no baseline
    # X: not among the resource's enrolled assets -> ignored
    #
    # per slot  baseline [kW]        metered [kW]     delivered [kW]
    #   1       1.0 - 2.0  = -1.0    5.0 + 3.0 = 8.0   9.0
    #   2       1.0 - 2.0  = -1.0    5.0 + 4.0 = 9.0  10.0
    #   3       0.8 - 2.0  = -1.2    4.8 + 2.0 = 6.8   8.0
    # delivered_mw  = (9 + 10 + 8)/3 = 9.0 kW = 0.009 MW
    # delivered_mwh = 9.0 kW * 0.25 h = 2.25 kWh = 0.00225 MWh
    # performance   = 0.009 / 0.012 * 100 = 75 %
    # cohorts: east (A, C) (4 + 4 + 4) kW * 5/60 h = 1.0 kWh -> 1.0/2.25 = 44.444 %
    #          west (B)    (5 + 6 + 4) kW * 5/60 h = 1.25 kWh -> 1.25/2.25 = 55.556 %
    readings = [
        *one_minute("A", -40, [100.0] * 10),
        *one_minute("A", -30, [0.5] * 15 + [1.5] * 15),
        *one_minute("A", 0, [5.0] * 10 + [6.0] * 4),
        *five_minute("B", -10, [-3.0, -1.0, 3.0, 4.0, 2.0, 50.0]),
        *five_minute("X", 0, [100.0] * 3),
    ]
    due = Due("I-1", "NXW-PJM-1", at(0), at(15), mw_requested=0.012, mw_confirmed=0.011)
    assets = [("A", "east"), ("B", "west"), ("C", "east")]
    report, result = build_report(due, assets, readings, lookback_s=1800.0, filed_at=at(18))

    assert report.delivered_mw == pytest.approx(0.009, abs=1e-9)
    assert report.delivered_mwh == pytest.approx(0.00225, abs=1e-9)
    assert report.performance_pct == pytest.approx(75.0, abs=1e-6)
    assert result.baseline_mw == pytest.approx([-0.001, -0.001, -0.0012], abs=1e-9)
    assert result.metered_mw == pytest.approx([0.008, 0.009, 0.0068], abs=1e-9)
    assert result.delivered_mw == pytest.approx([0.009, 0.010, 0.008], abs=1e-9)
    assert report.assets_metered == 2  # A and B; C sent nothing
    assert result.assets_without_baseline == 1  # C
    assert result.incomplete_asset_slots == 4  # A's third slot and C's three
    assert [(c.cohort, c.assets) for c in report.cohorts] == [("east", 2), ("west", 1)]
    assert [c.delivered_mwh for c in report.cohorts] == pytest.approx([0.001, 0.00125], abs=1e-9)
    assert [c.share_pct for c in report.cohorts] == [44.444, 55.556]
    assert report.intervals_csv == (
        "interval_start,baseline_mw,metered_mw,delivered_mw\n"
        "2026-03-12T10:00:00Z,-0.0010,0.0080,0.0090\n"
        "2026-03-12T10:05:00Z,-0.0010,0.0090,0.0100\n"
        "2026-03-12T10:10:00Z,-0.0012,0.0068,0.0080\n"
    )
    assert report.baseline_method == BASELINE_METHOD == "mgo-pre-window-mean"
    assert (report.report_id, report.instruction_id, report.resource_id) == (
        "SR-I-1",
        "I-1",
        "NXW-PJM-1",
    )
    assert (report.mw_requested, report.mw_confirmed, report.filed_at) == (0.012, 0.011, at(18))
    assert (report.window_start, report.window_end) == (at(0), at(15))


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
    assert mean_kw == pytest.approx(np.array([[3.0, 3.0], [0.0, 3.0]]), abs=1e-12)
    assert covered == pytest.approx(np.array([[0.5, 0.5], [0.0, 1.0]]), abs=1e-12)


def test_a_window_that_is_not_whole_slots_ends_with_a_short_slot() -> None:
    assert slot_edges_s(900.0).tolist() == [0.0, 300.0, 600.0, 900.0]
    assert slot_edges_s(1000.0).tolist() == [0.0, 300.0, 600.0, 900.0, 1000.0]
    # One asset at a constant 2 kW over [-1800, 1000) s: baseline 2 kW, delivered 0 everywhere;
    # the short last slot is weighted by its 100 s: energy 0, mean 0.
    got = settle(
        asset_index=np.array([0]),
        start_s=np.array([-1800.0]),
        end_s=np.array([1000.0]),
        battery_kw=np.array([2.0]),
        n_assets=1,
        window_s=1000.0,
        lookback_s=1800.0,
    )
    assert got.delivered_mw == pytest.approx([0.0] * 4, abs=1e-12)
    assert got.window_mw == pytest.approx(0.0, abs=1e-12)


def test_an_asset_without_pre_window_data_has_baseline_zero_and_is_counted() -> None:
    # Asset 0: 4 kW over the whole 10-minute window, nothing before -> baseline 0, delivers 4 kW.
    # delivered_mw = 0.004 MW; delivered_mwh = 4 kW * 1/6 h = 0.6667 kWh = 0.0006667 MWh
    got = settle(
        asset_index=np.array([0, 0]),
        start_s=np.array([0.0, 300.0]),
        end_s=np.array([300.0, 600.0]),
        battery_kw=np.array([4.0, 4.0]),
        n_assets=1,
        window_s=600.0,
        lookback_s=1800.0,
    )
    assert got.assets_without_baseline == 1
    assert got.baseline_mw == pytest.approx([0.0, 0.0], abs=1e-12)
    assert got.window_mw == pytest.approx(0.004, abs=1e-9)
    assert got.delivered_mwh == pytest.approx(4.0 / 6 / 1000, abs=1e-9)


def test_a_resource_without_assets_or_requests_settles_to_zero() -> None:
    due = Due("I-2", "R", at(0), at(5), mw_requested=1.0, mw_confirmed=0.0)
    report, _ = build_report(due, [], [], lookback_s=1800.0, filed_at=at(8))
    assert (report.delivered_mw, report.delivered_mwh, report.performance_pct) == (0.0, 0.0, 0.0)
    assert report.cohorts == [] and report.assets_metered == 0
    assert performance_pct(0.5, 0.0) == 0.0
    assert cohort_summary(["a"], np.array([0.0]))[0].share_pct == 0.0


def test_csv_never_prints_a_negative_zero() -> None:
    csv = intervals_csv(
        WINDOW_START,
        np.array([0.0, 300.0]),
        np.array([-0.00001]),
        np.array([0.0]),
        np.array([0.00001]),
    )
    assert csv.splitlines()[1] == "2026-03-12T10:00:00Z,0.0000,0.0000,0.0000"


def test_a_missing_battery_interval_is_uncovered_time_not_a_delivered_zero() -> None:
    # One asset, window 10:00-10:10 (two slots), lookback 30 min at 1.0 kW -> baseline 1.0 kW.
    # 10:00-10:05 at 5.0 kW -> delivered 5.0 - 1.0 = 4.0 kW.
    # 10:05-10:10 reported missing: uncovered, delivered 0 (a metered 0 kW would give
    #   0 - 1.0 = -1.0 kW). A questionable 9.0 kW over the same slot counts no more.
    # delivered_mw = (4.0 + 0) / 2 = 2.0 kW = 0.002 MW; delivered_mwh = 4.0 kW * 5/60 h
    #   = 0.3333 kWh = 0.000333 MWh (rounded to the Wh: 0.000333)
    readings = [
        *five_minute("A", -30, [1.0] * 6),
        Reading("A", at(0), 300, 5.0),
        Reading("A", at(5), 300, None, "missing"),
        Reading("A", at(5), 300, 9.0, "questionable"),
    ]
    due = Due("I-3", "R", at(0), at(10), mw_requested=0.004, mw_confirmed=0.004)
    report, result = build_report(due, [("A", "east")], readings, 1800.0, filed_at=at(13))
    assert result.delivered_mw == pytest.approx([0.004, 0.0], abs=1e-9)
    assert result.baseline_mw == pytest.approx([0.001, 0.0], abs=1e-9)
    assert report.delivered_mw == pytest.approx(0.002, abs=1e-9)
    assert report.delivered_mwh == pytest.approx(0.000333, abs=1e-9)
    assert result.incomplete_asset_slots == 1  # the asset's coverage shows the gap
    assert report.assets_metered == 1
