"""Commitment sizing against hand-worked numbers: dollars to 1e-6 $ and MW to 1e-9 MW where
computed in closed form; offers found by the optimizer to 1e-5 MW (it stops within about
1e-6 MW) against the newsvendor quantile, the analytic answer.

Prices and rates are illustrative round numbers, or the placeholders of the README's worked
example, not PJM's values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from nexwatt_capacity_model.sizing import (
    CommitmentTerms,
    deliverable_ucap_mw,
    enrolled_share_samples,
    expected_outcome,
    expected_shortfall_mw,
    recommend_offer,
    stay_probability_samples,
)

TOL_USD = 1e-6
TOL_MW = 1e-9
TOL_OFFER_MW = 1e-5  # the optimizer's answer
ONE_TO_TEN_MW = [7.0, 3.0, 10.0, 1.0, 5.0, 9.0, 2.0, 8.0, 4.0, 6.0]  # 1..10, unsorted


def close(actual: object, expected: object, tol: float) -> None:
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol)


def round_terms(deficiency_usd_per_mw_day: float = 120.0) -> CommitmentTerms:
    """100 $/MW-day over 365 days, 20 $/MW per PAI over 365 PAIs:
    a = 100 x 365 = 36,500 $/MW; b = 120 x 365 + 20 x 365 = 43,800 + 7,300 = 51,100 $/MW;
    a / b = 365 / 511 = 5 / 7 = 0.714285..."""
    return CommitmentTerms(365, 100.0, deficiency_usd_per_mw_day, 20.0, 365, source="test")


def placeholder_terms_2026_27() -> CommitmentTerms:
    """The README's worked example: 329.17 $/MW-day (2026/27), deficiency at the price + 20 %,
    non-performance at Net CONE 300 $/MW-day x 365 / 360 h / 12 = 25.347222 $/MW per
    interval, 360 PAIs (30 hours) a year."""
    return CommitmentTerms.from_clearing_price(
        365, 329.17, 0.2, 300.0 * 365 / 360 / 12, 360, source="test placeholders"
    )


def midpoint_normal_mw(mean_mw: float, sd_mw: float, n: int) -> np.ndarray:
    """n samples of a normal D at the probabilities (i - 0.5) / n, i = 1..n: the sample's
    q-quantile is within sd x 0.5 / n / pdf of the normal's, with no sampling noise."""
    return mean_mw + sd_mw * stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n)


# --- terms ------------------------------------------------------------------------------------
def test_terms_per_mw_and_critical_ratio() -> None:
    terms = placeholder_terms_2026_27()
    # deficiency rate = 329.17 x 1.2 = 395.004 $/MW-day
    close(terms.deficiency_usd_per_mw_day, 395.004, TOL_USD)
    # a = 329.17 x 365 = 120,147.05 $/MW
    close(terms.revenue_usd_per_mw, 120_147.05, TOL_USD)
    # b = 395.004 x 365 + 25.347222 x 360 = 144,176.46 + 9,125 (= 300 x 365 / 12) = 153,301.46
    close(terms.penalty_usd_per_mw, 153_301.46, TOL_USD)
    # a / b = 120,147.05 / 153,301.46 = 0.7837306...
    close(terms.critical_ratio, 120_147.05 / 153_301.46, 1e-12)
    assert 0.78373 < terms.critical_ratio < 0.78374
    close(round_terms().critical_ratio, 5 / 7, 1e-12)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("days", 0, "days > 0"),
        ("price_usd_per_mw_day", -1.0, "price"),
        ("deficiency_usd_per_mw_day", float("nan"), "deficiency rate"),
        ("non_performance_usd_per_mw_interval", float("inf"), "non-performance rate"),
        ("pai_intervals_per_year", -3.0, "PAI intervals"),
    ],
)
def test_bad_terms_raise(field: str, value: float, message: str) -> None:
    args = {
        "days": 365,
        "price_usd_per_mw_day": 100.0,
        "deficiency_usd_per_mw_day": 120.0,
        "non_performance_usd_per_mw_interval": 20.0,
        "pai_intervals_per_year": 365,
        "source": "test",
    }
    with pytest.raises(ValueError, match=message):
        CommitmentTerms(**{**args, field: value})


