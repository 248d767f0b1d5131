"""Handling a mixed batch of `asset.registered` and `telemetry.interval` records: store them, bring
the touched resources' books up to date, publish each changed snapshot."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import asyncpg
import structlog
from prometheus_client import Counter

from nexwatt_capacity_model.book import Books
from nexwatt_capacity_model.domain import (
    Assets,
    changed,
    fleet_soc,
    latest_channels,
    snapshot,
    snapshot_event_id,
    window_opening,
)
from nexwatt_capacity_model.soc_forecast import RESIDENTIAL_BATTERY_PROGRAM, ProgramParams
from nexwatt_capacity_model.store import (
    changes_since,
    published,
    record_published,
    record_soc_at_window_start,
    resource_rows,
    save_inputs,
)
from nexwatt_shared.contracts import (
    AssetRegistered,
    TelemetryInterval,
    newest_versions,
)
from nexwatt_shared.kafka.consumer import BatchHandler, Delivery
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.postgres import advisory_lock
from nexwatt_shared.topics import CAPACITY_SNAPSHOT

log = structlog.get_logger()
PJM_TIME = ZoneInfo("America/New_York")
SNAPSHOTS_PUBLISHED = Counter(
    "nexwatt_capacity_snapshots_published_total", "Capacity snapshots published"
)


def make_handler(
    pool: asyncpg.Pool,
    producer: EventProducer,
    freshness_s: float,
    market_tz: ZoneInfo = PJM_TIME,
    window_opening_min: float = 15.0,
    program: ProgramParams = RESIDENTIAL_BATTERY_PROGRAM,
) -> BatchHandler:
    books = Books()
    soc_recorded: set[tuple[str, date]] = set()  # (resource, day): its window's SoC is stored

    async def handle(batch: list[Delivery]) -> None:
        versions = {
            (d.payload.asset_id, d.payload.version): d.payload
            for d in batch
            if isinstance(d.payload, AssetRegistered)
        }
        records = newest_versions(versions.values())
        channels = latest_channels(
            d.payload for d in batch if isinstance(d.payload, TelemetryInterval)
        )
        touched = await save_inputs(pool, records, channels, list(versions.values()))
        if not touched:
            return
        for resource_id in sorted(touched):
            # One replica at a time per resource (read, publish, record), or a slower one could
            # publish older figures after a newer snapshot and leave them last on the topic.
            async with advisory_lock(pool, f"capacity:{resource_id}"):
                await refresh(resource_id, touched[resource_id])

    async def current(resource_id: str) -> Assets:
        """The resource's assets with every replica's writes so far (under its lock, so the
        last to publish has read everything the others committed)."""
        if books.xmin is not None:
            books.apply(await changes_since(pool, books.xmin))
        book = books.of.get(resource_id)
        if book is None:
            book = books.load(resource_id, await resource_rows(pool, resource_id))
        return book.view()

    async def record_soc(resource_id: str, assets: Assets, as_of: datetime) -> None:
        """The fleet's SoC at the first snapshot of a program day's window opening."""
        day = window_opening(as_of, market_tz, window_opening_min, program)
        if day is None or (resource_id, day) in soc_recorded:
            return
        fleet = fleet_soc(assets, freshness_s)
        if fleet is not None:
            await record_soc_at_window_start(pool, resource_id, day, fleet, as_of)
            soc_recorded.add((resource_id, day))

    async def refresh(resource_id: str, touched_at: datetime) -> None:
        assets = await current(resource_id)
        snap = snapshot(resource_id, assets, touched_at, freshness_s)
        await record_soc(resource_id, assets, snap.as_of)
        if not changed((await published(pool, [resource_id])).get(resource_id), snap):
            return
        # Publish first, then record: a crash in between re-publishes the same event id.
        await producer.publish(
            CAPACITY_SNAPSHOT, snap, event_id=snapshot_event_id(snap), time=snap.as_of
        )
        await record_published(pool, snap)
        SNAPSHOTS_PUBLISHED.inc()
        log.info("capacity snapshot published", **snap.model_dump(mode="json"))

    return handle
