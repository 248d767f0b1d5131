"""One dispatch event from the ISO's side, printed as the dispatch event log."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaConsumer
from pydantic import BaseModel

from nexwatt_iso_sim.config import Settings
from nexwatt_shared.codec import UndecodableMessage, decode
from nexwatt_shared.contracts import (
    DispatchConfirmed,
    DispatchInstruction,
    DispatchStatus,
    InstructionKind,
    SettlementFiled,
    TelemetryInterval,
)
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.topics import (
    DISPATCH_CONFIRMED,
    DISPATCH_INSTRUCTION,
    SETTLEMENT_FILED,
    TELEMETRY_INTERVAL,
)

PROGRESS_EVERY_S = 5.0


class EventLog:
    """Lines like `2026-03-12 09:17:00  ASSETS_DISPATCHED  count: 304  mw_confirmed: 44.1`."""

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)

    def local(self, when: datetime, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        return when.astimezone(self.zone).strftime(fmt)

    def line(self, when: datetime, name: str, **fields: object) -> None:
        parts = [f'{k}: "{v}"' if isinstance(v, str) else f"{k}: {v}" for k, v in fields.items()]
        print(f"{self.local(when)}  {name}  " + "  ".join(parts), flush=True)


async def play(settings: Settings) -> None:
    """Send the capability test (if any) and the instruction when the fleet's event time
    reaches theirs; exit 0 once the instruction's settlement is filed, 2 if it is rejected, 1
    on time-out."""
    out = EventLog(settings.iso_timezone)
    event_id = settings.iso_instruction_id or f"PJM-{uuid.uuid4().hex[:12]}"
    instruction = DispatchInstruction(
        instruction_id=event_id,
        resource_id=settings.iso_resource_id,
        mw=settings.iso_mw,
        window_start=settings.iso_window_start,
        window_end=settings.iso_window_end,
        issued_at=settings.iso_issue_at,
    )
    test = None
    if settings.iso_test_at is not None:
        test = instruction.model_copy(
            update={
                "instruction_id": f"{event_id}-TEST",
                "kind": InstructionKind.TEST,
                "window_start": settings.iso_test_at,
                "window_end": settings.iso_test_at + timedelta(minutes=settings.iso_test_minutes),
                "issued_at": settings.iso_test_at,
            }
        )
    topics = [TELEMETRY_INTERVAL, DISPATCH_CONFIRMED, SETTLEMENT_FILED]
    security = settings.kafka_security()
    consumer = AIOKafkaConsumer(
        *(t.name for t in topics),
        **security,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="latest",
    )
    producer = EventProducer(settings.kafka_bootstrap_servers, settings.service_name, security)
    await consumer.start()
    await producer.start()
    try:
        await _pin_positions(consumer)
        await _run(settings, instruction, test, consumer, producer, out)
    finally:
        await consumer.stop()
        await producer.stop()


async def _pin_positions(consumer: AIOKafkaConsumer) -> None:
    """Resolve 'latest' now, so nothing published after this moment is missed."""
    # Without a group every partition is assigned to us once metadata arrives; aiokafka offers
    # no event for that, so poll.
    while not consumer.assignment():  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    for tp in consumer.assignment():
        await consumer.position(tp)


class _Session:
    """The ISO's view of one event: the fleet's event clock, then the platform's answers."""

    def __init__(
        self, instruction: DispatchInstruction, test: DispatchInstruction | None, out: EventLog
    ) -> None:
        self.instruction = instruction
        self.out = out
        self.clock: datetime | None = None
        self.sent_at: float | None = None  # wall time the instruction went out
        self.pending = [i for i in (test, instruction) if i is not None]  # in issue order
        self.done = False

    def due(self) -> DispatchInstruction | None:
        """The next instruction whose issue time the fleet's clock has reached."""
        if self.pending and self.clock is not None and self.clock >= self.pending[0].issued_at:
            return self.pending.pop(0)
        return None

    def sent(self, i: DispatchInstruction) -> None:
        local = self.out.local
        window = f"{local(i.window_start, '%H:%M')}\N{EN DASH}{local(i.window_end, '%H:%M')}"
        if i.kind == InstructionKind.TEST:
            self.out.line(i.issued_at, "CAPABILITY_TEST_SENT", resource_id=i.resource_id,
                          mw_requested=i.mw, window=window)  # fmt: skip
            return
        self.sent_at = time.monotonic()
        self.out.line(i.issued_at, "DISPATCH_INSTRUCTION_RECEIVED", resource_id=i.resource_id,
                      mw_requested=i.mw, window=window)  # fmt: skip

    def see(self, payload: BaseModel) -> None:
        if isinstance(payload, TelemetryInterval):
            self.clock = max(self.clock or payload.interval_end, payload.interval_end)
        elif isinstance(payload, DispatchConfirmed) and payload.kind == InstructionKind.TEST:
            self.out.line(payload.confirmed_at, "CAPABILITY_TEST_CONFIRMED",
                          count=payload.assets_dispatched, status=payload.status,
                          mw_confirmed=round(payload.mw_confirmed, 1))  # fmt: skip
        elif getattr(payload, "instruction_id", None) != self.instruction.instruction_id:
            return
        elif isinstance(payload, DispatchConfirmed):
            if payload.status == DispatchStatus.REJECTED:
                self.out.line(payload.confirmed_at, "DISPATCH_REJECTED", reason=payload.reason)
                raise SystemExit(2)
            latency_ms = (time.monotonic() - (self.sent_at or time.monotonic())) * 1000
            start = payload.commands_start or payload.window_start
            self.out.line(payload.confirmed_at, "ASSETS_DISPATCHED",
                          count=payload.assets_dispatched, replaced=payload.assets_replaced,
                          mw_confirmed=round(payload.mw_confirmed, 3), status=payload.status,
                          commands_from=self.out.local(start, "%H:%M:%S"),
                          confirmed_hours=round((payload.window_end - start).total_seconds()
                                                / 3600, 4),
                          latency_ms=round(latency_ms))  # fmt: skip
        elif isinstance(payload, SettlementFiled):
            # Logged at the fleet's event time: the report's filed_at is the wall clock.
            self.out.line(self.clock or payload.filed_at, "SETTLEMENT_REPORT_GENERATED",
                          data_quality=payload.data_quality.value, version=payload.version,
                          delivered_mw=round(payload.delivered_mw, 2),
                          performance=f"{payload.performance_pct:.1f}%",
                          coverage=f"{payload.coverage_pct:.1f}%",
                          report_id=payload.report_id)  # fmt: skip
            print(report_summary(payload), flush=True)
            self.done = True

    def progress(self) -> str:
        waiting = "the instruction's time" if self.sent_at is None else "the settlement report"
        now = self.out.local(self.clock, "%H:%M") if self.clock else "no telemetry yet"
        return f"    … event time {now}, waiting for {waiting}"


