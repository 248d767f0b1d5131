"""Keeping the view current, and answering instructions: decide, command, gather acks,
replace who did not answer, answer.

Instructions are answered concurrently, each in a task of its own: the instruction consumer
only records an instruction (so that it is answered after a restart too) and starts its task.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import numpy as np
import structlog
from prometheus_client import Counter, Gauge, Histogram

from nexwatt_dispatch.acks import ACKS_IGNORED, AckBook
from nexwatt_dispatch.config import Settings
from nexwatt_dispatch.domain import (
    SETPOINT_ROUNDING_MW,
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
    pv_state,
    season_start,
    shortfall_reason,
    unavailable_reason,
    usable,
    within_limits,
)
from nexwatt_dispatch.log import CommandRound, DispatchLog, Participation
from nexwatt_dispatch.view import FleetView, Performance
from nexwatt_shared import outbox
from nexwatt_shared.codec import encode_data
from nexwatt_shared.contracts import (
    AssetCommandAck,
    AssetRegistered,
    DispatchConfirmed,
    DispatchInstruction,
    DispatchStatus,
    InstructionKind,
    TelemetryInterval,
    answer_event_id,
    conflict_event_id,
)
from nexwatt_shared.kafka.consumer import Delivery
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.topics import ASSET_COMMAND

log = structlog.get_logger()
T = TypeVar("T")
CONFIRM_SECONDS = Histogram(
    "nexwatt_dispatch_confirm_seconds",
    "Wall time from instruction to dispatch.confirmed [s]",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 30),
)
COMMAND_SECONDS = Histogram(
    "nexwatt_dispatch_command_seconds",
    "Wall time from instruction to its last command on the bus [s]",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
INSTRUCTIONS = Counter("nexwatt_dispatch_instructions_total", "Instructions answered", ["status"])
MW_REQUESTED = Gauge("nexwatt_dispatch_mw_requested", "Last request [MW]", ["resource_id"])
MW_CONFIRMED = Gauge("nexwatt_dispatch_mw_confirmed", "Last confirmation [MW]", ["resource_id"])
HELD_ASSETS = Gauge(
    "nexwatt_dispatch_unregistered_assets_held",
    "Assets with telemetry but no registration yet whose readings are kept for it",
)
HELD_DROPPED = Counter(
    "nexwatt_dispatch_unregistered_readings_dropped_total",
    "Readings of unregistered assets let go to keep what is held bounded",
)
RETRY_S = (0.5, 10.0)  # an answer that failed on a server is tried again, backing off
DECISIONS_AT_ONCE = 4  # the pool holds 10 connections (nexwatt_shared.postgres.open_pool)


async def until_done(action: Callable[[], Awaitable[T]], what: str) -> T:
    """`action`'s result, tried again with a growing pause (RETRY_S) while it fails: a server
    away, a timeout. Cancelling stops it (CancelledError is not an Exception)."""
    delay = RETRY_S[0]
    while True:
        try:
            return await action()
        except Exception as exc:
            log.warning(f"{what} failed; trying again", error=f"{type(exc).__name__}: {exc}",
                        retry_in_s=delay)  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(2 * delay, RETRY_S[1])


class StateHandler:
    """asset.registered, telemetry.interval and asset.command-ack keep the view current; the
    windows that close are measured into each asset's performance."""

    def __init__(
        self, view: FleetView, acks: AckBook, dispatch_log: DispatchLog, max_age_s: float
    ) -> None:
        self.view, self.acks, self.log, self.max_age_s = view, acks, dispatch_log, max_age_s
        self.between_batches = asyncio.Lock()  # held while a batch is applied
        self.unwritten: list[Performance] = []  # measured windows, kept until stored

    async def handle(self, batch: list[Delivery]) -> None:
        async with self.between_batches:
            await self._apply(batch)

    async def _apply(self, batch: list[Delivery]) -> None:
        registrations, readings, ack_messages = [], [], []
        for d in batch:
            p = d.payload
            if isinstance(p, TelemetryInterval):
                readings.append(p)
            elif isinstance(p, AssetCommandAck):
                ack_messages.append((p, d.value))
            elif isinstance(p, AssetRegistered):
                registrations.append(p)
        self.view.apply_registrations(sorted(registrations, key=lambda r: r.version))
        dropped_before = self.view.held_dropped
        closed = self.view.apply_telemetry(readings)
        HELD_DROPPED.inc(self.view.held_dropped - dropped_before)
        HELD_ASSETS.set(len(self.view.held))
        if readings:
            closed += self.view.close_stale(self.max_age_s)
        if ack_messages:
            self.acks.add([m for m, _ in ack_messages])
            await self.log.record_acks(ack_messages)
        self.unwritten += closed  # a failed write retries the batch: these are not lost
        if self.unwritten:
            await self.log.record_performance(self.unwritten)
            self.view.add_performance(self.unwritten)
            self.unwritten = []


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        view: FleetView,
        acks: AckBook,
        dispatch_log: DispatchLog,
        producer: EventProducer,
        view_ready: asyncio.Event,
    ) -> None:
        self.settings = settings
        self.view = view
        self.acks = acks
        self.log = dispatch_log
        self.pool = dispatch_log.pool
        self.producer = producer
        self.view_ready = view_ready
        self.limits = EventLimits(
            settings.dispatch_max_events_per_season,
            settings.dispatch_max_hours_per_event,
            "the program's settings (NEXWATT_DISPATCH_MAX_*)",
        )
        self.events: dict[str, int] = {}  # subscriber -> events this season
        self.season: datetime | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # A decision holds one connection for its lock and takes others inside it: fewer
        # decisions at once than the pool has connections, or they could starve each other.
        self._deciding = asyncio.Semaphore(DECISIONS_AT_ONCE)
        self._answering: set[tuple[str, int]] = set()  # instruction id, revision

    # --- the consumer and the worker --------------------------------------------------------

    async def handle(self, batch: list[Delivery]) -> None:
        """Record each instruction and start answering it; the offsets are committed once the
        instructions are in the log, not once they are answered."""
        for delivery in batch:
            instruction = delivery.payload
            assert isinstance(instruction, DispatchInstruction)
            earlier = await self.log.record_instruction(instruction)
            self._start(instruction, earlier, time.monotonic())

    async def run(self, stop: asyncio.Event) -> None:
        """Answer what was received but not answered before a restart, and now and then what
        another replica received and did not answer (it died: its offsets were committed, so
        no one else is handed the instruction); keep the measured performance current; at
        stop, cancel what is in flight (answered after the restart)."""
        orphaned_after_s = 0.0  # at start: everything unanswered is ours to answer
        while not stop.is_set():
            try:
                for instruction in await self.log.unanswered(orphaned_after_s):
                    self._start(instruction, instruction, time.monotonic())
                self.view.set_performance(await self.log.performance_totals())
                if self.season is not None:  # what other replicas counted, too
                    self.events = await self.log.events_since(self.season)
            except Exception as exc:  # PostgreSQL away: tried again next time
                log.warning("orphans and performance not read", error=str(exc))
            orphaned_after_s = 4 * self.settings.dispatch_ack_timeout_s + 30.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.dispatch_performance_refresh_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def restore_orders(self) -> None:
        """Measure again what assets were commanded to hold before a restart, as the live
        path does (the setpoint from when it was sent, then what was acknowledged), in windows
        not over yet on their resource's clock: from that clock on, since what they did while
        no one was measuring is unknown (commanded and delivered both count from then). Run
        once the view has caught up, before any instruction is decided (a decision's orders
        must not be replaced by older ones read from the log)."""
        # Windows that ended before every resource's clock are over for every resource.
        oldest_s = self.view.oldest_clock_s()
        ending_after = None if np.isnan(oldest_s) else datetime.fromtimestamp(oldest_s, UTC)
        standing = await until_done(lambda: self.log.standing(ending_after), "reading the log")
        measured: set[str] = set()
        for i, commands in standing:
            window = self._window(i)
            start_s = np.nan if window is None else window.start.timestamp()
            start_s = np.fmax(start_s, self.view.clock_s(i.resource_id))
            end_s = np.nan if window is None else window.end.timestamp()
            told = commands.commanded_kw
            if not start_s < end_s:  # over: what it told the assets no longer stands
                self.view.order(told.keys(), [0.0] * len(told), i.instruction_id, 0.0, 0.0)
                continue
            acked = acknowledged_kw(told, commands.answers).kw
            for kw_by_asset in (told, acked):
                self.view.order(kw_by_asset.keys(), kw_by_asset.values(), i.instruction_id,
                                float(start_s), float(end_s))  # fmt: skip
            measured.add(i.instruction_id)
        if measured:
            log.info("commanded windows measured again after the start", instructions=len(measured))

    def _start(
        self, instruction: DispatchInstruction, earlier: DispatchInstruction, started: float
    ) -> None:
        key = (instruction.instruction_id, instruction.revision)
        if key in self._answering and earlier == instruction:
            return  # being answered here already (a redelivery, or found unanswered)
        self._answering.add(key)
        task = asyncio.create_task(self._answer_until_done(instruction, earlier, started))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._answering.discard(key))

    async def _answer_until_done(
        self, instruction: DispatchInstruction, earlier: DispatchInstruction, started: float
    ) -> None:
        async def decide() -> None:
            async with self._deciding:
                await self.answer(instruction, earlier, started)

        with structlog.contextvars.bound_contextvars(
            instruction_id=instruction.instruction_id, revision=instruction.revision
        ):
            await until_done(decide, "answering")

    # --- one instruction --------------------------------------------------------------------

    async def answer(
        self,
        instruction: DispatchInstruction,
        earlier: DispatchInstruction | None = None,
        started: float | None = None,
    ) -> None:
        """Decide once per instruction revision, however often it is delivered: the lock keeps
        two replicas (a rebalance overlap, a restart) from deciding at once, and a replay
        publishes what was recorded (the same answer, byte for byte) instead of deciding
        again."""
        started = time.monotonic() if started is None else started
        await self.view_ready.wait()
        i = instruction
        if earlier is not None and earlier != i:
            # Not a replay: the id was reused. Answered under an id of its own content.
            refusal = instruction_refusal(i, True, earlier)
            digest = hashlib.sha256(i.model_dump_json().encode()).hexdigest()[:16]
            conflict = conflict_event_id(i.instruction_id, i.revision, digest)
            await self._publish(self._rejected(i, refusal, started), conflict, on_row=False)
            return
        event_id = answer_event_id(i.instruction_id, i.revision)
        # For one release: a revision answered under the id before `answer_event_id`.
        before = f"confirmed:{i.instruction_id}:r{i.revision}" if i.revision > 1 else event_id
        async with self.log.deciding(i.instruction_id):
            recorded = [e for e in {event_id, before}
                        if await outbox.recorded_value(self.pool, e) is not None]  # fmt: skip
            if recorded:
                sent = await outbox.publish_pending(self.pool, self.producer, recorded)
                log.info("instruction already answered", answer_published_now=bool(sent))
                return
            log.info("instruction received", resource_id=i.resource_id, mw=i.mw, kind=i.kind)
            others = await self.log.other_revisions(i)
            known = self.view.members(i.resource_id).size > 0
            refusal = instruction_refusal(i, known, None, others)
            if refusal is not None:
                await self._publish(self._rejected(i, refusal, started), event_id)
                return
            answer, window, acked = await self._command(i, started)
            taking_part = None
            if acked and not i.cancelled:
                view = self.view
                subscribers = set(
                    map(view.subscribers.__getitem__,
                        map(view.slot.__getitem__, (a for a, kw in acked.items() if kw > 0)))
                )  # fmt: skip
                hours = (window.end - window.start).total_seconds() / 3600.0
                taking_part = Participation(sorted(subscribers), hours)
            called_off = i.cancelled and i.issued_at <= i.window_start
            await self._publish(answer, event_id, taking_part, called_off)
            # After the answer is out: what the assets acknowledged they hold (measured since
            # they were told), and the season's count (a revision after the first counts
            # nothing new).
            self.view.order(acked.keys(), acked.values(), i.instruction_id,
                            window.start.timestamp(), window.end.timestamp())  # fmt: skip
            if taking_part and i.kind == InstructionKind.EVENT and i.revision == 1:
                for sub in taking_part.subscribers:
                    self.events[sub] = self.events.get(sub, 0) + 1

    async def _publish(
        self,
        answer: DispatchConfirmed,
        event_id: str,
        participation: Participation | None = None,
        called_off: bool = False,
        on_row: bool = True,
    ) -> None:
        """Record first, then publish from the record: a crash in between re-sends these
        bytes on replay, never a second decision. `on_row`: the answer's figures go on the
        instruction's row too (not for a refused reuse of its id); `called_off`: see
        `DispatchLog.record_answer`."""
        await self.log.record_answer(
            answer, event_id, self.producer.source, on_row, participation, called_off
        )
        await outbox.publish_pending(self.pool, self.producer, [event_id])
        CONFIRM_SECONDS.observe(answer.processing_ms / 1000.0)
        INSTRUCTIONS.labels(answer.status).inc()
        MW_REQUESTED.labels(answer.resource_id).set(answer.mw_requested)
        MW_CONFIRMED.labels(answer.resource_id).set(answer.mw_confirmed)
        log.info(
            "instruction answered",
            status=answer.status,
            reason=answer.reason,
            mw_confirmed=answer.mw_confirmed,
            assets_commanded=answer.assets_commanded,
            assets_dispatched=answer.assets_dispatched,
            assets_replaced=answer.assets_replaced,
            processing_ms=round(answer.processing_ms, 1),
        )

    def _rejected(
        self, instruction: DispatchInstruction, reason: str | None, started: float
    ) -> DispatchConfirmed:
        return self._confirmation(
            instruction, DispatchStatus.REJECTED, reason, 0.0, 0, 0, 0, started
        )

    def _confirmation(
        self,
        instruction: DispatchInstruction,
        status: DispatchStatus,
        reason: str | None,
        confirmed_mw: float,
        commanded: int,
        dispatched: int,
        replaced: int,
        started: float,
        acknowledged_mw: float = 0.0,
        window: CommandWindow | None = None,
    ) -> DispatchConfirmed:
        i = instruction
        elapsed_s = time.monotonic() - started
        return DispatchConfirmed(
            instruction_id=i.instruction_id,
            revision=i.revision,
            kind=i.kind,
            resource_id=i.resource_id,
            window_start=i.window_start,
            window_end=i.window_end,
            status=status,
            reason=reason,
            mw_requested=max(i.mw, 0.0),
            mw_confirmed=round(confirmed_mw, 6),
            mw_acknowledged=round(acknowledged_mw, 6),
            assets_commanded=commanded,
            assets_dispatched=dispatched,
            assets_replaced=replaced,
            instruction_received_at=i.issued_at,
            commands_start=window.start if window is not None else None,
            # Event time of the answer: the instruction's event time plus our processing time.
            confirmed_at=i.issued_at + timedelta(seconds=elapsed_s),
            processing_ms=elapsed_s * 1000.0,
        )

    async def _command(
        self, instruction: DispatchInstruction, started: float
    ) -> tuple[DispatchConfirmed, CommandWindow, dict[str, float]]:
        """Command the assets (the recorded rounds, when a crash interrupted an earlier try),
        gather their acks, replace those that did not answer, and build the answer; with the
        commands' window and the acknowledged setpoints [kW] by asset."""
        i = instruction
        window = self._window(i)
        if window is None:
            window = CommandWindow(i.window_start, i.window_end, None)
            if not i.cancelled:
                reason = "nothing of the window is left once gateways can reach the assets"
                return self._rejected(i, reason, started), window, {}
        stopped = await self.log.commanded_before(i.instruction_id, i.revision)
        await self._load_season(window.start)
        rounds = await self.log.recorded_rounds(i.instruction_id, i.revision)
        first = rounds.get(0) or await self._decide(i, window, 0, stop=stopped)
        if first is None and i.cancelled:
            return self._confirmation(
                i, DispatchStatus.CANCELLED, "cancelled by the ISO; nothing was commanded",
                0.0, 0, 0, 0, started,
            ), window, {}  # fmt: skip
        if first is None:
            return self._rejected(i, self._why_none(i), started), window, {}
        await self._send(first)
        COMMAND_SECONDS.observe(time.monotonic() - started)
        span = (i.instruction_id, window.start.timestamp(), window.end.timestamp())
        self.view.order(first.asset_ids, first.setpoints_kw, *span)
        expected = dict(zip(first.asset_ids, first.setpoints_kw, strict=True))
        limits = dict(zip(first.asset_ids, first.limits_kw, strict=True))
        acked = await self._gather(i, 0, first, expected)
        told = {a for a, kw in expected.items() if kw > 0}  # assets given a setpoint
        silent = [a for a in first.asset_ids if a not in acked]
        wanted_kw = max(i.mw, 0.0) * 1000.0 - self._expected_kw(acked)
        short = wanted_kw > len(expected) * SETPOINT_ROUNDING_MW * 1000.0
        replaced = 0
        if short and not i.cancelled:
            # What the silent assets were to deliver, and what others acknowledged less of,
            # goes to the others' headroom: to assets that acknowledged (their setpoint
            # raised) and to any not commanded yet.
            refused = [a for a, kw in acked.items() if kw <= 0]
            held = {a: kw for a, kw in acked.items() if kw > 0}
            # An asset that held less than it was told has no headroom left: what it held is
            # what it can do. A silent one is told to stop (it may have taken its setpoint).
            full = {a for a, kw in held.items() if kw + 0.0005 < expected[a]}
            second = rounds.get(1) or await self._decide(
                i, window, 1, stop=set(silent), excluding=[*silent, *refused],
                wanted_kw=wanted_kw, held=held, full=full,
            )  # fmt: skip
            if second is not None:
                await self._send(second)
                self.view.order(second.asset_ids, second.setpoints_kw, *span)
                raised = dict(zip(second.asset_ids, second.setpoints_kw, strict=True))
                acked |= await self._gather(i, 1, second, raised)
                expected |= raised
                told |= {a for a, kw in raised.items() if kw > 0}
                limits |= dict(zip(second.asset_ids, second.limits_kw, strict=True))
                replaced = len(silent)
        answer = self._settle(i, window, expected, limits, acked, len(told), replaced, started)
        return answer, window, acked

    def _window(self, instruction: DispatchInstruction) -> CommandWindow | None:
        """When the instruction's commands run. A revision or a cancellation changes what
        assets already hold: at once (a lead time would leave them idle mid-event)."""
        i = instruction
        immediate = i.cancelled or i.revision > 1
        lead = timedelta(seconds=0 if immediate else self.settings.dispatch_lead_time_s)
        return command_window(i.window_start, i.window_end, i.issued_at, lead)

    def _settle(
        self,
        instruction: DispatchInstruction,
        window: CommandWindow,
        expected: dict[str, float],
        limits: dict[str, float],
        acked: dict[str, float],
        commanded: int,
        replaced: int,
        started: float,
    ) -> DispatchConfirmed:
        """The answer from the acks: confirmed is what the acknowledged setpoints are expected
        to deliver (each times its asset's performance ratio); the shortfall, what the
        commanded assets could be expected to deliver at their limits."""
        i = instruction
        acknowledged_mw = sum(acked.values()) / 1000.0
        dispatched = sum(1 for kw in acked.values() if kw > 0)
        if i.cancelled:
            return self._confirmation(
                i, DispatchStatus.CANCELLED, f"cancelled by the ISO; {len(acked)} of"
                f" {len(expected)} assets acknowledged the stop", 0.0, len(expected),
                len(acked), 0, started,
            )  # fmt: skip
        confirmed_mw = self._expected_kw(acked) / 1000.0
        covered = confirmed_mw + commanded * SETPOINT_ROUNDING_MW >= i.mw
        shortfall = None if covered else shortfall_reason(i.mw, [self._expected_kw(limits)])
        status, reason = answer_status(i.mw, confirmed_mw, commanded, len(acked), shortfall)
        reason = "; ".join(r for r in (reason, window.note) if r) or None
        if i.kind == InstructionKind.TEST:
            reason = "; ".join(r for r in ("capability test", reason) if r)
        answer = self._confirmation(
            i, status, reason, confirmed_mw, commanded, dispatched, replaced, started,
            acknowledged_mw, window,
        )  # fmt: skip
        return answer

    def _expected_kw(self, kw_by_asset: dict[str, float]) -> float:
        """What assets held at these kW are expected to deliver [kW]: each times its
        performance ratio."""
        if not kw_by_asset:
            return 0.0
        slots = np.fromiter(
            map(self.view.slot.__getitem__, kw_by_asset), np.int64, len(kw_by_asset)
        )
        c = self.view.columns
        ratio = performance_ratio(c["delivered_kwh"][slots], c["commanded_kwh"][slots])
        return float(np.dot(np.fromiter(kw_by_asset.values(), float, len(kw_by_asset)), ratio))

    async def _decide(
        self,
        instruction: DispatchInstruction,
        window: CommandWindow,
        round_: int,
        *,
        stop: set[str] | None = None,
        excluding: Sequence[str] = (),
        wanted_kw: float | None = None,
        held: dict[str, float] | None = None,
        full: set[str] | None = None,
    ) -> CommandRound | None:
        """Allocate `wanted_kw` (default: the request) over the resource's available assets
        but `excluding`, on top of what assets already `held` [kW] (their headroom is what is
        left of their limit; none for those `full`), and tell the assets in `stop` (commanded
        before, not now: wherever they are now) to stop; record the round's messages. None:
        nothing to command."""
        i, s = instruction, self.settings
        fleet = self.view.fleet(i.resource_id, excluding)
        hours = (window.end - window.start).total_seconds() / 3600.0
        base = np.zeros(len(fleet))
        for asset_id, kw in (held or {}).items():
            k = fleet.position.get(asset_id)
            if k is not None:
                base[k] = kw
        extra = np.zeros(len(fleet))
        limits = np.zeros(len(fleet))
        if not i.cancelled and len(fleet):
            pv_age, soc_age = fleet.channel_ages_s(i.issued_at.timestamp())
            limits = dispatchable_kw(
                fleet.ratings, fleet.pv_kw, fleet.soc_pct, hours, pv_age, soc_age,
                s.dispatch_telemetry_max_age_s, s.event_time_max_ahead_s, fleet.has_pv,
            )  # fmt: skip
            if i.kind == InstructionKind.EVENT:
                used = self._events_used(fleet.subscribers)
                allowed = within_limits(used, hours, self.limits)
                for asset_id in stop or ():  # already in this event: counted for it
                    k = fleet.position.get(asset_id)
                    if k is not None:
                        allowed[k] = True
                limits = np.where(allowed, limits, 0.0)
            ratio = performance_ratio(fleet.delivered_kwh, fleet.commanded_kwh)
            wanted = max(i.mw, 0.0) * 1000.0 if wanted_kw is None else wanted_kw
            headroom = np.clip(limits - base, 0.0, None)
            for asset_id in full or ():
                headroom[fleet.position[asset_id]] = 0.0
            extra = allocate(wanted, headroom, s.dispatch_min_setpoint_kw, ratio)
        picked = np.flatnonzero(extra > 0)
        asset_ids = [fleet.asset_ids[k] for k in picked]
        gateway_ids = [fleet.gateway_ids[k] for k in picked]
        setpoints = (base + extra)[picked].tolist()
        limits_picked = limits[picked].tolist()
        # Assets to stop: from the view, wherever they are now (suspended, moved, excluded).
        for asset_id in sorted((stop or set()) - set(asset_ids)):
            row = self.view.slot.get(asset_id)
            if row is not None:
                asset_ids.append(asset_id)
                gateway_ids.append(self.view.gateways[row])
                setpoints.append(0.0)
                limits_picked.append(0.0)
        if not asset_ids:
            return None
        messages = command_messages(i, asset_ids, gateway_ids, setpoints, round_)
        encoded = [
            (m.command_id, m.gateway_id, encode_data(
                ASSET_COMMAND, command_payload(i, window, m), source=self.producer.source,
                event_id=m.command_id, time=i.issued_at,
            ))
            for m in messages
        ]  # fmt: skip
        # Limits in message order: each message's assets are in `asset_ids` order per gateway.
        limit_of = dict(zip(asset_ids, limits_picked, strict=True))
        ordered = [a for m in messages for a in m.asset_ids]
        limits_kw = [limit_of[a] for a in ordered]
        await self.log.record_round(i, round_, messages, limits_kw, encoded)
        return CommandRound(
            [m.command_id for m in messages],
            ordered,
            [kw for m in messages for kw in m.setpoints_kw],
            limits_kw,
            encoded,
        )

    def _why_none(self, instruction: DispatchInstruction) -> str:
        """Why no asset of the resource could be commanded, counted per cause."""
        s = self.settings
        fleet = self.view.fleet(instruction.resource_id)
        pv_age, soc_age = fleet.channel_ages_s(instruction.issued_at.timestamp())
        max_age, ahead = s.dispatch_telemetry_max_age_s, s.event_time_max_ahead_s
        return unavailable_reason(
            pv_state(fleet.pv_kw, pv_age, max_age, ahead, fleet.has_pv)[1],
            usable(fleet.soc_pct, soc_age, max_age, ahead),
        )

    def _events_used(self, subscribers: Sequence[str]) -> np.ndarray:
        """Events each subscriber took part in this season (counted in memory, from the log
        at the season's first instruction)."""
        return np.array([self.events.get(sub, 0) for sub in subscribers], dtype=np.int64)

    async def _send(self, commands: CommandRound) -> None:
        """Publish the round's messages: from the bytes in hand when just decided, else the
        recorded ones not yet published (a decision a crash interrupted)."""
        if commands.encoded:
            await outbox.publish_encoded(self.pool, self.producer, ASSET_COMMAND, commands.encoded)
        else:
            await outbox.publish_pending(
                self.pool, self.producer, commands.command_ids, limit=len(commands.command_ids)
            )

    async def _gather(
        self,
        instruction: DispatchInstruction,
        round_: int,
        commands: CommandRound,
        expected: dict[str, float],
    ) -> dict[str, float]:
        """The acknowledged setpoints [kW] of the round's assets (0 for a refusal): waits until
        all have answered or the timeout passes; halfway, a message no gateway has answered is
        sent once more (a gateway that lost it sees the same command id again)."""
        key = (instruction.instruction_id, instruction.revision, round_)
        half_s = self.settings.dispatch_ack_timeout_s / 2
        acks = await self.acks.wait(key, expected, half_s)
        if any(a not in acks for a in expected):
            unanswered = set(commands.command_ids) - self.acks.answered(key)
            if unanswered:
                log.info("re-sending commands no gateway answered", messages=len(unanswered))
                await outbox.republish(self.pool, self.producer, sorted(unanswered))
            acks = await self.acks.wait(key, expected, half_s)
        acked = acknowledged_kw(expected, acks)
        ACKS_IGNORED.labels("more than commanded").inc(acked.above_command)
        ACKS_IGNORED.labels("asset not commanded").inc(acked.not_commanded)
        return acked.kw

    async def _load_season(self, when: datetime) -> None:
        """Events per subscriber in the season of `when`, read from the log when it starts."""
        season = season_start(when)
        if self.season != season:
            self.events = await self.log.events_since(season)
            self.season = season
