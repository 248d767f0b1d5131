"""Wires telemetry-ingest: PostgreSQL, the normalizer and historian loops, a read API."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query

from nexwatt_shared.contracts import Channel
from nexwatt_shared.envelope import utcnow
from nexwatt_shared.service import ServiceProcess
from nexwatt_shared.topics import TELEMETRY_INTERVAL, TELEMETRY_RAW
from nexwatt_shared.wiring import open_resources
from nexwatt_telemetry_ingest.config import Settings
from nexwatt_telemetry_ingest.coverage import DEFAULT_WINDOW, MAX_WINDOW, Coverage, asset_coverage
from nexwatt_telemetry_ingest.handlers import make_historian, make_normalizer
from nexwatt_telemetry_ingest.store import LatestValue, channel_intervals, latest

MIGRATIONS = Path(__file__).with_name("migrations")


async def bootstrap(settings: Settings) -> ServiceProcess:
    res = await open_resources(settings, migrations=MIGRATIONS)
    assert res.pool is not None
    pool = res.pool
    max_ahead = timedelta(seconds=settings.event_time_max_ahead_s)
    normalizer = res.consumer(
        [TELEMETRY_RAW], make_normalizer(res.producer, max_ahead), "raw", settings.raw_max_records
    )
    historian = res.consumer([TELEMETRY_INTERVAL], make_historian(pool))
    app = FastAPI(title="Nexwatt telemetry-ingest")

    @app.get("/v1/assets/{asset_id}/telemetry/latest")
    async def latest_values(asset_id: str) -> dict[Channel, LatestValue]:
        """The asset's newest interval of each channel (channels may differ in resolution)."""
        values = await latest(pool, asset_id)
        if not values:
            raise HTTPException(404, f"no telemetry for asset {asset_id!r}")
        return values

    @app.get("/v1/assets/{asset_id}/coverage")
    async def coverage(
        asset_id: str,
        start: Annotated[datetime | None, Query(description="Window start, ISO 8601")] = None,
        end: Annotated[datetime | None, Query(description="Window end; default now")] = None,
    ) -> Coverage:
        """Per channel: coverage %, the longest gap and the effective resolution over the
        window (default the last 7 days)."""
        window_end = end or utcnow()
        window_start = start or window_end - DEFAULT_WINDOW
        if window_start.tzinfo is None or window_end.tzinfo is None:
            raise HTTPException(422, "start and end need a UTC offset, e.g. 2026-07-01T00:00Z")
        if not timedelta(0) < window_end - window_start <= MAX_WINDOW:
            raise HTTPException(422, f"end must follow start by at most {MAX_WINDOW.days} days")
        rows = await channel_intervals(pool, asset_id, window_start, window_end)
        return asset_coverage(
            asset_id,
            (window_start, window_end),
            [(i.channel, i.start, i.interval_s, i.quality) for i in rows],
        )

    return res.process([normalizer.run, historian.run], app)