def test_terms_without_any_penalty_raise() -> None:
    # no deficiency charge and no PAIs: b = 0, a / b undefined, any offer is free
    with pytest.raises(ValueError, match="must cost something"):
        CommitmentTerms(365, 100.0, 0.0, 20.0, 0, source="test")


# --- expectations -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("offer_mw", "shortfall_mw"),
    [
        (0.0, 0.0),  # nothing committed
        (0.5, 0.0),  # below every sample
        (1.0, 0.0),  # at the lowest sample: max(1 - 1, 0) = 0
        (7.0, 2.1),  # (6 + 5 + 4 + 3 + 2 + 1) / 10 = 21 / 10
        (8.0, 2.8),  # (7 + ... + 1) / 10 = 28 / 10
        (8.5, 3.2),  # (7.5 + 6.5 + ... + 0.5) / 10 = (8 x 8.5 - 36) / 10 = 32 / 10
        (9.0, 3.6),  # (8 + ... + 1) / 10 = 36 / 10
        (12.0, 6.5),  # above every sample: 12 - mean 5.5
    ],
)
def test_expected_shortfall_hand_worked(offer_mw: float, shortfall_mw: float) -> None:
    close(expected_shortfall_mw(offer_mw, ONE_TO_TEN_MW), shortfall_mw, TOL_MW)


def test_expected_shortfall_equals_the_mean_over_samples() -> None:
    # the sorted running sum against the definition, over many offers at once
    rng = np.random.default_rng(7)
    d = rng.lognormal(np.log(10.0), 0.3, size=2_000)
    offers = np.linspace(0.0, 30.0, 301).reshape(7, 43)
    brute = np.maximum(offers[..., None] - d, 0.0).mean(axis=-1)
    got = expected_shortfall_mw(offers, d)
    assert got.shape == (7, 43)
    close(got, brute, 1e-9)


def test_expected_outcome_hand_worked() -> None:
    # offer 8 MW over 1..10 MW with the round terms; E[max(8 - D, 0)] = 2.8 MW
    got = expected_outcome(8.0, ONE_TO_TEN_MW, round_terms())
    close(got.shortfall_mw, 2.8, TOL_MW)
    close(got.revenue_usd, 292_000.0, TOL_USD)  # 100 x 8 x 365
    close(got.deficiency_usd, 122_640.0, TOL_USD)  # 2.8 x 120 x 365 = 2.8 x 43,800
    close(got.non_performance_usd, 20_440.0, TOL_USD)  # 2.8 x 20 x 365 = 2.8 x 7,300
    close(got.penalty_usd, 143_080.0, TOL_USD)  # 122,640 + 20,440 = 2.8 x 51,100
    close(got.profit_usd, 148_920.0, TOL_USD)  # 292,000 - 143,080


@pytest.mark.parametrize(
    "deliverable_mw",
    [[], [[1.0, 2.0]], [1.0, float("nan")], [1.0, -0.5], [float("inf")]],
)
def test_bad_samples_raise(deliverable_mw: list) -> None:
    with pytest.raises(ValueError, match="deliverable UCAP"):
        expected_shortfall_mw(1.0, deliverable_mw)
    with pytest.raises(ValueError, match="deliverable UCAP"):
        recommend_offer(deliverable_mw, round_terms())


