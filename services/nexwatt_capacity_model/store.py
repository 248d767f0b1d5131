"""The capacity model's store in PostgreSQL: assets (records, ratings, lifecycle), the newest value
of each channel it needs per asset, published snapshots; and what changed since a reader's last
look, for the in-memory books (`book.py`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import NamedTuple

import asyncpg
import numpy as np

from nexwatt_capacity_model.domain import ChannelValue, FleetSoc
from nexwatt_shared.contracts import AssetRegistered, CapacitySnapshot

# A replayed or out-of-order older version never overwrites a newer one; a row from before
# migration 004 (cohort NULL) takes its record again at the same version.
_UPSERT_ASSETS = """
INSERT INTO assets (asset_id, resource_id, status, capacity_kw, storage_kwh, backup_reserve_pct,
                    version, updated_at, has_pv, asset_type, cohort, battery_continuous_kw,
                    battery_peak_kw, round_trip_efficiency, coupling, pv_dc_kw, pv_mounting)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[],
                     $6::float8[], $7::int[], $8::timestamptz[], $9::bool[], $10::text[],
                     $11::text[], $12::float8[], $13::float8[], $14::float8[], $15::text[],
                     $16::float8[], $17::text[])
ON CONFLICT (asset_id) DO UPDATE SET
    resource_id = excluded.resource_id, status = excluded.status, has_pv = excluded.has_pv,
    capacity_kw = excluded.capacity_kw, storage_kwh = excluded.storage_kwh,
    backup_reserve_pct = excluded.backup_reserve_pct, version = excluded.version,
    updated_at = excluded.updated_at, asset_type = excluded.asset_type,
    cohort = excluded.cohort, battery_continuous_kw = excluded.battery_continuous_kw,
    battery_peak_kw = excluded.battery_peak_kw,
    round_trip_efficiency = excluded.round_trip_efficiency, coupling = excluded.coupling,
    pv_dc_kw = excluded.pv_dc_kw, pv_mounting = excluded.pv_mounting,
    txid = pg_current_xact_id()
WHERE assets.version < excluded.version
   OR (assets.cohort IS NULL AND assets.version = excluded.version)
"""
# Every version seen, whatever order they arrive in (churn reads them in version order).
_RECORD_HISTORY = """
INSERT INTO asset_history (asset_id, version, status, resource_id, cohort, at)
SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[],
                     $6::timestamptz[])
ON CONFLICT (asset_id, version) DO UPDATE SET cohort = excluded.cohort
WHERE asset_history.cohort IS NULL
"""
# "Latest" only moves forward in event time, per channel: replays and late intervals leave it
# alone.
_UPSERT_CHANNELS = """
INSERT INTO latest_channels (asset_id, channel, interval_end, value, quality)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[], $5::text[])
ON CONFLICT (asset_id, channel) DO UPDATE SET
    interval_end = excluded.interval_end, value = excluded.value, quality = excluded.quality,
    txid = pg_current_xact_id()
