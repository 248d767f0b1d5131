"""Dispatch math against numbers worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from nexwatt_dispatch.domain import (
    allocate,
    answer_status,
    dispatchable_kw,
    telemetry_age_s,
    unavailable_reason,
    usable,
)
from nexwatt_shared.power_model import AssetRatings

NAN = np.nan


def rated(
    capacity_kw: list[float], reserve_pct: list[float], storage_kwh: list[float]
) -> AssetRatings:
    """Ratings as assumed before batteries had their own: the battery gives the inverter's
    rating, losslessly, and PV shares the inverter (DC-coupled)."""
    return AssetRatings(
        battery_continuous_kw=capacity_kw, battery_peak_kw=capacity_kw, usable_kwh=storage_kwh,
        round_trip_efficiency=1.0, coupling="dc", pv_dc_kw=capacity_kw,
        inverter_ac_kw=capacity_kw, backup_reserve_pct=reserve_pct,
    )  # fmt: skip


def test_deliverable_is_the_least_of_inverter_headroom_and_energy_over_the_window() -> None:
    # Asset like BTM-00291: 7.6 kW inverter, 9.8 kWh battery at 90 % with a 20 % reserve.
    # Headroom: 7.6 - 3.0 PV = 4.6 kW. Energy: (90 - 20) / 100 * 9.8 = 6.86 kWh.
    #   over 0.5 h -> 13.72 kW, so headroom binds: 4.6 kW
    #   over 2 h   ->  3.43 kW, so energy binds:   3.43 kW
    common = dict(ratings=rated([7.6], [20.0], [9.8]), pv_kw=[3.0], soc_pct=[90.0],
                  pv_age_s=[60.0], soc_age_s=[60.0], max_age_s=900.0)  # fmt: skip
    assert dispatchable_kw(hours=0.5, **common) == pytest.approx([4.6], abs=1e-12)
    assert dispatchable_kw(hours=2.0, **common) == pytest.approx([3.43], abs=1e-12)


def test_stale_telemetry_a_battery_at_reserve_or_pv_above_rating_deliver_nothing() -> None:
    # Stale SoC, stale PV, at reserve, PV above rating, never reported.
    got = dispatchable_kw(
        ratings=rated([7.6, 7.6, 7.6, 5.0, 7.6], [20.0] * 5, [9.8] * 5),
        pv_kw=[1.0, 1.0, 1.0, 5.5, 1.0],
        soc_pct=[90.0, 90.0, 15.0, 90.0, 90.0],
        hours=1.0,
        pv_age_s=[0.0, 901.0, 0.0, 0.0, np.inf],
        soc_age_s=[901.0, 0.0, 0.0, 0.0, np.inf],
        max_age_s=900.0,
    )
    assert got.tolist() == [0.0] * 5


def test_a_battery_only_asset_is_dispatched_without_pv() -> None:
    # 5 kW battery inverter, 10 kWh at 60 %, reserve 20 %, 1 h: energy 4 kWh -> 4 kW, headroom
    # 5 kW. With PV behind it and none reported: unknown headroom -> 0. Battery-only: 4 kW.
    common = dict(ratings=rated([5.0] * 2, [20.0] * 2, [10.0] * 2), pv_kw=[NAN] * 2,
                  soc_pct=[60.0] * 2, hours=1.0,
                  pv_age_s=[np.inf] * 2, soc_age_s=[0.0] * 2, max_age_s=900.0)  # fmt: skip
    got = dispatchable_kw(**common, has_pv=[True, False])
    assert got == pytest.approx([0.0, 4.0], abs=1e-12)


def test_an_unknown_soc_or_pv_is_never_taken_as_zero() -> None:
    # Same asset as above, 1 h window, fresh: headroom 7.6 - 1.0 = 6.6 kW binds (energy 6.86).
    #   0: all known -> 6.6 kW
    #   1: SoC reported missing (NaN) -> 0, not a guess
    #   2: PV reported missing: 0 PV would claim 7.6 kW of headroom -> 0
    got = dispatchable_kw(
        ratings=rated([7.6] * 3, [20.0] * 3, [9.8] * 3), pv_kw=[1.0, 1.0, NAN],
        soc_pct=[90.0, NAN, 90.0], hours=1.0, pv_age_s=[0.0] * 3,
        soc_age_s=[0.0] * 3, max_age_s=900.0,
    )  # fmt: skip
    assert got == pytest.approx([6.6, 0.0, 0.0], abs=1e-12)


def test_why_no_asset_is_available_is_counted_per_cause() -> None:
    # Ages 0 s (fresh), 1000 s (stale), inf (never); NaN = reported missing.
    pv_ok = usable([1.0, 1.0, NAN, 1.0], [0.0, 0.0, 0.0, np.inf], 900.0)
    soc_ok = usable([90.0, NAN, 90.0, 90.0], [0.0, 0.0, 1000.0, np.inf], 900.0)
    assert pv_ok.tolist() == [True, True, False, False]
    assert soc_ok.tolist() == [True, False, False, False]
    assert unavailable_reason(pv_ok, soc_ok) == (
        "no asset available: 3 of 4 assets with SoC unknown or stale;"
        " 2 of 4 assets with PV unknown or stale;"
        " 1 of 4 assets at their reserve or without inverter headroom"
    )


def test_allocation_is_pro_rata_to_limits_and_never_above_them() -> None:
    # 10 kW over limits 4, 6, 10 (sum 20): each gets half its limit.
    assert allocate(10.0, [4.0, 6.0, 10.0]) == pytest.approx([2.0, 3.0, 5.0], abs=1e-12)
    # 30 kW exceeds the 20 kW the fleet can hold: everyone at its limit.
    assert allocate(30.0, [4.0, 6.0, 10.0]) == pytest.approx([4.0, 6.0, 10.0], abs=1e-12)
    # Tiny shares are not worth a command: 1 kW over 0.1 and 9.9 -> 0.01 and 0.99; 0.01 < 0.05
    # drops the first, and the second, shared again, carries the whole 1 kW.
    assert allocate(1.0, [0.1, 9.9], min_setpoint_kw=0.05) == pytest.approx([0.0, 1.0])
    # 100 kW over one 1000 kW site and twenty 0.9 kW homes: each home's share (0.088 kW) is
    # below 0.1, so the site carries all 100 kW rather than leaving 1.8 kW unallocated.
    got = allocate(100.0, [1000.0] + [0.9] * 20, min_setpoint_kw=0.1)
    assert got.sum() == pytest.approx(100.0) and got[0] == pytest.approx(100.0)
    assert allocate(5.0, [0.0, 0.0]).tolist() == [0.0, 0.0]


def test_a_window_already_over_is_refused() -> None:
    with pytest.raises(ValueError, match="hours"):
        dispatchable_kw(rated([1.0], [20.0], [9.8]), [0.0], [90.0], 0.0, [0.0], [0.0], 900.0)


def test_telemetry_from_a_clock_running_ahead_counts_as_stale() -> None:
    # Same asset as above, 1 h window: energy binds at (90 - 20) / 100 * 9.8 = 6.86 kW, and
    # headroom 7.6 - 1.0 = 6.6 kW binds first. Ages: 0 s, 200 s ahead (within 300 s of skew),
    # PV 301 s ahead, and SoC 70 years ahead (a clock stamped 2096): each channel is judged.
    got = dispatchable_kw(
        ratings=rated([7.6] * 4, [20.0] * 4, [9.8] * 4), pv_kw=[1.0] * 4, soc_pct=[90.0] * 4,
        hours=1.0, pv_age_s=[0.0, -200.0, -301.0, 0.0],
        soc_age_s=[0.0, -200.0, 0.0, -2.2e9], max_age_s=900.0, max_ahead_s=300.0,
    )  # fmt: skip
    assert got == pytest.approx([6.6, 6.6, 0.0, 0.0], abs=1e-12)


@pytest.mark.parametrize(
    ("confirmed_mw", "commanded", "acknowledged", "shortfall", "status", "reason"),
    [
        (0.0, 0, 0, "unknown resource 'X'", "rejected", "unknown resource 'X'"),
        (0.0, 3, 0, None, "rejected", "no asset acknowledged its setpoint in time"),
        # 3 setpoints rounded to the watt may fall 1.5 W short of 1 MW and still confirm it.
        (0.9999985, 3, 3, None, "confirmed", None),
        (0.9999980, 3, 3, None, "partial", "assets acknowledged less than commanded"),
        (0.6, 3, 2, "fleet limit 0.800 MW", "partial",
         "fleet limit 0.800 MW; 1 of 3 assets did not acknowledge in time"),
    ],
)  # fmt: skip
def test_the_answer_to_an_instruction(
    confirmed_mw, commanded, acknowledged, shortfall, status, reason
) -> None:
    assert answer_status(1.0, confirmed_mw, commanded, acknowledged, shortfall) == (status, reason)


def test_telemetry_age_runs_from_the_later_of_issue_time_and_the_resources_clock() -> None:
    # Issued at t=1000 s. Ends 900, 1100, 1100, 9000 and none: the resource's clock is the
    # 2nd newest of the four known ends (1100), later than the issue time (the instruction was
    # handled late): ages 200, 0, 0, -7900 (that asset's clock runs ahead) and infinite.
    got = telemetry_age_s(1000.0, [900.0, 1100.0, 1100.0, 9000.0, -np.inf])
    assert got.tolist() == [200.0, 0.0, 0.0, -7900.0, np.inf]
    # Issued after every end: ages from the issue time.
    assert telemetry_age_s(2000.0, [900.0, 1100.0]).tolist() == [1100.0, 900.0]
    # One channel's ages, on the clock of every asset's newest end: newest ends 900 and 1100,
    # issued at 1000 -> clock max(1000, 1100) = 1100; SoC ended 600 and never: 500 and inf.
    got = telemetry_age_s(1000.0, [900.0, 1100.0], [600.0, -np.inf])
    assert got.tolist() == [500.0, np.inf]
