"""Auction offers against hand-worked numbers: the state machine with its reasons, the checks,
churn histories as dates, the composition of deliverable UCAP, and sizing a new offer (dollars
to 1e-6 $, MW to 1e-9 MW in closed form, the optimizer's offer to 1e-5 MW).

Prices and rates are illustrative round numbers, not PJM's."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest

from nexwatt_capacity_model import offers
from nexwatt_capacity_model.churn import Durations
from nexwatt_capacity_model.domain import FleetSoc
from nexwatt_capacity_model.offers import (
    CohortNow,
    OfferInvalid,
    SizingPolicy,
    TransitionRefused,
)
from nexwatt_shared.contracts import CapacityOffer, OfferClearing, OfferSizing, OfferState

TOL_USD = 1e-6
TOL_MW = 1e-9
TOL_OFFER_MW = 1e-5
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
ONE_TO_TEN_MW = np.array([7.0, 3.0, 10.0, 1.0, 5.0, 9.0, 2.0, 8.0, 4.0, 6.0])


def close(actual: object, expected: object, tol: float) -> None:
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol)


def policy(**changes: object) -> SizingPolicy:
    """Deficiency at the price + 1/3, no PAI charges: at a price p over 365 days
    a = 365 p, b = 365 p x 4/3, so the critical ratio a / b is 0.75."""
    fields: dict = {
        "deficiency_share": 1 / 3,
        "non_performance_usd_per_mw_interval": 0.0,
        "pai_intervals_per_year": 0.0,
        "default_monthly_churn": 0.0,
        "soc_availability": (1.0,),
        "samples": 10,
        "source": "test",
    }
    return SizingPolicy(**{**fields, **changes})


def sized(**changes: object) -> CapacityOffer:
    fields: dict = {
        "offer_id": "OFR-1",
        "resource_id": "NXW-PJM-0042",
        "delivery_year": "2026/27",
        "state": OfferState.SIZED,
        "offered_ucap_mw": 8.0,
        "price_usd_per_mw_day": 300.0,
        "sizing": OfferSizing(
            recommended_ucap_mw=8.0,
            quantile=0.75,
            expected_revenue_usd=876_000.0,
            expected_penalty_usd=408_800.0,
            expected_shortfall_mw=2.8,
            resource_ucap_mw=10.0,
            samples=10,
            terms_source="test",
        ),
        "version": 1,
        "updated_at": T0,
    }
    return CapacityOffer(**{**fields, **changes})


def clearing(**changes: object) -> OfferClearing:
    fields: dict = {
        "offer_id": "OFR-1",
        "resource_id": "NXW-PJM-0042",
        "delivery_year": "2026/27",
        "cleared": True,
        "cleared_mw": 8.0,
        "clearing_price_usd_per_mw_day": 329.17,
        "cleared_at": datetime(2026, 3, 5, tzinfo=UTC),
    }
    return OfferClearing(**{**fields, **changes})


def submitted() -> CapacityOffer:
    approved = offers.approve(sized(), "alice", datetime(2026, 3, 3, tzinfo=UTC))
    return offers.submit(approved, datetime(2026, 3, 4, tzinfo=UTC))


# --- the state machine ----------------------------------------------------------------------
def test_the_happy_path_versions_and_stamps_each_change() -> None:
    approved = offers.approve(sized(), "alice", datetime(2026, 3, 3, tzinfo=UTC))
    assert (approved.state, approved.version, approved.approved_by) == ("approved", 2, "alice")
    assert approved.updated_at == datetime(2026, 3, 3, tzinfo=UTC)
    sent = offers.submit(approved, datetime(2026, 3, 4, tzinfo=UTC))
    assert (sent.state, sent.version, sent.approved_by) == ("submitted", 3, "alice")
    cleared = offers.record_clearing(sent, clearing())
    assert cleared is not None
    assert (cleared.state, cleared.version) == ("cleared", 4)
    assert (cleared.cleared_mw, cleared.clearing_price_usd_per_mw_day) == (8.0, 329.17)
    assert cleared.updated_at == datetime(2026, 3, 5, tzinfo=UTC)
    # what sizing said is kept whole through the changes
    assert cleared.sizing == sized().sizing


def test_partial_and_no_clearing() -> None:
    partly = offers.record_clearing(submitted(), clearing(cleared_mw=4.0))
    assert partly is not None and (partly.state, partly.cleared_mw) == ("cleared", 4.0)
    none = offers.record_clearing(submitted(), clearing(cleared=False, cleared_mw=0.0))
    assert none is not None
    assert (none.state, none.cleared_mw, none.clearing_price_usd_per_mw_day) == (
        "not_cleared",
        None,
        329.17,
    )


def test_only_the_listed_transitions_are_allowed() -> None:
    allowed = {
        ("sized", "approved"),
        ("approved", "submitted"),
        ("submitted", "cleared"),
        ("submitted", "not_cleared"),
    }
    examples = {
        OfferState.SIZED: sized(),
        OfferState.APPROVED: offers.approve(sized(), "alice", T0),
        OfferState.SUBMITTED: submitted(),
        OfferState.CLEARED: offers.record_clearing(submitted(), clearing()),
        OfferState.NOT_CLEARED: offers.record_clearing(
            submitted(), clearing(cleared=False, cleared_mw=0.0)
        ),
    }
    for state, offer in examples.items():
        assert offer is not None and offer.state is state
        for target in OfferState:
            reason = offers.refusal(offer, target)
            assert (reason is None) == ((state.value, target.value) in allowed), (state, target)


@pytest.mark.parametrize(
    ("attempt", "reason"),
    [
        (
            lambda: offers.approve(offers.approve(sized(), "alice", T0), "bob", T0),
            "offer OFR-1 is approved (approved by alice): only a sized offer can be approved",
        ),
        (
            lambda: offers.approve(submitted(), "bob", T0),
            "offer OFR-1 is submitted (approved by alice): only a sized offer can be approved",
        ),
        (
            lambda: offers.submit(sized(), T0),
            "offer OFR-1 is sized: an operator approves it before it is submitted",
        ),
        (
            lambda: offers.submit(submitted(), T0),
            "offer OFR-1 is submitted: it was submitted already, and an offer is submitted once",
        ),
        (
            lambda: offers.record_clearing(offers.approve(sized(), "alice", T0), clearing()),
            "offer OFR-1 is approved: only a submitted offer can clear",
        ),
        (
            lambda: offers.record_clearing(
                offers.record_clearing(submitted(), clearing()), clearing(cleared_mw=5.0)
            ),
            "offer OFR-1 is cleared: it has its auction result already",
        ),
        (
            lambda: offers.record_clearing(submitted(), clearing(resource_id="NXW-PJM-0043")),
            "the clearing is for NXW-PJM-0043 in 2026/27, offer OFR-1 for NXW-PJM-0042 in",
        ),
        (
            lambda: offers.record_clearing(submitted(), clearing(cleared_mw=8.5)),
            "the clearing takes 8.5 MW, more than offer OFR-1's 8.0 MW",
        ),
    ],
)
def test_each_refusal_says_why(attempt, reason: str) -> None:
    with pytest.raises(TransitionRefused) as refused:
        attempt()
    assert str(refused.value).startswith(reason)


def test_a_replayed_clearing_changes_nothing() -> None:
    cleared = offers.record_clearing(submitted(), clearing())
    assert cleared is not None
    assert offers.record_clearing(cleared, clearing()) is None
    # the same result re-sent later (an ISO adapter restarted) is a replay too
    later = clearing(cleared_at=datetime(2026, 3, 9, tzinfo=UTC))
    assert offers.record_clearing(cleared, later) is None
    not_cleared = offers.record_clearing(submitted(), clearing(cleared=False, cleared_mw=0.0))
    assert not_cleared is not None
    assert offers.record_clearing(not_cleared, clearing(cleared=False, cleared_mw=0.0)) is None


def test_the_contracts_refuse_inconsistent_offers_and_clearings() -> None:
    with pytest.raises(ValueError, match="approved_by"):
        sized(approved_by="alice")
    with pytest.raises(ValueError, match="approved_by"):
        sized(state="approved")
    with pytest.raises(ValueError, match="cleared_mw > 0"):
        sized(state="cleared", approved_by="alice", clearing_price_usd_per_mw_day=300.0)
    with pytest.raises(ValueError, match="clearing price"):
        sized(state="cleared", approved_by="alice", cleared_mw=8.0)
    with pytest.raises(ValueError, match="cannot exceed"):
        sized(state="cleared", approved_by="alice", cleared_mw=9.0, clearing_price_usd_per_mw_day=1)
    with pytest.raises(ValueError, match="cleared is true exactly"):
        clearing(cleared_mw=0.0)
    with pytest.raises(ValueError, match="delivery_year"):
        sized(delivery_year="2026-27")
    with pytest.raises(ValueError):
        sized(price_usd_per_mw_day=float("nan"))


# --- checks ---------------------------------------------------------------------------------
def test_checks_name_each_field_at_fault() -> None:
    caps = offers.PJM_OFFER_CAPS
    # within every bound, the cap and the resource's UCAP included
    assert offers.violations(10.0, 10.0, 329.17, "2026/27", caps) == []
    assert offers.violations(0.1, 10.0, 333.44, "2027/28", caps) == []
    # 10.5 MW of a 10 MW resource, above the 2026/27 cap of 329.17 $/MW-day
    found = offers.violations(10.5, 10.0, 329.18, "2026/27", caps)
    assert [(v.field, v.found) for v in found] == [
        ("price_usd_per_mw_day", 329.18),
        ("offered_ucap_mw", 10.5),
    ]
    assert found[0].expected == "<= 329.17 $/MW-day, the 2026/27 cap"
    # 99 kW: below PJM's 100 kW minimum
    [small] = offers.violations(0.099, 10.0, 100.0, "2026/27", caps)
    assert (small.field, small.expected) == ("offered_ucap_mw", ">= 0.1 MW, PJM's minimum")
    # a year without a cap
    [year] = offers.violations(1.0, 10.0, 100.0, "2030/31", caps)
    assert (year.field, year.expected) == (
        "delivery_year",
        "one with an offer cap: 2026/27, 2027/28",
    )


# --- churn history --------------------------------------------------------------------------
def test_history_by_cohort_from_lifecycle_rows() -> None:
    def at(day: str) -> datetime:
        return datetime.fromisoformat(f"{day}T23:30:00-05:00")  # the next day in UTC

    rows = [
        ("east", at("2025-12-31"), None),  # enrolled 2026-01-01 UTC: 59 days to 2026-03-01
        ("east", at("2025-12-31"), at("2026-01-31")),  # left 2026-02-01 UTC after 31 days
        ("east", at("2026-03-01"), None),  # enrolled 2026-03-02 UTC: after as_of, left out
        ("east", at("2026-01-09"), at("2026-01-09")),  # left the day it came: left out
        ("east", at("2026-02-09"), at("2026-01-09")),  # a later spell: enrolled 19 days
        ("west", at("2026-01-30"), at("2026-05-01")),  # leaves after as_of: 29 days, censored
        (None, at("2025-12-31"), None),  # no cohort: left out
        ("west", None, at("2026-01-09")),  # never seen enrolled: left out
    ]
    history = offers.history_by_cohort(rows, date(2026, 3, 1))
    assert sorted(history) == ["east", "west"]
    close(history["east"].days, [59.0, 31.0, 19.0], 0.0)
    assert history["east"].observed.tolist() == [False, True, False]
    close(history["west"].days, [29.0], 0.0)
    assert history["west"].observed.tolist() == [False]


# --- deliverable UCAP -----------------------------------------------------------------------
def test_without_churn_deliverable_ucap_is_the_ucap_times_availability() -> None:
    # no history and 0 default churn: every asset stays. 4 + 6 = 10 MW x availability 0.5 or 1
    # -> each sample is 5 or 10 MW; over 1,000 draws both appear.
    cohorts = [CohortNow("east", 40, 4.0), CohortNow("west", 60, 6.0)]
    d = offers.deliverable_samples(
        cohorts,
        {},
        date(2026, 3, 1),
        "2026/27",
        policy(soc_availability=(0.5, 1.0), samples=1000),
        np.random.default_rng(1),
    )
    assert d.shape == (1000,)
    assert set(np.unique(d).tolist()) == {5.0, 10.0}


def test_deliverable_ucap_of_a_cohort_with_history_and_one_without() -> None:
    # as_of 2026-03-01, June 1 is 92 days ahead.
    # east: 10 departures over 3,650 asset-days: E[stay] = (3650 / 3742)^11 = 0.760466;
    #   1,000 assets with 10 MW -> E = 7.604662 MW.
    # west: no exposure (enrolled today), default churn 1.5 %/month: p = 0.985^(92 / 30.4375)
    #   = 0.955345; 500 assets with 5 MW -> E = 4.776727 MW.
    # E[D] = 12.381389 MW. sd of the east part ~ 10 x 0.0621 = 0.62 MW (the hazard's spread;
    # chance adds 0.13 MW), of the west part 5 x sqrt(p (1 - p) / 500) = 0.046 MW: the mean of
    # 20,000 samples has a standard error of 0.0045 MW; 0.02 MW is 4.4 of them.
    days = np.full(1000, 3.65)
    observed = np.zeros(1000, dtype=bool)
    observed[:10] = True
    history = {"east": Durations(days, observed), "west": Durations(np.zeros(500), observed[:500])}
    cohorts = [CohortNow("east", 1000, 10.0), CohortNow("west", 500, 5.0)]
    d = offers.deliverable_samples(
        cohorts,
        history,
        date(2026, 3, 1),
        "2026/27",
        policy(default_monthly_churn=0.015, samples=20_000),
        np.random.default_rng(5),
    )
    close(d.mean(), 12.381389, 0.02)
    assert d.max() <= 15.0


def test_a_delivery_year_that_has_begun_cannot_be_sized() -> None:
    with pytest.raises(
        OfferInvalid, match=r"delivery_year: 2026/27 \(a year not begun on 2026-06-02"
    ):
        offers.deliverable_samples(
            [CohortNow("east", 1, 1.0)], {}, date(2026, 6, 2), "2026/27", policy(),
            np.random.default_rng(0),
        )  # fmt: skip


# --- sizing an offer ------------------------------------------------------------------------
def test_sized_offer_hand_worked_over_one_to_ten() -> None:
    # D = 1..10 MW, price 300 $/MW-day, critical ratio 0.75: C* is where
    # P(D < C) <= 0.75 <= P(D <= C): C* = 8 (0.7 below, 0.8 at or below).
    # E[max(8 - D, 0)] = (7 + 6 + ... + 1) / 10 = 2.8 MW; revenue = 300 x 365 x 8 = 876,000 $;
    # penalty = 2.8 x 400 x 365 = 408,800 $.
    offer = offers.sized_offer(
        "OFR-1", "NXW-PJM-0042", "2026/27", 10.0, ONE_TO_TEN_MW, 300.0, policy(), T0
    )
    assert (offer.state, offer.version, offer.approved_by) == ("sized", 1, None)
    close(offer.offered_ucap_mw, 8.0, TOL_OFFER_MW)
    s = offer.sizing
    close(s.recommended_ucap_mw, 8.0, TOL_OFFER_MW)
    close(s.quantile, 0.75, 1e-12)
    close(s.expected_shortfall_mw, 2.8, TOL_OFFER_MW)
    close(s.expected_revenue_usd, 876_000.0, 300 * 365 * TOL_OFFER_MW)
    close(s.expected_penalty_usd, 408_800.0, 400 * 365 * TOL_OFFER_MW)
    assert (s.resource_ucap_mw, s.samples, s.terms_source) == (10.0, 10, "test")


def test_an_operator_may_offer_less_than_recommended() -> None:
    # 5 MW: E[max(5 - D, 0)] = (4 + 3 + 2 + 1) / 10 = 1.0 MW; revenue 300 x 365 x 5 =
    # 547,500 $; penalty 1.0 x 400 x 365 = 146,000 $; the recommendation is still 8 MW.
    offer = offers.sized_offer(
        "OFR-1", "NXW-PJM-0042", "2026/27", 10.0, ONE_TO_TEN_MW, 300.0, policy(), T0, 5.0
    )
    assert offer.offered_ucap_mw == 5.0
    close(offer.sizing.recommended_ucap_mw, 8.0, TOL_OFFER_MW)
    close(offer.sizing.expected_shortfall_mw, 1.0, TOL_MW)
    close(offer.sizing.expected_revenue_usd, 547_500.0, TOL_USD)
    close(offer.sizing.expected_penalty_usd, 146_000.0, TOL_USD)


def test_a_sized_offer_that_fails_its_checks_is_refused_with_each_field() -> None:
    with pytest.raises(OfferInvalid) as refused:
        offers.sized_offer(
            "OFR-1", "NXW-PJM-0042", "2026/27", 10.0, ONE_TO_TEN_MW, 329.18, policy(), T0, 10.5
        )
    assert [v.field for v in refused.value.violations] == [
        "price_usd_per_mw_day",
        "offered_ucap_mw",
    ]
    # a 50 kW resource: its recommendation (all of it, certain) is below the 100 kW minimum
    with pytest.raises(OfferInvalid) as small:
        offers.sized_offer(
            "OFR-1", "NXW-PJM-0042", "2026/27", 0.05, np.full(10, 0.05), 300.0, policy(), T0
        )
    [violation] = small.value.violations
    assert violation.field == "offered_ucap_mw"
    close(violation.found, 0.05, TOL_OFFER_MW)
    with pytest.raises(OfferInvalid, match="delivery_year: 2030/31"):
        offers.sized_offer(
            "OFR-1", "NXW-PJM-0042", "2030/31", 10.0, ONE_TO_TEN_MW, 300.0, policy(), T0
        )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"default_monthly_churn": 1.0}, "monthly churn"),
        ({"soc_availability": ()}, "availability"),
        ({"soc_availability": (1.2,)}, "availability"),
        ({"samples": 0}, "samples"),
    ],
)
def test_bad_policies_raise(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        policy(**changes)


def test_sizing_draws_soc_availability_from_measured_program_days_once_it_has_enough() -> None:
    # Two days measured, three needed: the assumption stays, and the source says so.
    two = [FleetSoc(60.0, 20.0, 100), FleetSoc(100.0, 20.0, 100)]
    kept = offers.with_measured_soc(policy(soc_min_days=3), two)
    assert kept.soc_availability == (1.0,)
    assert "assumed (1.0,) (only 2 program days measured, 3 needed)" in kept.source
    # Three days: (60 - 20) / 80 = 0.5, (100 - 20) / 80 = 1.0, (10 - 20) / 80 -> 0 (below the
    # reserve); the most recent `soc_days` (2) of them only.
    three = [*two, FleetSoc(10.0, 20.0, 100)]
    measured = offers.with_measured_soc(policy(soc_min_days=3), three)
    assert measured.soc_availability == pytest.approx((0.5, 1.0, 0.0), abs=1e-12)
    assert "measured at the window's opening on 3 program days" in measured.source
    recent = offers.with_measured_soc(policy(soc_min_days=2, soc_days=2), three)
    assert recent.soc_availability == pytest.approx((0.5, 1.0), abs=1e-12)