# --- the recommendation -----------------------------------------------------------------------
def test_recommendation_hand_worked_over_one_to_ten() -> None:
    # a / b = 5/7 = 0.714: P(D < 8) = 0.7 <= 0.714 <= P(D <= 8) = 0.8, so C* = 8 MW.
    # By hand, E[profit] = 36,500 C - 51,100 E[max(C - D, 0)]:
    #   C = 7: 255,500 - 51,100 x 2.1 = 148,190
    #   C = 8: 292,000 - 51,100 x 2.8 = 148,920   <- the most
    #   C = 9: 328,500 - 51,100 x 3.6 = 144,540
    got = recommend_offer(ONE_TO_TEN_MW, round_terms())
    close(got.offer_mw, 8.0, TOL_OFFER_MW)
    close(got.quantile, 5 / 7, 1e-12)
    # profit's slopes next to 8 MW: 36,500 - 51,100 x 0.7 = 730 and 36,500 - 51,100 x 0.8
    # = -4,380 $/MW: within 1e-5 MW of 8 it is within 0.0438 $ of 148,920
    close(got.expected.profit_usd, 148_920.0, 0.05)
    close(got.expected.penalty_usd, 143_080.0, 51_100 * TOL_OFFER_MW)  # slope <= b
    assert isinstance(got.expected.profit_usd, float)


@pytest.mark.parametrize(
    ("price", "deficiency", "rate", "intervals"),
    [
        (329.17, 395.004, 25.347, 360),  # a / b = 0.78
        (100.0, 300.0, 50.0, 100),  # 36,500 / (109,500 + 5,000) = 0.319
        (50.0, 60.0, 500.0, 1_000),  # 18,250 / (21,900 + 500,000) = 0.035
        (100.0, 101.0, 0.0, 0),  # 36,500 / 36,865 = 0.990
    ],
)
def test_optimizer_finds_the_newsvendor_quantile_and_the_best_sample(
    price: float, deficiency: float, rate: float, intervals: int
) -> None:
    terms = CommitmentTerms(365, price, deficiency, rate, intervals, source="test")
    d = np.random.default_rng(11).lognormal(np.log(10.0), 0.4, size=1_001)
    got = recommend_offer(d, terms)
    # the analytic answer: the smallest sample whose share at or below it reaches a / b
    quantile = np.quantile(d, terms.critical_ratio, method="inverted_cdf")
    close(got.offer_mw, quantile, TOL_OFFER_MW)
    # and, by brute force without the theory: E[profit] is piecewise linear with kinks at the
    # samples, so its maximum over [0, max D] is at 0 or at a sample
    candidates = np.concatenate([[0.0], d])
    profits = terms.revenue_usd_per_mw * candidates - terms.penalty_usd_per_mw * np.maximum(
        candidates[:, None] - d, 0.0
    ).mean(axis=1)
    close(candidates[np.argmax(profits)], quantile, 0.0)
    assert got.expected.profit_usd >= profits.max() - terms.revenue_usd_per_mw * TOL_OFFER_MW


def test_normal_worked_example_of_the_readme() -> None:
    # D ~ normal(10 MW, 1 MW), 100,000 midpoint samples; placeholder 2026/27 terms, a / b =
    # 0.7837306. Newsvendor: C* = 10 + 1 x Phi^-1(0.7837306) = 10 + 0.7848547 = 10.7848547 MW
    # (the samples' quantile is within 1 x 0.5e-5 / pdf(0.785) = 1.7e-5 MW of it).
    # E[max(C* - D, 0)] = sd x (z Phi(z) + pdf(z)) = 0.7848547 x 0.7837306 + 0.2931892
    # = 0.9083039 MW; revenue = 120,147.05 x 10.7848547 = 1,295,768.48 $; penalty = 0.9083039
    # x 153,301.46 = 139,244.32 $; profit = 1,156,524.16 $.
    terms = placeholder_terms_2026_27()
    d = midpoint_normal_mw(10.0, 1.0, 100_000)
    z = stats.norm.ppf(terms.critical_ratio)
    close(z, 0.7848547, 1e-7)
    got = recommend_offer(d, terms)
    close(got.offer_mw, 10.0 + z, 1e-4)  # 1.7e-5 MW of sampling grid + the optimizer's 1e-5
    close(got.quantile, 0.7837306, 1e-7)
    close(got.expected.shortfall_mw, 0.9083039, 1e-4)  # its slope is P(D < C) <= 1
    close(got.expected.revenue_usd, 1_295_768.48, 120_147.05 * 1e-4)  # a x the offer's 1e-4
    close(got.expected.penalty_usd, 139_244.32, 153_301.46 * 1e-4)  # b x the shortfall's 1e-4
    # profit is flat at its top: off by the samples' E[max(C - D, 0)] (~1e-6 MW x b = 0.15 $)
    close(got.expected.profit_usd, 1_156_524.16, 1.0)
    # offering the mean, 10 MW: 1,201,470.50 - 153,301.46 x pdf(0) (0.3989423) = 1,140,312.2 $,
    # 16,212 $ less
    at_mean = expected_outcome(10.0, d, terms)
    close(at_mean.profit_usd, 1_140_312.2, 1.0)


