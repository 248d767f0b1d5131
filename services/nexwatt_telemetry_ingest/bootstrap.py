"""Wires telemetry-ingest: PostgreSQL + Redis, one consumer, a small read API."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException

from nexwatt_shared.contracts import TelemetryInterval
from nexwatt_shared.service import ServiceProcess
from nexwatt_shared.topics import TELEMETRY_INTERVAL
from nexwatt_shared.wiring import open_resources
from nexwatt_telemetry_ingest.config import Settings
from nexwatt_telemetry_ingest.handlers import make_handler
from nexwatt_telemetry_ingest.store import latest

MIGRATIONS = Path(__file__).with_name("migrations")


async def bootstrap(settings: Settings) -> ServiceProcess:
    res = await open_resources(settings, migrations=MIGRATIONS, redis=True)
    assert res.pool is not None and res.redis is not None
    consumer = res.consumer([TELEMETRY_INTERVAL], make_handler(res.pool, res.redis))
    redis = res.redis
    app = FastAPI(title="Nexwatt telemetry-ingest")

    @app.get("/v1/assets/{asset_id}/telemetry/latest")
    async def latest_reading(asset_id: str) -> TelemetryInterval:
        reading = await latest(redis, asset_id)
        if reading is None:
            raise HTTPException(404, f"no telemetry for asset {asset_id!r}")
        return reading

    return res.process([consumer.run], app)
