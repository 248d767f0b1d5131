"""What a window is settled on when its instruction has revisions, cancellations or is a
capability test, against hand-worked numbers: MW to 1e-9, cents exactly.

The window is 19:00-20:00 UTC on 2026-12-02 (60 minutes, twelve 5-minute slots) unless a test
says otherwise; times are minutes from its start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from nexwatt_settlement.baselines import ParticipationModel
from nexwatt_settlement.domain import (
    TEST_RATES,
    BaselineMethod,
    Due,
    Fleet,
    Payout,
    Program,
    Revision,
    Settlement,
    assessed,
    build_report,
    changed,
    diff,
    differs,
    mean_mw,
    requested_mw,
    settled_end,
    slot_edges_s,
    terms,
    withdrawal,
)
from nexwatt_settlement.market_time import MarketClock
from nexwatt_settlement.money import PerformanceRates
from nexwatt_shared.contracts import (
    DataQuality,
    DispatchStatus,
    InstructionKind,
    SettlementFiled,
)

TOL_MW = 1e-9
START = datetime(2026, 12, 2, 19, 0, tzinfo=UTC)
END = START + timedelta(minutes=60)
EDGES_S = slot_edges_s(3600.0)  # 0, 300, ..., 3600
SLOT_S = np.diff(EDGES_S)
RATES = PerformanceRates(10.0, 4.0, source="test: round numbers")  # [$/MW per interval]
CONFIRMED, REJECTED = DispatchStatus.CONFIRMED, DispatchStatus.REJECTED


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


def revision(
    n: int,
    issued_min: float,
    mw: float = 0.0,
    answer: DispatchStatus | None = CONFIRMED,
    cancelled: bool = False,
    kind: InstructionKind = InstructionKind.EVENT,
    commanded: int | None = None,
    commands_min: float | None = None,
) -> Revision:
    """Revision `n`, issued at `issued_min`; its answer confirms all of `mw` (0 if cancelled),
    commanding `commanded` assets (by default 2, none when rejected or unanswered) from
    `commands_min` (None: the answer does not say)."""
    confirmed = 0.0 if answer in (None, REJECTED) or cancelled else mw
    if commanded is None:
        commanded = 0 if answer in (None, REJECTED) else 2
    commands_start = at(commands_min) if commands_min is not None else None
    return Revision(
        n, at(issued_min), mw, cancelled, kind, answer, confirmed, commanded, commands_start
    )


def window_terms(*revisions: Revision) -> Due | None:
    return terms("I-1", "NXW-PJM-1", START, END, revisions)


# --- requested MW per slot ---------------------------------------------------------------------


def test_a_revision_after_fifteen_minutes_gives_a_time_weighted_mean() -> None:
    # 10 MW from the start, 6 MW from +15 min: slots 1-3 at 10, slots 4-12 at 6;
    # mean (10 * 15 + 6 * 45) / 60 = 420 / 60 = 7.0 MW.
    got = requested_mw(EDGES_S, [0.0, 900.0], [10.0, 6.0])
    np.testing.assert_allclose(got, [10.0] * 3 + [6.0] * 9, rtol=0, atol=TOL_MW)
    assert mean_mw(got, SLOT_S) == pytest.approx(7.0, abs=TOL_MW)


def test_a_revision_inside_a_slot_is_weighted_within_it() -> None:
    # 6 MW from +17 min: slot 4 [15, 20) holds 2 min at 10 and 3 min at 6 ->
    # (2 * 10 + 3 * 6) / 5 = 7.6 MW; mean (10 * 17 + 6 * 43) / 60 = 428 / 60 = 7.1333 MW.
    got = requested_mw(EDGES_S, [0.0, 17 * 60.0], [10.0, 6.0])
    np.testing.assert_allclose(got, [10.0] * 3 + [7.6] + [6.0] * 8, rtol=0, atol=TOL_MW)
    assert mean_mw(got, SLOT_S) == pytest.approx(428.0 / 60.0, abs=TOL_MW)


def test_nothing_is_asked_before_the_first_request_and_a_short_slot_counts_pro_rata() -> None:
    # A 12-minute window: slots [0, 5), [5, 10), [10, 12). 4 MW from +7 min, 2 MW from +11:
    # slot 2 holds 3 of 5 min at 4 -> 2.4 MW; slot 3 1 min at 4, 1 min at 2 -> 3.0 MW.
    # Mean (4 * 4 + 2 * 1) / 12 = 1.5 MW.
    edges = slot_edges_s(720.0)
    got = requested_mw(edges, [420.0, 660.0], [4.0, 2.0])
    np.testing.assert_allclose(got, [0.0, 2.4, 3.0], rtol=0, atol=TOL_MW)
    assert mean_mw(got, np.diff(edges)) == pytest.approx(1.5, abs=TOL_MW)


def test_a_higher_revision_issued_earlier_starts_with_the_one_it_replaces() -> None:
    # Revision 2 (8 MW) from +20 min, revision 3 (5 MW) stamped +10 min: revision 3 replaces
    # revision 2 from +20, never the other way round; a start before the window counts from
    # its start. Slots 1-4 at 10 MW (revision 1), slots 5-12 at 5 MW; revision 2 holds none.
    got = requested_mw(EDGES_S, [-120.0, 1200.0, 600.0], [10.0, 8.0, 5.0])
    np.testing.assert_allclose(got, [10.0] * 4 + [5.0] * 8, rtol=0, atol=TOL_MW)
    assert requested_mw(EDGES_S, [], []).tolist() == [0.0] * 12


def test_slots_are_assessed_from_the_first_requests_start() -> None:
    # A first request from +15 min: slots 1-3 [0, 15) are not assessed, 4-12 are. From +17
    # min: slot 4 [15, 20) holds 3 minutes of it, so it is assessed too.
    assert assessed(EDGES_S, [900.0, 1800.0]).tolist() == [False] * 3 + [True] * 9
    assert assessed(EDGES_S, [1020.0]).tolist() == [False] * 3 + [True] * 9
    assert assessed(EDGES_S, [1200.0]).tolist() == [False] * 4 + [True] * 8  # from +20 min
    assert assessed(EDGES_S, [-120.0]).tolist() == [True] * 12  # before the start: from it
    assert assessed(EDGES_S, []).tolist() == [False] * 12  # no request: nothing assessed
    assert assessed(EDGES_S, [3600.0]).tolist() == [False] * 12


# --- where settling ends -----------------------------------------------------------------------


def test_a_cancellation_at_twenty_minutes_ends_the_window_there() -> None:
    revisions = [revision(1, -5, 10.0), revision(2, 20, cancelled=True)]
    assert settled_end(START, END, revisions) == at(20)  # a 20-minute window of 60
    due = window_terms(*revisions)
    assert due is not None
    assert (due.window_start, due.window_end) == (START, at(20))
    assert (due.requested_from_s, due.requested_mw) == ((0.0,), (10.0,))
    # The highest revision in force is the cancellation; the MW confirmed is revision 1's.
    assert (due.revision, due.mw_confirmed) == (2, 10.0)


def test_a_cancellation_is_clamped_into_the_window() -> None:
    before = [revision(1, -10, 10.0), revision(2, -5, cancelled=True)]
    after = [revision(1, -10, 10.0), revision(2, 75, cancelled=True)]
    assert settled_end(START, END, before) == START  # called off before it began
    assert window_terms(*before) is None  # nothing to settle
    assert settled_end(START, END, after) == END


def test_only_a_cancellation_in_force_ends_the_window_and_the_lowest_counts() -> None:
    rejected = [revision(1, -5, 10.0), revision(2, 20, answer=REJECTED, cancelled=True)]
    unanswered = [revision(1, -5, 10.0), revision(2, 20, answer=None, cancelled=True)]
    assert settled_end(START, END, rejected) == END
    assert settled_end(START, END, unanswered) == END
    # Two cancellations in force: the lower revision's time; revision 4 after it counts nothing.
    twice = [
        revision(1, -5, 10.0),
        revision(3, 40, cancelled=True),
        revision(2, 30, cancelled=True),
        revision(4, 45, 7.0),
    ]
    assert settled_end(START, END, twice) == at(30)
    due = window_terms(*twice)
    assert due is not None
    assert (due.window_end, due.requested_mw, due.revision) == (at(30), (10.0,), 2)


# --- the terms of a window ---------------------------------------------------------------------


def test_a_revision_in_force_replaces_the_request_from_its_issue_time() -> None:
    due = window_terms(revision(1, -2, 10.0), revision(2, 15, 6.0))
    assert due is not None
    assert (due.window_start, due.window_end) == (START, END)
    assert (due.requested_from_s, due.requested_mw) == ((0.0, 900.0), (10.0, 6.0))
    assert (due.mw_confirmed, due.revision, due.kind, due.paid) == (6.0, 2, "event", True)


def test_a_rejected_or_unanswered_revision_is_not_in_force() -> None:
    for answer in (REJECTED, None):
        due = window_terms(revision(1, -2, 10.0), revision(2, 15, 6.0, answer=answer))
        assert due is not None
        assert (due.requested_mw, due.mw_confirmed, due.revision) == ((10.0,), 10.0, 1)
    # A first revision rejected and a second in force: nothing is asked before the second.
    due = window_terms(revision(1, -2, 10.0, answer=REJECTED), revision(2, 15, 6.0))
    assert due is not None
    assert (due.requested_from_s, due.requested_mw, due.revision) == ((900.0,), (6.0,), 2)


def test_a_revision_rejected_after_its_commands_went_out_is_in_force() -> None:
    # Revision 2 (6 MW from +15 min) answered rejected ("no asset acknowledged") with 3
    # assets commanded: the gateways may apply it, so it is in force, confirming 0 MW.
    due = window_terms(revision(1, -2, 10.0), revision(2, 15, 6.0, answer=REJECTED, commanded=3))
    assert due is not None
    assert (due.requested_from_s, due.requested_mw) == ((0.0, 900.0), (10.0, 6.0))
    assert (due.mw_confirmed, due.revision) == (0.0, 2)
    # The same answer with nothing commanded: the assets kept revision 1.
    due = window_terms(revision(1, -2, 10.0), revision(2, 15, 6.0, answer=REJECTED, commanded=0))
    assert due is not None
    assert (due.requested_mw, due.mw_confirmed, due.revision) == ((10.0,), 10.0, 1)
    # A cancellation rejected after its stop commands went out ends the window all the same.
    revisions = [
        revision(1, -2, 10.0),
        revision(2, 20, answer=REJECTED, cancelled=True, commanded=2),
    ]
    assert settled_end(START, END, revisions) == at(20)


def test_a_request_starts_when_dispatchs_commands_start() -> None:
    # Revision 1 issued at -2 min, its commands from +1 min (the fleet's lead time); revision 2
    # issued at +15, commanded from +16: requested from 60 s and 960 s, not 0 and 900.
    due = window_terms(revision(1, -2, 10.0, commands_min=1), revision(2, 15, 6.0, commands_min=16))
    assert due is not None
    assert due.requested_from_s == (60.0, 960.0)
    # An answer that does not say: max(issued_at, window start).
    due = window_terms(revision(1, -2, 10.0), revision(2, 15, 6.0))
    assert due is not None
    assert due.requested_from_s == (0.0, 900.0)
    # A cancellation ends the window when its stop commands start, if its answer says.
    stop = revision(2, 20, cancelled=True, answer=DispatchStatus.CANCELLED, commands_min=21)
    assert settled_end(START, END, [revision(1, -2, 10.0), stop]) == at(21)
    # Commands that start at the window's end ask nothing of it: nothing to settle.
    assert window_terms(revision(1, 50, 10.0, commands_min=60)) is None


def test_later_revisions_dispatch_rejected_with_nothing_commanded_change_nothing() -> None:
    # Revision 3 after the cancellation revision 2 (at +30 min), answered rejected with no
    # command: the window ends at +30 on revision 1's 10 MW, revision 2 the highest in force.
    cancelled = [revision(1, -2, 10.0), revision(2, 30, cancelled=True)]
    after = revision(3, 40, 7.0, answer=REJECTED, commanded=0)
    assert window_terms(*cancelled, after) == window_terms(*cancelled)
    due = window_terms(*cancelled, after)
    assert due is not None
    assert (due.window_end, due.requested_mw, due.revision) == (at(30), (10.0,), 2)


def test_no_report_until_a_revision_asking_for_delivery_is_in_force() -> None:
    assert window_terms(revision(1, -2, 10.0, answer=None)) is None
    assert window_terms(revision(1, -2, 10.0, answer=REJECTED)) is None
    # Called off mid-window with nothing asked before: nothing to settle.
    assert window_terms(revision(1, 10, cancelled=True)) is None


def test_a_capability_test_is_not_paid() -> None:
    due = window_terms(revision(1, -2, 10.0, kind=InstructionKind.TEST))
    assert due is not None
    assert (due.kind, due.paid) == (InstructionKind.TEST, False)


# --- the report --------------------------------------------------------------------------------
# Two assets (east, west, 10 kW accredited each) deliver 4 MW each in every slot: 8 MW per
# slot, 8 MWh over the hour. Asked 10 MW, then 6 MW from +15 min (the first example above):
#   slots 1-3 short 2 MW: charge 2 MW * 10 $ * 3 = $60 = 6000 cents;
#   slots 4-12 over 2 MW: bonus 2 MW * 4 $ * 9 = $72 = 7200 cents; net +1200 cents,
#   split by delivered energy 4 : 4 -> 600 : 600.
#   mw_requested 7.0, performance 8 / 7 = 114.286 %; window shortfall (6 - 18) / 12 = -1.0 MW.
# Revision 1 alone: charge 2 MW * 10 $ * 12 = $240 -> net -24000 cents, performance 80 %.
FLEET = Fleet(["A", "B"], ["east", "west"], ["S1", "S2"], np.array([10.0, 10.0]))
EIGHT_MW = Settlement(
    edges_s=EDGES_S,
    baseline_mw=np.zeros(12),
    metered_mw=np.full(12, 8.0),
    delivered_mw=np.full(12, 8.0),
    coverage=np.ones(12),
    asset_delivered_mwh=np.array([4.0, 4.0]),
    methods=np.array(["pjm-high-x-of-y-adjusted"] * 2, dtype=object),
    window_mw=8.0,
    delivered_mwh=8.0,
    coverage_pct=100.0,
    billing_complete=False,
    assets_metered=2,
    hours=[],
)
PROGRAM = Program(
    model=ParticipationModel.DER_AGGREGATOR,
    method=BaselineMethod.HIGH_X_OF_Y,
    clock=MarketClock(),
    coverage_threshold=0.9,
    rates=RATES,
)


def report(
    *revisions: Revision, previous: SettlementFiled | None = None
) -> tuple[SettlementFiled, list[Payout]]:
    due = window_terms(*revisions)
    assert due is not None
    quality = DataQuality.PRELIMINARY if previous is None else DataQuality.RESTATED
    return build_report(due, FLEET, EIGHT_MW, [], PROGRAM, quality, previous, END)


def requested_column(filed: SettlementFiled) -> list[str]:
    return [line.split(",")[-1] for line in filed.intervals_csv.splitlines()[1:]]


def test_a_revision_prices_each_slot_on_the_request_in_force() -> None:
    filed, payouts = report(revision(1, -2, 10.0), revision(2, 15, 6.0))
    assert filed.mw_requested == pytest.approx(7.0, abs=TOL_MW)
    assert (filed.mw_confirmed, filed.revision, filed.kind) == (6.0, 2, InstructionKind.EVENT)
    assert filed.performance_pct == 114.286
    money = filed.performance
    assert money.expected_mw == pytest.approx(7.0, abs=TOL_MW)
    assert money.shortfall_mw == pytest.approx(-1.0, abs=TOL_MW)
    assert (money.charge_cents, money.bonus_cents, money.net_cents) == (6000, 7200, 1200)
    assert [c.performance_cents for c in filed.cohorts] == [600, 600]
    assert [p.cents for p in payouts] == [600, 600]
    requested = [line.split(",")[-1] for line in filed.intervals_csv.splitlines()]
    assert requested == ["requested_mw"] + ["10.0000"] * 3 + ["6.0000"] * 9
    alone, _ = report(revision(1, -2, 10.0))
    assert (alone.mw_requested, alone.performance_pct) == (10.0, 80.0)
    assert alone.performance.net_cents == -24000


def test_a_capability_test_is_filed_like_an_event_with_zero_money() -> None:
    filed, payouts = report(
        revision(1, -2, 10.0, kind=InstructionKind.TEST),
        revision(2, 15, 6.0, kind=InstructionKind.TEST),
    )
    assert filed.kind == InstructionKind.TEST
    assert (filed.delivered_mw, filed.performance_pct) == (8.0, 114.286)  # scored
    money = filed.performance
    assert (money.charge_cents, money.bonus_cents, money.net_cents) == (0, 0, 0)
    assert (
        (money.charge_rate_usd_per_mw_interval, money.bonus_rate_usd_per_mw_interval)
        == (
            TEST_RATES.charge_usd_per_mw_interval,
            TEST_RATES.bonus_usd_per_mw_interval,
        )
        == (0.0, 0.0)
    )
    assert money.shortfall_mw == pytest.approx(-1.0, abs=TOL_MW)
    assert [c.performance_cents for c in filed.cohorts] == [0, 0]
    assert [p.cents for p in payouts] == [0, 0]


def test_a_revision_after_a_filing_differs_though_no_data_changed() -> None:
    v1, _ = report(revision(1, -2, 10.0))
    v2, _ = report(revision(1, -2, 10.0), revision(2, 15, 6.0), previous=v1)
    assert v2.diff is not None and not changed(v2.diff)  # the same data to the Wh
    assert differs(v2, v1)
    again, _ = report(revision(1, -2, 10.0), previous=v1)
    assert not changed(diff(again, v1))
    assert not differs(again, v1)


def test_slots_before_the_first_request_are_left_out_of_the_money() -> None:
    # Issued at +10 min, commands from +15 (10 MW): slots 1-3 ask nothing and are left out
    # (priced, the 8 MW delivered there would have earned 8 * 4 $ * 3 = $96 of bonus);
    # slots 4-12 are short 2 MW: 2 * 10 $ * 9 = $180 -> -18000 cents, split 10 : 10 kW.
    # mw_requested 10 * 45 / 60 = 7.5 MW, performance 8 / 7.5 = 106.667 %; assessed: 9
    # intervals owing 10 MW, short 2 MW.
    filed, payouts = report(revision(1, 10, 10.0, commands_min=15))
    assert filed.mw_requested == pytest.approx(7.5, abs=TOL_MW)
    assert filed.performance_pct == 106.667
    money = filed.performance
    assert money.intervals == 9
    assert money.expected_mw == pytest.approx(10.0, abs=TOL_MW)
    assert money.shortfall_mw == pytest.approx(2.0, abs=TOL_MW)
    assert (money.charge_cents, money.bonus_cents, money.net_cents) == (18000, 0, -18000)
    assert [p.cents for p in payouts] == [-9000, -9000]
    assert requested_column(filed) == ["0.0000"] * 3 + ["10.0000"] * 9
    assert filed.delivered_mw == 8.0  # the slots left out are still measured and reported


def test_a_slot_the_first_request_starts_in_is_assessed_on_its_time_weighted_request() -> None:
    # Commands from +17 min: slot 4 [15, 20) asks 10 * 3 / 5 = 6 MW and gets 8: over 2 MW,
    # bonus 2 * 4 $ = $8; slots 5-12 short 2 MW: 2 * 10 $ * 8 = $160. Net -15200 cents.
    # Expected over the 9 assessed slots (6 + 8 * 10) / 9 = 9.555556 MW, shortfall
    # (-2 + 8 * 2) / 9 = 1.555556 MW; mw_requested 10 * 43 / 60 = 7.166667 MW.
    filed, _ = report(revision(1, 16, 10.0, commands_min=17))
    money = filed.performance
    assert money.intervals == 9
    assert (money.charge_cents, money.bonus_cents, money.net_cents) == (16000, 800, -15200)
    assert money.expected_mw == pytest.approx(86.0 / 9.0, abs=1e-6)
    assert money.shortfall_mw == pytest.approx(14.0 / 9.0, abs=1e-6)
    assert filed.mw_requested == pytest.approx(430.0 / 60.0, abs=1e-6)
    assert requested_column(filed) == ["0.0000"] * 3 + ["6.0000"] + ["10.0000"] * 8


def test_a_filing_a_cancellation_before_the_start_leaves_nothing_of_is_withdrawn() -> None:
    # v1 was filed on revision 1 (10 MW, -24000 cents: see above). Revision 2, a cancellation
    # issued 5 minutes before the window, comes into force later: nothing is left to settle,
    # and the withdrawal is v2 (final): the window as measured (8 MW delivered), 0 MW asked,
    # no interval assessed, every amount 0, revision 2.
    first = revision(1, -10, 10.0)
    v1, _ = report(first)
    revisions = [first, revision(2, -5, cancelled=True, answer=DispatchStatus.CANCELLED)]
    assert window_terms(*revisions) is None
    due = withdrawal("I-1", "NXW-PJM-1", START, END, revisions)
    assert (due.window_start, due.window_end, due.withdraws) == (START, END, True)
    assert (due.requested_mw, due.mw_confirmed, due.revision, due.kind) == ((), 0.0, 2, "event")
    v2, payouts = build_report(due, FLEET, EIGHT_MW, [], PROGRAM, DataQuality.FINAL, v1, END)
    assert (v2.version, v2.supersedes, v2.data_quality) == (2, v1.report_id, DataQuality.FINAL)
    assert (v2.mw_requested, v2.mw_confirmed, v2.revision, v2.kind) == (0.0, 0.0, 2, "event")
    assert (v2.delivered_mw, v2.delivered_mwh, v2.performance_pct) == (8.0, 8.0, 0.0)
    money = v2.performance
    assert (money.intervals, money.expected_mw, money.shortfall_mw) == (0, 0.0, 0.0)
    assert (money.charge_cents, money.bonus_cents, money.net_cents) == (0, 0, 0)
    assert [c.performance_cents for c in v2.cohorts] == [0, 0]
    assert [p.cents for p in payouts] == [0, 0]
    assert requested_column(v2) == ["0.0000"] * 12
    assert v2.diff is not None and not changed(v2.diff)  # the data as measured, unchanged
    assert differs(v2, v1)


def test_a_withdrawal_keeps_the_kind_and_names_the_first_cancellation_in_force() -> None:
    revisions = [
        revision(1, -10, 10.0, kind=InstructionKind.TEST),
        revision(3, -3, cancelled=True, kind=InstructionKind.TEST),
        revision(2, -5, cancelled=True, kind=InstructionKind.TEST),
        revision(4, -4, cancelled=True, answer=REJECTED, kind=InstructionKind.TEST),
    ]
    due = withdrawal("I-1", "NXW-PJM-1", START, END, revisions)
    assert (due.revision, due.kind, due.paid) == (2, InstructionKind.TEST, False)