def report_summary(report: SettlementFiled) -> str:
    """The filed report as an analyst reads it first: baselines, the hourly ISO report, money."""
    methods = ", ".join(f"{m} {n}" for m, n in sorted(report.baseline_methods.items()))
    money = report.performance
    lines = [
        f"    {report.participation_model}, baselines per asset: {methods}; "
        f"{report.assets_metered} of {report.assets_enrolled} enrolled assets metered, "
        f"coverage {report.coverage_pct:.1f} %",
        "    hourly report (kWh, hour ending in market time):",
        *(f"      {row}" for row in report.iso_report_csv.strip().splitlines()),
        f"    PAI assessment: expected {money.expected_mw:.3f} MW, shortfall "
        f"{money.shortfall_mw:.3f} MW over {money.intervals} intervals -> charge "
        f"${money.charge_cents / 100:,.2f}, bonus ${money.bonus_cents / 100:,.2f}",
        "    per cohort: "
        + "; ".join(
            f"{c.cohort} {c.delivered_mwh:.3f} MWh, ${c.performance_cents / 100:,.2f}"
            for c in report.cohorts
        ),
    ]
    accepted = [a.method for a in report.baseline_accuracy if a.accepted]
    if report.baseline_accuracy:
        lines.append(
            "    baseline accuracy (RRMSE on recent non-event days): "
            + "; ".join(
                f"{a.method} {a.rrmse_pct:.1f}%" if a.rrmse_pct is not None else f"{a.method} n/a"
                for a in report.baseline_accuracy
            )
            + (f" (accepted: {', '.join(accepted)})" if accepted else "")
        )
    return "\n".join(lines)


async def _run(
    settings: Settings,
    instruction: DispatchInstruction,
    test: DispatchInstruction | None,
    consumer: AIOKafkaConsumer,
    producer: EventProducer,
    out: EventLog,
) -> None:
    by_name = {t.name: t for t in (TELEMETRY_INTERVAL, DISPATCH_CONFIRMED, SETTLEMENT_FILED)}
    session = _Session(instruction, test, out)
    deadline = time.monotonic() + settings.iso_timeout_s
    next_progress = time.monotonic() + PROGRESS_EVERY_S
    while not session.done:
        if time.monotonic() > deadline:
            print(f"gave up after {settings.iso_timeout_s:.0f}s", file=sys.stderr)
            raise SystemExit(1)
        for tp, records in (await consumer.getmany(timeout_ms=200)).items():
            for record in records:
                try:
                    session.see(decode(by_name[tp.topic], record.value).data)
                except UndecodableMessage:
                    continue  # not ours to judge: the services dead-letter what they can't read
        if (due := session.due()) is not None:
            await producer.publish(DISPATCH_INSTRUCTION, due, time=due.issued_at)
            session.sent(due)
        if time.monotonic() >= next_progress:
            next_progress += PROGRESS_EVERY_S
            print(session.progress(), file=sys.stderr, flush=True)