WHERE latest_channels.interval_end < excluded.interval_end
"""
_RESOURCE_OF = "SELECT asset_id, resource_id FROM assets WHERE asset_id = ANY($1::text[])"


async def save_inputs(
    pool: asyncpg.Pool,
    records: list[AssetRegistered],
    channels: list[ChannelValue],
    history: list[AssetRegistered] | None = None,
) -> dict[str, datetime]:
    """Store asset records and channel values (at most one record per asset, one value per
    asset and channel) where newer, and every version in `history` (default: `records`).

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
            rated = [r.rated_kw() for r in records]  # continuous, peak, PV [kW]
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
                [r.asset_type.value for r in records],
                [r.cohort for r in records],
                [kw[0] for kw in rated],
                [kw[1] for kw in rated],
                [r.round_trip_efficiency for r in records],
                [r.coupling.value for r in records],
                [kw[2] for kw in rated],
                [r.pv_mounting.value for r in records],
            )
        versions = records if history is None else history
        if versions:
            await conn.execute(
                _RECORD_HISTORY,
                [r.asset_id for r in versions],
                [r.version for r in versions],
                [r.status.value for r in versions],
                [r.resource_id for r in versions],
                [r.cohort for r in versions],
                [r.updated_at for r in versions],
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


# Assets as the books take them, as one row of columns (arrays are decoded far faster than
# a record per asset): times in seconds since the epoch (NaN: none), values NaN when unknown.
_ASSET_COLUMNS = """
SELECT array_agg(a.asset_id) AS asset_id, array_agg(a.resource_id) AS resource_id,
       array_agg(a.status) AS status, array_agg(a.asset_type) AS asset_type,
       array_agg(coalesce(a.cohort, '')) AS cohort, array_agg(a.capacity_kw) AS capacity_kw,
       array_agg(a.storage_kwh) AS storage_kwh,
       array_agg(a.backup_reserve_pct) AS backup_reserve_pct,
       array_agg(a.battery_continuous_kw) AS battery_continuous_kw,
       array_agg(a.battery_peak_kw) AS battery_peak_kw,
       array_agg(a.round_trip_efficiency) AS round_trip_efficiency,
       array_agg(a.coupling) AS coupling, array_agg(a.pv_dc_kw) AS pv_dc_kw,
       array_agg(a.pv_mounting) AS pv_mounting,
       array_agg(extract(epoch FROM a.updated_at)::float8) AS updated_at_s,
       array_agg(coalesce(extract(epoch FROM pv.interval_end)::float8, 'NaN')) AS pv_end_s,
       array_agg(coalesce(pv.value, 'NaN')) AS pv_kw,
       array_agg(coalesce(extract(epoch FROM soc.interval_end)::float8, 'NaN')) AS soc_end_s,
       array_agg(coalesce(soc.value, 'NaN')) AS soc_pct
FROM assets a
LEFT JOIN latest_channels pv ON pv.asset_id = a.asset_id AND pv.channel = 'pv_kw'
LEFT JOIN latest_channels soc ON soc.asset_id = a.asset_id AND soc.channel = 'soc_pct'
"""
_CHANNEL_COLUMNS = """
SELECT array_agg(asset_id) AS asset_id, array_agg(channel) AS channel,
       array_agg(extract(epoch FROM interval_end)::float8) AS end_s,
       array_agg(coalesce(value, 'NaN')) AS value
FROM latest_channels WHERE txid >= $1::text::xid8
"""
_SNAPSHOT_XMIN = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text"
Columns = dict[str, np.ndarray]  # name -> one value per row, all of one length


class Changes(NamedTuple):
    """Rows read in one database snapshot, as columns, and that snapshot's xmin: rows written
    since are those with txid >= xmin."""

    assets: Columns  # the columns of _ASSET_COLUMNS
    channels: Columns  # asset_id, channel, end_s, value (NaN: unknown)
    xmin: str


def _columns(row: asyncpg.Record) -> Columns:
    """Aggregated arrays as numpy columns: numbers as float64, text as str (no rows: empty)."""
    return {
        name: np.array(
            values or [], dtype=float if values and isinstance(values[0], float) else str
        )
        for name, values in row.items()
    }


async def _read(pool: asyncpg.Pool, assets_sql: str, *args: object, channels: bool) -> Changes:
    # Repeatable read: the rows and the xmin come from one snapshot.
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        xmin = await conn.fetchval(_SNAPSHOT_XMIN)
        assets = _columns(await conn.fetchrow(assets_sql, *args))
        changed = _columns(await conn.fetchrow(_CHANNEL_COLUMNS, *args)) if channels else {}
    return Changes(assets, changed, xmin)


async def resource_rows(pool: asyncpg.Pool, resource_id: str) -> Changes:
    """Every asset now in the resource (any status), with its newest PV and SoC."""
    return await _read(
        pool, _ASSET_COLUMNS + " WHERE a.resource_id = $1", resource_id, channels=False
    )


async def changes_since(pool: asyncpg.Pool, xmin: str) -> Changes:
    """Asset rows (with their newest PV and SoC) and channel values written since a snapshot
    whose xmin was `xmin`, by any replica; a few may have been read before."""
    return await _read(
        pool, _ASSET_COLUMNS + " WHERE a.txid >= $1::text::xid8", xmin, channels=True
    )


async def record_soc_at_window_start(
    pool: asyncpg.Pool, resource_id: str, local_date: date, fleet: FleetSoc, as_of: datetime
) -> None:
    """The fleet's SoC as a program day's window opened; the day's first record stays."""
    await pool.execute(
        """
        INSERT INTO soc_at_window_start
            (resource_id, local_date, soc_pct, reserve_pct, assets, as_of)
        VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING
        """,
        resource_id, local_date, fleet.soc_pct, fleet.reserve_pct, fleet.assets, as_of,
    )  # fmt: skip


async def socs_at_window_start(pool: asyncpg.Pool, resource_id: str, days: int) -> list[FleetSoc]:
    """The fleet's SoC at the opening of its `days` most recent recorded program days."""
    rows = await pool.fetch(
        """
        SELECT soc_pct, reserve_pct, assets FROM soc_at_window_start
        WHERE resource_id = $1 ORDER BY local_date DESC LIMIT $2
        """,
        resource_id,
        days,
    )
    return [FleetSoc(r["soc_pct"], r["reserve_pct"], r["assets"]) for r in rows]


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


async def all_snapshots(pool: asyncpg.Pool) -> list[CapacitySnapshot]:
    """The latest snapshot of every resource."""
    rows = await pool.fetch("SELECT snapshot FROM snapshots")
    return [CapacitySnapshot.model_validate_json(r["snapshot"]) for r in rows]


async def current_snapshot(pool: asyncpg.Pool, resource_id: str) -> CapacitySnapshot | None:
    raw = await pool.fetchval("SELECT snapshot FROM snapshots WHERE resource_id = $1", resource_id)
    return CapacitySnapshot.model_validate_json(raw) if raw else None
