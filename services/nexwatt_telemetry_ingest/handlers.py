"""The two loops of telemetry-ingest: the normalizer (`telemetry.raw` -> `telemetry.interval`)
and the historian (`telemetry.interval` -> PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import structlog
from prometheus_client import Counter

from nexwatt_shared import series
from nexwatt_shared.codec import encode, envelope
from nexwatt_shared.contracts import CHANNELS, TelemetryInterval
from nexwatt_shared.envelope import utcnow
from nexwatt_shared.kafka.consumer import BatchHandler, Delivery, PoisonMessage
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.topics import TELEMETRY_INTERVAL, Topic
from nexwatt_telemetry_ingest.formats import FormatError
from nexwatt_telemetry_ingest.normalize import normalize, reading_id
from nexwatt_telemetry_ingest.store import (
    Partitions,
    insert_readings,
    stored_intervals,
)

log = structlog.get_logger()
RAW_NORMALIZED = Counter(
    "nexwatt_ingest_raw_normalized_total", "Vendor payloads normalized", ["format"]
)
READINGS_NORMALIZED = Counter(
    "nexwatt_ingest_readings_normalized_total", "Standard readings published from vendor data"
)
READINGS_STORED = Counter(
    "nexwatt_ingest_channel_intervals_stored_total", "New channel intervals in the historian"
)
READINGS_DUPLICATE = Counter(
    "nexwatt_ingest_channel_intervals_duplicate_total", "Channel intervals repeating stored ones"
)


def make_normalizer(
    producer: EventProducer, max_ahead: timedelta, out: Topic = TELEMETRY_INTERVAL
) -> BatchHandler:
    """Normalize each batch of raw payloads and publish the readings on `out`."""

    async def handle(batch: list[Delivery]) -> None:
        now = utcnow()
        readings: list[TelemetryInterval] = []
        refusals: list[tuple[Delivery, str]] = []
        for d in batch:
            try:
                readings.extend(normalize(d.event, now, max_ahead, d.topic))
            except FormatError as exc:
                refusals.append((d, f"{d.event.type}: {exc}"))
        if refusals:  # nothing published yet: the rest of the batch is handled again
            raise PoisonMessage(refusals)
        records = [
            (r.asset_id, encode(envelope(out, r, source="telemetry-ingest",
                                         event_id=reading_id(r))), ())
            for r in readings
        ]  # fmt: skip
        await producer.send_raw_many(out.name, records)
        for d in batch:
            RAW_NORMALIZED.labels(d.event.type.removeprefix(d.topic.event_type)).inc()
        READINGS_NORMALIZED.inc(len(readings))

    return handle


def make_historian(pool: asyncpg.Pool) -> BatchHandler:
    partitions = Partitions()
    stored = stored_intervals(pool)

    async def handle(batch: list[Delivery]) -> None:
        # One series per asset and channel: repeats are dropped, overlaps refused.
        new, repeats = await series.admit_with(stored, CHANNELS, batch)
        added = await insert_readings(pool, partitions, new)
        READINGS_STORED.inc(len(new))
        READINGS_DUPLICATE.inc(len(repeats))
        log.debug("readings stored", rows=added, channels=len(new), repeats=len(repeats))

    return handle
