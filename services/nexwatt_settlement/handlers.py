"""Settling: inputs stored per batch, then each window that is due filed as its next version."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog
from prometheus_client import Counter, Gauge

from nexwatt_settlement import domain, store
from nexwatt_settlement.domain import Program
from nexwatt_shared import outbox, series
from nexwatt_shared.codec import envelope
from nexwatt_shared.contracts import (
    AssetRegistered,
    DataQuality,
    DispatchConfirmed,
    DispatchInstruction,
    SettlementFiled,
    TelemetryInterval,
    is_conflict_answer,
)
from nexwatt_shared.kafka.consumer import Delivery
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.topics import SETTLEMENT_FILED

log = structlog.get_logger()
SETTLEMENTS_FILED = Counter(
    "nexwatt_settlements_filed_total", "Settlement report versions filed", ["data_quality"]
)
SETTLEMENT_FAILURES = Counter(
    "nexwatt_settlement_failures_total", "Errors settling a window (retried)"
)
WINDOWS_WAITING = Counter(
    "nexwatt_settlement_waiting_for_data_total",
    "Settlement attempts that found a window's coverage below the threshold",
)
CONFLICT_ANSWERS = Counter(
    "nexwatt_settlement_conflict_answers_ignored_total",
    "dispatch.confirmed events answering a reused instruction id (ignored: not the answer to"
    " the instruction first sent under it)",
)
AFTER_FINAL = Counter(
    "nexwatt_settlement_after_final_total",
    "Batches with telemetry for a window already final (kept, not settled into it)",
)
DELIVERED_MW = Gauge(
    "nexwatt_settlement_delivered_mw",
    "Delivery above baseline in the resource's last settled window [MW]",
    ["resource_id"],
)


# What each list of `store.Saved` means, logged per instruction: (field, level, message).
_NOTICES = (
    ("cancelled", "info",
     "instruction called off at or before its window's start: nothing to settle"),
    ("revised", "info",
     "instruction revised or answered after its window was filed: to be restated"),
    ("withdrawn", "warning",
     "instruction called off at or before its window's start after the window was filed: a"
     " version withdrawing it follows"),
    ("revised_after_final", "warning",
     "instruction revised or answered after its window was final: kept, not refiled"),
    ("unconfirmed", "info",
     "instruction revision without an answer yet: kept, in force once answered"),
    ("unmatched", "warning",
     "answer to an unknown instruction revision: kept, in force once the revision arrives"),
    ("after_final", "warning",
     "telemetry arrived for a window already final: kept, not settled into it"),
)  # fmt: skip


def _event_hours(due: domain.Due, program: Program) -> tuple[int, int]:
    """The local hours [start, end) of the window's first local day."""
    start = program.clock.local_hour(due.window_start)
    last = due.window_end - timedelta(microseconds=1)
    same_day = program.clock.local_date(last) == program.clock.local_date(due.window_start)
    return start, program.clock.local_hour(last) + 1 if same_day else 24


def answers(batch: list[Delivery]) -> list[DispatchConfirmed]:
    """The batch's answers to instruction revisions. An answer to a reused instruction id
    (`is_conflict_answer`) carries the first instruction's id and revision but answers the
    reuse, and may come before the real answer: it is left out (logged, counted)."""
    kept = []
    for d in batch:
        if not isinstance(d.payload, DispatchConfirmed):
            continue
        if is_conflict_answer(d.event.id):
            CONFLICT_ANSWERS.inc()
            log.info(
                "answer to a reused instruction id: ignored",
                instruction_id=d.payload.instruction_id,
                revision=d.payload.revision,
                event_id=d.event.id,
            )
            continue
        kept.append(d.payload)
    return kept


