"""Wires capacity-model: PostgreSQL, one consumer of two topics, the snapshot API."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from fastapi import FastAPI, HTTPException

from nexwatt_capacity_model.config import Settings
from nexwatt_capacity_model.handlers import make_handler
from nexwatt_capacity_model.store import current_snapshot
from nexwatt_shared.contracts import CapacitySnapshot
from nexwatt_shared.service import ServiceProcess
from nexwatt_shared.topics import ASSET_REGISTERED, TELEMETRY_INTERVAL
from nexwatt_shared.wiring import open_resources

MIGRATIONS = Path(__file__).with_name("migrations")


def api(pool: asyncpg.Pool) -> FastAPI:
    app = FastAPI(title="Nexwatt capacity-model")

    @app.get("/v1/resources/{resource_id}/capacity")
    async def resource_capacity(resource_id: str) -> CapacitySnapshot:
        snap = await current_snapshot(pool, resource_id)
        if snap is None:
            raise HTTPException(404, f"no capacity snapshot for resource {resource_id!r}")
        return snap

    return app


async def bootstrap(settings: Settings) -> ServiceProcess:
    res = await open_resources(settings, migrations=MIGRATIONS)
    assert res.pool is not None
    consumer = res.consumer(
        [ASSET_REGISTERED, TELEMETRY_INTERVAL],
        make_handler(res.pool, res.producer, settings.capacity_freshness_s),
    )
    return res.process([consumer.run], api(res.pool))
