"""Accreditation against hand-worked numbers, to 1e-9 MW (1 mW): UCAP = ICAP x class rating.

Small assets are written in kW in the comments and passed in MW (5 kW = 0.005 MW)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import ArrayLike

from nexwatt_capacity_model.accreditation import (
    PJM_ELCC_CLASS_RATINGS,
    ElccClass,
    hybrid_ucap_mw,
    storage_class,
    storage_duration_h,
    storage_icap_mw,
    storage_ucap_mw,
    ucap_by,
    ucap_mw,
)

TOL_MW = 1e-9
S4, S6, S8, S10 = (
    ElccClass.STORAGE_4H,
    ElccClass.STORAGE_6H,
    ElccClass.STORAGE_8H,
    ElccClass.STORAGE_10H,
)
FIXED, TRACKING, DR = ElccClass.SOLAR_FIXED, ElccClass.SOLAR_TRACKING, ElccClass.DEMAND_RESOURCE


def close(actual: object, expected: object) -> None:
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOL_MW)


# --- Class ratings as data -------------------------------------------------------------------

# The reference notes' table [% of nameplate], retyped here to check the module's transcription.
TABLE_PERCENT = {
    S4: (55, 50, 58),
    S6: (65, 58, 67),
    S8: (68, 62, 70),
    S10: (77, 72, 78),
    FIXED: (10, 8, 7),
    TRACKING: (14, 11, 8),
    DR: (77, 69, 92),
}


@pytest.mark.parametrize(
    ("elcc_class", "year", "percent"),
    [
        (c, year, percent[i])
        for c, percent in TABLE_PERCENT.items()
        for i, year in enumerate(["2025/26", "2026/27", "2027/28"])
    ],
)
def test_every_rating_matches_the_table(elcc_class: ElccClass, year: str, percent: int) -> None:
    assert PJM_ELCC_CLASS_RATINGS.rating(elcc_class, year) == percent / 100


def test_ratings_say_they_are_a_secondary_transcription() -> None:
    assert sorted(PJM_ELCC_CLASS_RATINGS.by_delivery_year) == ["2025/26", "2026/27", "2027/28"]
    assert "secondary" in PJM_ELCC_CLASS_RATINGS.source


@pytest.mark.parametrize("year", ["2024/25", "2028/29", "2026-27", ""])
def test_unknown_delivery_year_raises(year: str) -> None:
    with pytest.raises(ValueError, match="delivery year"):
        ucap_mw(1.0, FIXED, year)


@pytest.mark.parametrize("elcc_class", ["storage-2h", "wind", "Solar-Fixed"])
def test_unknown_class_raises(elcc_class: str) -> None:
    with pytest.raises(ValueError, match=elcc_class):
        ucap_mw([1.0, 1.0], [FIXED, elcc_class], "2026/27")


@pytest.mark.parametrize("icap", [-0.001, math.nan, math.inf])
def test_icap_must_be_finite_and_nonnegative(icap: float) -> None:
    with pytest.raises(ValueError, match="ICAP"):
        ucap_mw([1.0, icap], [FIXED, FIXED], "2026/27")


# --- Solar and demand resources --------------------------------------------------------------


def test_solar_fixed_and_tracking() -> None:
    # 10 MW of PV. 2026/27: fixed 10 x 0.08 = 0.8, tracking 10 x 0.11 = 1.1.
    # 2027/28: fixed 10 x 0.07 = 0.7, tracking 10 x 0.08 = 0.8.
    close(ucap_mw(10.0, [FIXED, TRACKING], "2026/27"), [0.8, 1.1])
    close(ucap_mw(10.0, [FIXED, TRACKING], "2027/28"), [0.7, 0.8])


def test_demand_resource() -> None:
    # 2 MW of load reduction: 2 x 0.69 = 1.38 in 2026/27, 2 x 0.92 = 1.84 in 2027/28.
    close(ucap_mw(2.0, DR, "2026/27"), 1.38)
    close(ucap_mw(2.0, DR, "2027/28"), 1.84)


def test_many_assets_of_mixed_classes_in_one_call() -> None:
    # 2025/26: 1 x 0.10 = 0.10; 2 x 0.14 = 0.28; 3 x 0.77 = 2.31; 0 x 0.55 = 0; 4 x 0.77 = 3.08.
    icap = [1.0, 2.0, 3.0, 0.0, 4.0]
    classes = [FIXED, TRACKING, DR, S4, S10]
    close(ucap_mw(icap, classes, "2025/26"), [0.10, 0.28, 2.31, 0.0, 3.08])


# --- Storage ---------------------------------------------------------------------------------


def test_issue_example_1_mw_4_mwh_in_2026_27() -> None:
    # 4 MWh / 1 MW = 4 h: the 4-hour class at full power. 1 x 0.50 = 0.500000 MW.
    ucap = storage_ucap_mw(1.0, 4.0, "2026/27")
    close(ucap, 0.5)
    assert f"{float(ucap):.6f}" == "0.500000"


def test_sub_4_hour_battery_is_derated_in_proportion_to_its_duration() -> None:
    # 5 kW / 9.8 kWh: 9.8 / 5 = 1.96 h, below the 4-hour class.
    # ICAP = min(5, 9.8 / 4) = 2.45 kW; UCAP = 2.45 x 0.50 = 1.225 kW
    #      = 5 x 0.50 x 1.96 / 4 = 1.225 kW = 0.001225 MW.
    close(storage_duration_h(0.005, 0.0098), 1.96)
    assert storage_class(1.96) == S4
    close(storage_icap_mw(0.005, 0.0098), 0.00245)
    close(storage_ucap_mw(0.005, 0.0098, "2026/27"), 0.001225)


@pytest.mark.parametrize("year", ["2025/26", "2026/27", "2027/28"])
def test_a_2_hour_battery_counts_as_half_a_4_hour_one(year: str) -> None:
    # 1 MW / 2 MWh: ICAP = min(1, 2 / 4) = 0.5 MW, half of 1 MW / 4 MWh's 1 MW, same class.
    close(storage_ucap_mw(1.0, 2.0, year), 0.5 * storage_ucap_mw(1.0, 4.0, year))


def test_ucap_is_continuous_at_4_hours() -> None:
    # 2026/27, 1 MW. 3.999 h: 1 x 3.999 / 4 x 0.50 = 0.499875; 4 h: 0.5; 4.001 h: 0.5 (4-hr class).
    close(storage_ucap_mw(1.0, [3.999, 4.0, 4.001], "2026/27"), [0.499875, 0.5, 0.5])


@pytest.mark.parametrize(
    ("duration_h", "expected"),
    [
        (0.0, S4),  # no energy: the 4-hour class, its ICAP 0
        (3.9, S4),  # below 4 h: the 4-hour class, derated
        (4.0, S4),
        (5.99, S4),  # 6 h not met
        (0.6 / 0.1, S6),  # 5.999999999999999 in floats: 6 h within the 1e-9 tolerance
        (6.0 * (1 - 1e-8), S4),  # 0.2 ms short of 6 h: beyond the tolerance
        (6.0, S6),
        (7.99, S6),
        (8.0, S8),
        (9.99, S8),
        (10.0, S10),
        (24.0, S10),  # longer than the longest class
    ],
)
def test_storage_class_is_the_longest_class_met(duration_h: float, expected: ElccClass) -> None:
    assert storage_class(duration_h) == expected


def test_storage_class_of_many_batteries_keeps_their_shape() -> None:
    classes = storage_class([[1.0, 6.5], [8.0, 12.0]])
    assert classes.tolist() == [[S4, S6], [S8, S10]]


def test_6_hour_class_in_2027_28() -> None:
    # 1 MW / 6 MWh: 6 h -> 6-hour class, 1 x 0.67 = 0.67 MW.
    # 2 MW / 15 MWh: 7.5 h -> still the 6-hour class, 2 x 0.67 = 1.34 MW.
    close(storage_ucap_mw([1.0, 2.0], [6.0, 15.0], "2027/28"), [0.67, 1.34])


def test_8_and_10_hour_classes_in_2025_26() -> None:
    # 0.5 MW / 4 MWh: 8 h, 0.5 x 0.68 = 0.34. 0.5 MW / 5 MWh: 10 h, 0.5 x 0.77 = 0.385.
    close(storage_ucap_mw(0.5, [4.0, 5.0], "2025/26"), [0.34, 0.385])


def test_zero_power_or_zero_energy_accredits_nothing() -> None:
    # 0 MW / 4 MWh: duration 0 by definition, ICAP min(0, 1) = 0. 1 MW / 0 MWh: min(1, 0) = 0.
    # 0 MW / 0 MWh (no battery): 0.
    close(storage_duration_h([0.0, 1.0, 0.0], [4.0, 0.0, 0.0]), [0.0, 0.0, 0.0])
    close(storage_ucap_mw([0.0, 1.0, 0.0], [4.0, 0.0, 0.0], "2026/27"), [0.0, 0.0, 0.0])


@pytest.mark.parametrize(
    ("power_mw", "energy_mwh", "what"),
    [
        (-1.0, 4.0, "power"),
        (1.0, -4.0, "energy"),
        (math.nan, 4.0, "power"),
        (1.0, math.inf, "energy"),
    ],
)
def test_negative_or_non_finite_battery_raises(
    power_mw: float, energy_mwh: float, what: str
) -> None:
    with pytest.raises(ValueError, match=what):
        storage_ucap_mw(power_mw, energy_mwh, "2026/27")


# --- Solar + storage sites -------------------------------------------------------------------


def test_hybrid_is_its_pv_plus_its_battery() -> None:
    # 2026/27.
    # Site 1: 8 kW fixed PV + 5 kW / 9.8 kWh battery: 8 x 0.08 + 1.225 = 0.64 + 1.225 = 1.865 kW.
    # Site 2: 10 kW tracking PV, no battery: 10 x 0.11 = 1.1 kW.
    # Site 3: no PV, 5 kW / 20 kWh (4 h): 5 x 0.50 = 2.5 kW.
    ucap = hybrid_ucap_mw(
        pv_mw=[0.008, 0.010, 0.0],
        solar_class=[FIXED, TRACKING, FIXED],
        power_mw=[0.005, 0.0, 0.005],
        energy_mwh=[0.0098, 0.0, 0.020],
        delivery_year="2026/27",
    )
    close(ucap, [0.001865, 0.0011, 0.0025])


@pytest.mark.parametrize("not_solar", [S4, DR, "wind"])
def test_hybrid_pv_must_have_a_solar_class(not_solar: str) -> None:
    with pytest.raises(ValueError, match="solar"):
        hybrid_ucap_mw([0.008, 0.008], [FIXED, not_solar], 0.005, 0.0098, "2026/27")


# --- Totals ----------------------------------------------------------------------------------


def test_ucap_by_sums_per_group_and_in_all() -> None:
    # R1: 0.5 + 0.001225 = 0.501225; R2: 0.67; total 0.5 + 0.001225 + 0.67 = 1.171225 MW.
    totals = ucap_by(["R1", "R1", "R2"], [0.5, 0.001225, 0.67])
    assert list(totals.by_group) == ["R1", "R2"]
    close([totals.by_group["R1"], totals.by_group["R2"]], [0.501225, 0.67])
    close(totals.total_mw, 1.171225)


def test_ucap_by_rounds_once() -> None:
    # Ten 0.1 MW assets: exactly 1.0 MW, where adding them one by one gives 0.9999999999999999.
    assert sum([0.1] * 10) != 1.0
    totals = ucap_by(["R1"] * 10, [0.1] * 10)
    assert totals.total_mw == 1.0
    assert totals.by_group == {"R1": 1.0}


@pytest.mark.parametrize(
    ("keys", "values", "match"),
    [
        (["R1", "R2"], [0.5], "2 group keys"),
        (["R1"], [[0.5]], "1 group keys"),
        (["R1", "R2"], [0.5, math.nan], "UCAP"),
        (["R1", "R2"], [0.5, -0.1], "UCAP"),
    ],
)
def test_ucap_by_rejects_bad_input(keys: list[str], values: ArrayLike, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ucap_by(keys, values)


def test_portfolio_of_100k_assets_adds_up_per_resource_and_per_cohort() -> None:
    rng = np.random.default_rng(10)
    n = 100_000
    # Homes: 3-15 kW PV (fixed or tracking), 0-10 kW batteries of 0-30 kWh (0-h to >10-h).
    pv_mw = rng.uniform(0.003, 0.015, n)
    solar = rng.choice([FIXED.value, TRACKING.value], n)
    power_mw = rng.uniform(0.0, 0.010, n)
    energy_mwh = rng.uniform(0.0, 0.030, n)
    ucap = hybrid_ucap_mw(pv_mw, solar, power_mw, energy_mwh, "2026/27")
    resource = rng.integers(0, 40, n)
    cohort = rng.integers(0, 300, n)

    by_resource = ucap_by(resource.tolist(), ucap)
    by_cohort = ucap_by(cohort.tolist(), ucap)
    by_pair = ucap_by(list(zip(resource.tolist(), cohort.tolist(), strict=True)), ucap)

    # The portfolio is the sum of its assets, computed independently (float64 pairwise sum).
    close(by_resource.total_mw, np.sum(ucap))
    for totals in (by_resource, by_cohort, by_pair):
        assert totals.total_mw == by_resource.total_mw
        close(math.fsum(totals.by_group.values()), totals.total_mw)
    # Each group holds its own assets: against a float64 sum per key.
    close(
        [by_resource.by_group[r] for r in range(40)],
        np.bincount(resource, weights=ucap, minlength=40),
    )
    close(
        [by_cohort.by_group[c] for c in range(300)],
        np.bincount(cohort, weights=ucap, minlength=300),
    )
    # Every (resource, cohort) pair is a sub-total of its resource.
    per_resource = np.zeros(40)
    for (r, _), mw in by_pair.by_group.items():
        per_resource[r] += mw
    close(per_resource, [by_resource.by_group[r] for r in range(40)])
