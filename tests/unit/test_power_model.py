"""The asset power model against hand-worked numbers, to 1e-6 kW.

sqrt(0.9) = 0.948683 is the one-way discharge efficiency of a 0.9 round trip. The ratings are
illustrative datasheet-like values, not read from the vendors' datasheets."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from nexwatt_shared.power_model import AssetRatings, Coupling, default_battery_kw, deliverable_kw

TOL_KW = 1e-6
NIGHT_KW = 0.0  # PV output at night

# SolarEdge SE7600 (7.6 kW AC hybrid inverter) with a 9.8 kWh / 5 kW battery on its DC bus.
SE7600 = AssetRatings(
    battery_continuous_kw=5.0,
    battery_peak_kw=7.0,
    usable_kwh=9.8,
    round_trip_efficiency=0.9,
    coupling=Coupling.DC,
    pv_dc_kw=9.0,
    inverter_ac_kw=7.6,
    backup_reserve_pct=20.0,
)
# SMA Sunny Boy Storage 6.0 (6.0 kW AC battery inverter) with a 10.24 kWh battery rated
# 10.24 kW, beside 5 kW of PV on its own inverter.
SBS6 = AssetRatings(
    battery_continuous_kw=10.24,
    battery_peak_kw=10.24,
    usable_kwh=10.24,
    round_trip_efficiency=0.9,
    coupling=Coupling.AC,
    pv_dc_kw=5.0,
    inverter_ac_kw=6.0,
    backup_reserve_pct=20.0,
)


def close(actual: object, expected: object) -> None:
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOL_KW)


# --- The two examples ----------------------------------------------------------------
def test_dc_coupled_battery_at_night_is_capped_by_the_battery_not_the_inverter() -> None:
    # Full (100 %), reserve 20 %, 1 h:
    #   battery 5.0; inverter headroom 7.6 - 0 = 7.6;
    #   energy (100-20)/100 x 9.8 x 0.948683 / 1 = 7.84 x 0.948683 = 7.437677
    #   -> min(5.0, 7.6, 7.437677) = 5.0  (the old model offered 7.6)
    close(deliverable_kw(SE7600, NIGHT_KW, 100.0, 1.0), 5.0)


def test_dc_coupled_battery_at_noon_gets_the_inverter_headroom_above_pv() -> None:
    # 4 kW PV through the same inverter: headroom 7.6 - 4.0 = 3.6 < 5.0 < 7.437677 -> 3.6
    close(deliverable_kw(SE7600, 4.0, 100.0, 1.0), 3.6)
    # PV at (7.6) or above (8.0, a DC-oversized array) the inverter rating: no headroom, 0.
    close(deliverable_kw(SE7600, [7.6, 8.0], 100.0, 1.0), [0.0, 0.0])


def test_ac_coupled_battery_gives_its_inverter_rating_whatever_the_pv() -> None:
    # Full, 1 h: battery 10.24; own inverter 6.0;
    #   energy 0.8 x 10.24 x 0.948683 = 8.192 x 0.948683 = 7.771614
    #   -> min(10.24, 6.0, 7.771614) = 6.0 at any PV, unknown PV included
    #   (the old model offered 6.0 - 5.0 = 1.0 at 5 kW of PV).
    close(deliverable_kw(SBS6, [0.0, 2.5, 5.0, np.nan], 100.0, 1.0), [6.0] * 4)


# --- Energy, efficiency and reserve -----------------------------------------------------------
def test_energy_limit_over_two_hours_with_a_0_9_round_trip() -> None:
    # Full, 2 h:
    #   SE7600: 0.8 x 9.8 = 7.84 kWh x 0.948683 = 7.437677 kWh / 2 h = 3.718839 kW
    #           -> min(5.0, 7.6, 3.718839) = 3.718839
    #   SBS6:   0.8 x 10.24 = 8.192 kWh x 0.948683 = 7.771614 kWh / 2 h = 3.885807 kW
    #           -> min(10.24, 6.0, 3.885807) = 3.885807
    close(deliverable_kw(SE7600, NIGHT_KW, 100.0, 2.0), 3.718839)
    close(deliverable_kw(SBS6, NIGHT_KW, 100.0, 2.0), 3.885807)


def test_efficiency_applies_to_the_energy() -> None:
    # SoC 50 %, 1 h: 0.3 x 9.8 = 2.94 kWh above the reserve.
    #   round trip 1.0: 2.94 x 1 = 2.94 kW; round trip 0.9: 2.94 x 0.948683 = 2.789129 kW
    lossless = replace(SE7600, round_trip_efficiency=1.0)
    close(deliverable_kw(lossless, NIGHT_KW, 50.0, 1.0), 2.94)
    close(deliverable_kw(SE7600, NIGHT_KW, 50.0, 1.0), 2.789129)


def test_only_energy_above_the_reserve_counts_and_never_below_zero() -> None:
    # 1 h, reserve 20 %:
    #   SoC 30 %: 0.1 x 9.8 x 0.948683 = 0.98 x 0.948683 = 0.929710 kW
    #   SoC 20 % (at the reserve) and 10 % (below it): 0, not negative
    close(deliverable_kw(SE7600, NIGHT_KW, [30.0, 20.0, 10.0], 1.0), [0.929710, 0.0, 0.0])
    # Reserve 0 %: SoC 10 % gives 0.1 x 9.8 x 0.948683 = 0.929710 kW
    no_reserve = replace(SE7600, backup_reserve_pct=0.0)
    close(deliverable_kw(no_reserve, NIGHT_KW, 10.0, 1.0), 0.929710)


def test_unknown_soc_credits_nothing_and_unknown_pv_only_matters_when_dc_coupled() -> None:
    close(deliverable_kw(SE7600, NIGHT_KW, np.nan, 1.0), 0.0)
    close(deliverable_kw(SBS6, NIGHT_KW, np.nan, 1.0), 0.0)
    # Unknown PV: a DC-coupled battery's headroom is unknown -> 0; AC-coupled: 6.0 (above).
    close(deliverable_kw(SE7600, np.nan, 100.0, 1.0), 0.0)


def test_peak_rating_is_not_credited() -> None:
    # Raising the 10-second peak rating leaves the night figure at the 5.0 kW continuous one.
    close(deliverable_kw(replace(SE7600, battery_peak_kw=7.6), NIGHT_KW, 100.0, 1.0), 5.0)


# --- Many assets at once ----------------------------------------------------------------------
def test_vectorized_over_assets_matches_each_asset_alone() -> None:
    # Asset 0 SE7600 at night, 1 SE7600 at noon (4 kW), 2 SBS6 beside 5 kW PV,
    # 3 SE7600 with unknown SoC, 4 SE7600 at SoC 30 % -> [5.0, 3.6, 6.0, 0.0, 0.929710].
    # The scalar round trip and reserve broadcast over the five.
    fleet = AssetRatings(
        battery_continuous_kw=[5.0, 5.0, 10.24, 5.0, 5.0],
        battery_peak_kw=[7.0, 7.0, 10.24, 7.0, 7.0],
        usable_kwh=[9.8, 9.8, 10.24, 9.8, 9.8],
        round_trip_efficiency=0.9,
        coupling=[Coupling.DC, Coupling.DC, Coupling.AC, Coupling.DC, Coupling.DC],
        pv_dc_kw=[9.0, 9.0, 5.0, 9.0, 9.0],
        inverter_ac_kw=[7.6, 7.6, 6.0, 7.6, 7.6],
        backup_reserve_pct=20.0,
    )
    pv = [0.0, 4.0, 5.0, 0.0, 0.0]
    soc = [100.0, 100.0, 100.0, np.nan, 30.0]
    together = deliverable_kw(fleet, pv, soc, 1.0)
    close(together, [5.0, 3.6, 6.0, 0.0, 0.929710])
    each = [SE7600, SE7600, SBS6, SE7600, SE7600]
    alone = [deliverable_kw(r, p, s, 1.0) for r, p, s in zip(each, pv, soc, strict=True)]
    close(together, alone)


# --- Bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"battery_continuous_kw": -1.0}, "battery_continuous_kw must be a finite number >= 0"),
        ({"battery_peak_kw": np.inf}, "battery_peak_kw must be a finite number >= 0"),
        ({"usable_kwh": -9.8}, "usable_kwh must be a finite number >= 0"),
        ({"pv_dc_kw": -0.1}, "pv_dc_kw must be a finite number >= 0"),
        ({"inverter_ac_kw": np.nan}, "inverter_ac_kw must be a finite number >= 0"),
        ({"round_trip_efficiency": 1.05}, r"round_trip_efficiency must be in \(0, 1\]"),
        ({"round_trip_efficiency": 0.0}, r"round_trip_efficiency must be in \(0, 1\]"),
        ({"round_trip_efficiency": np.nan}, r"round_trip_efficiency must be in \(0, 1\]"),
        ({"backup_reserve_pct": 100.01}, r"backup_reserve_pct must be in \[0, 100\]"),
        ({"backup_reserve_pct": -1.0}, r"backup_reserve_pct must be in \[0, 100\]"),
        ({"battery_peak_kw": 4.9}, "battery_peak_kw must not be below battery_continuous_kw"),
        # 10 x 9.8 kWh = 98 kW: 98.1 kW of continuous power is impossible (peak raised with it).
        (
            {"battery_continuous_kw": 98.1, "battery_peak_kw": 98.1},
            "battery_continuous_kw must not exceed 10 x usable_kwh",
        ),
        ({"coupling": "hybrid"}, "coupling must be one of"),
    ],
)
def test_impossible_ratings_are_refused_naming_the_field(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(SE7600, **changes)


def test_ratings_at_the_limits_are_accepted() -> None:
    # 98 kW = 10 x 9.8 kWh exactly; round trip 1; reserve 0; peak equal to continuous.
    edge = replace(
        SE7600,
        battery_continuous_kw=98.0,
        battery_peak_kw=98.0,
        round_trip_efficiency=1.0,
        backup_reserve_pct=0.0,
    )
    # Full, 1 h, lossless: min(98, 7.6, 9.8) = 7.6
    close(deliverable_kw(edge, NIGHT_KW, 100.0, 1.0), 7.6)


def test_a_refused_asset_is_named_by_its_index() -> None:
    with pytest.raises(ValueError, match=r"usable_kwh must be a finite number >= 0 \(asset 2\)"):
        replace(SE7600, usable_kwh=[9.8, 9.8, -1.0], battery_continuous_kw=0.0)
    with pytest.raises(ValueError, match="ratings of different numbers of assets"):
        replace(SE7600, usable_kwh=[9.8, 9.8], inverter_ac_kw=[7.6, 7.6, 7.6])


def test_ratings_are_a_read_only_copy() -> None:
    usable = np.array([9.8, 9.8])
    ratings = replace(SE7600, usable_kwh=usable)
    usable[0] = 1000.0  # the caller's array changes; the registered ratings do not
    close(ratings.usable_kwh, [9.8, 9.8])
    with pytest.raises(ValueError, match="read-only"):
        ratings.usable_kwh[0] = 1000.0


@pytest.mark.parametrize(
    ("pv_ac_kw", "soc_pct", "hours", "message"),
    [
        (0.0, 100.0, 0.0, "hours must be a positive number"),
        (0.0, 100.0, np.nan, "hours must be a positive number"),
        (-0.1, 100.0, 1.0, "pv_ac_kw must be >= 0 or NaN"),
        (0.0, 100.5, 1.0, r"soc_pct must be in \[0, 100\] or NaN"),
        (0.0, [50.0, -1.0], 1.0, r"soc_pct must be in \[0, 100\] or NaN \(asset 1\)"),
    ],
)
def test_bad_readings_are_refused(pv_ac_kw, soc_pct, hours, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        deliverable_kw(SE7600, pv_ac_kw, soc_pct, hours)


def test_a_battery_registered_without_a_power_rating_is_taken_at_its_inverters() -> None:
    # 7.6 kW inverter with 9.8 kWh: 7.6 kW; without a battery: 0; with 0.5 kWh: 10 C = 5 kW.
    close(default_battery_kw([7.6, 5.0, 7.6], [9.8, 0.0, 0.5]), [7.6, 0.0, 5.0])
