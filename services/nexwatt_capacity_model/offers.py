"""Capacity auction offers: the rules of an offer's life, the checks it must pass, and sizing a
new one. Pure: the store, the API and the clearing consumer call it.

Conventions:

- An offer is a `CapacityOffer`; it moves sized -> approved (by an operator) -> submitted ->
  cleared or not_cleared, and nowhere else. Each change makes its next version, stamped with
  the time of the change. A change the state does not allow raises `TransitionRefused`, whose
  message is the reason (the API answers 409 with it; the clearing consumer dead-letters it).
- Checks, as Nexwatt's reference notes transcribe PJM's rules (verify before selling): the
  offered UCAP is at most the resource's UCAP for the delivery year and at least 0.1 MW
  (100 kW, PJM's minimum size of a resource); the price is at most the delivery year's cap
  (`OfferCaps`). A failed check raises `OfferInvalid` naming the field.
- Sizing: deliverable UCAP is sampled per cohort as `sizing.deliverable_ucap_mw` composes it:
  the cohort's UCAP for the year enrolled now x the share of its assets still enrolled on the
  year's June 1 x a state-of-charge availability factor. Churn per cohort is its lifecycle
  history read as of the sizing day (`churn.durations_days`, `churn.fit_exponential`); a
  cohort with no exposure yet (every asset enrolled that day: a new fleet) takes the policy's
  default monthly churn, a placeholder, with no spread.
- Revenue of a cleared MW is taken at the offer's price: an offer clears only at a clearing
  price at least its own, so its price is the least a cleared MW earns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from nexwatt_capacity_model import churn, sizing
from nexwatt_capacity_model.domain import FleetSoc, soc_availability
from nexwatt_shared.contracts import (
    CapacityOffer,
    OfferClearing,
    OfferSizing,
    OfferState,
)
from nexwatt_shared.delivery_year import days_in, start_date

MIN_OFFER_MW = 0.1  # PJM's minimum size of a capacity resource (100 kW) [MW]


@dataclass(frozen=True)
class OfferCaps:
    """The highest price an offer may ask per delivery year ("2026/27") [$/MW-day]."""

    by_delivery_year: Mapping[str, float]
    source: str

    def cap(self, delivery_year: str) -> float | None:
        """The year's cap [$/MW-day]; None when the year has none on record."""
        return self.by_delivery_year.get(delivery_year)

    def uncapped(self, delivery_year: str) -> Violation:
        """What is wrong with a year that has no cap on record."""
        known = ", ".join(sorted(self.by_delivery_year))
        return Violation("delivery_year", delivery_year, f"one with an offer cap: {known}")


PJM_OFFER_CAPS = OfferCaps(
    by_delivery_year=MappingProxyType({"2026/27": 329.17, "2027/28": 333.44}),
    source=(
        "PJM Base Residual Auction price caps: 2026/27 cleared at its cap of $329.17/MW-day, "
        "2027/28 at $333.44/MW-day; a secondary transcription from Nexwatt's reference notes, "
        "not read from PJM's auction reports: verify before relying on it"
    ),
)


class TransitionRefused(Exception):
    """A state change the offer's state does not allow; the message says why."""


class Violation(NamedTuple):
    """A failed check: the field at fault, what it was, what was expected."""

    field: str
    found: float | str
    expected: str


