"""The simulated gateways against hand-worked cases: one ack message per command message, what
each asset acknowledges, offline and refusing assets, stops, lost commands."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from nexwatt_fleet_sim.config import Settings
from nexwatt_fleet_sim.fleet import SimFleet, build_fleet
from nexwatt_fleet_sim.simulator import Simulator, lost_first_time
from nexwatt_shared.codec import decode, encode, envelope
from nexwatt_shared.contracts import AssetCommand, AssetCommandAck, AssetCommandV1, Setpoint
from nexwatt_shared.topics import ASSET_COMMAND, ASSET_COMMAND_ACK, Topic

# 04:00 UTC is 23:00 solar time in Washington: no PV, so an SE7600H (DC-coupled: a 7.6 kW
# hybrid inverter, a 5.0 kW battery) can give 5.0 kW; with 4.6 kW of PV through its inverter,
# min(5.0, 7.6 - 4.6) = 3.0 kW.
START = datetime(2026, 3, 12, 4, 0, tzinfo=UTC)
WINDOW = (START, START + timedelta(hours=1))
SE7600H = "SolarEdge SE7600H"
SBS60 = "SMA Sunny Boy Storage 6.0"  # AC-coupled: its battery inverter's 6.0 kW whatever the PV
TOL_KW = 1e-9


class AckRecorder:
    """Keeps what the simulator would publish: (topic, event ids, payloads) per call."""

    source = "fleet-sim"

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], list[Any]]] = []

    async def publish_many(
        self, topic: Topic, payloads: Sequence[Any], *, event_id: Callable[[Any], str]
    ) -> None:
        self.calls.append((topic.name, [event_id(p) for p in payloads], list(payloads)))

    @property
    def acks(self) -> list[AssetCommandAck]:
        return [p for _, _, payloads in self.calls for p in payloads]


@dataclass(frozen=True)
class Gateways:
    sim: Simulator
    fleet: SimFleet
    producer: AckRecorder
    se: int  # index of an SE7600H home
    sbs: int  # index of an SBS 6.0 home

    def asset(self, i: int) -> str:
        return self.fleet.asset_ids[i]

    async def send(self, *commands: AssetCommand) -> None:
        await self.sim.handle_commands([SimpleNamespace(payload=c) for c in commands])  # type: ignore[misc]


def gateways(**settings: Any) -> Gateways:
    """A fleet where every asset behaves (no offline, refusing or under-responding one unless
    a test says so), before dawn."""
    s = Settings(
        sim_assets=40, sim_offline_fraction=0.0, sim_refusal_fraction=0.0,
        sim_under_response_fraction=0.0, sim_history_days=0, sim_start=START, **settings,
    )  # fmt: skip
    fleet = build_fleet(s)
    producer = AckRecorder()
    inverters = [r["inverter"] for r in fleet.registrations]
    sim = Simulator(s, fleet, producer)  # type: ignore[arg-type]
    return Gateways(sim, fleet, producer, inverters.index(SE7600H), inverters.index(SBS60))


def command(
    command_id: str, setpoints: dict[str, float], gateway_id: str = "BTM-cloud", revision: int = 1
) -> AssetCommand:
    return AssetCommand(
        command_id=command_id, instruction_id="I-1", revision=revision, resource_id="R-1",
        gateway_id=gateway_id,
        setpoints=[Setpoint(asset_id=a, setpoint_kw=kw) for a, kw in setpoints.items()],
        window_start=WINDOW[0], window_end=WINDOW[1], issued_at=WINDOW[0],
    )  # fmt: skip


async def test_one_ack_per_command_each_asset_at_most_what_it_can_give() -> None:
    g = gateways()
    g.sim.pv_now[g.se] = 4.6  # its limit: min(5.0, 7.6 - 4.6) = 3.0 kW
    g.fleet.response_factor[g.sbs] = 0.5  # acknowledges, then delivers half
    await g.send(
        command("I-1:r1:BTM-cloud:0", {g.asset(g.se): 5.0, g.asset(g.sbs): 5.0}),
        command("I-1:r1:BTM-cloud:1", {g.asset(g.sbs): 4.0}),
    )
    # One publish of the batch: one message per command, its id the command's.
    [(topic, event_ids, acks)] = g.producer.calls
    assert topic == ASSET_COMMAND_ACK.name
    assert event_ids == ["ack:I-1:r1:BTM-cloud:0", "ack:I-1:r1:BTM-cloud:1"]
    first, second = acks
    assert (first.command_id, first.instruction_id, first.gateway_id, first.acked_at) == (
        "I-1:r1:BTM-cloud:0", "I-1", "BTM-cloud", START,
    )  # fmt: skip
    assert [(a.asset_id, a.accepted, a.setpoint_kw, a.reason) for a in first.acks] == [
        (g.asset(g.se), True, 3.0, None),  # 5 kW asked, 3 kW possible
        (g.asset(g.sbs), True, 5.0, None),  # within its 6.0 kW
    ]
    # The newest command replaces the SBS's order: 4.0 kW acknowledged, 0.5 x 4.0 delivered.
    assert [(a.asset_id, a.setpoint_kw) for a in second.acks] == [(g.asset(g.sbs), 4.0)]
    orders = g.sim.orders
    assert orders.active(START).tolist() == [i in (g.se, g.sbs) for i in range(40)]
    assert orders.target_kw[[g.se, g.sbs]] == pytest.approx([3.0, 2.0], abs=TOL_KW)
    assert not orders.active(WINDOW[1]).any()  # the window's end is excluded


async def test_offline_and_foreign_assets_are_left_out_and_an_empty_answer_is_never_sent() -> None:
    g = gateways()
    g.fleet.offline[g.sbs] = True
    await g.send(
        command("C-1", {g.asset(g.se): 2.0, g.asset(g.sbs): 2.0, "OTHER-00001": 2.0}),
        command("C-2", {g.asset(g.sbs): 2.0}),  # only offline: no answer ever comes
        command("C-3", {"OTHER-00001": 2.0}),  # another fleet's
    )
    [ack] = g.producer.acks
    assert ack.command_id == "C-1"
    assert [(a.asset_id, a.setpoint_kw) for a in ack.acks] == [(g.asset(g.se), 2.0)]
    assert g.sim.orders.active(START).tolist() == [i == g.se for i in range(40)]

    g.fleet.offline[g.se] = True
    await g.send(command("C-4", {g.asset(g.se): 2.0}))
    assert len(g.producer.calls) == 1  # nothing to publish: no call at all


async def test_a_refusing_owner_acks_not_accepted_with_the_reason() -> None:
    g = gateways()
    g.fleet.refuses[g.se] = True
    await g.send(command("C-1", {g.asset(g.se): 2.0}))
    [ack] = g.producer.acks
    [entry] = ack.acks
    assert (entry.accepted, entry.setpoint_kw, entry.reason) == (
        False, 0.0, "the owner opted out of this event",
    )  # fmt: skip
    assert not g.sim.orders.active(START).any()


async def test_an_inverter_full_of_pv_acks_not_accepted_and_says_why() -> None:
    g = gateways()
    g.sim.pv_now[g.se] = 7.6  # DC-coupled: 7.6 - 7.6 = 0 kW of headroom
    await g.send(command("C-1", {g.asset(g.se): 2.0}))
    [entry] = g.producer.acks[0].acks
    assert (entry.accepted, entry.setpoint_kw) == (False, 0.0)
    assert entry.reason is not None and "headroom" in entry.reason
    assert not g.sim.orders.active(START).any()


async def test_a_setpoint_of_zero_ends_the_order() -> None:
    g = gateways()
    await g.send(command("I-1:r1:BTM-cloud:0", {g.asset(g.se): 3.0}))
    g.sim.step()  # 04:00-04:01, no PV: the battery gives its 3.0 kW for 1/60 h = 0.05 kWh
    assert g.sim.delivered_kwh == {"I-1": pytest.approx(0.05, abs=TOL_KW)}

    # Dispatch stops the asset (a cancellation, or an update that drops it): acknowledged.
    await g.send(command("I-1:r2:BTM-cloud:0", {g.asset(g.se): 0.0}, revision=2))
    [entry] = g.producer.acks[-1].acks
    assert (entry.accepted, entry.setpoint_kw, entry.reason) == (True, 0.0, None)
    assert not g.sim.orders.active(g.sim.clock).any()
    g.sim.step()
    assert g.sim.delivered_kwh == {"I-1": pytest.approx(0.05, abs=TOL_KW)}


async def test_a_lost_command_is_answered_only_when_sent_again() -> None:
    g = gateways(sim_lost_command_fraction=1.0)  # every command is lost the first time
    lost = command("C-1", {g.asset(g.se): 2.0})
    await g.send(lost)
    assert g.producer.calls == []
    assert not g.sim.orders.active(START).any()  # never received: nothing carried out
    await g.send(lost)
    [ack] = g.producer.acks
    assert ack.command_id == "C-1" and ack.acks[0].setpoint_kw == 2.0
    assert g.sim.orders.active(START).tolist() == [i == g.se for i in range(40)]
    await g.send(lost)  # and every time after
    assert len(g.producer.acks) == 2


def test_the_lost_commands_are_a_fixed_share_picked_by_seed_and_id() -> None:
    ids = [f"I-{k}:r1:BTM-solaredge-cloud:0" for k in range(10_000)]
    picked = np.array([lost_first_time(c, 42, 0.3) for c in ids])
    # A binomial share of 10,000 draws: sd = sqrt(0.3 * 0.7 / 10,000) = 0.0046; within 4 sd.
    assert picked.mean() == pytest.approx(0.3, abs=0.019)
    assert picked.tolist() == [lost_first_time(c, 42, 0.3) for c in ids]  # the same every time
    other_seed = np.array([lost_first_time(c, 43, 0.3) for c in ids])
    assert (picked != other_seed).any()
    assert not any(lost_first_time(c, 42, 0.0) for c in ids)
    assert all(lost_first_time(c, 42, 1.0) for c in ids)


async def test_a_version_1_command_off_the_wire_is_answered_by_the_assets_own_gateway() -> None:
    g = gateways()
    v1 = AssetCommandV1(
        command_id=f"I-1:{g.asset(g.se)}", instruction_id="I-1", asset_id=g.asset(g.se),
        resource_id="R-1", setpoint_kw=2.5, window_start=WINDOW[0], window_end=WINDOW[1],
        issued_at=WINDOW[0],
    )  # fmt: skip
    wire = json.loads(encode(envelope(ASSET_COMMAND, command("C-1", {"X": 1.0}), source="t")))
    wire.update(type="nexwatt.asset.command.v1", data=v1.model_dump(mode="json"))
    delivery = SimpleNamespace(payload=decode(ASSET_COMMAND, json.dumps(wire).encode()).data)
    await g.sim.handle_commands([delivery])  # type: ignore[list-item]
    [ack] = g.producer.acks
    # Keyed by the gateway that answers: a v1 command names the asset's own.
    echoed = decode(ASSET_COMMAND_ACK, encode(envelope(ASSET_COMMAND_ACK, ack, source="t")))
    assert echoed.data == ack
    assert (ack.command_id, ack.gateway_id) == (f"I-1:{g.asset(g.se)}", g.asset(g.se))
    assert [(a.asset_id, a.accepted, a.setpoint_kw) for a in ack.acks] == [
        (g.asset(g.se), True, 2.5)
    ]
