"""Churn survival against hand-worked numbers (to 1e-9 unless said), and synthetic histories
whose true churn is known, drawn with fixed seeds.

A month is 365.25 / 12 = 30.4375 days; monthly churn is 1 - exp(-hazard x 30.4375 days)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from nexwatt_capacity_model.churn import (
    MONTH_DAYS,
    Estimate,
    ExponentialFit,
    durations_days,
    expected_enrolled,
    fit_exponential,
    fit_weibull,
    forecast,
    forecast_by_cohort,
    kaplan_meier,
)

TOL = 1e-9
CHI2_95 = 3.841458820694124  # chi-square quantile, 1 degree of freedom, 95 %
Z_95 = 1.959963984540054  # normal quantile at 97.5 %; Z_95^2 = CHI2_95


def close(actual: object, expected: object, tol: float = TOL) -> None:
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol)


# --- durations from dates ---------------------------------------------------------------------
def test_durations_count_days_enrolled_before_as_of() -> None:
    # as_of 2024-06-01 (2024 is a leap year):
    #   a 2024-01-01 -> 2024-03-01 left:           31 (Jan) + 29 (Feb) = 60 days, observed
    #   b 2024-01-01 -> still enrolled:            60 + 31 + 30 + 31 = 152 days, censored
    #   c 2024-05-01 -> 2024-07-01 (after as_of):  31 days to as_of, censored (not known yet)
    #   d 2024-06-01 -> still enrolled:            enrolled on as_of: 0 days, censored
    #   e 2024-05-31 -> 2024-06-01 (on as_of):     1 day, observed (not enrolled on as_of)
    got = durations_days(
        ["2024-01-01", date(2024, 1, 1), "2024-05-01", "2024-06-01", "2024-05-31"],
        ["2024-03-01", None, "2024-07-01", None, date(2024, 6, 1)],
        date(2024, 6, 1),
    )
    close(got.days, [60, 152, 31, 0, 1])
    assert got.observed.tolist() == [True, False, False, False, True]


@pytest.mark.parametrize(
    ("enrolled", "unenrolled", "message"),
    [
        (["2024-03-01"], ["2024-03-01"], "on or before the enrolment day"),
        (["2024-03-01"], ["2024-02-01"], "on or before the enrolment day"),
        (["2024-07-01"], [None], "enrolled after as_of"),
        ([None], [None], "enrolment date"),
        (["2024-03-01", "2024-04-01"], [None], "2 enrolment dates but 1"),
    ],
)
def test_durations_refuse_impossible_records(enrolled, unenrolled, message) -> None:
    with pytest.raises(ValueError, match=message):
        durations_days(enrolled, unenrolled, date(2024, 6, 1))


# --- Kaplan-Meier -----------------------------------------------------------------------------
def test_kaplan_meier_product_limit_with_ties() -> None:
    # Durations (days), x = left, c = censored, given out of order:
    #   2x 3x 3x 3c 5x 6c 8x 8c
    # t=2: 8 at risk, 1 leaves  -> S = 7/8               = 0.875
    # t=3: 7 at risk (the one censored at 3 still counts), 2 leave -> 0.875 * 5/7 = 0.625
    #      (removing it first would give 0.875 * 4/6 = 0.583333)
    # t=5: 4 at risk (5, 6, 8, 8), 1 leaves -> 0.625 * 3/4 = 0.46875
    # t=6: censored only, no step
    # t=8: 2 at risk, 1 leaves  -> 0.46875 * 1/2 = 0.234375
    km = kaplan_meier([8, 3, 5, 2, 3, 8, 6, 3], [0, 1, 1, 1, 0, 1, 0, 1])
    close(km.times_days, [2, 3, 5, 8])
    close(km.survival, [0.875, 0.625, 0.46875, 0.234375])
    # A step function, right-continuous: S(2) already counts the departure at 2.
    close(
        km.at([0, 1.9, 2, 2.5, 3, 4, 8, 100]), [1, 1, 0.875, 0.875, 0.625, 0.625] + [0.234375] * 2
    )


def test_kaplan_meier_without_departure_stays_at_one() -> None:
    km = kaplan_meier([10, 20], [False, False])
    assert km.times_days.size == 0
    close(km.at([0, 15, 30]), [1, 1, 1])


@pytest.mark.parametrize(
    ("durations", "observed"), [([], []), ([1, 2], [True]), ([-1], [True]), ([np.nan], [True])]
)
def test_kaplan_meier_refuses_bad_durations(durations, observed) -> None:
    with pytest.raises(ValueError, match="durations"):
        kaplan_meier(durations, observed)


# --- exponential fit --------------------------------------------------------------------------
def test_exponential_hazard_is_departures_over_exposure_with_lr_interval() -> None:
    # 30x 60c 90x 120c: D = 2 departures over T = 300 asset-days -> hazard 2/300 = 1/150 /day.
    # Monthly churn 1 - exp(-30.4375/150) = 1 - exp(-0.2029167) = 0.1836537.
    # LR interval: with x = h / (1/150), the log-likelihood 2 ln h - 300 h falls by
    # 2 (x - 1 - ln x) = CHI2_95 / 2, i.e. x - 1 - ln x = 0.9603647; its two roots (Newton):
    #   x = 0.1662795 (0.1662795 - 1 + 1.7940502 = 0.9603647) -> h = 0.0011085300
    #   x = 3.0878349 (3.0878349 - 1 - 1.1274702 = 0.9603647) -> h = 0.0205855657
    fit = fit_exponential([30, 60, 90, 120], [1, 0, 1, 0])
    assert (fit.events, fit.exposure_days, fit.confidence) == (2, 300.0, 0.95)
    close(fit.hazard_per_day, [1 / 150, 0.0011085300, 0.0205855657], tol=1e-10)
    # monthly churn of each: 1 - exp(-h x 30.4375)
    close(fit.monthly_churn, [0.1836537, 0.0331780, 0.4655800], tol=1e-7)


def test_exponential_without_departure_still_bounds_the_hazard() -> None:
    # D = 0 over T = 300: the log-likelihood -300 h is best at h = 0 and has fallen by
    # CHI2_95 / 2 at h = 3.841459 / 600 = 0.006402431 /day (monthly 1 - exp(-0.1948740) = 0.177062).
    fit = fit_exponential([30, 60, 90, 120], [0, 0, 0, 0])
    close(fit.hazard_per_day, [0, 0, 0.006402431], tol=1e-9)
    close(fit.monthly_churn, [0, 0, 0.177062], tol=1e-6)


def test_exponential_refuses_no_exposure_and_a_bad_confidence() -> None:
    with pytest.raises(ValueError, match="no exposure"):
        fit_exponential([0, 0], [False, False])
    with pytest.raises(ValueError, match="confidence"):
        fit_exponential([30], [True], confidence=1.0)


# --- Weibull fit ------------------------------------------------------------------------------
# Ten assets followed 1 or 2 days: 2 leave in day 1, 4 are still enrolled after 1 day; of the 4
# followed 2 days, 1 leaves in day 2 and 3 are still enrolled. The likelihood depends only on
# S(1), S(2): 2 ln(1 - S1) + 4 ln S1 + ln(S1 - S2) + 3 ln S2, best at S1 = 8/10 = 0.8 and
# S2/S1 = 3/4, S2 = 0.6. Any 1 > S1 > S2 > 0 is a Weibull, so the Weibull fit is exact:
#   H(1) = -ln 0.8 = 0.2231436, H(2) = -ln 0.6 = 0.5108256 (H = -ln S = (t / scale)^k)
#   k = log2(H(2) / H(1)) = log2(2.2892242) = 1.1948588
#   scale = H(1)^(-1/k) = 3.5089900 days
# Shape 1 (S2 = S1^2): 3 ln(1 - s) + 11 ln s, best at s = 11/14, log-likelihood -7.2741177
# against the Weibull's 2 ln 0.2 + 8 ln 0.8 + ln 0.25 + 3 ln 0.75 = -7.2533648:
# 2 x 0.0207529 = 0.0415059 -> p = 0.838565.
GROUPED_DAYS = [1, 1, 1, 1, 1, 1, 2, 2, 2, 2]
GROUPED_LEFT = [1, 1, 0, 0, 0, 0, 1, 0, 0, 0]


def test_weibull_counts_each_departure_as_the_day_it_fell_in() -> None:
    fit = fit_weibull(GROUPED_DAYS, GROUPED_LEFT)
    # 1e-6: the numerical maximum is flat to the inner scale search's tolerance.
    close(fit.shape.value, 1.1948588, tol=1e-6)
    close(fit.scale_days, 3.5089900, tol=1e-6)
    close(fit.p_constant_hazard, 0.838565, tol=1e-6)
    assert fit.events == 3
    # Three departures bound the shape only loosely, around the fit.
    assert 0.01 < fit.shape.low < 0.5 and 2.0 < fit.shape.high < 100


@pytest.mark.parametrize(
    ("days", "left", "message"),
    [([5, 10], [0, 0], "no departure"), ([0, 10], [1, 0], "d >= 1"), ([0.5, 10], [1, 0], "d >= 1")],
)
def test_weibull_refuses_what_it_cannot_fit(days, left, message) -> None:
    with pytest.raises(ValueError, match=message):
        fit_weibull(days, left)


# --- expected MW ------------------------------------------------------------------------------
def test_expected_enrolled_carries_the_hazard_interval_and_the_chance_of_departures() -> None:
    # 200 assets of 0.5 MW and 200 of 1.5 MW: sum 400 MW, sum of squares 200 x 0.25 +
    # 200 x 2.25 = 500 MW^2 (spread sqrt(500) = 22.36068 MW). Hazard 0.001 [0.0008, 0.0012]
    # per day over 100 days:
    #   p = exp(-0.1) = 0.9048374 -> 361.93497 MW expected
    #   low:  p = exp(-0.12) = 0.8869204 -> 354.76817 - Z_95 x 22.36068 x sqrt(p (1-p))
    #         = 354.76817 - 13.87930 = 340.88888 MW
    #   high: p = exp(-0.08) = 0.9231163 -> 369.24654 + 11.67558 = 380.92211 MW
    fit = ExponentialFit(100, 1e5, 0.95, Estimate(0.001, 0.0008, 0.0012))
    mw = np.r_[np.full(200, 0.5), np.full(200, 1.5)]
    close(expected_enrolled(mw, 100, fit), [361.93497, 340.88888, 380.92211], tol=1e-5)
    # Now: nothing can have left yet.
    close(expected_enrolled(mw, 0, fit), [400, 400, 400])


def test_expected_enrolled_is_uncertain_even_without_a_departure_seen() -> None:
    # Hazard [0, 0.006402431] /day (above), 4 assets of 1 MW over 30 days:
    #   value 4 MW; low p = exp(-0.1920729) = 0.8252457 -> 3.3009829
    #   - Z_95 x 2 x sqrt(0.8252457 x 0.1747543) = 3.3009829 - 1.4886123 = 1.8123706 MW
    #   high: p = 1, clipped to the 4 MW enrolled
    fit = fit_exponential([30, 60, 90, 120], [0, 0, 0, 0])
    close(expected_enrolled([1.0] * 4, 30, fit), [4, 1.8123706, 4], tol=1e-6)


def test_expected_enrolled_refuses_a_negative_horizon_or_mw() -> None:
    fit = ExponentialFit(1, 100.0, 0.95, Estimate(0.01, 0.001, 0.05))
    with pytest.raises(ValueError, match="horizon"):
        expected_enrolled([1.0], -1, fit)
    with pytest.raises(ValueError, match="mw"):
        expected_enrolled([-1.0], 10, fit)


# --- forecasts from dates ---------------------------------------------------------------------
AS_OF = date(2026, 12, 1)
TARGET = date(2027, 6, 1)  # the first day of delivery year 2027/28: 31+31+28+31+30+31 = 182 days
# cohort       enrolled     unenrolled   MW    days before AS_OF
# residential  2026-11-01   2026-11-21   0.01  20 left
# residential  2026-11-01   -            0.01  30 enrolled
# residential  2026-10-02   2027-01-01   0.02  60 enrolled on AS_OF (leaves later)
# commercial   2026-06-01   -            2.0   183 enrolled
# commercial   2026-09-01   2026-10-01   3.0   30 left
COHORT = ["residential"] * 3 + ["commercial"] * 2
ENROLLED = ["2026-11-01", "2026-11-01", "2026-10-02", "2026-06-01", "2026-09-01"]
UNENROLLED = ["2026-11-21", None, "2027-01-01", None, "2026-10-01"]
MW = [0.01, 0.01, 0.02, 2.0, 3.0]


def test_forecast_by_cohort_fits_each_cohort_on_its_own_history() -> None:
    # residential: D = 1, T = 20 + 30 + 60 = 110 -> hazard 1/110; enrolled 0.01 + 0.02 = 0.03 MW;
    #   expected 0.03 x exp(-182/110) = 0.03 x 0.1911789 = 0.005735368 MW
    # commercial: D = 1, T = 183 + 30 = 213 -> hazard 1/213; enrolled 2.0 MW;
    #   expected 2.0 x exp(-182/213) = 2.0 x 0.4255129 = 0.8510257 MW
    got = forecast_by_cohort(COHORT, ENROLLED, UNENROLLED, MW, AS_OF, TARGET)
    assert sorted(got) == ["commercial", "residential"]
    res, com = got["residential"], got["commercial"]
    assert (res.fit.events, res.fit.exposure_days, res.horizon_days) == (1, 110.0, 182)
    assert (com.fit.events, com.fit.exposure_days, com.horizon_days) == (1, 213.0, 182)
    close([res.enrolled_mw, res.expected_mw.value], [0.03, 0.005735368], tol=1e-9)
    close([com.enrolled_mw, com.expected_mw.value], [2.0, 0.8510257], tol=1e-7)


def test_forecast_of_the_fleet_pools_the_cohorts() -> None:
    # D = 2, T = 323 -> hazard 2/323; enrolled 2.03 MW; expected 2.03 x exp(-364/323)
    # = 2.03 x 0.3240249 = 0.6577705 MW
    got = forecast(ENROLLED, UNENROLLED, MW, AS_OF, TARGET)
    assert (got.fit.events, got.fit.exposure_days) == (2, 323.0)
    close([got.enrolled_mw, got.expected_mw.value], [2.03, 0.6577705], tol=1e-7)


def test_forecast_refuses_a_past_target_and_names_a_cohort_it_cannot_fit() -> None:
    with pytest.raises(ValueError, match="before as_of"):
        forecast(ENROLLED, UNENROLLED, MW, AS_OF, date(2026, 11, 30))
    # A cohort enrolled on AS_OF has no exposure yet.
    with pytest.raises(ValueError, match=r"cohort 'new'.*no exposure"):
        forecast_by_cohort(
            [*COHORT, "new"], [*ENROLLED, AS_OF], [*UNENROLLED, None], [*MW, 1.0], AS_OF, TARGET
        )


# --- synthetic histories ----------------------------------------------------------------------
# Assets enrolled on uniform days over the 3 years (1096 days) before AS_OF, each staying a
# random time drawn from the true law; its departure is the day that time ends in. Departures
# after AS_OF are passed too: durations_days must censor them (not yet known).
def synthetic_fleet(
    seed: int, n: int, monthly_churn: float = 0.0, weibull_shape: float = 1.0, scale_days=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(enrolled, departure, mw) with true exponential churn, or Weibull when scale_days."""
    rng = np.random.default_rng(seed)
    enrolled = np.datetime64(AS_OF, "D") - rng.integers(0, 1096, n)
    if scale_days is None:
        stay_days = rng.exponential(MONTH_DAYS / -np.log1p(-monthly_churn), n)
    else:
        stay_days = scale_days * rng.weibull(weibull_shape, n)
    # Ceil: a departure in the d-th day is dated d days after enrolment (>= 1).
    departure = enrolled + np.maximum(np.ceil(stay_days), 1).astype(int)
    mw = rng.uniform(0.005, 0.015, n)  # 5 to 15 kW homes
    return enrolled, departure, mw


