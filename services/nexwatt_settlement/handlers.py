"""Handling a mixed batch of instructions, confirmations, telemetry and asset records."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
import structlog
from prometheus_client import Counter, Gauge

from nexwatt_settlement import store
from nexwatt_settlement.domain import Due, build_report
from nexwatt_shared import outbox, series
from nexwatt_shared.codec import envelope
from nexwatt_shared.contracts import (
    AssetRegistered,
    DispatchConfirmed,
    DispatchInstruction,
    TelemetryInterval,
    newest_versions,
)
from nexwatt_shared.kafka.consumer import BatchHandler, Delivery
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.topics import SETTLEMENT_FILED

log = structlog.get_logger()
SETTLEMENTS_FILED = Counter("nexwatt_settlements_filed_total", "Settlement reports filed")
SETTLEMENT_FAILURES = Counter(
    "nexwatt_settlement_failures_total", "Errors computing a settlement report"
)
DELIVERED_MW = Gauge(
    "nexwatt_settlement_delivered_mw",
    "Delivery above baseline in the resource's last settled window [MW]",
    ["resource_id"],
)


def make_handler(
    pool: asyncpg.Pool, producer: EventProducer, grace_s: float, lookback_s: float
) -> BatchHandler:
    async def handle(batch: list[Delivery]) -> None:
        # One series per asset and channel: repeats are dropped, overlaps refused (never summed
        # twice); channels of one asset may come at different resolutions.
        new_telemetry, _ = await series.admit(pool, store.TABLE, store.CHANNELS, batch)
        payloads = [d.payload for d in batch if not isinstance(d.payload, TelemetryInterval)]
        confirmed = await store.save_inputs(
            pool,
            newest_versions([p for p in payloads if isinstance(p, AssetRegistered)]),
            [interval for _, interval in new_telemetry],
            [p for p in payloads if isinstance(p, DispatchInstruction)],
            [p for p in payloads if isinstance(p, DispatchConfirmed)],
        )
        for c in confirmed:
            if c["status"] == "rejected":
                log.info(
                    "instruction rejected: no settlement report",
                    instruction_id=c["instruction_id"],
                    resource_id=c["resource_id"],
                    reason=c["reason"],
                )
        # Reports recorded before a crash (or by a replica that stopped) go out first.
        await outbox.publish_pending(pool, producer)
        for instruction, watermark in await store.due(pool, grace_s):
            with structlog.contextvars.bound_contextvars(instruction_id=instruction.instruction_id):
                await settle(instruction, watermark)

    async def settle(instruction: Due, watermark: datetime) -> None:
        assets = await store.enrolled_assets(pool, instruction.resource_id)
        readings = await store.readings(
            pool,
            instruction.resource_id,
            instruction.window_start - timedelta(seconds=lookback_s),
            instruction.window_end,
        )
        try:
            report, result = build_report(instruction, assets, readings, lookback_s, watermark)
        except Exception:
            # One bad report must not stall the stream: it is tried again with the next batch.
            SETTLEMENT_FAILURES.inc()
            log.exception("computing the settlement report failed", assets=len(assets))
            return
        event = envelope(
            SETTLEMENT_FILED,
            report,
            source=producer.source,
            event_id=f"settlement:{report.instruction_id}",
            time=report.filed_at,
        )
        # Record first, then publish from the record: of two replicas settling at once only
        # the one whose insert wins has its report published, and a crash in between re-sends
        # the recorded bytes, never a recomputed report.
        async with pool.acquire() as conn, conn.transaction():
            won = await store.record_report(conn, report)
            if won:
                await outbox.record(conn, SETTLEMENT_FILED, event)
        await outbox.publish_pending(pool, producer, [event.id])
        if not won:
            log.info("settled already (another replica or an earlier try); its report stands")
            return
        SETTLEMENTS_FILED.inc()
        DELIVERED_MW.labels(report.resource_id).set(report.delivered_mw)
        log.info(
            "settlement filed",
            resource_id=report.resource_id,
            delivered_mw=report.delivered_mw,
            delivered_mwh=report.delivered_mwh,
            performance_pct=report.performance_pct,
            assets_enrolled=len(assets),
            assets_metered=report.assets_metered,
            assets_without_baseline=result.assets_without_baseline,
            incomplete_asset_slots=result.incomplete_asset_slots,
            filed_at=report.filed_at.isoformat(),
        )

    return handle
