"""The dispatcher against real Kafka and PostgreSQL: registrations, telemetry and acks reach its
in-memory view through a real broadcast consumer; gateways are played by the test, answering
the commands they read off `asset.command`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from nexwatt_dispatch.acks import AckBook
from nexwatt_dispatch.bootstrap import MIGRATIONS
from nexwatt_dispatch.config import Settings
from nexwatt_dispatch.handlers import Dispatcher, StateHandler
from nexwatt_dispatch.log import DispatchLog
from nexwatt_dispatch.view import FleetView
from nexwatt_shared.contracts import (
    AssetCommand,
    AssetCommandAck,
    AssetRegistered,
    DispatchConfirmed,
    DispatchInstruction,
    DispatchStatus,
    SetpointAck,
    TelemetryInterval,
)
from nexwatt_shared.kafka.consumer import ConsumerRunner
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.postgres import open_pool
from nexwatt_shared.topics import (
    ASSET_COMMAND,
    ASSET_COMMAND_ACK,
    ASSET_REGISTERED,
    DISPATCH_CONFIRMED,
    TELEMETRY_INTERVAL,
)
from tests.helpers import TopicWatcher, eventually, unique

pytestmark = pytest.mark.integration
NOW = datetime(2026, 3, 12, 13, 17, tzinfo=UTC)
HOUR = timedelta(hours=1)
MIN = timedelta(minutes=1)


@dataclass
class Gateways:
    """Plays every gateway: answers each command it reads with the kW `answers` names per
    asset (the commanded kW when not named; None: that asset never answers), and loses the
    first copy of the command ids in `lose`."""

    producer: EventProducer
    watcher: TopicWatcher
    answers: dict[str, float | None] = field(default_factory=dict)
    lose: set[str] = field(default_factory=set)
    seen: list[str] = field(default_factory=list)
    _task: asyncio.Task | None = None

    def start(self) -> Gateways:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        done = 0
        while True:
            events = [e for name, _, e in self.watcher.events if name == ASSET_COMMAND.name]
            for command in [e.data for e in events[done:] if e is not None]:
                await self._answer(command)
            done = len(events)
            await asyncio.sleep(0.02)

    async def _answer(self, command: AssetCommand) -> None:
        self.seen.append(command.command_id)
        if command.command_id in self.lose:
            self.lose.discard(command.command_id)
            return
        acks = []
        for sp in command.setpoints:
            kw = self.answers.get(sp.asset_id, sp.setpoint_kw)
            if kw is not None:
                acks.append(SetpointAck(asset_id=sp.asset_id, accepted=kw > 0, setpoint_kw=kw))
        if acks:
            ack = AssetCommandAck(
                command_id=command.command_id, instruction_id=command.instruction_id,
                gateway_id=command.gateway_id, acks=acks, acked_at=NOW,
            )  # fmt: skip
            await self.producer.publish(ASSET_COMMAND_ACK, ack)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


@pytest.fixture
async def ctx(servers: dict[str, str]) -> AsyncIterator[dict]:
    bootstrap = servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"]
    pool = await open_pool(
        servers["NEXWATT_POSTGRES_URL"], unique("test_dispatch").replace("-", "_"), MIGRATIONS
    )
    producer = EventProducer(bootstrap, "test")
    await producer.start()
    watcher = await TopicWatcher(bootstrap, [DISPATCH_CONFIRMED, ASSET_COMMAND]).start()
    view, acks, dispatch_log = FleetView(), AckBook(), DispatchLog(pool)
    settings = Settings(dispatch_ack_timeout_s=2.0, dispatch_lead_time_s=60.0)
    ready = asyncio.Event()
    ready.set()
    state = ConsumerRunner(
        bootstrap_servers=bootstrap, group_id=unique("test-dispatch-state"),
        topics=[ASSET_REGISTERED, TELEMETRY_INTERVAL, ASSET_COMMAND_ACK],
        handler=StateHandler(view, acks, dispatch_log, 900.0).handle, dead_letters=producer,
        replay={ASSET_REGISTERED.name: 60.0, TELEMETRY_INTERVAL.name: 60.0,
                ASSET_COMMAND_ACK.name: 60.0},
    )  # fmt: skip
    stop = asyncio.Event()
    state_task = asyncio.create_task(state.run(stop))
    gateways = Gateways(producer, watcher).start()
    yield {
        "pool": pool,
        "view": view,
        "producer": producer,
        "dispatcher": Dispatcher(settings, view, acks, dispatch_log, producer, ready),
        "watcher": watcher,
        "gateways": gateways,
        "resource": unique("NXW-PJM-T"),
    }
    stop.set()
    await state_task
    await gateways.stop()
    await watcher.stop()
    await producer.stop()
    await pool.close()


def asset(
    ctx: dict, asset_id: str, version: int = 1, status: str = "enrolled", **more: object
) -> AssetRegistered:
    # Lossless, battery rated as its inverter: the limits are headroom and energy.
    return AssetRegistered(
        round_trip_efficiency=1.0,
        asset_id=asset_id, status=status, asset_type="solar_storage", inverter="SolarEdge SE7600",
        vendor="solaredge", capacity_kw=7.6, storage_kwh=9.8, backup_reserve_pct=20.0,
        meter_id="M", iso="PJM", iso_zone="PJM-PEPCO", resource_id=ctx["resource"],
        cohort="residential", telemetry_interval_s=300, version=version, updated_at=NOW,
        **more,
    )  # fmt: skip


def telemetry(asset_id: str, end: datetime, pv_kw: float, soc_pct: float) -> TelemetryInterval:
    return TelemetryInterval(
        asset_id=asset_id, interval_start=end - timedelta(minutes=5), interval_s=300,
        pv_kw=pv_kw, load_kw=1.0, battery_kw=0.0, net_kw=pv_kw - 1.0, soc_pct=soc_pct,
    )  # fmt: skip


async def fleet_of(ctx: dict, records: list[AssetRegistered], readings: list) -> None:
    """Publish the records and readings, and wait until the view holds them."""
    await ctx["producer"].publish_many(ASSET_REGISTERED, records)
    await ctx["producer"].publish_many(TELEMETRY_INTERVAL, readings)
    view: FleetView = ctx["view"]
    ends = {(r.asset_id, r.interval_end.timestamp()) for r in readings}

    def arrived() -> bool:
        at = view.slot.get
        return all(
            at(r.asset_id) is not None and view.version[at(r.asset_id)] >= r.version
            for r in records
        ) and all(at(a) is not None and view.columns["soc_end_s"][at(a)] >= end for a, end in ends)

    await eventually(lambda: asyncio.sleep(0, arrived()), bool, timeout_s=30)


def instruction(ctx: dict, mw: float, **more: object) -> DispatchInstruction:
    fields = {"instruction_id": unique("I"), "resource_id": ctx["resource"], "mw": mw,
              "window_start": NOW - timedelta(minutes=2), "window_end": NOW + HOUR,
              "issued_at": NOW} | more  # fmt: skip
    return DispatchInstruction(**fields)


async def answer_to(ctx: dict, i: DispatchInstruction) -> DispatchConfirmed:
    """Answer as the instruction consumer does: logged first, then decided."""
    dispatcher: Dispatcher = ctx["dispatcher"]
    await dispatcher.answer(i, await dispatcher.log.record_instruction(i))
    [answer] = await ctx["watcher"].wait_for(
        DISPATCH_CONFIRMED, instruction_id=i.instruction_id, revision=i.revision
    )

    def commanded() -> int:  # the watcher may see the answer before the commands
        found = ctx["watcher"].payloads(ASSET_COMMAND, instruction_id=i.instruction_id,
                                        revision=i.revision)  # fmt: skip
        return len({sp.asset_id for c in found for sp in c.setpoints})

    await eventually(lambda: asyncio.sleep(0, commanded()), lambda n: n >= answer.assets_commanded)
    return answer


def setpoints(ctx: dict, i: DispatchInstruction) -> dict[str, float]:
    """The newest setpoint each asset was sent for the instruction (all revisions)."""
    got: dict[str, float] = {}
    for c in ctx["watcher"].payloads(ASSET_COMMAND, instruction_id=i.instruction_id):
        got |= {sp.asset_id: sp.setpoint_kw for sp in c.setpoints}
    return got


async def restored(ctx: dict) -> dict[str, tuple[float, datetime, datetime]]:
    """What a replica starting now measures (setpoint [kW], from, to) per asset: a view with
    every row and no window, and the commands standing in the log."""
    view = ctx["view"].copy()
    restarted = Dispatcher(ctx["dispatcher"].settings, view, AckBook(), DispatchLog(ctx["pool"]),
                           ctx["producer"], ctx["dispatcher"].view_ready)  # fmt: skip
    await restarted.restore_orders()
    at = partial(datetime.fromtimestamp, tz=UTC)
    return {a: (o.setpoint_kw, at(o.start_s), at(o.end_s)) for a, o in view.orders().items()}


async def test_allocation_per_gateway_confirmation_and_replay(ctx: dict) -> None:
    a, b, c = (unique(f"T-{x}") for x in "ABC")
    hub = unique("GW")
    # A: headroom 7.6 - 2.6 = 5.0 kW; energy (90 - 20) % * 9.8 kWh / 0.95 h = 7.22 kW -> 5.0 kW
    # B: headroom 7.6 - 0.6 = 7.0 kW; energy (50 - 20) % * 9.8 / 0.95 h = 3.095 kW
    # (issued 13:17 for 13:15-14:17, one minute of lead: commands cover 13:18-14:17, 0.9833 h
    # -> B 2.94 * 60 / 59 = 2.9898 kW). C: unenrolled after enrolling: not in the resource.
    await fleet_of(
        ctx,
        [asset(ctx, a, gateway_id=hub), asset(ctx, b, gateway_id=hub), asset(ctx, c),
         asset(ctx, c, version=2, status="unenrolled")],
        [telemetry(a, NOW, 2.6, 90.0), telemetry(b, NOW, 0.6, 50.0)],
    )  # fmt: skip
    b_kw = (50 - 20) / 100 * 9.8 * 60 / 59
    # 0.009 MW = 9 kW, more than the limits 5.0 + 2.99 kW: both at their limits, and no
    # headroom left for a second round.
    i = instruction(ctx, 0.009)
    answer = await answer_to(ctx, i)
    assert setpoints(ctx, i) == pytest.approx({a: 5.0, b: b_kw}, abs=1e-3)
    # One message for the hub's two assets, keyed by the hub.
    [command] = ctx["watcher"].payloads(ASSET_COMMAND, instruction_id=i.instruction_id)
    assert command.gateway_id == hub and command.command_id == f"{i.instruction_id}:r1:{hub}:0-0"
    assert (command.window_start, command.window_end) == (NOW + timedelta(minutes=1), NOW + HOUR)
    assert answer.status == DispatchStatus.PARTIAL
    assert answer.mw_confirmed == pytest.approx((5.0 + round(b_kw, 3)) / 1000, abs=1e-9)
    assert (answer.assets_commanded, answer.assets_dispatched) == (2, 2)
    assert answer.reason == (
        "fleet limit 0.008 MW; the window opened at 13:15 UTC; commands cover 13:18-14:17 UTC,"
        " what can still be delivered"
    )

    # Redelivered: nothing is decided again, and nothing more is published...
    answer_id = f"confirmed:{i.instruction_id}"
    await ctx["dispatcher"].answer(i)
    await asyncio.sleep(1.0)
    assert len(ctx["watcher"].payloads(DISPATCH_CONFIRMED, instruction_id=i.instruction_id)) == 1
    # ...unless the first try died between recording its answer and publishing it: then the
    # recorded bytes go out, byte for byte the same record.
    await ctx["pool"].execute(
        "UPDATE outbox SET published_at = NULL WHERE event_id = $1", answer_id
    )
    await ctx["dispatcher"].answer(i)
    await ctx["watcher"].wait_for(DISPATCH_CONFIRMED, count=2, instruction_id=i.instruction_id)
    sent = [
        record.value
        for name, record, event in ctx["watcher"].events
        if name == DISPATCH_CONFIRMED.name and event.data.instruction_id == i.instruction_id
    ]
    assert len(sent) == 2 and sent[0] == sent[1] and json.loads(sent[0])["id"] == answer_id


async def test_a_silent_asset_is_replaced_and_a_lost_command_sent_once_more(ctx: dict) -> None:
    a, b, c = (unique(f"T-{x}") for x in "ABC")
    # Each at 90 % SoC with 2.6 kW of PV: 5.0 kW. 6 kW asked: 2 kW each. B never answers;
    # A's gateway loses the first copy of its command, and answers the copy sent again.
    await fleet_of(
        ctx, [asset(ctx, x) for x in (a, b, c)], [telemetry(x, NOW, 2.6, 90.0) for x in (a, b, c)]
    )
    i = instruction(ctx, 0.006)
    ctx["gateways"].answers[b] = None
    lost = f"{i.instruction_id}:r1:{a}:0-0"
    ctx["gateways"].lose.add(lost)
    answer = await answer_to(ctx, i)
    assert ctx["gateways"].seen.count(lost) == 2
    # B's 2 kW go to the headroom of A and C (3 kW each): 1 kW more each, in a second round
    # that tells B to stop (it may have taken its setpoint without saying so).
    assert setpoints(ctx, i) == pytest.approx({a: 3.0, b: 0.0, c: 3.0})
    second = ctx["watcher"].payloads(ASSET_COMMAND, instruction_id=i.instruction_id)[-1]
    assert second.command_id.endswith(":1-0")
    assert answer.status == DispatchStatus.CONFIRMED
    assert answer.mw_confirmed == pytest.approx(0.006, abs=1e-9)
    assert (answer.assets_commanded, answer.assets_dispatched, answer.assets_replaced) == (
        3, 2, 1,
    )  # fmt: skip


async def test_what_an_asset_acknowledges_short_goes_to_the_others_headroom(ctx: dict) -> None:
    a, b = unique("T-A"), unique("T-B")
    await fleet_of(
        ctx, [asset(ctx, x) for x in (a, b)], [telemetry(x, NOW, 2.6, 90.0) for x in (a, b)]
    )
    # 4 kW asked of two 5 kW assets: 2 kW each; B's gateway holds it to 1 kW, all B can do.
    # The missing 1 kW goes to the headroom left elsewhere: A's 5 - 2 = 3 kW: A 3 kW, B
    # not asked again. 3 + 1 kW confirmed.
    ctx["gateways"].answers[b] = 1.0
    i = instruction(ctx, 0.004)
    answer = await answer_to(ctx, i)
    assert setpoints(ctx, i) == pytest.approx({a: 3.0, b: 2.0}, abs=1e-3)
    assert answer.status == DispatchStatus.CONFIRMED and answer.assets_replaced == 0
    assert answer.mw_confirmed == pytest.approx(0.004, abs=1e-9)
    # A replica starting now measures what each asset acknowledged, from the commands'
    # start (13:17 + 1 minute of lead; the resource's clock, 13:17, is before it).
    window = (NOW + MIN, NOW + HOUR)
    assert await restored(ctx) == {a: (3.0, *window), b: (1.0, *window)}


async def test_an_update_moves_the_setpoints_and_a_cancellation_stops_them(ctx: dict) -> None:
    a, b = unique("T-A"), unique("T-B")
    await fleet_of(
        ctx, [asset(ctx, x) for x in (a, b)], [telemetry(x, NOW, 2.6, 90.0) for x in (a, b)]
    )
    first = instruction(ctx, 0.004)  # 2 kW each
    assert (await answer_to(ctx, first)).status == DispatchStatus.CONFIRMED
    assert setpoints(ctx, first) == pytest.approx({a: 2.0, b: 2.0})
    # Mid-event the ISO asks for 8 kW: 4 kW each, one new message per gateway.
    more = first.model_copy(update={"revision": 2, "mw": 0.008, "issued_at": NOW + 10 * MIN})
    updated = await answer_to(ctx, more)
    assert updated.status == DispatchStatus.CONFIRMED and updated.revision == 2
    assert updated.mw_confirmed == pytest.approx(0.008)
    assert setpoints(ctx, first) == pytest.approx({a: 4.0, b: 4.0})
    # Measured after a restart: the revision's setpoints, from when it was issued.
    assert await restored(ctx) == {x: (4.0, NOW + 10 * MIN, NOW + HOUR) for x in (a, b)}
    # Then calls it off: every asset commanded gets 0.
    off = first.model_copy(update={"revision": 3, "cancelled": True, "issued_at": NOW + 20 * MIN})
    cancelled = await answer_to(ctx, off)
    assert cancelled.status == DispatchStatus.CANCELLED and cancelled.mw_confirmed == 0.0
    assert setpoints(ctx, first) == {a: 0.0, b: 0.0}
    assert await restored(ctx) == {}  # nothing stands
    # An older revision arriving late changes nothing: refused as superseded.
    late = await answer_to(ctx, more.model_copy(update={"revision": 2}))
    assert late.status == DispatchStatus.CONFIRMED  # the recorded answer, not a new decision


async def test_bad_instructions_are_answered_rejected_with_the_reason(ctx: dict) -> None:
    a = unique("T-A")
    await fleet_of(ctx, [asset(ctx, a)], [telemetry(a, NOW, 2.6, 90.0)])
    cases = {
        "mw must be positive, got -1": instruction(ctx, -1.0),
        "mw must be positive, got 0": instruction(ctx, 0.0),
        "before it was issued": instruction(ctx, 1.0, issued_at=NOW + 2 * HOUR),
        "unknown resource": instruction(ctx, 1.0, resource_id=unique("NXW-PJM-NONE")),
    }
    for reason, i in cases.items():
        answer = await answer_to(ctx, i)
        assert answer.status == DispatchStatus.REJECTED and reason in answer.reason, answer
    # The same id and revision with different content: rejected, under an id of its own; the
    # first answer stands.
    first = instruction(ctx, 0.001)
    await answer_to(ctx, first)
    reused = first.model_copy(update={"mw": 0.002})
    earlier = await ctx["dispatcher"].log.record_instruction(reused)
    await ctx["dispatcher"].answer(reused, earlier)
    answers = await ctx["watcher"].wait_for(
        DISPATCH_CONFIRMED, count=2, instruction_id=first.instruction_id
    )
    assert answers[1].status == DispatchStatus.REJECTED
    assert "was already used for another instruction" in answers[1].reason


async def test_over_dispatch_from_measured_performance(ctx: dict) -> None:
    a, b = unique("T-A"), unique("T-B")
    await fleet_of(
        ctx, [asset(ctx, x) for x in (a, b)], [telemetry(x, NOW, 2.6, 90.0) for x in (a, b)]
    )
    # B delivered half of what it was told in past events (ratio 0.5), A all of it. 6 kW
    # asked of limits 5 + 5: expected capacity 5 + 2.5 = 7.5, share 6 / 7.5 = 0.8: both told
    # 4 kW, expected 4 + 2 = 6 kW: confirmed in full.
    ctx["view"].set_performance([(a, 10.0, 10.0), (b, 10.0, 5.0)])
    i = instruction(ctx, 0.006)
    answer = await answer_to(ctx, i)
    assert setpoints(ctx, i) == pytest.approx({a: 4.0, b: 4.0})
    assert answer.status == DispatchStatus.CONFIRMED
    assert answer.mw_confirmed == pytest.approx(0.006, abs=1e-9)


async def test_a_subscriber_at_the_seasons_limit_is_not_called(ctx: dict) -> None:
    a, b = unique("T-A"), unique("T-B")
    await fleet_of(
        ctx,
        [asset(ctx, a, subscriber_id="S-1"), asset(ctx, b, subscriber_id=unique("S"))],
        [telemetry(x, NOW, 2.6, 90.0) for x in (a, b)],
    )
    dispatcher: Dispatcher = ctx["dispatcher"]
    await dispatcher._load_season(NOW)
    dispatcher.events["S-1"] = dispatcher.limits.max_events_per_season
    i = instruction(ctx, 0.004)
    await answer_to(ctx, i)
    assert setpoints(ctx, i) == pytest.approx({b: 4.0})
    # A capability test is not an event: S-1 takes part.
    t = instruction(ctx, 0.004, kind="test")
    tested = await answer_to(ctx, t)
    assert setpoints(ctx, t) == pytest.approx({a: 2.0, b: 2.0})
    assert tested.kind == "test" and tested.reason.startswith("capability test")


async def test_an_event_called_off_before_it_opens_counts_for_no_one(ctx: dict) -> None:
    a = unique("T-A")
    await fleet_of(ctx, [asset(ctx, a, subscriber_id=unique("S"))], [telemetry(a, NOW, 2.6, 90.0)])
    later = instruction(ctx, 0.002, window_start=NOW + HOUR, window_end=NOW + 2 * HOUR)
    await answer_to(ctx, later)
    taking_part = "SELECT count(*) FROM participation WHERE instruction_id = $1"
    assert await ctx["pool"].fetchval(taking_part, later.instruction_id) == 1
    off = later.model_copy(update={"revision": 2, "cancelled": True, "issued_at": NOW + MIN})
    assert (await answer_to(ctx, off)).status == DispatchStatus.CANCELLED
    assert await ctx["pool"].fetchval(taking_part, later.instruction_id) == 0
    # Called off: a revision after it is refused, and so is one that moves the window.
    again = later.model_copy(update={"revision": 3, "issued_at": NOW + 2 * MIN})
    refused = await answer_to(ctx, again)
    assert refused.status == DispatchStatus.REJECTED
    assert refused.reason == "the event was cancelled in revision 2"
    moved = instruction(ctx, 0.002)
    await answer_to(ctx, moved)
    longer = moved.model_copy(update={"revision": 2, "window_end": NOW + 3 * HOUR})
    assert (await answer_to(ctx, longer)).reason.startswith("a revision keeps the window")


async def test_an_asset_whose_soc_is_reported_missing_is_not_dispatched(ctx: dict) -> None:
    a, b = unique("T-A"), unique("T-B")
    # B's newest battery reading reports its SoC missing: B is not available, even though its
    # SoC of 5 minutes before was 90 %.
    missing = TelemetryInterval(
        asset_id=b, interval_start=NOW, interval_s=300,
        quality={"battery_kw": "missing", "soc_pct": "missing"},
    )  # fmt: skip
    await fleet_of(
        ctx, [asset(ctx, a), asset(ctx, b)],
        [telemetry(a, NOW + 5 * MIN, 2.6, 90.0), telemetry(b, NOW, 2.6, 90.0), missing],
    )  # fmt: skip
    answer = await answer_to(ctx, instruction(ctx, 0.006))
    assert answer.assets_commanded == 1 and answer.mw_confirmed == pytest.approx(0.005)
    assert "fleet limit 0.005 MW" in answer.reason
    # A resource whose only asset's SoC is missing: nothing to command, and the reason says so.
    alone = {**ctx, "resource": unique("NXW-PJM-T")}
    await fleet_of(alone, [asset(alone, b, version=2)], [])
    rejected = await answer_to(ctx, instruction(alone, 0.006))
    assert rejected.status == DispatchStatus.REJECTED
    assert rejected.reason == "no asset available: 1 of 1 assets with SoC unknown or stale"
