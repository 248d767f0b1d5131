"""Handling instructions (allocate, command, collect acks, answer) and keeping state current."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import numpy as np
import structlog
from prometheus_client import Counter, Gauge, Histogram

from nexwatt_dispatch.availability import Availability
from nexwatt_dispatch.config import Settings
from nexwatt_dispatch.domain import (
    allocate,
    answer_status,
    dispatchable_kw,
    pv_state,
    shortfall_reason,
    telemetry_age_s,
    unavailable_reason,
    usable,
)
from nexwatt_dispatch.log import DispatchLog
from nexwatt_shared import outbox
from nexwatt_shared.codec import envelope
from nexwatt_shared.contracts import (
    AssetCommand,
    AssetCommandAck,
    AssetRegistered,
    DispatchConfirmed,
    DispatchInstruction,
    TelemetryInterval,
)
from nexwatt_shared.kafka.consumer import BatchHandler, Delivery
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.topics import ASSET_COMMAND, DISPATCH_CONFIRMED

log = structlog.get_logger()
CONFIRM_SECONDS = Histogram(
    "nexwatt_dispatch_confirm_seconds",
    "Wall time from instruction to dispatch.confirmed [s]",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 30),
)
INSTRUCTIONS = Counter("nexwatt_dispatch_instructions_total", "Instructions answered", ["status"])
MW_REQUESTED = Gauge("nexwatt_dispatch_mw_requested", "Last request [MW]", ["resource_id"])
MW_CONFIRMED = Gauge("nexwatt_dispatch_mw_confirmed", "Last confirmation [MW]", ["resource_id"])


def make_state_handler(availability: Availability, dispatch_log: DispatchLog) -> BatchHandler:
    """asset.registered, telemetry.interval and asset.command-ack keep the view current."""

    async def handle(batch: list[Delivery]) -> None:
        payloads = [d.payload for d in batch]
        registrations = [p for p in payloads if isinstance(p, AssetRegistered)]
        acks = [p for p in payloads if isinstance(p, AssetCommandAck)]
        await availability.apply_registrations(sorted(registrations, key=lambda r: r.version))
        await availability.apply_telemetry(
            [p for p in payloads if isinstance(p, TelemetryInterval)]
        )
        if acks:
            await dispatch_log.record_acks(acks)
            await availability.record_acks(acks)

    return handle


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        availability: Availability,
        dispatch_log: DispatchLog,
        producer: EventProducer,
    ) -> None:
        self.settings = settings
        self.availability = availability
        self.log = dispatch_log
        self.pool = dispatch_log.pool
        self.producer = producer

    async def handle(self, batch: list[Delivery]) -> None:
        for delivery in batch:
            assert isinstance(delivery.payload, DispatchInstruction)
            with structlog.contextvars.bound_contextvars(
                instruction_id=delivery.payload.instruction_id, event_id=delivery.event.id
            ):
                await self.answer(delivery.payload)

    async def answer(self, instruction: DispatchInstruction) -> None:
        """Decide once per instruction, however often it is delivered: the lock keeps two
        replicas (a rebalance overlap) from deciding at once, and a replay publishes what was
        recorded (the same answer, byte for byte) instead of deciding again."""
        started = time.monotonic()
        answer_id = f"confirmed:{instruction.instruction_id}"
        async with self.log.deciding(instruction.instruction_id):
            if await outbox.recorded_value(self.pool, answer_id) is not None:
                sent = await outbox.publish_pending(self.pool, self.producer, [answer_id])
                log.info("instruction already answered", answer_published_now=bool(sent))
                return
            log.info("instruction received", resource_id=instruction.resource_id, mw=instruction.mw)
            await self.log.record_instruction(instruction)
            answer = await self._answer(instruction, started)
            event = envelope(
                DISPATCH_CONFIRMED,
                answer,
                source=self.producer.source,
                event_id=answer_id,
                time=answer.confirmed_at,
            )
            # Record first, then publish from the record: a crash in between re-sends these
            # bytes on replay, never a second decision.
            async with self.pool.acquire() as conn, conn.transaction():
                await outbox.record(conn, DISPATCH_CONFIRMED, event)
                await self.log.record_answer(conn, answer)
            await outbox.publish_pending(self.pool, self.producer, [answer_id])
        CONFIRM_SECONDS.observe(answer.processing_ms / 1000.0)
        INSTRUCTIONS.labels(answer.status).inc()
        MW_REQUESTED.labels(instruction.resource_id).set(instruction.mw)
        MW_CONFIRMED.labels(instruction.resource_id).set(answer.mw_confirmed)
        log.info(
            "instruction answered",
            status=answer.status,
            reason=answer.reason,
            mw_confirmed=answer.mw_confirmed,
            assets_dispatched=answer.assets_dispatched,
            processing_ms=answer.processing_ms,
        )

    async def _answer(self, instruction: DispatchInstruction, started: float) -> DispatchConfirmed:
        """Command the assets (the recorded commands, when a crash interrupted an earlier try),
        collect their acks, and build the answer."""
        commands, limits_kw = await self.log.recorded_commands(instruction)
        if commands:
            shortfall = shortfall_reason(instruction.mw, limits_kw)
        else:
            commands, limits_kw, shortfall = await self._allocate(instruction)
            await self.log.record_commands(commands, limits_kw)
        # Command ids are the event ids, so a gateway sees a re-sent command as the same one.
        await self.producer.publish_many(
            ASSET_COMMAND, commands, time=instruction.issued_at, event_id=lambda c: c.command_id
        )
        acked_kw = await self._collect_acks(instruction.instruction_id, commands)
        elapsed_s = time.monotonic() - started
        confirmed_mw = sum(acked_kw.values()) / 1000.0
        status, reason = answer_status(
            instruction.mw, confirmed_mw, len(commands), len(acked_kw), shortfall
        )
        return DispatchConfirmed(
            instruction_id=instruction.instruction_id,
            resource_id=instruction.resource_id,
            window_start=instruction.window_start,
            window_end=instruction.window_end,
            status=status,
            reason=reason,
            mw_requested=instruction.mw,
            mw_confirmed=round(confirmed_mw, 6),
            assets_commanded=len(commands),
            assets_dispatched=sum(1 for kw in acked_kw.values() if kw > 0),
            instruction_received_at=instruction.issued_at,
            # Event time of the answer: the instruction's event time plus our processing time.
            confirmed_at=instruction.issued_at + timedelta(seconds=elapsed_s),
            processing_ms=elapsed_s * 1000.0,
        )

    async def _allocate(
        self, instruction: DispatchInstruction
    ) -> tuple[list[AssetCommand], list[float], str | None]:
        """Share the request over the resource's available assets: the commands, each one's
        limit [kW], and why the request can't be met in full (None when it can)."""
        fleet = await self.availability.fleet(instruction.resource_id)
        now = instruction.issued_at
        start = max(now, instruction.window_start)
        hours = (instruction.window_end - start).total_seconds() / 3600.0
        if not fleet.asset_ids:
            return [], [], f"unknown resource {instruction.resource_id!r}: no enrolled assets"
        if hours <= 0:
            return [], [], "the window has already ended at the instruction's issue time"
        # Each channel's age, from the resource's clock over every asset's newest end.
        pv_age_s, soc_age_s = (
            telemetry_age_s(now.timestamp(), fleet.telemetry_end_epoch, end)
            for end in (fleet.pv_end_epoch, fleet.soc_end_epoch)
        )
        max_age_s = self.settings.dispatch_telemetry_max_age_s
        max_ahead_s = self.settings.event_time_max_ahead_s
        limits = dispatchable_kw(
            fleet.ratings, fleet.pv_kw, fleet.soc_pct, hours, pv_age_s, soc_age_s, max_age_s,
            max_ahead_s, fleet.has_pv,
        )  # fmt: skip
        setpoints = allocate(
            instruction.mw * 1000.0, limits, self.settings.dispatch_min_setpoint_kw
        )
        chosen = np.flatnonzero(setpoints > 0)
        if chosen.size == 0:
            return (
                [],
                [],
                unavailable_reason(
                    pv_state(fleet.pv_kw, pv_age_s, max_age_s, max_ahead_s, fleet.has_pv)[1],
                    usable(fleet.soc_pct, soc_age_s, max_age_s, max_ahead_s),
                ),
            )
        commands = [
            AssetCommand(
                command_id=f"{instruction.instruction_id}:{fleet.asset_ids[i]}",
                instruction_id=instruction.instruction_id,
                asset_id=fleet.asset_ids[i],
                resource_id=instruction.resource_id,
                setpoint_kw=round(float(setpoints[i]), 3),
                window_start=start,
                window_end=instruction.window_end,
                issued_at=now,
            )
            for i in chosen
        ]
        limits_kw = [float(limits[i]) for i in chosen]
        return commands, limits_kw, shortfall_reason(instruction.mw, limits_kw)

    async def _collect_acks(
        self, instruction_id: str, commands: list[AssetCommand]
    ) -> dict[str, float]:
        """Acknowledged setpoints [kW] by command id, capped at what was commanded; waits until
        every command is answered or the timeout passes."""
        if not commands:
            return {}
        wanted = {c.command_id: c.setpoint_kw for c in commands}
        deadline = time.monotonic() + self.settings.dispatch_ack_timeout_s
        while True:
            acked = await self.availability.acked_setpoints_kw(instruction_id)
            if wanted.keys() <= acked.keys() or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        return {cid: min(acked[cid], kw) for cid, kw in wanted.items() if cid in acked}