def test_a_1_5_percent_history_is_recovered_and_a_2_percent_one_is_not() -> None:
    # True hazard -ln(0.985) / 30.4375 = 0.00049655 /day; followed U(0, 1095) days, an asset's
    # departure is seen with probability 1 - (1 - exp(-0.54422)) / 0.54422 = 0.2288: about
    # 4,576 of 20,000. The hazard's relative standard error is 1 / sqrt(4,576) = 1.5 %, so the
    # monthly churn's is 0.015 x 0.015 = 0.022 percentage points: +-0.1 pp is 4.5 of them.
    for churn, seed in [(0.015, 1), (0.020, 2)]:
        enrolled, departure, _ = synthetic_fleet(seed, 20_000, monthly_churn=churn)
        history = durations_days(enrolled, departure, AS_OF)
        fit = fit_exponential(history.days, history.observed)
        # Recovers its own rate, and its 95 % interval (about +-0.044 pp) holds it.
        assert abs(fit.monthly_churn.value - churn) < 0.001
        assert fit.monthly_churn.low < churn < fit.monthly_churn.high
        assert 0.0006 < fit.monthly_churn.high - fit.monthly_churn.low < 0.0012
        # The 2 % history is 0.5 pp from 1.5 %: the test sees the difference.
        assert (abs(fit.monthly_churn.value - 0.015) < 0.001) == (churn == 0.015)
        # Kaplan-Meier at 12 months against (1 - churn)^12: 0.985^12 = 0.834132 and
        # 0.98^12 = 0.784717. About 13,300 assets are followed a year, ~11,100 still enrolled:
        # standard error ~sqrt(0.834 x 0.166 / 13,300) = 0.0032; tolerance 0.01 (3 of them),
        # while the two curves are 0.049 apart.
        km = kaplan_meier(history.days, history.observed).at(12 * MONTH_DAYS)
        assert abs(km - (1 - churn) ** 12) < 0.01
        assert (abs(km - 0.985**12) < 0.01) == (churn == 0.015)


