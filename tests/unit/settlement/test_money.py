"""Capacity money against hand-worked numbers: dollars to 1e-6 $, MW to 1e-9 MW, cents exactly.

Non-performance and bonus rates here are illustrative round numbers, not PJM's."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from nexwatt_settlement.money import (
    CLEARING_PRICES_USD_PER_MW_DAY,
    attribute_usd,
    bonus_usd,
    capacity_deficiency_mw,
    capacity_revenue_usd,
    expected_performance_mw,
    non_performance_charge_usd,
    performance_shortfall_mw,
    split_cents,
    split_cents_by_cohort,
    to_cents,
)
from nexwatt_shared.delivery_year import days_in, delivery_year

TOL_USD = 1e-6
TOL_MW = 1e-9


def close(actual: object, expected: object, tol: float) -> None:
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol)


# --- Capacity revenue -----------------------------------------------------


def test_clearing_prices_are_data_with_a_source() -> None:
    prices = CLEARING_PRICES_USD_PER_MW_DAY
    assert prices.for_year("2024/25") == 28.92
    assert prices.for_year("2025/26") == 269.92
    assert prices.for_year("2026/27") == 329.17
    assert prices.for_year("2027/28") == 333.44
    assert "tariff" in prices.source
    with pytest.raises(ValueError, match="2030/31"):
        prices.for_year("2030/31")
    with pytest.raises(TypeError):
        prices.by_delivery_year["2030/31"] = 1.0  # type: ignore[index]


def test_capacity_revenue_for_a_year_of_2026_27() -> None:
    # 329.17 $/MW-day x 2.5 MW = 822.925 $/day; x 365 days = 300,367.625 $.
    days = days_in("2026/27")
    revenue = capacity_revenue_usd(CLEARING_PRICES_USD_PER_MW_DAY.for_year("2026/27"), 2.5, days)
    close(revenue, 300_367.625, TOL_USD)
    # Half a cent exactly: half to even rounds 30,036,762.5 cents down to 30,036,762.
    assert to_cents(float(revenue)) == 30_036_762


def test_capacity_revenue_in_a_leap_delivery_year() -> None:
    # 2027/28 holds Feb 29, 2028: 333.44 $/MW-day x 1 MW x 366 days = 122,039.04 $,
    # 333.44 $ more than 365 days would pay (121,705.60 $).
    year = delivery_year(date(2028, 2, 29))
    assert year == "2027/28"
    price = CLEARING_PRICES_USD_PER_MW_DAY.for_year(year)
    close(capacity_revenue_usd(price, 1.0, days_in(year)), 122_039.04, TOL_USD)
    close(capacity_revenue_usd(price, 1.0, 365), 121_705.60, TOL_USD)


def test_capacity_revenue_broadcasts_over_years() -> None:
    # 1 MW for a whole year each: 28.92 x 365 = 10,555.80; 269.92 x 365 = 98,520.80;
    # 329.17 x 365 = 120,147.05; 333.44 x 366 = 122,039.04.
    years = ["2024/25", "2025/26", "2026/27", "2027/28"]
    prices = [CLEARING_PRICES_USD_PER_MW_DAY.for_year(y) for y in years]
    days = [days_in(y) for y in years]
    close(
        capacity_revenue_usd(prices, 1.0, days),
        [10_555.80, 98_520.80, 120_147.05, 122_039.04],
        TOL_USD,
    )


# --- Performance assessment ------------------------------------------------------------------


def test_pjm_staff_example() -> None:
    # A 100 MW unit commits 90 MW of UCAP; its accreditation later falls to 80 MW.
    # Deficiency = 90 - 80 = 10 MW.
    close(capacity_deficiency_mw(90.0, 80.0), 10.0, TOL_MW)
    # Assumption: a balancing ratio of 1.0 in the PAI, and expected performance measured
    # against the 90 MW committed, not the 80 MW accredited. Expected = 90 x 1.0 = 90 MW;
    # producing 80 MW leaves a shortfall of 90 - 80 = 10 MW, the example's non-performance.
    expected = expected_performance_mw(90.0, 1.0)
    close(expected, 90.0, TOL_MW)
    shortfall = performance_shortfall_mw(expected, 80.0)
    close(shortfall, 10.0, TOL_MW)
    # At an illustrative 100 $/MW per interval over 1 PAI: 10 MW x 100 x 1 = 1,000 $; no bonus.
    close(non_performance_charge_usd(shortfall, 100.0, 1), 1_000.0, TOL_USD)
    close(bonus_usd(shortfall, 50.0, 1), 0.0, TOL_USD)


def test_no_deficiency_when_accreditation_covers_the_commitment() -> None:
    close(capacity_deficiency_mw([90.0, 90.0], [90.0, 95.0]), [0.0, 0.0], TOL_MW)


def test_over_performance_earns_a_bonus() -> None:
    # Balancing ratio 0.8: expected = 90 x 0.8 = 72 MW; producing 80 MW gives 72 - 80 = -8 MW.
    # Bonus at an illustrative 50 $/MW per interval over 2 PAIs: 8 x 50 x 2 = 800 $.
    shortfall = performance_shortfall_mw(expected_performance_mw(90.0, 0.8), 80.0)
    close(shortfall, -8.0, TOL_MW)
    close(bonus_usd(shortfall, 50.0, 2), 800.0, TOL_USD)
    close(non_performance_charge_usd(shortfall, 100.0, 2), 0.0, TOL_USD)


def test_performance_over_several_pais() -> None:
    # 2.5 MW committed; balancing ratios 1.0, 0.9, 0.6 -> expected 2.5, 2.25, 1.5 MW.
    # Actual 2.0, 2.25, 2.0 MW -> shortfalls 0.5, 0.0, -0.5 MW.
    # Charge at 100 $/MW-interval: 0.5 x 100 = 50, 0, 0 -> 50 $.
    # Bonus at 40 $/MW-interval: 0, 0, 0.5 x 40 = 20 -> 20 $.
    expected = expected_performance_mw(2.5, [1.0, 0.9, 0.6])
    close(expected, [2.5, 2.25, 1.5], TOL_MW)
    shortfall = performance_shortfall_mw(expected, [2.0, 2.25, 2.0])
    close(shortfall, [0.5, 0.0, -0.5], TOL_MW)
    close(non_performance_charge_usd(shortfall, 100.0, 1), [50.0, 0.0, 0.0], TOL_USD)
    close(bonus_usd(shortfall, 40.0, 1), [0.0, 0.0, 20.0], TOL_USD)
    close(non_performance_charge_usd(shortfall, 100.0, 1).sum(), 50.0, TOL_USD)
    close(bonus_usd(shortfall, 40.0, 1).sum(), 20.0, TOL_USD)


# --- Dollars to cents ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "cents"),
    [
        (Decimal("0.125"), 12),  # 12.5 -> the even 12
        (Decimal("0.135"), 14),  # 13.5 -> the even 14
        (Decimal("-0.125"), -12),  # symmetric about zero
        ("0.005", 0),
        ("0.015", 2),
        (2.675, 268),  # the float prints as 2.675 -> 267.5 -> 268 (its binary value is below)
        (300_367.625, 30_036_762),
        (12, 1_200),
        (-1.01, -101),
    ],
)
def test_to_cents_rounds_half_to_even(amount: Decimal | float | int | str, cents: int) -> None:
    assert to_cents(amount) == cents


@pytest.mark.parametrize("amount", [float("nan"), float("inf"), "-Infinity"])
def test_to_cents_rejects_non_amounts(amount: float | str) -> None:
    with pytest.raises(ValueError):
        to_cents(amount)


# --- Splitting cents -------------------------------------------------------------------------


def test_split_100_cents_three_ways() -> None:
    # 100 / 3 = 33 remainder 1 each: 33 + 33 + 33 = 99, 1 cent left. The three remainders tie
    # (1/3 each), and ties go to the lower index: the first part gets the extra cent.
    parts = split_cents(100, [1, 1, 1])
    assert parts.tolist() == [34, 33, 33]
    assert parts.dtype == np.int64


def test_split_a_charge_is_symmetric() -> None:
    # -100 cents (a charge) is split as 100 and negated: the first part pays the extra cent.
    assert split_cents(-100, [1, 1, 1]).tolist() == [-34, -33, -33]


def test_split_goes_by_largest_remainder_not_largest_weight() -> None:
    # 1000 cents over weights 3, 2, 2 (total 7):
    #   3000 / 7 = 428 remainder 4;  2000 / 7 = 285 remainder 5 (twice).
    #   428 + 285 + 285 = 998: 2 cents left, to the remainders 5/7, 5/7 (indexes 1 and 2),
    #   not to the largest weight.
    assert split_cents(1000, [3, 2, 2]).tolist() == [428, 286, 286]


def test_split_zero_weights_get_nothing() -> None:
    # 101 over 0, 1, 1: 50 r1, 50 r1 -> the tie goes to index 1; index 0 gets 0.
    assert split_cents(101, [0, 1, 1]).tolist() == [0, 51, 50]
    assert split_cents(-101, [1, 0, 1]).tolist() == [-51, 0, -50]
    assert split_cents(0, [2, 1]).tolist() == [0, 0]


def test_split_float_weights_exactly() -> None:
    # 10 cents over 0.1, 0.2, 0.7 -> 1, 2, 7; scaling by a power of 2 changes nothing.
    assert split_cents(10, [0.1, 0.2, 0.7]).tolist() == [1, 2, 7]
    assert split_cents(7, [0.75, 0.25]).tolist() == split_cents(7, [3.0, 1.0]).tolist()
    # 7 x 3/4 = 5.25, 7 x 1/4 = 1.75 -> 5, 1 with 1 cent left to the larger remainder .75.
    assert split_cents(7, [3.0, 1.0]).tolist() == [5, 2]


@pytest.mark.parametrize(
    "weights", [[0, 0, 0], [1, -1], [1.0, float("nan")], [float("inf"), 1.0], [], [[1, 2]]]
)
def test_split_rejects_bad_weights(weights: list) -> None:
    with pytest.raises(ValueError):
        split_cents(100, weights)


def test_split_wants_whole_cents() -> None:
    with pytest.raises(TypeError):
        split_cents(100.0, [1, 1])  # type: ignore[arg-type]
    assert split_cents(np.int64(100), [1, 1]).tolist() == [50, 50]


def test_attribute_usd_rounds_then_splits() -> None:
    # 1,000.00 $ = 100,000 cents over 1, 1, 1: 33,333 r1 each -> 33,334, 33,333, 33,333.
    assert attribute_usd(1_000, [1, 1, 1]).tolist() == [33_334, 33_333, 33_333]
    # The 2026/27 revenue for 2.5 MW, 300,367.625 $ -> 30,036,762 cents (half to even), over
    # subscriber energies 3, 2, 2 MWh: 30,036,762 x 3/7 = 12,872,898 r 0 (7 divides 90,110,286)
    # and x 2/7 = 8,581,932 r 0 (60,073,524 = 7 x 8,581,932): no cent left over.
    parts = attribute_usd(Decimal("300367.625"), [3.0, 2.0, 2.0])
    assert parts.tolist() == [12_872_898, 8_581_932, 8_581_932]
    assert parts.sum() == 30_036_762


def _exact_share(total: int, weights: np.ndarray, i: int) -> Fraction:
    fractions = [Fraction(w) for w in weights.tolist()]
    return total * fractions[i] / sum(fractions)


def _random_weights(rng: np.random.Generator) -> np.ndarray:
    n = int(rng.integers(1, 12))
    kind = rng.integers(3)
    if kind == 0:
        weights = rng.integers(0, 5, size=n).astype(float)  # small integers: many ties
    elif kind == 1:
        weights = rng.random(n) * 10.0 ** rng.integers(-6, 6)  # any scale
    else:
        weights = rng.random(n) * (rng.random(n) < 0.6)  # many zeros
    if not weights.any():
        weights[rng.integers(n)] = 1.0
    return weights


def test_split_properties_on_random_inputs() -> None:
    rng = np.random.default_rng(20260601)
    for _ in range(1_000):
        total = int(rng.integers(-(10**9), 10**9))
        weights = _random_weights(rng)
        parts = split_cents(total, weights)
        assert parts.sum() == total
        assert (split_cents(-total, weights) == -parts).all()
        assert (parts[weights == 0] == 0).all()
        assert (parts * np.sign(total) >= 0).all()
        for i, part in enumerate(parts.tolist()):
            assert abs(part - _exact_share(total, weights, i)) < 1


# --- Two levels: resource -> cohorts -> subscribers ------------------------------------------


def test_split_by_cohort_by_hand() -> None:
    # 100 cents over cohorts 1, 1, 1 -> 34, 33, 33 (the tie's cent to cohort 0). Then:
    #   cohort 0, 34 over 1, 1       -> 17, 17
    #   cohort 1, 33 over 1, 2       -> 11, 22 (exact)
    #   cohort 2, 33 over 3, 0, 1    -> 24.75 and 8.25: 24, 0, 8 with 1 cent left, to the
    #                                   larger remainder .75: 25, 0, 8
    split = split_cents_by_cohort(100, [1, 1, 1], [[1, 1], [1, 2], [3, 0, 1]])
    assert split.cohort_cents.tolist() == [34, 33, 33]
    assert [s.tolist() for s in split.subscriber_cents] == [[17, 17], [11, 22], [25, 0, 8]]


def test_split_by_cohort_of_a_charge() -> None:
    split = split_cents_by_cohort(-100, [1, 1, 1], [[1, 1], [1, 2], [3, 0, 1]])
    assert split.cohort_cents.tolist() == [-34, -33, -33]
    assert [s.tolist() for s in split.subscriber_cents] == [[-17, -17], [-11, -22], [-25, 0, -8]]


def test_split_by_cohort_zero_weight_cohort() -> None:
    # A cohort of weight 0 gets nothing and pays nothing, even when its subscribers' weights
    # are all zero (e.g. none delivered).
    split = split_cents_by_cohort(1_001, [0, 1], [[0, 0], [1, 1]])
    assert split.cohort_cents.tolist() == [0, 1_001]
    assert [s.tolist() for s in split.subscriber_cents] == [[0, 0], [501, 500]]


def test_split_by_cohort_rejects_inconsistent_weights() -> None:
    with pytest.raises(ValueError, match="all zero"):
        split_cents_by_cohort(100, [1, 1], [[1], [0, 0]])  # money for cohort 1, no one to get it
    with pytest.raises(ValueError, match="2 cohort weights but 1"):
        split_cents_by_cohort(100, [1, 1], [[1]])
    with pytest.raises(ValueError):
        split_cents_by_cohort(100, [0, 1], [[-1], [1]])  # a zero-weight cohort's still checked


def test_split_by_cohort_properties_on_random_inputs() -> None:
    rng = np.random.default_rng(20270601)
    for _ in range(300):
        total = int(rng.integers(-(10**8), 10**8))
        cohort_weights = _random_weights(rng)
        subscriber_weights = [_random_weights(rng) for _ in cohort_weights]
        split = split_cents_by_cohort(total, cohort_weights, subscriber_weights)
        assert split.cohort_cents.sum() == total
        for cohort, cents in enumerate(split.cohort_cents.tolist()):
            assert abs(cents - _exact_share(total, cohort_weights, cohort)) < 1
            assert split.subscriber_cents[cohort].sum() == cents
