"""Handling a batch of `telemetry.interval` records."""

from __future__ import annotations

import asyncpg
import structlog
from prometheus_client import Counter
from redis.asyncio import Redis

from nexwatt_shared import series
from nexwatt_shared.contracts import TelemetryInterval, newest_readings
from nexwatt_shared.kafka.consumer import BatchHandler, Delivery
from nexwatt_telemetry_ingest.store import READING_VALUES, insert_readings, remember_latest

log = structlog.get_logger()
READINGS_STORED = Counter("nexwatt_ingest_readings_stored_total", "New interval readings stored")
READINGS_DUPLICATE = Counter(
    "nexwatt_ingest_readings_duplicate_total", "Readings that repeat a stored one (redelivery)"
)


def make_handler(pool: asyncpg.Pool, redis: Redis) -> BatchHandler:
    async def handle(batch: list[Delivery]) -> None:
        # One series per asset: repeats are dropped, overlaps refused (dead-lettered).
        new, repeats = await series.admit(pool, "interval_readings", READING_VALUES, batch)
        rows = [(d.event.id, r) for d in new if isinstance(r := d.payload, TelemetryInterval)]
        added = await insert_readings(pool, rows)
        # Repeats too: a crash between the insert and Redis leaves them only to a replay.
        stored = [r for d in new + repeats if isinstance(r := d.payload, TelemetryInterval)]
        await remember_latest(redis, newest_readings(stored))
        READINGS_STORED.inc(added)
        READINGS_DUPLICATE.inc(len(repeats) + len(rows) - added)
        log.debug("readings stored", added=added, repeats=len(repeats))

    return handle