class Settler:
    """Stores what settling needs, and settles each window once its data is in: preliminary,
    then restated when late data changes it, final at the deadline."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: EventProducer,
        program: Program,
        timing: store.Timing,
        check_interval_s: float = 30.0,
    ) -> None:
        self.pool, self.producer, self.program = pool, producer, program
        self.timing = timing
        self.check_interval_s = check_interval_s
        self._lock = asyncio.Lock()  # the consumer and the deadline timer settle one at a time

    async def handle(self, batch: list[Delivery]) -> None:
        # One series per asset and channel: repeats are dropped, overlaps refused (never summed
        # twice); channels of one asset may come at different resolutions.
        new_telemetry, _ = await series.admit(self.pool, store.TABLE, store.CHANNELS, batch)
        payloads = [d.payload for d in batch if not isinstance(d.payload, TelemetryInterval)]
        saved = await store.save_inputs(
            self.pool,
            self.program,
            [p for p in payloads if isinstance(p, AssetRegistered)],  # every version: as of
            [interval for _, interval in new_telemetry],
            [p for p in payloads if isinstance(p, DispatchInstruction)],
            answers(batch),
            [self.program.billing(d.payload, i) for d, i in new_telemetry],
        )
        for c in saved.confirmations:
            if c["status"] == "rejected":
                log.info(
                    "instruction revision rejected after its commands went out: in force"
                    if c["assets_commanded"] > 0
                    else "instruction revision rejected: not in force, the assets kept the"
                    " previous",
                    instruction_id=c["instruction_id"],
                    revision=c["revision"],
                    resource_id=c["resource_id"],
                    reason=c["reason"],
                    assets_commanded=c["assets_commanded"],
                )
        AFTER_FINAL.inc(len(saved.after_final))
        for field, level, message in _NOTICES:
            for instruction_id in getattr(saved, field):
                getattr(log, level)(message, instruction_id=instruction_id)
        if saved.unknown_assets:
            log.warning(
                "telemetry of assets without a record: kept, settled once they are registered",
                assets=len(saved.unknown_assets),
                examples=saved.unknown_assets[:5],
            )
        await self.settle_due()

    async def watch_deadlines(self, stop: asyncio.Event) -> None:
        """Settle what is due without new input too: deadlines pass on the wall clock."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.check_interval_s)
            if not stop.is_set():
                try:
                    await self.settle_due()
                except (OSError, asyncpg.PostgresError):
                    log.warning("deadline check failed; tried again", exc_info=True)

    async def settle_due(self) -> None:
        async with self._lock:
            # Reports recorded before a crash (or by a replica that stopped) go out first.
            await outbox.publish_pending(self.pool, self.producer)
            work = await store.due(
                self.pool,
                self.program.coverage_threshold,
                datetime.now(UTC),
                self.timing,
            )
            for item in work:
                with structlog.contextvars.bound_contextvars(
                    instruction_id=item.due.instruction_id, resource_id=item.due.resource_id
                ):
                    try:
                        await self.settle(item)
                    except Exception:
                        # One window must not stall the others: it is tried again next time.
                        SETTLEMENT_FAILURES.inc()
                        log.exception("settling the window failed; tried again")

    async def settle(self, work: store.Work) -> None:
        due, program = work.due, self.program
        fleet = await store.fleet_as_of(self.pool, due, program.channel)
        readings = await store.readings(
            self.pool,
            fleet,
            program.channel,
            due.window_start - timedelta(hours=1),
            due.window_end,
        )
        event_day = program.clock.local_date(due.window_start)
        last_day = program.clock.local_date(due.window_end - timedelta(microseconds=1))
        history = await store.history(
            self.pool,
            fleet,
            program.channel,
            event_day - timedelta(days=program.history_days),
            last_day,
            await store.event_days(self.pool, due.resource_id, due.instruction_id, program.clock),
        )
        result = domain.settle(due, fleet, readings, history, program)
        enough = result.coverage_pct >= program.coverage_threshold * 100.0 - 1e-9
        if work.state == "waiting" and not (enough or work.stalled or work.past_deadline):
            WINDOWS_WAITING.inc()
            window_s = (due.window_end - due.window_start).total_seconds()
            await store.recount(
                self.pool,
                due.instruction_id,
                result.coverage_pct / 100.0 * fleet.size * window_s,
                fleet.size,
            )
            log.info("waiting for the window's data", coverage_pct=round(result.coverage_pct, 3))
            return
        if work.stalled and not enough:
            log.warning(
                "the window's data stopped arriving below the threshold: filed as it is",
                coverage_pct=round(result.coverage_pct, 3),
            )
        previous = await store.latest_report(self.pool, due.instruction_id)
        quality = (
            DataQuality.FINAL  # a withdrawal is the last version: the window is never settled
            if due.withdraws or work.past_deadline or result.billing_complete
            else DataQuality.PRELIMINARY
            if previous is None
            else DataQuality.RESTATED
        )
        report, payouts = domain.build_report(
            due,
            fleet,
            result,
            domain.baseline_accuracy(history, event_day, *_event_hours(due, program), program),
            program,
            quality,
            previous,
            datetime.now(UTC),
        )
        if (
            quality == DataQuality.RESTATED
            and previous is not None
            and not domain.differs(report, previous)
        ):
            await store.clear_dirty(self.pool, due.instruction_id, work.data_seq)
            log.info("late data or revisions changed nothing to the Wh or the cent: no new version")
            return
        await self.file(report, payouts, work.data_seq, due.withdraws)

    async def file(
        self,
        report: SettlementFiled,
        payouts: list[domain.Payout],
        data_seq: int,
        withdraws: bool,
    ) -> None:
        event = envelope(
            SETTLEMENT_FILED,
            report,
            source=self.producer.source,
            event_id=f"settlement:{report.instruction_id}:v{report.version}",
            time=report.filed_at,
        )
        # Record first, then publish from the record: of two replicas settling at once only
        # the one whose insert wins has its version published, and a crash in between re-sends
        # the recorded bytes, never a recomputed report.
        async with self.pool.acquire() as conn, conn.transaction():
            won = await store.record_report(conn, report, payouts, data_seq, withdraws)
            if won:
                await outbox.record(conn, SETTLEMENT_FILED, event)
        await outbox.publish_pending(self.pool, self.producer, [event.id])
        if not won:
            log.info("the window moved on meanwhile (another replica or an earlier try)")
            return
        SETTLEMENTS_FILED.labels(report.data_quality.value).inc()
        DELIVERED_MW.labels(report.resource_id).set(report.delivered_mw)
        log.info(
            "settlement withdrawn: nothing was asked" if withdraws else "settlement filed",
            version=report.version,
            data_quality=report.data_quality.value,
            kind=report.kind.value,
            revision=report.revision,
            mw_requested=report.mw_requested,
            delivered_mw=report.delivered_mw,
            delivered_mwh=report.delivered_mwh,
            performance_pct=report.performance_pct,
            coverage_pct=report.coverage_pct,
            assets_enrolled=report.assets_enrolled,
            assets_metered=report.assets_metered,
            baseline_methods=report.baseline_methods,
            diff_wh=report.diff.delivered_wh if report.diff else None,
            net_cents=report.performance.net_cents,
        )