def test_the_fleet_left_at_the_delivery_year_falls_in_the_forecast_interval() -> None:
    # Over 182 days at 1.5 %/month, 0.985^(182 / 30.4375) = 0.913592 of the MW enrolled on
    # AS_OF (~15,400 homes, ~154 MW) should stay: ~140.7 MW. Chance of departures:
    # sqrt(0.0864 x 15,400 x 1.08e-4 MW^2) = 0.38 MW; the hazard's 1.5 % error moves the share
    # by 0.9136 x 0.0904 x 0.015 = 0.0012 (0.19 MW), so the share is checked to 0.005 (4 of
    # them); the interval is about +-(0.75 + 0.37) MW.
    enrolled, departure, mw = synthetic_fleet(3, 20_000, monthly_churn=0.015)
    got = forecast(enrolled, departure, mw, AS_OF, TARGET)
    expected = got.expected_mw
    close(expected.value / got.enrolled_mw, 0.913592, tol=0.005)
    assert 1.5 < expected.high - expected.low < 3.5
    # What happened: the assets enrolled on AS_OF whose departure is after TARGET.
    day, target = np.datetime64(AS_OF, "D"), np.datetime64(TARGET, "D")
    close(got.enrolled_mw, mw[departure > day].sum())
    assert expected.low < mw[departure > target].sum() < expected.high


