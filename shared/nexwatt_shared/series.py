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

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

import asyncpg

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
    return [
        Interval(reading.asset_id, c.value, reading.interval_start, reading.interval_s,
                 reading.value(c), q.value)
        for c, q in reading.quality.items()
        if c in channels
    ]  # fmt: skip


def sort_out(
    candidates: Sequence[Interval], stored: Sequence[Interval]
) -> tuple[list[int], list[int], dict[int, str]]:
    """Which candidates are new, which repeat a stored (or earlier candidate's) interval, and
    which overlap one and are refused, with the reason; candidates are taken in order.

    Returns (new, repeats, refused) as indexes into `candidates`.
    """
    kept: dict[tuple[str, str], list[Interval]] = defaultdict(list)
    for interval in stored:
        kept[interval.asset_id, interval.channel].append(interval)
    new: list[int] = []
    repeats: list[int] = []
    refused: dict[int, str] = {}
    for i, c in enumerate(candidates):
        series = kept[c.asset_id, c.channel]
        clash = next((k for k in series if k.start < c.end and c.start < k.end), None)
        if clash is None:
            new.append(i)
            series.append(c)
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


Admitted = list[tuple[Delivery, Interval]]


async def admit(
    db: asyncpg.Pool | asyncpg.Connection,
    table: str,
    channels: Collection[Channel],
    deliveries: Sequence[Delivery],
) -> tuple[Admitted, Admitted]:
    """The channel intervals of the telemetry among `deliveries` (only `channels`) that are new
    to `table`, and those that repeat a stored one, each with its delivery; raises
    PoisonMessage, before anything is written, for readings with a channel that overlaps a
    stored interval."""
    candidates: Admitted = [
        (d, interval)
        for d in deliveries
        if isinstance(r := d.payload, TelemetryInterval)
        for interval in channel_intervals(r, channels)
    ]
    if not candidates:
        return [], []
    bounds: dict[tuple[str, str], tuple[datetime, datetime]] = {}
    for _, c in candidates:
        lo, hi = bounds.get((c.asset_id, c.channel), (c.start, c.end))
        bounds[c.asset_id, c.channel] = (min(lo, c.start), max(hi, c.end))
    # `table` comes from the calling service's code, never from a message.
    rows = await db.fetch(
        f"""
        SELECT t.asset_id, t.channel, t.interval_start, t.interval_s, t.value, t.quality
        FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[])
             AS b(asset_id, channel, lo, hi)
        JOIN {table} t ON t.asset_id = b.asset_id AND t.channel = b.channel
         AND t.interval_start < b.hi AND t.interval_start > b.lo - $5::interval
         AND t.interval_start + make_interval(secs => t.interval_s) > b.lo
        """,
        [a for a, _ in bounds],
        [c for _, c in bounds],
        [lo for lo, _ in bounds.values()],
        [hi for _, hi in bounds.values()],
        MAX_INTERVAL,
    )
    stored = [Interval(*r) for r in rows]
    new, repeats, refused = sort_out([c for _, c in candidates], stored)
    if refused:
        refusals: dict[tuple[str, int, int], tuple[Delivery, list[str]]] = {}
        for i, reason in refused.items():
            d = candidates[i][0]
            refusals.setdefault(d.where, (d, []))[1].append(reason)
        raise PoisonMessage([(d, "; ".join(r)) for d, r in refusals.values()])
    return [candidates[i] for i in new], [candidates[i] for i in repeats]
