"""One series per asset and channel: a channel's reading over an interval is stored once, and
never next to another one of the same channel that overlaps it.

Every store that keeps telemetry keeps it long, one row per (asset, channel, interval):
columns `asset_id, channel, interval_start, interval_s, value, quality`. Channels of one asset
may come at different resolutions (SolarEdge power every 15 minutes, its battery every 5).

Policy (the same in every such store):
- a channel reading equal to a stored one (same asset, channel, start, length, value and
  quality) is a repeat: dropped quietly, whatever its event id (at-least-once delivery, a
  gateway re-sending);
- a channel reading that overlaps a stored interval of its series in any other way (a different
  start or length, or the same interval with another value: a "correction") is refused with the
  reason, and its whole reading dead-lettered. Corrections are not accepted on
  `telemetry.interval`; overlapping data would otherwise be summed twice by settlement. After
  fixing the source, an operator can replay the letter.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import asyncpg
import numpy as np

from nexwatt_shared.contracts import Channel, TelemetryInterval
from nexwatt_shared.kafka.consumer import Delivery, PoisonMessage

MAX_INTERVAL = timedelta(hours=1)  # the contract's longest telemetry interval


class Interval(NamedTuple):
    """One asset channel's interval and what a store keeps of it (value, quality)."""

    asset_id: str
    channel: str
    start: datetime
    interval_s: int
    value: float | None
    quality: str

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.interval_s)


def channel_intervals(reading: TelemetryInterval, channels: Collection[Channel]) -> list[Interval]:
    """The reading's intervals of the `channels` it carries."""
    a, start, length = reading.asset_id, reading.interval_start, reading.interval_s
    return [
        Interval(a, c, start, length, getattr(reading, c), q)
        for c, q in reading.quality.items()
        if c in channels
    ]


def sort_out(
    candidates: Sequence[Interval], stored: Sequence[Interval]
) -> tuple[list[int], list[int], dict[int, str]]:
    """Which candidates are new, which repeat a stored (or earlier candidate's) interval, and
    which overlap one and are refused, with the reason; candidates are taken in order.

    Returns (new, repeats, refused) as indexes into `candidates`. O(n log n): each series' kept
    intervals never overlap, so sorted by start their ends ascend too, and a binary search
    finds the one a candidate would clash with.
    """
    kept: dict[tuple[str, str], _Series] = defaultdict(_Series)
    for interval in sorted(stored, key=lambda k: k.start):
        kept[interval.asset_id, interval.channel].append(interval)
    new: list[int] = []
    repeats: list[int] = []
    refused: dict[int, str] = {}
    for i, c in enumerate(candidates):
        series = kept[c.asset_id, c.channel]
        clash = series.overlapping(c)
        if clash is None:
            new.append(i)
            series.insert(c)
        elif clash == c:
            repeats.append(i)
        else:
            what = "other values for the stored" if clash.start == c.start else "overlaps the"
            refused[i] = (
                f"{c.channel}: {what} interval {clash.start.isoformat()} + {clash.interval_s} s"
                f" of asset {c.asset_id}: one series per asset and channel, corrections are not"
                " accepted"
            )
    return new, repeats, refused


