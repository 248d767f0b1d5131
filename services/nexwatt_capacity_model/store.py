"""The capacity model's store in PostgreSQL: assets, the newest value of each channel it needs
per asset, published snapshots."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from nexwatt_capacity_model.domain import AssetState, ChannelValue
from nexwatt_shared.contracts import AssetRegistered, CapacitySnapshot, Channel

# A replayed or out-of-order older version never overwrites a newer one.
_UPSERT_ASSETS = """
INSERT INTO assets (asset_id, resource_id, status, capacity_kw, storage_kwh, backup_reserve_pct,
                    version, updated_at, has_pv)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[],
                     $6::float8[], $7::int[], $8::timestamptz[], $9::bool[])
ON CONFLICT (asset_id) DO UPDATE SET
    resource_id = excluded.resource_id, status = excluded.status, has_pv = excluded.has_pv,
    capacity_kw = excluded.capacity_kw, storage_kwh = excluded.storage_kwh,
    backup_reserve_pct = excluded.backup_reserve_pct, version = excluded.version,
    updated_at = excluded.updated_at
WHERE assets.version < excluded.version
"""
# "Latest" only moves forward in event time, per channel: replays and late intervals leave it
# alone.
_UPSERT_CHANNELS = """
INSERT INTO latest_channels (asset_id, channel, interval_end, value, quality)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[], $5::text[])
ON CONFLICT (asset_id, channel) DO UPDATE SET
    interval_end = excluded.interval_end, value = excluded.value, quality = excluded.quality
WHERE latest_channels.interval_end < excluded.interval_end
"""
_RESOURCE_OF = "SELECT asset_id, resource_id FROM assets WHERE asset_id = ANY($1::text[])"


async def save_inputs(
    pool: asyncpg.Pool, records: list[AssetRegistered], channels: list[ChannelValue]
) -> dict[str, datetime]:
    """Store asset records and channel values (at most one record per asset, one value per
    asset and channel) where newer.

    Returns every resource the inputs touch, with the event time of the newest input touching
    it: an asset's old and new resource, and the resource of each asset that sent telemetry.
    """
    touched: dict[str, datetime] = {}

    def touch(resource_id: str, at: datetime) -> None:
        touched[resource_id] = max(at, touched.get(resource_id, at))

    async with pool.acquire() as conn, conn.transaction():
        if records:
            record_of = {r.asset_id: r for r in records}
            # Read before the upsert: an asset moving to another resource changes its old one.
            for row in await conn.fetch(_RESOURCE_OF, list(record_of)):
                touch(row["resource_id"], record_of[row["asset_id"]].updated_at)
            for r in records:
                touch(r.resource_id, r.updated_at)
            await conn.execute(
                _UPSERT_ASSETS,
                [r.asset_id for r in records],
                [r.resource_id for r in records],
                [r.status.value for r in records],
                [r.capacity_kw for r in records],
                [r.storage_kwh for r in records],
                [r.backup_reserve_pct for r in records],
                [r.version for r in records],
                [r.updated_at for r in records],
                [r.has_pv for r in records],
            )
        if channels:
            await conn.execute(
                _UPSERT_CHANNELS,
                [c.asset_id for c in channels],
                [c.channel.value for c in channels],
                [c.interval_end for c in channels],
                [c.value for c in channels],
                [c.quality.value for c in channels],
            )
            end_of: dict[str, datetime] = {}
            for c in channels:
                end_of[c.asset_id] = max(c.interval_end, end_of.get(c.asset_id, c.interval_end))
            for row in await conn.fetch(_RESOURCE_OF, list(end_of)):
                touch(row["resource_id"], end_of[row["asset_id"]])
    return touched


async def assets_of(pool: asyncpg.Pool, resource_ids: list[str]) -> dict[str, list[AssetState]]:
    """Every asset now in each resource, whatever its status, with its newest PV and SoC."""
    rows = await pool.fetch(
        """
        SELECT a.resource_id, a.status, a.capacity_kw, a.storage_kwh, a.has_pv,
               a.backup_reserve_pct,
               a.updated_at, pv.interval_end AS pv_end, pv.value AS pv_kw,
               soc.interval_end AS soc_end, soc.value AS soc_pct
        FROM assets a
        LEFT JOIN latest_channels pv ON pv.asset_id = a.asset_id AND pv.channel = $2
        LEFT JOIN latest_channels soc ON soc.asset_id = a.asset_id AND soc.channel = $3
        WHERE a.resource_id = ANY($1::text[])
        """,
        resource_ids,
        Channel.PV_KW.value,
        Channel.SOC_PCT.value,
    )
    found: dict[str, list[AssetState]] = {}
    for row in rows:
        found.setdefault(row["resource_id"], []).append(
            AssetState(
                status=row["status"],
                capacity_kw=row["capacity_kw"],
                storage_kwh=row["storage_kwh"],
                has_pv=row["has_pv"],
                backup_reserve_pct=row["backup_reserve_pct"],
                updated_at=row["updated_at"],
                pv_end=row["pv_end"],
                pv_kw=row["pv_kw"],
                soc_end=row["soc_end"],
                soc_pct=row["soc_pct"],
            )
        )
    return found


async def published(pool: asyncpg.Pool, resource_ids: list[str]) -> dict[str, CapacitySnapshot]:
    rows = await pool.fetch(
        "SELECT resource_id, snapshot FROM snapshots WHERE resource_id = ANY($1::text[])",
        resource_ids,
    )
    return {r["resource_id"]: CapacitySnapshot.model_validate_json(r["snapshot"]) for r in rows}


async def record_published(pool: asyncpg.Pool, snap: CapacitySnapshot) -> None:
    await pool.execute(
        """
        INSERT INTO snapshots (resource_id, as_of, snapshot) VALUES ($1, $2, $3)
        ON CONFLICT (resource_id) DO UPDATE SET as_of = excluded.as_of, snapshot = excluded.snapshot
        """,
        snap.resource_id,
        snap.as_of,
        snap.model_dump_json(),
    )


async def current_snapshot(pool: asyncpg.Pool, resource_id: str) -> CapacitySnapshot | None:
    raw = await pool.fetchval("SELECT snapshot FROM snapshots WHERE resource_id = $1", resource_id)
    return CapacitySnapshot.model_validate_json(raw) if raw else None
