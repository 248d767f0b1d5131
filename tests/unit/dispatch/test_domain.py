"""Dispatch math against numbers worked by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from nexwatt_dispatch.domain import (
    Acknowledged,
    Answer,
    CommandWindow,
    EventLimits,
    acknowledged_kw,
    allocate,
    answer_status,
    command_messages,
    command_payload,
    command_window,
    dispatchable_kw,
    instruction_refusal,
    performance_ratio,
    season_start,
    telemetry_age_s,
    unavailable_reason,
    usable,
    within_limits,
)
from nexwatt_shared.codec import decode, encode, encode_data, envelope
from nexwatt_shared.contracts import MAX_SETPOINTS_PER_COMMAND, DispatchInstruction
from nexwatt_shared.power_model import AssetRatings
from nexwatt_shared.topics import ASSET_COMMAND

NAN = np.nan


def rated(
    capacity_kw: list[float], reserve_pct: list[float], storage_kwh: list[float]
) -> AssetRatings:
    """Ratings as assumed before batteries had their own: the battery gives the inverter's
    rating, losslessly, and PV shares the inverter (DC-coupled)."""
    return AssetRatings(
        battery_continuous_kw=capacity_kw, battery_peak_kw=capacity_kw, usable_kwh=storage_kwh,
        round_trip_efficiency=1.0, coupling="dc", pv_dc_kw=capacity_kw,
        inverter_ac_kw=capacity_kw, backup_reserve_pct=reserve_pct,
    )  # fmt: skip


def test_deliverable_is_the_least_of_inverter_headroom_and_energy_over_the_window() -> None:
    # Asset like BTM-00291: 7.6 kW inverter, 9.8 kWh battery at 90 % with a 20 % reserve.
    # Headroom: 7.6 - 3.0 PV = 4.6 kW. Energy: (90 - 20) / 100 * 9.8 = 6.86 kWh.
    #   over 0.5 h -> 13.72 kW, so headroom binds: 4.6 kW
    #   over 2 h   ->  3.43 kW, so energy binds:   3.43 kW
    common = dict(ratings=rated([7.6], [20.0], [9.8]), pv_kw=[3.0], soc_pct=[90.0],
                  pv_age_s=[60.0], soc_age_s=[60.0], max_age_s=900.0)  # fmt: skip
    assert dispatchable_kw(hours=0.5, **common) == pytest.approx([4.6], abs=1e-12)
    assert dispatchable_kw(hours=2.0, **common) == pytest.approx([3.43], abs=1e-12)


def test_stale_telemetry_a_battery_at_reserve_or_pv_above_rating_deliver_nothing() -> None:
    # Stale SoC, stale PV, at reserve, PV above rating, never reported.
    got = dispatchable_kw(
        ratings=rated([7.6, 7.6, 7.6, 5.0, 7.6], [20.0] * 5, [9.8] * 5),
        pv_kw=[1.0, 1.0, 1.0, 5.5, 1.0],
        soc_pct=[90.0, 90.0, 15.0, 90.0, 90.0],
        hours=1.0,
        pv_age_s=[0.0, 901.0, 0.0, 0.0, np.inf],
        soc_age_s=[901.0, 0.0, 0.0, 0.0, np.inf],
        max_age_s=900.0,
    )
    assert got.tolist() == [0.0] * 5


def test_a_battery_only_asset_is_dispatched_without_pv() -> None:
    # 5 kW battery inverter, 10 kWh at 60 %, reserve 20 %, 1 h: energy 4 kWh -> 4 kW, headroom
    # 5 kW. With PV behind it and none reported: unknown headroom -> 0. Battery-only: 4 kW.
    common = dict(ratings=rated([5.0] * 2, [20.0] * 2, [10.0] * 2), pv_kw=[NAN] * 2,
                  soc_pct=[60.0] * 2, hours=1.0,
                  pv_age_s=[np.inf] * 2, soc_age_s=[0.0] * 2, max_age_s=900.0)  # fmt: skip
    got = dispatchable_kw(**common, has_pv=[True, False])
    assert got == pytest.approx([0.0, 4.0], abs=1e-12)


def test_an_unknown_soc_or_pv_is_never_taken_as_zero() -> None:
    # Same asset as above, 1 h window, fresh: headroom 7.6 - 1.0 = 6.6 kW binds (energy 6.86).
    #   0: all known -> 6.6 kW
    #   1: SoC reported missing (NaN) -> 0, not a guess
    #   2: PV reported missing: 0 PV would claim 7.6 kW of headroom -> 0
    got = dispatchable_kw(
        ratings=rated([7.6] * 3, [20.0] * 3, [9.8] * 3), pv_kw=[1.0, 1.0, NAN],
        soc_pct=[90.0, NAN, 90.0], hours=1.0, pv_age_s=[0.0] * 3,
        soc_age_s=[0.0] * 3, max_age_s=900.0,
    )  # fmt: skip
    assert got == pytest.approx([6.6, 0.0, 0.0], abs=1e-12)


def test_why_no_asset_is_available_is_counted_per_cause() -> None:
    # Ages 0 s (fresh), 1000 s (stale), inf (never); NaN = reported missing.
    pv_ok = usable([1.0, 1.0, NAN, 1.0], [0.0, 0.0, 0.0, np.inf], 900.0)
    soc_ok = usable([90.0, NAN, 90.0, 90.0], [0.0, 0.0, 1000.0, np.inf], 900.0)
    assert pv_ok.tolist() == [True, True, False, False]
    assert soc_ok.tolist() == [True, False, False, False]
    assert unavailable_reason(pv_ok, soc_ok) == (
        "no asset available: 3 of 4 assets with SoC unknown or stale;"
        " 2 of 4 assets with PV unknown or stale;"
        " 1 of 4 assets at their reserve or without inverter headroom"
    )


def test_allocation_is_pro_rata_to_limits_and_never_above_them() -> None:
    # 10 kW over limits 4, 6, 10 (sum 20): each gets half its limit.
    assert allocate(10.0, [4.0, 6.0, 10.0]) == pytest.approx([2.0, 3.0, 5.0], abs=1e-12)
    # 30 kW exceeds the 20 kW the fleet can hold: everyone at its limit.
    assert allocate(30.0, [4.0, 6.0, 10.0]) == pytest.approx([4.0, 6.0, 10.0], abs=1e-12)
    # Tiny shares are not worth a command: 1 kW over 0.1 and 9.9 -> 0.01 and 0.99; 0.01 < 0.05
    # drops the first, and the second, shared again, carries the whole 1 kW.
    assert allocate(1.0, [0.1, 9.9], min_setpoint_kw=0.05) == pytest.approx([0.0, 1.0])
    # 100 kW over one 1000 kW site and twenty 0.9 kW homes: each home's share (0.088 kW) is
    # below 0.1, so the site carries all 100 kW rather than leaving 1.8 kW unallocated.
    got = allocate(100.0, [1000.0] + [0.9] * 20, min_setpoint_kw=0.1)
    assert got.sum() == pytest.approx(100.0) and got[0] == pytest.approx(100.0)
    assert allocate(5.0, [0.0, 0.0]).tolist() == [0.0, 0.0]


def test_a_window_already_over_is_refused() -> None:
    with pytest.raises(ValueError, match="hours"):
        dispatchable_kw(rated([1.0], [20.0], [9.8]), [0.0], [90.0], 0.0, [0.0], [0.0], 900.0)


def test_telemetry_from_a_clock_running_ahead_counts_as_stale() -> None:
    # Same asset as above, 1 h window: energy binds at (90 - 20) / 100 * 9.8 = 6.86 kW, and
    # headroom 7.6 - 1.0 = 6.6 kW binds first. Ages: 0 s, 200 s ahead (within 300 s of skew),
    # PV 301 s ahead, and SoC 70 years ahead (a clock stamped 2096): each channel is judged.
    got = dispatchable_kw(
        ratings=rated([7.6] * 4, [20.0] * 4, [9.8] * 4), pv_kw=[1.0] * 4, soc_pct=[90.0] * 4,
        hours=1.0, pv_age_s=[0.0, -200.0, -301.0, 0.0],
        soc_age_s=[0.0, -200.0, 0.0, -2.2e9], max_age_s=900.0, max_ahead_s=300.0,
    )  # fmt: skip
    assert got == pytest.approx([6.6, 6.6, 0.0, 0.0], abs=1e-12)


@pytest.mark.parametrize(
    ("confirmed_mw", "commanded", "acknowledged", "shortfall", "status", "reason"),
    [
        (0.0, 0, 0, "unknown resource 'X'", "rejected", "unknown resource 'X'"),
        (0.0, 3, 0, None, "rejected", "no asset acknowledged its setpoint in time"),
        # 3 setpoints rounded to the watt may fall 1.5 W short of 1 MW and still confirm it.
        (0.9999985, 3, 3, None, "confirmed", None),
        (0.9999980, 3, 3, None, "partial", "assets acknowledged less than commanded"),
        # Covered: a shortfall among assets that did not answer is no reason any more.
        (1.0, 3, 2, "fleet limit 0.800 MW", "confirmed", None),
        (0.6, 3, 2, "fleet limit 0.800 MW", "partial",
         "fleet limit 0.800 MW; 1 of 3 assets did not acknowledge in time"),
    ],
)  # fmt: skip
def test_the_answer_to_an_instruction(
    confirmed_mw, commanded, acknowledged, shortfall, status, reason
) -> None:
    assert answer_status(1.0, confirmed_mw, commanded, acknowledged, shortfall) == (status, reason)


def test_telemetry_age_runs_from_the_later_of_issue_time_and_the_resources_clock() -> None:
    # Issued at t=1000 s. Ends 900, 1100, 1100, 9000 and none: the resource's clock is the
    # 2nd newest of the four known ends (1100), later than the issue time (the instruction was
    # handled late): ages 200, 0, 0, -7900 (that asset's clock runs ahead) and infinite.
    got = telemetry_age_s(1000.0, [900.0, 1100.0, 1100.0, 9000.0, -np.inf])
    assert got.tolist() == [200.0, 0.0, 0.0, -7900.0, np.inf]
    # Issued after every end: ages from the issue time.
    assert telemetry_age_s(2000.0, [900.0, 1100.0]).tolist() == [1100.0, 900.0]
    # One channel's ages, on the clock of every asset's newest end: newest ends 900 and 1100,
    # issued at 1000 -> clock max(1000, 1100) = 1100; SoC ended 600 and never: 500 and inf.
    got = telemetry_age_s(1000.0, [900.0, 1100.0], [600.0, -np.inf])
    assert got.tolist() == [500.0, np.inf]


def test_over_dispatch_covers_the_request_with_what_assets_are_expected_to_deliver() -> None:
    # 10 kW asked of two 10 kW assets, one delivering half of what it is told (ratio 0.5):
    # expected capacity 10 + 5 = 15 kW, share 10 / 15 = 2/3: both told 6.667 kW; expected
    # 6.667 + 3.333 = 10 kW. With ratios of 1 it is the plain pro rata (5 + 5).
    got = allocate(10.0, [10.0, 10.0], performance_ratio=[1.0, 0.5])
    assert got == pytest.approx([20 / 3, 20 / 3], abs=1e-12)
    assert float(np.dot(got, [1.0, 0.5])) == pytest.approx(10.0, abs=1e-12)
    assert allocate(10.0, [10.0, 10.0], performance_ratio=[1.0, 1.0]) == pytest.approx([5, 5])
    # More than the expected capacity (15 kW) asked: every asset at its limit.
    assert allocate(20.0, [10.0, 10.0], performance_ratio=[1.0, 0.5]) == pytest.approx([10, 10])


def test_an_assets_performance_ratio_from_its_past_events() -> None:
    # 4 of 5 kWh: 0.8; nothing of 5: the floor 0.1; never commanded: 1; 6 of 5: capped at 1.
    got = performance_ratio([4.0, 0.0, 0.0, 6.0], [5.0, 5.0, 0.0, 5.0])
    assert got == pytest.approx([0.8, 0.1, 1.0, 1.0], abs=1e-12)


T9 = datetime(2026, 7, 1, 13, 15, tzinfo=UTC)


def test_the_window_commands_run_over() -> None:
    lead = timedelta(minutes=1)
    # Issued 10 minutes ahead: the whole window.
    whole = command_window(T9, T9 + timedelta(hours=1), T9 - timedelta(minutes=10), lead)
    assert whole == CommandWindow(T9, T9 + timedelta(hours=1), None)
    # Issued 2 minutes into it, 1 minute of lead time: 13:18-14:15, said why.
    late = command_window(T9, T9 + timedelta(hours=1), T9 + timedelta(minutes=2), lead)
    assert late is not None and (late.start, late.end) == (T9 + timedelta(minutes=3), late.end)
    assert late.note == (
        "the window opened at 13:15 UTC; commands cover 13:18-14:15 UTC, what can still be"
        " delivered"
    )
    # Issued a minute before it ends: nothing left.
    assert command_window(T9, T9 + timedelta(hours=1), T9 + timedelta(minutes=59), lead) is None


def test_subscribers_are_held_to_the_programs_event_limits() -> None:
    limits = EventLimits(max_events_per_season=36, max_hours_per_event=4.0, source="test")
    # 35 events used: may take part; 36: not. A 5-hour event: no one.
    assert within_limits([0, 35, 36], 2.0, limits).tolist() == [True, True, False]
    assert within_limits([0, 35, 36], 5.0, limits).tolist() == [False, False, False]


def test_an_instruction_is_refused_before_allocation_with_the_reason() -> None:
    instruction = DispatchInstruction(
        instruction_id="I-1", resource_id="NXW-PJM-0042", mw=10.0, issued_at=T9,
        window_start=T9, window_end=T9 + timedelta(hours=1),
    )  # fmt: skip
    assert instruction_refusal(instruction, True, None) is None
    assert instruction_refusal(instruction, True, instruction) is None  # a replay
    other = instruction.model_copy(update={"mw": 12.0})
    assert instruction_refusal(other, True, instruction) == (
        "instruction id 'I-1' revision 1 was already used for another instruction"
    )
    second = instruction.model_copy(update={"revision": 2, "mw": 6.0})
    assert instruction_refusal(instruction, True, None, [second]) == (
        "superseded: revision 2 of this instruction came first"
    )
    negative = instruction.model_copy(update={"mw": -3.0})
    assert instruction_refusal(negative, True, None) == "mw must be positive, got -3"
    late = instruction.model_copy(update={"issued_at": T9 + timedelta(hours=1)})
    assert instruction_refusal(late, True, None) == (
        "the window ended at 2026-07-01 14:15 UTC, before it was issued"
    )
    assert instruction_refusal(instruction, False, None) == (
        "unknown resource 'NXW-PJM-0042': no enrolled assets"
    )
    # A revision changes the MW, never the window.
    assert instruction_refusal(second, True, None, [instruction]) is None
    longer = second.model_copy(update={"window_end": T9 + timedelta(hours=2)})
    assert instruction_refusal(longer, True, None, [instruction]) == (
        "a revision keeps the window of revision 1 (2026-07-01 13:15-14:15 UTC); another window"
        " is another instruction"
    )
    # A cancellation only stops what was commanded: its MW and window do not matter; after
    # it, the event is over.
    cancel = late.model_copy(update={"cancelled": True, "mw": 0.0, "revision": 2})
    assert instruction_refusal(cancel, False, None, [instruction]) is None
    third = second.model_copy(update={"revision": 3})
    assert instruction_refusal(third, True, None, [instruction, cancel]) == (
        "the event was cancelled in revision 2"
    )


def test_commands_go_one_message_per_gateway_in_parts() -> None:
    instruction = DispatchInstruction(
        instruction_id="I-7", resource_id="NXW-PJM-0042", mw=1.0, issued_at=T9, revision=2,
        window_start=T9, window_end=T9 + timedelta(hours=1),
    )  # fmt: skip
    window = CommandWindow(T9 + timedelta(minutes=1), T9 + timedelta(hours=1), None)
    n = MAX_SETPOINTS_PER_COMMAND + 1  # one connector with one asset too many for a message
    assets = ["H-1", *(f"E-{k}" for k in range(n))]
    gateways = ["H-1", *(["enphase-cloud"] * n)]
    setpoints = [2.34567, *([1.0] * n)]
    got = command_messages(instruction, assets, gateways, setpoints, round_=1)
    assert [m.command_id for m in got] == [
        "I-7:r2:H-1:1-0", "I-7:r2:enphase-cloud:1-0", "I-7:r2:enphase-cloud:1-1",
    ]  # fmt: skip
    assert [len(m.asset_ids) for m in got] == [1, MAX_SETPOINTS_PER_COMMAND, 1]
    assert got[0].setpoints_kw == [2.346]  # rounded to the watt
    assert got[2].asset_ids == [f"E-{n - 1}"]
    # Encoded without a model per setpoint: the record is what the contract reads, and the
    # same bytes the models would make.
    for m in got:
        raw = encode_data(
            ASSET_COMMAND, command_payload(instruction, window, m), source="dispatch",
            event_id=m.command_id, time=T9,
        )  # fmt: skip
        event = decode(ASSET_COMMAND, raw)
        command = event.data
        assert (command.gateway_id, command.revision, command.window_start) == (
            m.gateway_id, 2, window.start,
        )  # fmt: skip
        assert [sp.asset_id for sp in command.setpoints] == m.asset_ids
        assert raw == encode(
            envelope(ASSET_COMMAND, command, source="dispatch", event_id=m.command_id, time=T9)
        )


def test_program_seasons_start_in_april_and_october() -> None:
    assert season_start(datetime(2026, 7, 1, tzinfo=UTC)) == datetime(2026, 4, 1, tzinfo=UTC)
    assert season_start(datetime(2026, 11, 3, tzinfo=UTC)) == datetime(2026, 10, 1, tzinfo=UTC)
    assert season_start(datetime(2027, 2, 3, tzinfo=UTC)) == datetime(2026, 10, 1, tzinfo=UTC)
    assert season_start(datetime(2027, 4, 1, tzinfo=UTC)) == datetime(2027, 4, 1, tzinfo=UTC)


def test_what_assets_acknowledge_and_what_is_ignored() -> None:
    commanded = {"A": 2.0, "B": 3.0, "C": 1.5, "D": 4.0}
    answers = {
        "A": Answer(True, 2.0),  # as told
        "B": Answer(True, 1.25),  # holds less: what it holds counts
        "C": Answer(False, 1.5),  # refused: 0
        "D": Answer(True, 4.0004),  # within the watt the setpoint is rounded to
        "E": Answer(True, 1.0),  # not commanded in this round
    }
    assert acknowledged_kw(commanded, answers) == Acknowledged(
        {"A": 2.0, "B": 1.25, "C": 0.0, "D": 4.0004}, 0, 1
    )
    # More than commanded (beyond the watt) is ignored and counted; silent assets left out.
    assert acknowledged_kw({"A": 2.0, "F": 1.0}, {"A": Answer(True, 2.001)}) == Acknowledged(
        {}, 1, 0
    )
