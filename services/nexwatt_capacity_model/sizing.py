"""Commitment sizing: the UCAP to offer for a delivery year, maximizing expected capacity
revenue minus expected deficiency and non-performance charges over the distribution of the
UCAP the fleet will be able to deliver.

A pure library; auction offers (`offers.py`) size themselves with it.

Conventions:

- Deliverable UCAP D [MW] is given as samples, equally likely: the caller draws them from
  churn x state of charge x accreditation (e.g. the MW still enrolled on the delivery year's
  first day x the share a typical event evening finds above the backup reserve x the class
  ratings). Each is finite and >= 0. `deliverable_ucap_mw` composes them per cohort (below).
- For an offer C [MW], over a delivery year of N days:
      revenue     = price [$/MW-day] x C x N
      deficiency  = max(C - D, 0) x deficiency rate [$/MW-day] x N
      non-perf.   = max(C - D, 0) x non-performance rate [$/MW per interval] x PAI intervals
  so with a = price x N [$/MW] and b = deficiency rate x N + non-performance rate x PAI
  intervals [$/MW], profit = a C - b max(C - D, 0), and its expectation over D is
  a C - b E[max(C - D, 0)].
- The newsvendor result: d/dC E[profit] = a - b P(D < C), falling in C, so the expectation is
  concave and its maximum is where P(D < C*) = a / b, the critical ratio: C* is the
  (a / b)-quantile of D. Over samples the condition is P(D < C*) <= a / b <= P(D <= C*). A
  ratio of 1 or more (a penalty no larger than the price) makes every MW worth offering:
  C* = max(D), the most the fleet could deliver. `recommend_offer` maximizes numerically with
  scipy; the tests check it against the quantile.
- The model is simpler than PJM's rules: a shortfall in a PAI is taken as C - D (balancing
  ratio 1), over-performance earns no bonus, and neither the non-performance stop-loss nor
  replacement capacity bought before the year is modelled. Prices and rates are the caller's
  (`CommitmentTerms`, with their `source`); this module sets no value for them.
- Composing D, sample by sample i, over cohorts c:
      D_i = a_i x sum_c UCAP_c x K_ci / n_c
  UCAP_c [MW] is the cohort's UCAP for the delivery year enrolled now, n_c its enrolled assets,
  K_ci ~ Binomial(n_c, p_ci) how many of them are still enrolled on the year's first day (each
  stays independently; its assets are taken as equal in UCAP), and a_i the state-of-charge
  availability factor [-]: the share of that UCAP an event finds charged above the reserve.
  The stay probability p_ci = exp(-h_ci x horizon) is drawn with the cohort's constant hazard
  h_ci [1/day] (`stay_probability_samples`): the hazard's uncertainty, then chance, are in D.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize

# The optimizer stops within about this much of the best offer [MW]: 1 W, far below any
# offer's precision.
XATOL_MW = 1e-6


@dataclass(frozen=True)
class CommitmentTerms:
    """What a delivery year pays for committed UCAP and charges for falling short of it."""

    days: int  # in the delivery year: 365, 366 when it holds a February 29 (2027/28)
    price_usd_per_mw_day: float  # capacity clearing price
    deficiency_usd_per_mw_day: float  # charged on committed UCAP above what is delivered
    non_performance_usd_per_mw_interval: float  # charged per MW short in each PAI
    pai_intervals_per_year: float  # expected 5-minute Performance Assessment Intervals
    source: str

    def __post_init__(self) -> None:
        if self.days <= 0:
            raise ValueError(f"a delivery year has days > 0, got {self.days}")
        rates = {
            "price [$/MW-day]": self.price_usd_per_mw_day,
            "deficiency rate [$/MW-day]": self.deficiency_usd_per_mw_day,
            "non-performance rate [$/MW per interval]": self.non_performance_usd_per_mw_interval,
            "PAI intervals per year": self.pai_intervals_per_year,
        }
        for name, value in rates.items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        if self.penalty_usd_per_mw <= 0:
            raise ValueError("a shortfall must cost something: deficiency and PAI charges are 0")

    @classmethod
    def from_clearing_price(
        cls,
        days: int,
        price_usd_per_mw_day: float,
        deficiency_share: float,
        non_performance_usd_per_mw_interval: float,
        pai_intervals_per_year: float,
        source: str,
    ) -> CommitmentTerms:
        """Terms whose deficiency rate is the clearing price plus a share of it:
        price x (1 + deficiency_share) [$/MW-day]."""
        return cls(
            days,
            price_usd_per_mw_day,
            price_usd_per_mw_day * (1.0 + deficiency_share),
            non_performance_usd_per_mw_interval,
            pai_intervals_per_year,
            source,
        )

    @property
    def revenue_usd_per_mw(self) -> float:
        """a: what a MW committed earns over the year, price x days [$/MW]."""
        return self.price_usd_per_mw_day * self.days

    @property
    def penalty_usd_per_mw(self) -> float:
        """b: what a MW committed but not delivered is charged over the year, deficiency rate
        x days + non-performance rate x PAI intervals [$/MW]."""
        return (
            self.deficiency_usd_per_mw_day * self.days
            + self.non_performance_usd_per_mw_interval * self.pai_intervals_per_year
        )

    @property
    def critical_ratio(self) -> float:
        """a / b [-]: the best offer is the quantile of deliverable UCAP at this level (at 1
        and above, its maximum)."""
        return self.revenue_usd_per_mw / self.penalty_usd_per_mw


class ExpectedOutcome(NamedTuple):
    """Expectations over deliverable UCAP for an offer (floats, or arrays shaped like the
    offers)."""

    shortfall_mw: np.ndarray  # E[max(C - D, 0)] [MW]
    revenue_usd: np.ndarray
    deficiency_usd: np.ndarray
    non_performance_usd: np.ndarray

    @property
    def penalty_usd(self) -> np.ndarray:
        """Deficiency + non-performance charges [$]."""
        return self.deficiency_usd + self.non_performance_usd

    @property
    def profit_usd(self) -> np.ndarray:
        """Revenue - penalty [$]."""
        return self.revenue_usd - self.penalty_usd


class Recommendation(NamedTuple):
    """The UCAP to offer, the quantile of deliverable UCAP it is, and what it is expected to
    earn and cost."""

    offer_mw: float  # C* [MW]
    quantile: float  # q: C* is the q-quantile of D; min(critical ratio, 1) [-]
    expected: ExpectedOutcome  # at C*, floats


def _samples(deliverable_mw: ArrayLike) -> np.ndarray:
    """The deliverable UCAP samples sorted, as a float array; ValueError unless 1-D, non-empty,
    each finite and >= 0."""
    d = np.asarray(deliverable_mw, dtype=float)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"deliverable UCAP must be a non-empty 1-D sample, got shape {d.shape}")
    bad = ~(np.isfinite(d) & (d >= 0))
    if np.any(bad):
        raise ValueError(f"deliverable UCAP [MW] must be finite and >= 0, got {d[bad][0]}")
    return np.sort(d)


def expected_shortfall_mw(offer_mw: ArrayLike, deliverable_mw: ArrayLike) -> np.ndarray:
    """E[max(C - D, 0)] over the samples of D [MW], for each offer C [MW] (any shape).

    Over the k samples below C it is (k x C - their sum) / n: one sort and a running sum, so
    many offers over many samples cost no n x m array."""
    d = _samples(deliverable_mw)
    offer = np.asarray(offer_mw, dtype=float)
    below = np.searchsorted(d, offer, side="left")
    sum_below = np.concatenate([[0.0], np.cumsum(d)])[below]
    return (below * offer - sum_below) / d.size


def expected_outcome(
    offer_mw: ArrayLike, deliverable_mw: ArrayLike, terms: CommitmentTerms
) -> ExpectedOutcome:
    """Expected revenue and charges [$] of offering `offer_mw` [MW] (any shape) over the
    samples of deliverable UCAP (see the module's conventions)."""
    offer = np.asarray(offer_mw, dtype=float)
    shortfall = expected_shortfall_mw(offer, deliverable_mw)
    return ExpectedOutcome(
        shortfall_mw=shortfall,
        revenue_usd=terms.revenue_usd_per_mw * offer,
        deficiency_usd=shortfall * terms.deficiency_usd_per_mw_day * terms.days,
        non_performance_usd=shortfall
        * terms.non_performance_usd_per_mw_interval
        * terms.pai_intervals_per_year,
    )


def recommend_offer(deliverable_mw: ArrayLike, terms: CommitmentTerms) -> Recommendation:
    """The offer C* in [0, max(D)] [MW] maximizing expected profit over the samples of
    deliverable UCAP D, by scipy's bounded scalar minimization (within about XATOL_MW).

    Expected profit is concave in C (see the module's conventions), so the bounded search
    finds its maximum; C* is then the min(critical ratio, 1)-quantile of D. All samples equal
    (D certain) give C* = D; all zero give 0.
    """
    d = _samples(deliverable_mw)
    result = optimize.minimize_scalar(
        lambda c: -float(expected_outcome(c, d, terms).profit_usd),
        bounds=(0.0, float(d[-1])),
        method="bounded",
        options={"xatol": XATOL_MW},
    )
    # Expected profit is linear between samples, so a best offer is a sample: the search's
    # answer or a sample beside it, whichever earns most (D certain gives exactly D).
    beside = np.searchsorted(d, result.x)
    candidates = np.array([result.x, d[max(beside - 1, 0)], d[min(beside, d.size - 1)]])
    offer = float(candidates[np.argmax(expected_outcome(candidates, d, terms).profit_usd)])
    expected = ExpectedOutcome(*(float(v) for v in expected_outcome(offer, d, terms)))
    return Recommendation(offer, min(terms.critical_ratio, 1.0), expected)


def stay_probability_samples(
    events: int, exposure_days: float, horizon_days: float, size: int, rng: np.random.Generator
) -> np.ndarray:
    """`size` samples of the probability [-] that an asset enrolled now is still enrolled after
    `horizon_days` [days], exp(-h x horizon), the constant hazard h [1/day] drawn from a cohort's
    history of `events` departures over `exposure_days` [asset-days] (`churn.ExponentialFit`).

    h is drawn from its likelihood h^events x exp(-h x exposure) normalized, a Gamma(events + 1,
    rate = exposure) density (the posterior of a flat prior): its mode is the maximum-likelihood
    estimate events / exposure, its central 95 % nearly churn's likelihood-ratio interval, and
    with no departure it still allows some churn (mean 1 / exposure).
    """
    if events < 0 or not (math.isfinite(exposure_days) and exposure_days > 0):
        raise ValueError(
            f"need events >= 0 and an exposure > 0 [asset-days], got {events}, {exposure_days}"
        )
    if not horizon_days >= 0:
        raise ValueError(f"horizon must be >= 0 days, got {horizon_days}")
    hazard = rng.gamma(events + 1.0, 1.0 / exposure_days, size)
    return np.exp(-hazard * horizon_days)


def enrolled_share_samples(
    assets: int, stay_probability: ArrayLike, rng: np.random.Generator
) -> np.ndarray:
    """K / n [-] per sample: the share of a cohort's `assets` (n) still enrolled when each
    stays with the sample's probability, K ~ Binomial(n, p). A cohort of no assets keeps 0."""
    p = np.asarray(stay_probability, dtype=float)
    if assets < 0 or np.any(~((p >= 0) & (p <= 1))):
        raise ValueError(f"need assets >= 0 and probabilities in [0, 1], got {assets}")
    if assets == 0:
        return np.zeros_like(p)
    return rng.binomial(assets, p) / assets


def deliverable_ucap_mw(
    cohort_ucap_mw: ArrayLike, enrolled_share: ArrayLike, availability: ArrayLike
) -> np.ndarray:
    """D_i = a_i x sum_c UCAP_c x share_ci [MW] (see the module's conventions): the UCAP per
    cohort enrolled now [MW] (c,), the share of it still enrolled per cohort and sample [-]
    (c, n), the state-of-charge availability factor per sample [-] (n,) or one for all."""
    ucap = np.asarray(cohort_ucap_mw, dtype=float)
    share = np.asarray(enrolled_share, dtype=float)
    factor = np.asarray(availability, dtype=float)
    if ucap.ndim != 1 or share.ndim != 2 or share.shape[0] != ucap.size:
        raise ValueError(
            f"need UCAP per cohort (c,) and shares (c, n), got {ucap.shape} and {share.shape}"
        )
    if not np.all(np.isfinite(ucap) & (ucap >= 0)):
        raise ValueError("cohort UCAP [MW] must be finite and >= 0")
    for name, values in (("enrolled share", share), ("availability", factor)):
        if not np.all((values >= 0) & (values <= 1)):
            raise ValueError(f"{name} [-] must lie in [0, 1]")
    return factor * (ucap @ share)
