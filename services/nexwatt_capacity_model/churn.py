"""Subscriber churn: how long assets stay enrolled, and how much of today's fleet is still
enrolled at a later date (e.g. the first day of a delivery year).

A pure library; offer sizing fits each cohort's departures with it (`offers.py`).

Conventions:

- An asset is enrolled over the half-open day range [enrolled, unenrolled): `unenrolled` is the
  first day it is no longer enrolled, so it comes after `enrolled` (a record unenrolled on its
  enrolment day never held capacity: drop it first). None (NaT) is still enrolled.
- `as_of` is the day the history is read; an asset is enrolled on it when
  enrolled <= as_of < unenrolled. Its duration is the days it was enrolled before `as_of`,
  min(unenrolled, as_of) - enrolled [days]. The departure is observed when unenrolled <= as_of;
  otherwise the duration is right-censored at `as_of` (a departure dated later is not known
  yet). An asset enrolled after `as_of` has no place in the history and is refused.
- Durations are in days; from dates they are whole days, which kaplan_meier and
  fit_exponential take as exact (counting each departure up to a day long shifts a monthly
  hazard by a few parts in 10,000) and fit_weibull as the day a departure fell in. A month is
  365.25 / 12 = 30.4375 days (a mean Julian month): twelve months are a year of 365.25 days.
- Monthly churn is the probability that an asset enrolled at the start of a month has left by
  its end: 1 - exp(-hazard [1/day] x 30.4375 days). It is not the hazard per month: at 1.5 %
  monthly churn the hazard is -ln(0.985) = 0.015114 per month, 0.011 percentage points more.
- The forecast assumes a constant hazard (exponential survival): an asset enrolled today stays
  the next h days with probability exp(-hazard x h) whatever its age, so "conditional on having
  stayed so far" needs no age. `fit_weibull` tests that assumption: a Weibull shape below 1 is
  a hazard falling with tenure (early churn), above 1 one rising with it.
- Intervals are likelihood-ratio (profile likelihood) intervals: the parameter values whose
  log-likelihood is within chi2_1(confidence) / 2 of its maximum (the other parameter, if any,
  at its best value for each). Unlike a Wald interval from the Fisher information, they stay
  within the parameter's range and exist with no departure at all: the hazard is then in
  [0, chi2_1(confidence) / (2 x exposure)].
- The MW still enrolled at a later day is an interval too, wider than the hazard's: it adds
  the chance in which of the assets leave (see expected_enrolled). Per cohort, each cohort's
  hazard is fitted on its own history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special, stats

MONTH_DAYS = 365.25 / 12  # [days]
# Where fit_weibull looks for the shape [-]: wide for churn, whose shapes are near 1.
WEIBULL_SHAPE_RANGE = (0.01, 100.0)


class Estimate(NamedTuple):
    """A value with its interval, in the unit the field names."""

    value: float
    low: float
    high: float


class Durations(NamedTuple):
    """Each asset's days enrolled before `as_of`, and whether its departure was observed."""

    days: np.ndarray  # float [days]
    observed: np.ndarray  # bool: True = left, False = still enrolled (censored at as_of)


class KaplanMeier(NamedTuple):
    """The product-limit survival curve: `survival[i]` is the share of assets still enrolled
    just after `times_days[i]`, the distinct durations at which some asset left."""

    times_days: np.ndarray  # [days], increasing
    survival: np.ndarray  # [-], non-increasing

    def at(self, t_days: ArrayLike) -> np.ndarray:
        """S(t) at `t_days` [days]: 1 before the first departure; after the last one, its
        value (the curve says nothing beyond the longest duration)."""
        i = np.searchsorted(self.times_days, np.asarray(t_days, dtype=float), side="right")
        return np.concatenate([[1.0], self.survival])[i]


@dataclass(frozen=True)
class ExponentialFit:
    """A constant hazard fitted by maximum likelihood: departures / exposure."""

    events: int  # departures observed
    exposure_days: float  # days enrolled, summed over assets [asset-days]
    confidence: float  # of the intervals [-]
    hazard_per_day: Estimate  # [1/day]

    @property
    def monthly_churn(self) -> Estimate:
        """The probability of leaving within a month, 1 - exp(-hazard x MONTH_DAYS) [-]."""
        return Estimate(*(float(-np.expm1(-h * MONTH_DAYS)) for h in self.hazard_per_day))