def test_a_larger_penalty_gives_a_smaller_offer() -> None:
    # 1..10 MW: deficiency 120 $/MW-day -> a / b = 5/7 = 0.714 -> C* = 8 MW (see above);
    # deficiency 200 -> b = 73,000 + 7,300 = 80,300, a / b = 36,500 / 80,300 = 0.4545:
    # P(D < 5) = 0.4 <= 0.4545 <= P(D <= 5) = 0.5 -> C* = 5 MW.
    close(recommend_offer(ONE_TO_TEN_MW, round_terms(120.0)).offer_mw, 8.0, TOL_OFFER_MW)
    close(recommend_offer(ONE_TO_TEN_MW, round_terms(200.0)).offer_mw, 5.0, TOL_OFFER_MW)
    # and over a continuous D: each rise in the deficiency share lowers the offer
    d = midpoint_normal_mw(10.0, 1.0, 10_000)
    offers = [
        recommend_offer(
            d, CommitmentTerms.from_clearing_price(365, 329.17, share, 25.0, 360, source="test")
        ).offer_mw
        for share in (0.1, 0.2, 0.5, 1.0, 3.0)
    ]
    assert all(np.diff(offers) < -0.01), offers


def test_certain_deliverable_ucap_is_offered_in_full() -> None:
    # D = 5 MW every time: any C <= 5 costs nothing and earns a x C, so C* = 5 MW exactly
    # (the best offer is a sample: a resource of exactly 0.1 MW is not sized to 0.0999999)
    terms = placeholder_terms_2026_27()
    got = recommend_offer([5.0] * 7, terms)
    assert got.offer_mw == 5.0
    assert got.expected.penalty_usd == 0.0
    close(got.expected.profit_usd, 120_147.05 * 5, 1e-6)  # 600,735.25 $
    assert recommend_offer([0.1], terms).offer_mw == 0.1
    # nothing deliverable: offer nothing
    nothing = recommend_offer([0.0, 0.0], terms)
    assert nothing.offer_mw == 0.0
    assert nothing.expected.profit_usd == 0.0


def test_a_penalty_below_the_price_offers_the_most_deliverable() -> None:
    # deficiency 50 $/MW-day, no PAIs: a / b = 100 / 50 = 2: every MW is worth its risk, so
    # C* = max D = 10 MW, the 1-quantile. E[max(10 - D, 0)] = 10 - 5.5 = 4.5 MW:
    # profit = 36,500 x 10 - 18,250 x 4.5 = 365,000 - 82,125 = 282,875 $
    got = recommend_offer(ONE_TO_TEN_MW, CommitmentTerms(365, 100.0, 50.0, 0.0, 0, "test"))
    close(got.offer_mw, 10.0, TOL_OFFER_MW)
    assert got.quantile == 1.0
    # slope below 10 MW: 36,500 - 18,250 x 0.9 = 20,075 $/MW
    close(got.expected.profit_usd, 282_875.0, 20_075 * TOL_OFFER_MW)