def test_each_cohort_recovers_its_own_churn() -> None:
    # 1.0 % and 2.0 % per month, 10,000 assets each. At 1 %: ~1,600 departures, standard error
    # 0.01 / sqrt(1,600) = 0.025 pp; at 2 %: ~2,950, 0.037 pp. +-0.1 pp is 2.7+ of them.
    rates = {"early": 0.010, "late": 0.020}
    fleets = [synthetic_fleet(seed, 10_000, rate) for seed, rate in enumerate(rates.values())]
    cohort = np.repeat(list(rates), 10_000)
    enrolled, departure, mw = (np.concatenate(column) for column in zip(*fleets, strict=True))
    got = forecast_by_cohort(cohort, enrolled, departure, mw, AS_OF, TARGET)
    for key, rate in rates.items():
        assert abs(got[key].fit.monthly_churn.value - rate) < 0.001, key


def test_weibull_finds_a_constant_hazard_constant_and_a_falling_one_falling() -> None:
    # Exponential 1.5 %/month history as above (~4,576 departures): shape 1, standard error
    # ~0.013 here, so within +-0.05; no evidence against a constant hazard.
    enrolled, departure, _ = synthetic_fleet(1, 20_000, monthly_churn=0.015)
    flat = fit_weibull(*durations_days(enrolled, departure, AS_OF))
    assert abs(flat.shape.value - 1.0) < 0.05 and flat.shape.low < 1.0 < flat.shape.high
    assert flat.p_constant_hazard > 0.01
    # Shape 0.6, scale 2000 days (churn falling with tenure): ~6,900 departures, standard error
    # ~0.0066; the day-resolution likelihood keeps it unbiased (taking departures as exact days
    # gave 0.62). A constant hazard is rejected.
    enrolled, departure, _ = synthetic_fleet(4, 20_000, weibull_shape=0.6, scale_days=2000.0)
    falling = fit_weibull(*durations_days(enrolled, departure, AS_OF))
    assert abs(falling.shape.value - 0.6) < 0.02 and falling.shape.low < 0.6 < falling.shape.high
    assert abs(falling.scale_days - 2000.0) < 150  # scale's standard error ~45 days
    assert falling.p_constant_hazard < 1e-6