class _Series:
    """One series' kept intervals, sorted by start (epoch seconds beside them for speed)."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.intervals: list[Interval] = []

    def append(self, interval: Interval) -> None:
        start = interval.start.timestamp()
        self.starts.append(start)
        self.ends.append(start + interval.interval_s)
        self.intervals.append(interval)

    def overlapping(self, c: Interval) -> Interval | None:
        """The earliest kept interval `c` overlaps: the first one ending after `c` starts,
        if it starts before `c` ends."""
        start = c.start.timestamp()
        i = bisect_right(self.ends, start)
        found = i < len(self.starts) and self.starts[i] < start + c.interval_s
        return self.intervals[i] if found else None

    def insert(self, interval: Interval) -> None:
        start = interval.start.timestamp()
        i = bisect_left(self.starts, start)
        self.starts.insert(i, start)
        self.ends.insert(i, start + interval.interval_s)
        self.intervals.insert(i, interval)


Admitted = list[tuple[Delivery, Interval]]
# Spans (asset_id, lo, hi) -> the stored channel intervals of those assets overlapping them.
StoredFetch = Callable[[list[tuple[str, datetime, datetime]]], Awaitable[list[Interval]]]


def long_table(db: asyncpg.Pool | asyncpg.Connection, table: str) -> StoredFetch:
    """Stored intervals of a table in the long layout (one row per asset, channel, interval)."""

    async def fetch(spans: list[tuple[str, datetime, datetime]]) -> list[Interval]:
        # `table` comes from the calling service's code, never from a message.
        rows = await db.fetch(
            f"""
            SELECT t.asset_id, t.channel, t.interval_start, t.interval_s, t.value, t.quality
            FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS b(asset_id, lo, hi)
            JOIN {table} t ON t.asset_id = b.asset_id
             AND t.interval_start < b.hi AND t.interval_start > b.lo - $4::interval
             AND t.interval_start + make_interval(secs => t.interval_s) > b.lo
            """,
            *[list(column) for column in zip(*spans, strict=True)],
            MAX_INTERVAL,
        )
        return [Interval(*r) for r in rows]

    return fetch


async def admit(
    db: asyncpg.Pool | asyncpg.Connection,
    table: str,
    channels: Collection[Channel],
    deliveries: Sequence[Delivery],
) -> tuple[Admitted, Admitted]:
    """`admit_with` a table in the long layout."""
    return await admit_with(long_table(db, table), channels, deliveries)


async def admit_with(
    fetch: StoredFetch, channels: Collection[Channel], deliveries: Sequence[Delivery]
) -> tuple[Admitted, Admitted]:
    """The channel intervals of the telemetry among `deliveries` (only `channels`) that are new
    to the store `fetch` reads, and those that repeat a stored one, each with its delivery;
    raises PoisonMessage, before anything is written, for readings with a channel that overlaps
    a stored interval.

    Fresh data takes a fast path: an asset with nothing stored near its readings and no two
    readings of the batch overlapping in time has only new intervals. The others go through
    `sort_out`, interval by interval."""
    readings = [(d, r) for d in deliveries if isinstance(r := d.payload, TelemetryInterval)]
    if not readings:
        return [], []
    assets: dict[str, int] = {}
    codes = np.fromiter((assets.setdefault(r.asset_id, len(assets)) for _, r in readings), np.int64)
    starts = np.fromiter((r.interval_start.timestamp() for _, r in readings), np.float64)
    ends = starts + np.fromiter((r.interval_s for _, r in readings), np.float64)
    names = list(assets)
    lo = np.full(len(names), np.inf)
    hi = np.full(len(names), -np.inf)
    np.minimum.at(lo, codes, starts)
    np.maximum.at(hi, codes, ends)
    spans = [
        (name, datetime.fromtimestamp(lo[k], UTC), datetime.fromtimestamp(hi[k], UTC))
        for k, name in enumerate(names)
    ]
    stored = await fetch(spans)
    involved = {i.asset_id for i in stored} | {
        names[k] for k in _overlapping_assets(codes, starts, ends)
    }
    fresh: Admitted = []
    candidates: Admitted = []
    for d, r in readings:
        (candidates if r.asset_id in involved else fresh).extend(
            (d, interval) for interval in channel_intervals(r, channels)
        )
    if not candidates:
        return fresh, []
    new, repeats, refused = sort_out([c for _, c in candidates], stored)
    if refused:
        refusals: dict[tuple[str, int, int], tuple[Delivery, list[str]]] = {}
        for i, reason in refused.items():
            d = candidates[i][0]
            refusals.setdefault(d.where, (d, []))[1].append(reason)
        raise PoisonMessage([(d, "; ".join(r)) for d, r in refusals.values()])
    return fresh + [candidates[i] for i in new], [candidates[i] for i in repeats]


def _overlapping_assets(codes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> set[int]:
    """The asset codes with two intervals overlapping in time (whatever their channels). Sorted
    by start, if any two of an asset's intervals overlap then two neighbours do."""
    order = np.lexsort((starts, codes))
    c, s, e = codes[order], starts[order], ends[order]
    clash = (c[1:] == c[:-1]) & (s[1:] < e[:-1])
    return set(c[1:][clash].tolist())
