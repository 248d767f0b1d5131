"""Capacity revenue split to cohorts and subscribers by accredited kW, against hand-worked cents.

Largest remainder (money.split_cents): every part first gets its exact share rounded down, the
cents left over go one each to the largest fractional remainders, ties to the lower index."""

from __future__ import annotations

import numpy as np
import pytest

from nexwatt_settlement.revenue import split_capacity_revenue
from nexwatt_shared.delivery_year import days_in

PRICE_2026 = 329.17  # $/MW-day, delivery year 2026/27


def test_brief_example_split_by_accredited_kw_to_the_cent() -> None:
    # 329.17 $/MW-day x 2.0 MW x 365 days = $240,294.10 = 24,029,410 cents.
    # Cohorts by accredited kW, A 3 / B 5 / C 2 of 10 kW:
    #   A 24,029,410 x 3/10 = 7,208,823 exactly, B x 5/10 = 12,014,705, C x 2/10 = 4,805,882.
    # Within A (s1 1.5 kW, s2 1.5 kW): 7,208,823 / 2 = 3,604,411.5 each; floors 3,604,411 twice
    #   leave 1 cent, the remainders tie (.5, .5): the lower index, s1, gets it.
    # Within B (s3 1.25, s4 1.25, s5 2 assets x 1.25 = 2.5 kW): 12,014,705 x 1/4 = 3,003,676.25,
    #   x 1/4 = 3,003,676.25, x 1/2 = 6,007,352.5; floors add to 12,014,704, and the cent left
    #   goes to the largest remainder (.5): s5.
    # Within C: s1 alone (its second cohort: a row of its own), 4,805,882.
    split = split_capacity_revenue(
        PRICE_2026,
        2.0,
        365,
        cohorts=["B", "A", "C", "B", "B", "A", "B"],
        subscribers=["s5", "s2", "s1", "s3", "s4", "s1", "s5"],
        accredited_kw=[1.25, 1.5, 2.0, 1.25, 1.25, 1.5, 1.25],
    )
    assert split.total_cents == 24_029_410
    assert split.cohorts == ("A", "B", "C")
    assert split.cohort_cents.tolist() == [7_208_823, 12_014_705, 4_805_882]
    assert split.cohort_assets.tolist() == [2, 4, 1]
    np.testing.assert_allclose(split.cohort_kw, [3.0, 5.0, 2.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(split.cohort_share_pct, [30.0, 50.0, 20.0], rtol=0, atol=1e-9)
    assert list(zip(split.subscriber_cohorts, split.subscribers, strict=True)) == [
        ("A", "s1"),
        ("A", "s2"),
        ("B", "s3"),
        ("B", "s4"),
        ("B", "s5"),
        ("C", "s1"),
    ]
    assert split.subscriber_cents.tolist() == [
        3_604_412,
        3_604_411,
        3_003_676,
        3_003_676,
        6_007_353,
        4_805_882,
    ]
    assert split.subscriber_assets.tolist() == [1, 1, 1, 1, 2, 1]
    np.testing.assert_allclose(split.subscriber_kw, [1.5, 1.5, 1.25, 1.25, 2.5, 2.0], atol=1e-12)
    assert split.subscriber_cents.sum() == split.cohort_cents.sum() == split.total_cents


def test_cohort_remainders_go_to_the_largest_fractions() -> None:
    # 24,029,410 cents over A 3 / B 4 / C 2 of 9 kW: A 24,029,410 x 3/9 = 8,009,803.333...,
    #   B x 4/9 = 10,679,737.777..., C x 2/9 = 5,339,868.888...
    #   floors 8,009,803 + 10,679,737 + 5,339,868 = 24,029,408: 2 cents left, to the largest
    #   remainders .888 (C) and .777 (B).
    split = split_capacity_revenue(
        PRICE_2026, 2.0, 365, ["A", "B", "C"], ["a", "b", "c"], [3.0, 4.0, 2.0]
    )
    assert split.cohort_cents.tolist() == [8_009_803, 10_679_738, 5_339_869]
    assert split.subscriber_cents.tolist() == [8_009_803, 10_679_738, 5_339_869]


def test_days_and_a_leap_delivery_year() -> None:
    # 2027/28 holds Feb 29, 2028: 366 days. 333.44 $/MW-day x 1.5 MW x 366 = $183,058.56.
    # Over 30 days only: 333.44 x 1.5 x 30 = $15,004.80.
    whole = split_capacity_revenue(333.44, 1.5, days_in("2027/28"), ["A"], ["s"], [7.6])
    month = split_capacity_revenue(333.44, 1.5, 30, ["A"], ["s"], [7.6])
    assert whole.total_cents == 18_305_856
    assert month.total_cents == 1_500_480
    assert month.subscriber_cents.tolist() == [1_500_480]


def test_zero_accredited_kw_earns_nothing() -> None:
    # $240,294.10 over A 0 kW (its assets not accredited yet) and B 4 kW (b1 4 kW, b2 0 kW):
    # B takes all 24,029,410 cents, b1 all of B's; A and b2 get 0.
    split = split_capacity_revenue(
        PRICE_2026, 2.0, 365, ["A", "B", "B"], ["a1", "b1", "b2"], [0.0, 4.0, 0.0]
    )
    assert split.cohort_cents.tolist() == [0, 24_029_410]
    assert split.subscriber_cents.tolist() == [0, 24_029_410, 0]


@pytest.mark.parametrize(
    ("cohorts", "subscribers", "kw", "message"),
    [
        ([], [], [], "no assets"),
        (["A"], ["a", "b"], [1.0, 1.0], "one cohort, subscriber and accredited kW per asset"),
        (["A", "B"], ["a", "b"], [0.0, 0.0], "zero"),
        (["A"], ["a"], [-1.0], "finite and >= 0"),
        (["A"], ["a"], [float("nan")], "finite and >= 0"),
    ],
)
def test_refuses_what_cannot_be_split(
    cohorts: list[str], subscribers: list[str], kw: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        split_capacity_revenue(PRICE_2026, 2.0, 365, cohorts, subscribers, kw)
