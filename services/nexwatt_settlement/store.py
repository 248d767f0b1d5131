"""Settlement's store in PostgreSQL: what settling needs, each resource's event-time watermark,
the reports filed."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from nexwatt_settlement.domain import Due, Reading
from nexwatt_shared.contracts import (
    AssetRegistered,
    Channel,
    DispatchConfirmed,
    DispatchInstruction,
    SettlementFiled,
)
from nexwatt_shared.event_time import MOST_ASSETS
from nexwatt_shared.series import MAX_INTERVAL, Interval

TABLE = "telemetry"  # one row per asset, channel and interval (`nexwatt_shared.series`)
CHANNELS = (Channel.BATTERY_KW, Channel.NET_KW)  # what settlement keeps of a reading
METERED = Channel.BATTERY_KW  # what it settles on, and what its watermark follows

# A replayed or out-of-order older version never overwrites a newer one.
_UPSERT_ASSETS = """
INSERT INTO assets (asset_id, resource_id, cohort, status, version)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[])
ON CONFLICT (asset_id) DO UPDATE SET
    resource_id = excluded.resource_id, cohort = excluded.cohort, status = excluded.status,
    version = excluded.version
WHERE assets.version < excluded.version
"""
_INSERT_TELEMETRY = """
INSERT INTO telemetry (asset_id, channel, interval_start, interval_s, value, quality)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[], $5::float8[],
                     $6::text[])
ON CONFLICT (asset_id, channel, interval_start) DO NOTHING
"""
_INSERT_INSTRUCTIONS = """
INSERT INTO instructions (instruction_id, resource_id, mw, window_start, window_end, issued_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::timestamptz[],
                     $5::timestamptz[], $6::timestamptz[])
ON CONFLICT (instruction_id) DO NOTHING
"""
# RETURNING gives only the rows stored now, so each answer is seen (and logged) once.
_INSERT_CONFIRMATIONS = """
INSERT INTO confirmations (instruction_id, resource_id, status, reason, mw_requested,
                           mw_confirmed, confirmed_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[],
                     $6::float8[], $7::timestamptz[])