@dataclass(frozen=True)
class WeibullFit:
    """S(t) = exp(-(t / scale)^shape), fitted by maximum likelihood."""

    events: int  # departures observed
    confidence: float  # of the shape's interval [-]
    shape: Estimate  # [-]; 1 is a constant hazard
    scale_days: float  # [days]
    p_constant_hazard: float  # likelihood-ratio test of shape == 1 against the fit [-]


class ChurnForecast(NamedTuple):
    """A fleet's churn fitted as of a day, and what of it is still enrolled at a target day."""

    fit: ExponentialFit
    enrolled_mw: float  # enrolled on as_of [MW]
    horizon_days: int  # target - as_of [days]
    expected_mw: Estimate  # of enrolled_mw, still enrolled on the target day [MW]


def _days(values: ArrayLike, name: str) -> np.ndarray:
    days = np.asarray(values, dtype="datetime64[D]")
    if days.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of dates, got shape {days.shape}")
    return days


def durations_days(enrolled: ArrayLike, unenrolled: ArrayLike, as_of: date) -> Durations:
    """Days enrolled before `as_of`, and whether the departure was observed, per asset (see the
    module's conventions). `enrolled` and `unenrolled` are dates (date, numpy datetime64 or ISO
    strings); None in `unenrolled` is still enrolled."""
    start = _days(enrolled, "enrolled")
    end = _days(unenrolled, "unenrolled")
    if start.shape != end.shape:
        raise ValueError(f"{start.size} enrolment dates but {end.size} unenrolment dates")
    day = np.datetime64(as_of, "D")
    if np.any(np.isnat(start)):
        raise ValueError("every asset needs an enrolment date")
    if np.any(start > day):
        raise ValueError(f"assets enrolled after as_of {as_of}: {start[start > day]}")
    left = ~np.isnat(end)
    if np.any(left & (end <= start)):
        raise ValueError(f"unenrolled on or before the enrolment day: {end[left & (end <= start)]}")
    observed = left & (end <= day)
    stop = np.where(observed, end, day)
    return Durations((stop - start).astype(float), observed)


