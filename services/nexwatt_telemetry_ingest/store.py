"""The service's store: the historian in PostgreSQL, one row per reading, partitioned by month
of the interval start."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
from pydantic import BaseModel

from nexwatt_shared.contracts import CHANNELS, Channel, Quality, TelemetryInterval
from nexwatt_shared.kafka.consumer import Delivery
from nexwatt_shared.series import MAX_INTERVAL, Interval, StoredFetch

_COLUMNS = (
    "asset_id", "interval_start", "interval_s", "channels", *CHANNELS,
    *(f"{c}_quality" for c in CHANNELS), "devices_reporting", "devices_total", "vendor",
    "endpoint", "event_id",
)  # fmt: skip
_TYPES = (
    "text", "timestamptz", "int", "text", *["float8"] * len(CHANNELS),
    *["text"] * len(CHANNELS), "int", "int", "text", "text", "text",
)  # fmt: skip
_INSERT = f"""
INSERT INTO readings ({", ".join(_COLUMNS)})
SELECT * FROM unnest({", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_TYPES))})
ON CONFLICT (asset_id, interval_start, channels) DO NOTHING
"""


class Partitions:
    """Creates the historian's month partitions as readings need them (once per process)."""

    def __init__(self) -> None:
        self._known: set[tuple[int, int]] = set()

    async def ensure(self, conn: asyncpg.Connection, starts: Sequence[datetime]) -> None:
        months = {(s.year, s.month) for s in starts} - self._known
        for year, month in sorted(months):
            await conn.execute(
                "SELECT readings_partition(make_timestamptz($1, $2, 1, 0, 0, 0, 'UTC'))",
                year,
                month,
            )
        self._known |= months


def stored_intervals(pool: asyncpg.Pool) -> StoredFetch:
    """The historian's stored channel intervals overlapping spans of assets (`series`)."""

    async def fetch(spans: list[tuple[str, datetime, datetime]]) -> list[Interval]:
        rows = await pool.fetch(
            f"""
            SELECT t.asset_id, t.interval_start, t.interval_s, {", ".join(CHANNELS)},
                   {", ".join(f"{c}_quality" for c in CHANNELS)}
            FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS b(asset_id, lo, hi)
            JOIN readings t ON t.asset_id = b.asset_id
             AND t.interval_start < b.hi AND t.interval_start > b.lo - $4::interval
             AND t.interval_start + make_interval(secs => t.interval_s) > b.lo
            """,
            *[list(column) for column in zip(*spans, strict=True)],
            MAX_INTERVAL,
        )
        n = len(CHANNELS)
        return [
            Interval(r[0], channel, r[1], r[2], r[3 + k], r[3 + n + k])
            for r in rows
            for k, channel in enumerate(CHANNELS)
            if r[3 + n + k] is not None
        ]

    return fetch


async def insert_readings(
    pool: asyncpg.Pool, partitions: Partitions, new: Sequence[tuple[Delivery, Interval]]
) -> int:
    """Store the admitted channel intervals `new` (see `series.admit_with`) as one row per
    reading, holding its new channels only. Binary COPY; a row another replica stored
    meanwhile falls back to an insert that skips it. Returns the rows added."""
    if not new:
        return 0
    by_reading: dict[tuple[str, int, int], tuple[Delivery, dict[str, Interval]]] = {}
    for delivery, interval in new:
        by_reading.setdefault(delivery.where, (delivery, {}))[1][interval.channel] = interval
    rows = [_row(delivery, intervals) for delivery, intervals in by_reading.values()]
    async with pool.acquire() as conn:
        await partitions.ensure(conn, [row[1] for row in rows])
        try:
            await conn.copy_records_to_table("readings", records=rows, columns=_COLUMNS)
            return len(rows)
        except asyncpg.UniqueViolationError:
            status = await conn.execute(_INSERT, *[list(c) for c in zip(*rows, strict=True)])
            return int(status.split()[-1])


def _row(delivery: Delivery, intervals: dict[str, Interval]) -> tuple[object, ...]:
    r = delivery.payload
    assert isinstance(r, TelemetryInterval)
    carried = [c for c in CHANNELS if c in intervals]
    values = [intervals[c].value if c in intervals else None for c in CHANNELS]
    qualities = [intervals[c].quality if c in intervals else None for c in CHANNELS]
    source = r.source
    return (
        r.asset_id, r.interval_start, r.interval_s, "+".join(carried), *values, *qualities,
        r.devices_reporting, r.devices_total, source.vendor if source else None,
        source.endpoint if source else None, delivery.event.id,
    )  # fmt: skip


class LatestValue(BaseModel):
    """A channel's newest interval in the historian."""

    interval_start: datetime
    interval_s: int
    value: float | None
    quality: Quality


# Per channel, the newest reading that carries it: the primary key leads with the asset and
# its start, so each walks the asset's readings backwards and stops at the first.
_LATEST = " UNION ALL ".join(
    f"""(SELECT '{c}' AS channel, interval_start, interval_s, {c} AS value, {c}_quality AS quality
        FROM readings WHERE asset_id = $1 AND {c}_quality IS NOT NULL
        ORDER BY interval_start DESC LIMIT 1)"""
    for c in CHANNELS
)


async def latest(pool: asyncpg.Pool, asset_id: str) -> dict[Channel, LatestValue]:
    """The asset's newest interval of each channel it has reported."""
    rows = await pool.fetch(_LATEST, asset_id)
    return {
        Channel(r["channel"]): LatestValue(
            interval_start=r["interval_start"],
            interval_s=r["interval_s"],
            value=r["value"],
            quality=r["quality"],
        )
        for r in rows
    }


async def channel_intervals(
    pool: asyncpg.Pool, asset_id: str, start: datetime, end: datetime
) -> list[Interval]:
    """The asset's stored channel intervals overlapping [start, end), in time order."""
    found = await stored_intervals(pool)([(asset_id, start, end)])
    return sorted(found, key=lambda i: (i.channel, i.start))