# --- composing deliverable UCAP ---------------------------------------------------------------
def test_deliverable_ucap_hand_worked() -> None:
    # cohorts of 4 and 6 MW; sample 0: all of the first, half of the second, availability 1
    #   -> (4 x 1 + 6 x 0.5) x 1 = 7 MW; sample 1: half of the first, none of the second,
    #   availability 0.8 -> (4 x 0.5 + 6 x 0) x 0.8 = 1.6 MW
    d = deliverable_ucap_mw([4.0, 6.0], [[1.0, 0.5], [0.5, 0.0]], [1.0, 0.8])
    close(d, [7.0, 1.6], TOL_MW)
    # one availability for every sample; no cohort at all delivers nothing
    close(deliverable_ucap_mw([4.0, 6.0], [[1.0, 0.5], [0.5, 0.0]], 0.5), [3.5, 1.0], TOL_MW)
    close(deliverable_ucap_mw(np.zeros(0), np.zeros((0, 3)), 1.0), [0.0, 0.0, 0.0], TOL_MW)


@pytest.mark.parametrize(
    ("ucap", "share", "availability", "message"),
    [
        ([4.0], [[1.0], [1.0]], 1.0, "per cohort"),
        ([-1.0], [[1.0]], 1.0, "finite and >= 0"),
        ([1.0], [[1.5]], 1.0, "enrolled share"),
        ([1.0], [[1.0]], 1.2, "availability"),
    ],
)
def test_bad_composition_raises(ucap: list, share: list, availability: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        deliverable_ucap_mw(ucap, share, availability)


def test_stay_probability_has_the_closed_form_mean_of_its_gamma_hazard() -> None:
    # 10 departures over 3,650 asset-days, 100 days ahead: h ~ Gamma(11, rate 3,650), so
    # E[exp(-h x 100)] = (3650 / (3650 + 100))^11 = 0.742810 and its sd is
    # sqrt((3650 / 3850)^11 - 0.742810^2) = 0.065837: over 100,000 samples the mean is within
    # 0.0002 (one standard error); 0.001 is 5 of them.
    rng = np.random.default_rng(7)
    p = stay_probability_samples(10, 3650.0, 100.0, 100_000, rng)
    close(p.mean(), 0.742810, 1e-3)
    close(p.std(), 0.065837, 1e-3)
    assert np.all((p > 0) & (p <= 1))
    # no time to leave: everyone stays
    close(stay_probability_samples(10, 3650.0, 0.0, 5, rng), np.ones(5), 0.0)


@pytest.mark.parametrize(
    ("events", "exposure", "horizon"), [(-1, 10.0, 1.0), (1, 0.0, 1.0), (1, 10.0, -1.0)]
)
def test_bad_churn_history_raises(events: int, exposure: float, horizon: float) -> None:
    with pytest.raises(ValueError):
        stay_probability_samples(events, exposure, horizon, 3, np.random.default_rng(0))


def test_enrolled_share_is_binomial() -> None:
    rng = np.random.default_rng(3)
    # certain stay or departure, and a cohort of no assets
    close(enrolled_share_samples(50, [1.0, 0.0], rng), [1.0, 0.0], 0.0)
    close(enrolled_share_samples(0, [0.3, 0.9], rng), [0.0, 0.0], 0.0)
    # 200 assets staying with p = 0.9: K / 200 has mean 0.9 and sd sqrt(0.9 x 0.1 / 200) =
    # 0.021213; the mean of 100,000 samples has a standard error of 0.000067: 5e-4 is 7 of them
    share = enrolled_share_samples(200, np.full(100_000, 0.9), rng)
    close(share.mean(), 0.9, 5e-4)
    close(share.std(), 0.021213, 5e-4)
    assert set(np.unique(share * 200)) <= set(range(201))
    with pytest.raises(ValueError):
        enrolled_share_samples(10, [1.2], rng)