def _survival_data(durations_days: ArrayLike, observed: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(durations_days, dtype=float)
    e = np.asarray(observed, dtype=bool)
    if t.ndim != 1 or t.size == 0 or t.shape != e.shape:
        raise ValueError(
            f"durations and observed must be non-empty 1-D of one length, got {t.shape}, {e.shape}"
        )
    if not np.all(np.isfinite(t) & (t >= 0)):
        raise ValueError("durations must be finite and >= 0 [days]")
    return t, e


def kaplan_meier(durations_days: ArrayLike, observed: ArrayLike) -> KaplanMeier:
    """The product-limit estimator: at each distinct duration t_i with d_i departures among the
    n_i assets whose duration is >= t_i, S drops by the factor (1 - d_i / n_i). Ties: an asset
    censored at t_i is still at risk at t_i (it left the study after the departures)."""
    t, e = _survival_data(durations_days, observed)
    times, index = np.unique(t, return_inverse=True)
    departures = np.bincount(index, weights=e, minlength=times.size)
    at_risk = t.size - np.concatenate([[0], np.cumsum(np.bincount(index))[:-1]])
    drop = departures > 0
    return KaplanMeier(times[drop], np.cumprod(1.0 - departures[drop] / at_risk[drop]))


def _lr_threshold(confidence: float) -> float:
    """Half the chi-square (1 degree of freedom) quantile: how far the log-likelihood may fall
    from its maximum inside the interval."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(stats.chi2.ppf(confidence, 1)) / 2.0


def _lr_bound(loglik: Callable[[float], float], best: float, limit: float, drop: float) -> float:
    """The parameter between `best` (the maximum) and `limit` where the log-likelihood has
    fallen by `drop`; ValueError when it has not fallen that far by `limit`."""
    peak = loglik(best)

    def excess(x: float) -> float:
        return peak - loglik(x) - drop

    if excess(limit) < 0:
        raise ValueError(f"the data do not bound the interval within {limit:g}")
    bracket = min(best, limit), max(best, limit)
    return float(optimize.brentq(excess, *bracket, xtol=1e-12 * best))


def fit_exponential(
    durations_days: ArrayLike, observed: ArrayLike, confidence: float = 0.95
) -> ExponentialFit:
    """The constant hazard that fits the history best: departures D / exposure T [1/day], the
    maximum of the censored log-likelihood D ln(h) - h T, with its likelihood-ratio interval."""
    t, e = _survival_data(durations_days, observed)
    drop = _lr_threshold(confidence)
    events, exposure = int(e.sum()), float(t.sum())
    if exposure <= 0:
        raise ValueError("no exposure: every duration is 0 days, so no hazard can be fitted")
    if events == 0:
        # The log-likelihood -h T has its maximum at h = 0 and falls by `drop` at drop / T.
        return ExponentialFit(events, exposure, confidence, Estimate(0.0, 0.0, drop / exposure))
    best = events / exposure

    def loglik(h: float) -> float:
        return events * np.log(h) - h * exposure

    # In x = h / best the fall is D (x - 1 - ln x): it exceeds `drop` at x = exp(-drop/D - 1)
    # and, since ln x <= x / e < x / 2, at x = 2 (drop/D + 1).
    q = drop / events + 1.0
    low = _lr_bound(loglik, best, best * np.exp(-q), drop)
    high = _lr_bound(loglik, best, best * 2.0 * q, drop)
    return ExponentialFit(events, exposure, confidence, Estimate(best, low, high))


def fit_weibull(
    durations_days: ArrayLike, observed: ArrayLike, confidence: float = 0.95
) -> WeibullFit:
    """The Weibull survival that fits the history best, with the shape's profile-likelihood
    interval and the p-value of a constant hazard (shape 1) against it.

    Durations are whole days, as durations_days counts them: a departure after d days
    happened during the d-th day, between d - 1 and d days (d >= 1), and counts as that
    interval, with likelihood S(d - 1) - S(d) (interval censoring). Taking it as exactly d
    days would bias the shape up, the earliest departures weighing most on it (+0.02 at a
    true 0.6 over three years of daily dates). An asset still enrolled counts S(d). The best
    scale for each shape is found numerically, then the best shape. ValueError when there is
    no departure, or when the shape lies outside WEIBULL_SHAPE_RANGE.
    """
    t, e = _survival_data(durations_days, observed)
    drop = _lr_threshold(confidence)
    events = int(e.sum())
    if events == 0:
        raise ValueError("no departure: the Weibull shape cannot be fitted")
    if np.any(t[e] < 1):
        raise ValueError("a departure happens during its d-th day, d >= 1: durations must be >= 1")
    with np.errstate(divide="ignore"):  # ln 0 = -inf: a cumulative hazard of 0
        log_start, log_end, log_censored = np.log(t[e] - 1.0), np.log(t[e]), np.log(t[~e])
    log_positive = np.log(t[t > 0])

    def loglik(k: float, log_scale: float) -> float:
        # H(x) = (x / scale)^k in logs; ln(S(a) - S(b)) = -H(a) + ln(1 - exp(-(H(b) - H(a)))).
        with np.errstate(divide="ignore", over="ignore"):  # -inf, inf: far-off parameters
            h_start = np.exp(k * (log_start - log_scale))
            h_step = np.exp(k * (log_end - log_scale)) * -np.expm1(k * (log_start - log_end))
            per_departure = np.log(-np.expm1(-h_step)) - h_start
            return float(per_departure.sum() - np.exp(k * (log_censored - log_scale)).sum())

    def best_log_scale(k: float) -> float:
        # Start from the closed form that takes each duration as exact: scale^k = sum(t^k) / D.
        start = (special.logsumexp(k * log_positive) - np.log(events)) / k
        return optimize.minimize_scalar(
            lambda u: -loglik(k, u), bracket=(start - 0.1, start + 0.1)
        ).x

    def profile(k: float) -> float:
        return loglik(k, best_log_scale(k))

    lowest, highest = WEIBULL_SHAPE_RANGE
    best = optimize.minimize_scalar(
        lambda v: -profile(np.exp(v)),
        bounds=(np.log(lowest), np.log(highest)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    shape = float(np.exp(best.x))
    if not lowest * 1.001 < shape < highest / 1.001:
        raise ValueError(f"the Weibull shape is outside {WEIBULL_SHAPE_RANGE}: not identified")
    interval = Estimate(
        shape, _lr_bound(profile, shape, lowest, drop), _lr_bound(profile, shape, highest, drop)
    )
    p_constant = float(stats.chi2.sf(2.0 * (profile(shape) - profile(1.0)), 1))
    scale = float(np.exp(best_log_scale(shape)))
    return WeibullFit(events, confidence, interval, scale, p_constant)


def expected_enrolled(mw: ArrayLike, horizon_days: float, fit: ExponentialFit) -> Estimate:
    """Of assets enrolled now with `mw` each [MW] (nameplate, UCAP: any quantity that adds up
    over assets), the MW still enrolled after `horizon_days` [days], with an interval [MW].

    Each asset stays with probability p = exp(-hazard x horizon), independently: the expected
    MW is p x sum(mw). The interval covers both the hazard's uncertainty and chance: at each end
    of the hazard's interval (the high hazard for the low end), the expected MW -/+ z x
    sqrt(p (1 - p) sum(mw^2)), the spread of independent departures in the normal
    approximation, z the normal quantile at the fit's confidence; clipped to [0, sum(mw)].
    Stacking the two makes it wider than `confidence` asks for a large fleet; for a handful of
    assets the normal approximation is rough. Assets enrolled after now are not counted.
    """
    w = np.asarray(mw, dtype=float)
    if w.ndim != 1 or not np.all(np.isfinite(w) & (w >= 0)):
        raise ValueError("mw must be a 1-D sequence of finite values >= 0 [MW]")
    if not horizon_days >= 0:
        raise ValueError(f"horizon must be >= 0 days, got {horizon_days}")
    total, spread = float(w.sum()), float(np.sqrt(np.sum(w**2)))
    z = float(stats.norm.ppf((1.0 + fit.confidence) / 2.0))

    def stay(hazard: float) -> float:
        return float(np.exp(-hazard * horizon_days))

    def chance(p: float) -> float:
        return z * spread * float(np.sqrt(p * (1.0 - p)))

    hazard = fit.hazard_per_day
    p_low, p_high = stay(hazard.high), stay(hazard.low)
    return Estimate(
        stay(hazard.value) * total,
        max(p_low * total - chance(p_low), 0.0),
        min(p_high * total + chance(p_high), total),
    )


def forecast(
    enrolled: ArrayLike,
    unenrolled: ArrayLike,
    mw: ArrayLike,
    as_of: date,
    target: date,
    confidence: float = 0.95,
) -> ChurnForecast:
    """Fit a constant hazard to the whole history as of `as_of`, and expect what of the MW
    enrolled on `as_of` is still enrolled on `target` (e.g. a delivery year's June 1). One row
    per asset, `mw` [MW] each; see durations_days and expected_enrolled."""
    horizon = (target - as_of).days
    if horizon < 0:
        raise ValueError(f"target {target} is before as_of {as_of}")
    history = durations_days(enrolled, unenrolled, as_of)
    w = np.asarray(mw, dtype=float)
    if w.shape != history.days.shape:
        raise ValueError(f"{history.days.size} assets but {w.size} MW values")
    fit = fit_exponential(history.days, history.observed, confidence)
    enrolled_now = w[~history.observed]
    return ChurnForecast(
        fit,
        float(enrolled_now.sum()),
        horizon,
        expected_enrolled(enrolled_now, horizon, fit),
    )


def forecast_by_cohort(
    cohort: ArrayLike,
    enrolled: ArrayLike,
    unenrolled: ArrayLike,
    mw: ArrayLike,
    as_of: date,
    target: date,
    confidence: float = 0.95,
) -> dict[str, ChurnForecast]:
    """`forecast` for each cohort on its own history, keyed by cohort. The cohorts' intervals
    do not add up to the fleet's: fit the fleet with `forecast` for that."""
    keys = np.asarray(cohort, dtype=str)
    columns = [np.asarray(enrolled), np.asarray(unenrolled), np.asarray(mw)]
    if any(c.shape != keys.shape for c in columns):
        raise ValueError("cohort, enrolled, unenrolled and mw must have one row per asset")
    result = {}
    for key in np.unique(keys).tolist():
        rows = keys == key
        try:
            result[key] = forecast(*(c[rows] for c in columns), as_of, target, confidence)
        except ValueError as error:
            raise ValueError(f"cohort {key!r}: {error}") from error
    return result