class OfferInvalid(ValueError):
    """An offer that fails its checks, with each violation."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.found} ({v.expected})" for v in violations))
        self.violations = list(violations)


# --- the state machine ----------------------------------------------------------------------

NEXT_STATES: Mapping[OfferState, frozenset[OfferState]] = MappingProxyType(
    {
        OfferState.SIZED: frozenset({OfferState.APPROVED}),
        OfferState.APPROVED: frozenset({OfferState.SUBMITTED}),
        OfferState.SUBMITTED: frozenset({OfferState.CLEARED, OfferState.NOT_CLEARED}),
        OfferState.CLEARED: frozenset(),
        OfferState.NOT_CLEARED: frozenset(),
    }
)
_RESULTS = (OfferState.CLEARED, OfferState.NOT_CLEARED)


def refusal(offer: CapacityOffer, target: OfferState) -> str | None:
    """Why `offer` cannot move to `target`; None when it can."""
    state = offer.state
    if target in NEXT_STATES[state]:
        return None
    name = f"offer {offer.offer_id} is {state.value}"
    if target is OfferState.APPROVED:
        by = f" (approved by {offer.approved_by})" if offer.approved_by else ""
        return f"{name}{by}: only a sized offer can be approved"
    if target is OfferState.SUBMITTED:
        if state is OfferState.SIZED:
            return f"{name}: an operator approves it before it is submitted"
        return f"{name}: it was submitted already, and an offer is submitted once"
    if state in _RESULTS:
        return f"{name}: it has its auction result already"
    return f"{name}: only a submitted offer can clear"


def _moved(
    offer: CapacityOffer, target: OfferState, at: datetime, **changes: object
) -> CapacityOffer:
    reason = refusal(offer, target)
    if reason is not None:
        raise TransitionRefused(reason)
    return CapacityOffer.model_validate(
        {
            **offer.model_dump(),
            **changes,
            "state": target,
            "version": offer.version + 1,
            "updated_at": at,
        }
    )


def approve(offer: CapacityOffer, approved_by: str, at: datetime) -> CapacityOffer:
    """The offer approved by the operator `approved_by` at `at`."""
    return _moved(offer, OfferState.APPROVED, at, approved_by=approved_by)


def submit(offer: CapacityOffer, at: datetime) -> CapacityOffer:
    """The offer submitted to the auction at `at`."""
    return _moved(offer, OfferState.SUBMITTED, at)


def _result(clearing: OfferClearing) -> tuple[OfferState, float | None, float]:
    state = OfferState.CLEARED if clearing.cleared else OfferState.NOT_CLEARED
    return (
        state,
        clearing.cleared_mw if clearing.cleared else None,
        clearing.clearing_price_usd_per_mw_day,
    )


def record_clearing(offer: CapacityOffer, clearing: OfferClearing) -> CapacityOffer | None:
    """The offer with the auction's result, as of the clearing's time; None when the offer
    holds this very result already (a replayed clearing changes nothing)."""
    if (clearing.resource_id, clearing.delivery_year) != (offer.resource_id, offer.delivery_year):
        raise TransitionRefused(
            f"the clearing is for {clearing.resource_id} in {clearing.delivery_year}, offer "
            f"{offer.offer_id} for {offer.resource_id} in {offer.delivery_year}"
        )
    if clearing.cleared_mw > offer.offered_ucap_mw:
        raise TransitionRefused(
            f"the clearing takes {clearing.cleared_mw} MW, more than offer {offer.offer_id}'s "
            f"{offer.offered_ucap_mw} MW"
        )
    state, cleared_mw, price = _result(clearing)
    held = (offer.state, offer.cleared_mw, offer.clearing_price_usd_per_mw_day)
    if held == (state, cleared_mw, price):
        return None
    return _moved(
        offer,
        state,
        clearing.cleared_at,
        cleared_mw=cleared_mw,
        clearing_price_usd_per_mw_day=price,
    )


# --- checks ---------------------------------------------------------------------------------


def violations(
    offered_ucap_mw: float,
    resource_ucap_mw: float,
    price_usd_per_mw_day: float,
    delivery_year: str,
    caps: OfferCaps,
) -> list[Violation]:
    """Every check the offer fails (see the module's conventions); empty when it passes."""
    found = []
    cap = caps.cap(delivery_year)
    if cap is None:
        found.append(caps.uncapped(delivery_year))
    elif price_usd_per_mw_day > cap:
        found.append(
            Violation(
                "price_usd_per_mw_day",
                price_usd_per_mw_day,
                f"<= {cap} $/MW-day, the {delivery_year} cap",
            )
        )
    if offered_ucap_mw > resource_ucap_mw:
        found.append(
            Violation(
                "offered_ucap_mw",
                offered_ucap_mw,
                f"<= {resource_ucap_mw:.6f} MW, the resource's UCAP for {delivery_year}",
            )
        )
    if offered_ucap_mw < MIN_OFFER_MW:
        found.append(
            Violation("offered_ucap_mw", offered_ucap_mw, f">= {MIN_OFFER_MW} MW, PJM's minimum")
        )
    return found


# --- sizing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SizingPolicy:
    """What sizing assumes beyond the fleet's own data; every value is a placeholder with its
    `source` (see config.Settings)."""

    deficiency_share: float  # deficiency rate = price x (1 + share) [-]
    non_performance_usd_per_mw_interval: float  # per MW short in each PAI [$/MW]
    pai_intervals_per_year: float  # expected 5-minute Performance Assessment Intervals
    default_monthly_churn: float  # for a cohort with no exposure yet [-]
    soc_availability: tuple[float, ...]  # samples of the state-of-charge availability [-]
    samples: int  # of deliverable UCAP
    source: str
    caps: OfferCaps = PJM_OFFER_CAPS
    soc_min_days: int = 3  # measured program days needed to replace soc_availability
    soc_days: int = 60  # most recent measured program days drawn on

    def __post_init__(self) -> None:
        if not 0 <= self.default_monthly_churn < 1:
            raise ValueError(f"monthly churn must lie in [0, 1), got {self.default_monthly_churn}")
        if not self.soc_availability or not all(0 <= a <= 1 for a in self.soc_availability):
            raise ValueError("state-of-charge availability: one or more samples in [0, 1]")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")


def with_measured_soc(policy: SizingPolicy, socs: Sequence[FleetSoc]) -> SizingPolicy:
    """The policy drawing its state-of-charge availability from the fleet's SoC measured as
    recent program days' windows opened (`domain.soc_availability` of each day), when there
    are at least `soc_min_days` of them; else as it is, its assumption said in its source."""
    if len(socs) < policy.soc_min_days:
        note = (
            f"SoC availability assumed {policy.soc_availability} (only {len(socs)} program days"
            f" measured, {policy.soc_min_days} needed)"
        )
        return replace(policy, source=f"{policy.source}; {note}")
    days = socs[: policy.soc_days]
    measured = soc_availability([d.soc_pct for d in days], [d.reserve_pct for d in days])
    note = f"SoC availability measured at the window's opening on {len(days)} program days"
    return replace(
        policy, soc_availability=tuple(measured.tolist()), source=f"{policy.source}; {note}"
    )


class CohortNow(NamedTuple):
    """A cohort of the resource as the current snapshot has it."""

    cohort: str
    assets: int  # enrolled now
    ucap_mw: float  # their UCAP for the delivery year [MW]


def commitment_terms(
    policy: SizingPolicy, delivery_year: str, price_usd_per_mw_day: float
) -> sizing.CommitmentTerms:
    """The year's terms at the offer's price, the deficiency and PAI charges of the policy."""
    return sizing.CommitmentTerms.from_clearing_price(
        days_in(delivery_year),
        price_usd_per_mw_day,
        policy.deficiency_share,
        policy.non_performance_usd_per_mw_interval,
        policy.pai_intervals_per_year,
        source=policy.source,
    )


SECONDS_PER_DAY = 86_400


def _utc_days(values: Sequence[datetime | None]) -> np.ndarray:
    """The UTC day of each time, NaT for None: datetime64[D] (from POSIX seconds, one pass)."""
    seconds = np.array([np.nan if v is None else v.timestamp() for v in values], dtype=float)
    known = ~np.isnan(seconds)
    days = np.full(seconds.shape, np.datetime64("NaT"), dtype="datetime64[D]")
    days[known] = np.floor(seconds[known] / SECONDS_PER_DAY).astype("int64")
    return days


def history_by_cohort(
    rows: Sequence[tuple[str | None, datetime | None, datetime | None]], as_of: date
) -> dict[str, churn.Durations]:
    """Each cohort's churn history as of `as_of` from (cohort, enrolled_at, unenrolled_at) per
    asset, in UTC days. Left out: assets of no cohort (stored before cohorts were) or never
    enrolled, and those enrolled after `as_of` or unenrolled the day they were enrolled (they
    never held capacity). An unenrolment before the enrolment ended an earlier spell: the asset
    counts as enrolled."""
    cohort = np.array([r[0] for r in rows], dtype=object)
    start = _utc_days([r[1] for r in rows])
    end = _utc_days([r[2] for r in rows])
    end[end < start] = np.datetime64("NaT")
    has_cohort = np.array([c is not None for c in cohort], dtype=bool)
    keep = has_cohort & ~np.isnat(start) & (start <= np.datetime64(as_of, "D"))
    keep &= end != start
    history = {}
    for name in sorted(set(cohort[keep].tolist())):
        rows_of = keep & (cohort == name)
        history[name] = churn.durations_days(start[rows_of], end[rows_of], as_of)
    return history


def deliverable_samples(
    cohorts: Sequence[CohortNow],
    history: Mapping[str, churn.Durations],
    as_of: date,
    delivery_year: str,
    policy: SizingPolicy,
    rng: np.random.Generator,
) -> np.ndarray:
    """`policy.samples` samples of the resource's deliverable UCAP on the delivery year's
    first day [MW] (see the module's conventions). OfferInvalid when the year has begun."""
    horizon = (start_date(delivery_year) - as_of).days
    if horizon < 0:
        raise OfferInvalid(
            [Violation("delivery_year", delivery_year, f"a year not begun on {as_of}")]
        )
    n = policy.samples
    default_hazard = -math.log1p(-policy.default_monthly_churn) / churn.MONTH_DAYS
    shares = np.empty((len(cohorts), n))
    for i, cohort in enumerate(cohorts):
        durations = history.get(cohort.cohort)
        if durations is None or durations.days.sum() <= 0:
            stay = np.full(n, math.exp(-default_hazard * horizon))
        else:
            fit = churn.fit_exponential(durations.days, durations.observed)
            stay = sizing.stay_probability_samples(fit.events, fit.exposure_days, horizon, n, rng)
        shares[i] = sizing.enrolled_share_samples(cohort.assets, stay, rng)
    availability = rng.choice(np.asarray(policy.soc_availability, dtype=float), size=n)
    return sizing.deliverable_ucap_mw([c.ucap_mw for c in cohorts], shares, availability)


def sized_offer(
    offer_id: str,
    resource_id: str,
    delivery_year: str,
    resource_ucap_mw: float,
    deliverable_mw: np.ndarray,
    price_usd_per_mw_day: float,
    policy: SizingPolicy,
    at: datetime,
    offered_ucap_mw: float | None = None,
) -> CapacityOffer:
    """A new offer (version 1, sized) of `offered_ucap_mw` [MW], by default the recommendation
    over the deliverable UCAP samples [MW] (at most `resource_ucap_mw`: the cohorts' UCAP the
    samples are drawn from may add up to a hair more, each rounded to the watt), with what it
    is expected to earn and cost. OfferInvalid naming each field that fails a check."""
    terms = commitment_terms(policy, delivery_year, price_usd_per_mw_day)
    recommended = sizing.recommend_offer(deliverable_mw, terms)
    if offered_ucap_mw is None:
        offered_ucap_mw = min(recommended.offer_mw, resource_ucap_mw)
    offered = offered_ucap_mw
    failed = violations(offered, resource_ucap_mw, price_usd_per_mw_day, delivery_year, policy.caps)
    if failed:
        raise OfferInvalid(failed)
    expected = sizing.expected_outcome(offered, deliverable_mw, terms)
    return CapacityOffer(
        offer_id=offer_id,
        resource_id=resource_id,
        delivery_year=delivery_year,
        state=OfferState.SIZED,
        offered_ucap_mw=offered,
        price_usd_per_mw_day=price_usd_per_mw_day,
        sizing=OfferSizing(
            recommended_ucap_mw=recommended.offer_mw,
            quantile=recommended.quantile,
            expected_revenue_usd=float(expected.revenue_usd),
            expected_penalty_usd=float(expected.penalty_usd),
            expected_shortfall_mw=float(expected.shortfall_mw),
            resource_ucap_mw=resource_ucap_mw,
            samples=len(deliverable_mw),
            terms_source=terms.source,
        ),
        version=1,
        updated_at=at,
    )