ON CONFLICT (instruction_id) DO NOTHING
RETURNING instruction_id, resource_id, status, reason
"""


async def save_inputs(
    pool: asyncpg.Pool,
    assets: list[AssetRegistered],
    intervals: list[Interval],
    instructions: list[DispatchInstruction],
    confirmations: list[DispatchConfirmed],
) -> list[asyncpg.Record]:
    """Store a batch's inputs (at most one record per asset; channel intervals admitted by
    `nexwatt_shared.series.admit`) in one transaction. Returns the
    confirmations stored for the first time (instruction_id, resource_id, status, reason)."""
    async with pool.acquire() as conn, conn.transaction():
        if assets:
            await conn.execute(
                _UPSERT_ASSETS,
                [a.asset_id for a in assets],
                [a.resource_id for a in assets],
                [a.cohort for a in assets],
                [a.status.value for a in assets],
                [a.version for a in assets],
            )
        if intervals:
            await conn.execute(
                _INSERT_TELEMETRY,
                [i.asset_id for i in intervals],
                [i.channel for i in intervals],
                [i.start for i in intervals],
                [i.interval_s for i in intervals],
                [i.value for i in intervals],
                [i.quality for i in intervals],
            )
        if instructions:
            await conn.execute(
                _INSERT_INSTRUCTIONS,
                [i.instruction_id for i in instructions],
                [i.resource_id for i in instructions],
                [i.mw for i in instructions],
                [i.window_start for i in instructions],
                [i.window_end for i in instructions],
                [i.issued_at for i in instructions],
            )
        new_confirmations = []
        if confirmations:
            new_confirmations = await conn.fetch(
                _INSERT_CONFIRMATIONS,
                [c.instruction_id for c in confirmations],
                [c.resource_id for c in confirmations],
                [c.status.value for c in confirmations],
                [c.reason for c in confirmations],
                [c.mw_requested for c in confirmations],
                [c.mw_confirmed for c in confirmations],
                [c.confirmed_at for c in confirmations],
            )
    return new_confirmations


async def due(pool: asyncpg.Pool, grace_s: float) -> list[tuple[Due, datetime]]:
    """Instructions with a confirmation that is not a rejection, no report yet, and a window
    that ended at least `grace_s` before their resource's watermark, with that watermark;
    oldest window first.

    A resource's watermark is the time most of its enrolled assets' battery telemetry has
    reached (`nexwatt_shared.event_time.resource_clock`, here in SQL): its own event
    clock, so neither another fleet's telemetry (running ahead, or a replay) nor one of its
    own assets whose clock runs ahead can settle it before its data is in. It follows the
    channel settled on, `battery_kw` (an interval reported missing has been reached too),
    not `net_kw`, which may come at another resolution (SolarEdge: 15 minutes against 5)."""
    rows = await pool.fetch(
        """
        WITH pending AS (
            SELECT i.instruction_id, i.resource_id, i.window_start, i.window_end,
                   i.mw AS mw_requested, c.mw_confirmed
            FROM instructions i
            JOIN confirmations c USING (instruction_id)
            LEFT JOIN reports r USING (instruction_id)
            WHERE r.instruction_id IS NULL AND c.status <> 'rejected'
        ), ends AS (
            SELECT a.resource_id, latest.interval_end,
                   row_number() OVER (PARTITION BY a.resource_id
                                      ORDER BY latest.interval_end DESC) AS k,
                   count(*) OVER (PARTITION BY a.resource_id) AS n
            FROM assets a
            CROSS JOIN LATERAL (  -- one primary-key lookup per asset
                SELECT t.interval_start + make_interval(secs => t.interval_s) AS interval_end
                FROM telemetry t WHERE t.asset_id = a.asset_id AND t.channel = $3
                ORDER BY t.interval_start DESC LIMIT 1
            ) latest
            WHERE a.resource_id IN (SELECT resource_id FROM pending) AND a.status = 'enrolled'
        ), marks AS (  -- the k-th newest end, k = ceil(share * n): resource_clock's rule
            SELECT resource_id, interval_end AS watermark FROM ends
            WHERE k = greatest(1, ceil($2::float8 * n))
        )
        SELECT p.*, m.watermark FROM pending p JOIN marks m USING (resource_id)
        WHERE p.window_end <= m.watermark - make_interval(secs => $1)
        ORDER BY p.window_end, p.instruction_id
        """,
        grace_s,
        MOST_ASSETS,
        METERED.value,
    )
    return [(Due(**{k: v for k, v in r.items() if k != "watermark"}), r["watermark"]) for r in rows]


async def enrolled_assets(pool: asyncpg.Pool, resource_id: str) -> list[tuple[str, str]]:
    """(asset_id, cohort) of the resource's enrolled assets, by asset id."""
    rows = await pool.fetch(
        "SELECT asset_id, cohort FROM assets WHERE resource_id = $1 AND status = 'enrolled'"
        " ORDER BY asset_id",
        resource_id,
    )
    return [(r["asset_id"], r["cohort"]) for r in rows]


async def readings(
    pool: asyncpg.Pool, resource_id: str, start: datetime, end: datetime
) -> list[Reading]:
    """Battery intervals of the resource's enrolled assets that overlap [start, end), with
    their quality (a missing one has no value)."""
    rows = await pool.fetch(
        """
        SELECT t.asset_id, t.interval_start, t.interval_s, t.value, t.quality
        FROM telemetry t JOIN assets a USING (asset_id)
        WHERE a.resource_id = $1 AND a.status = 'enrolled' AND t.channel = $5
          AND t.interval_start < $3
          AND t.interval_start > $4  -- a bound the primary key's index can use
          AND t.interval_start + make_interval(secs => t.interval_s) > $2
        """,
        resource_id,
        start,
        end,
        start - MAX_INTERVAL,
        METERED.value,
    )
    return [Reading(*r) for r in rows]


async def record_report(conn: asyncpg.Connection, report: SettlementFiled) -> bool:
    """Keep the report in the caller's transaction; False when one is kept already (another
    replica, or an earlier try, settled this instruction first: its report stands)."""
    status = await conn.execute(
        """
        INSERT INTO reports (instruction_id, report_id, resource_id, filed_at, delivered_mw,
                             report)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (instruction_id) DO NOTHING
        """,
        report.instruction_id,
        report.report_id,
        report.resource_id,
        report.filed_at,
        report.delivered_mw,
        report.model_dump_json(),
    )
    return status.endswith(" 1")
