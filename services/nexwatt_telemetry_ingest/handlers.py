"""Handling a batch of `telemetry.interval` records."""

from __future__ import annotations

import asyncpg
import structlog
from prometheus_client import Counter
from redis.asyncio import Redis

from nexwatt_shared.contracts import TelemetryInterval, newest_readings
from nexwatt_shared.kafka.consumer import BatchHandler, Delivery
from nexwatt_telemetry_ingest.store import insert_readings, remember_latest

log = structlog.get_logger()
READINGS_STORED = Counter("nexwatt_ingest_readings_stored_total", "New interval readings stored")
READINGS_DUPLICATE = Counter("nexwatt_ingest_readings_duplicate_total", "Redelivered readings")


def make_handler(pool: asyncpg.Pool, redis: Redis) -> BatchHandler:
    async def handle(batch: list[Delivery]) -> None:
        rows = [(d.event.id, d.payload) for d in batch if isinstance(d.payload, TelemetryInterval)]
        added = await insert_readings(pool, rows)
        await remember_latest(redis, newest_readings(r for _, r in rows))
        READINGS_STORED.inc(added)
        READINGS_DUPLICATE.inc(len(rows) - added)
        log.debug("readings stored", added=added, duplicates=len(rows) - added)

    return handle
