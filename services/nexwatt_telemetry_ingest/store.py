"""The service's stores: interval readings in PostgreSQL, latest reading per asset in Redis."""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from nexwatt_shared.contracts import TelemetryInterval
from nexwatt_shared.redis_client import NewerOnly

LATEST_KEY = "ingest:latest:{asset_id}"
# The stored values of a reading, beyond its asset, start and length: a repeat matches them all.
READING_VALUES = ("pv_kw", "load_kw", "battery_kw", "net_kw", "soc_pct")


async def insert_readings(pool: asyncpg.Pool, rows: list[tuple[str, TelemetryInterval]]) -> int:
    """Insert (event_id, reading) rows; already-stored intervals are skipped. Returns rows added."""
    if not rows:
        return 0
    columns = list(zip(*[(eid, *_values(r)) for eid, r in rows], strict=True))
    status = await pool.execute(
        """
        INSERT INTO interval_readings (event_id, asset_id, interval_start, interval_s, pv_kw,
                                       load_kw, battery_kw, net_kw, soc_pct)
        SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[],
                             $5::float8[], $6::float8[], $7::float8[], $8::float8[], $9::float8[])
        ON CONFLICT (asset_id, interval_start) DO NOTHING
        """,
        *[list(c) for c in columns],
    )
    return int(status.split()[-1])


def _values(r: TelemetryInterval) -> tuple[object, ...]:
    return (r.asset_id, r.interval_start, r.interval_s, r.pv_kw, r.load_kw, r.battery_kw,
            r.net_kw, r.soc_pct)  # fmt: skip


async def remember_latest(redis: Redis, readings: list[TelemetryInterval]) -> None:
    """Keep each asset's newest reading; an older one (a replay) changes nothing."""
    newer = NewerOnly(redis)
    async with redis.pipeline(transaction=False) as pipe:
        for r in readings:
            key = LATEST_KEY.format(asset_id=r.asset_id)
            start = r.interval_start.timestamp()
            await newer.hset(
                pipe, key, "interval_start_epoch", start, {"json": r.model_dump_json()}
            )
        await pipe.execute()


async def latest(redis: Redis, asset_id: str) -> TelemetryInterval | None:
    raw = await redis.hget(LATEST_KEY.format(asset_id=asset_id), "json")
    return TelemetryInterval.model_validate_json(raw) if raw else None
