"""telemetry-ingest's handler on real PostgreSQL and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from nexwatt_shared.codec import envelope
from nexwatt_shared.kafka.consumer import Delivery
from nexwatt_shared.postgres import open_pool
from nexwatt_shared.redis_client import open_redis
from nexwatt_shared.topics import TELEMETRY_INTERVAL
from nexwatt_telemetry_ingest.bootstrap import MIGRATIONS
from nexwatt_telemetry_ingest.handlers import make_handler
from nexwatt_telemetry_ingest.store import latest
from tests.helpers import reading, unique

pytestmark = pytest.mark.integration


@pytest.fixture
async def stores(servers: dict[str, str]) -> AsyncIterator[tuple]:
    database = unique("test_ingest").replace("-", "_")
    pool = await open_pool(servers["NEXWATT_POSTGRES_URL"], database, MIGRATIONS)
    redis = open_redis(servers["NEXWATT_REDIS_URL"])
    yield pool, redis
    await redis.aclose()
    await pool.close()


def deliveries(readings: list) -> list[Delivery]:
    return [
        Delivery(TELEMETRY_INTERVAL, 0, i, r.asset_id.encode(),
                 envelope(TELEMETRY_INTERVAL, r, source="test"), b"")
        for i, r in enumerate(readings)
    ]  # fmt: skip


async def test_readings_are_stored_once_and_latest_never_moves_backwards(stores: tuple) -> None:
    pool, redis = stores
    handle = make_handler(pool, redis)
    a, b = unique("A"), unique("B")
    await handle(deliveries([reading(a, 0), reading(a, 2), reading(b, 1), reading(a, 1)]))
    # Redelivered (new event ids, same intervals) and an older reading arriving late.
    await handle(deliveries([reading(a, 2), reading(b, 1), reading(b, 0)]))
    rows = await pool.fetch(
        "SELECT asset_id, interval_start FROM interval_readings ORDER BY asset_id, interval_start"
    )
    assert [(r["asset_id"], r["interval_start"].minute) for r in rows] == sorted(
        [(a, 0), (a, 1), (a, 2), (b, 0), (b, 1)]
    )
    assert (await latest(redis, a)).interval_start.minute == 2
    assert (await latest(redis, b)).interval_start.minute == 1
    assert await latest(redis, unique("nobody")) is None
