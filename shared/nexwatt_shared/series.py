"""One series per asset: a telemetry interval is stored once, and never next to another one that
overlaps it.

Policy (the same in every store that keeps telemetry):
- a reading equal to a stored one (same asset, start, length and values) is a repeat: dropped
  quietly, whatever its event id (at-least-once delivery, a gateway re-sending);
- a reading that overlaps a stored interval of its asset in any other way (a different start
  or length, or the same interval with other values: a "correction") is refused with the
  reason and dead-lettered. Corrections are not accepted on `telemetry.interval`; overlapping
  data would otherwise be summed twice by settlement. After fixing the source, an operator can
  replay the letter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

import asyncpg

from nexwatt_shared.contracts import TelemetryInterval
from nexwatt_shared.kafka.consumer import Delivery, PoisonMessage

MAX_INTERVAL = timedelta(hours=1)  # the contract's longest telemetry interval


class Interval(NamedTuple):
    """One asset's interval and the values a store keeps of it."""

    asset_id: str
    start: datetime
    interval_s: int
    values: tuple[float | None, ...]

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.interval_s)


def sort_out(
    candidates: Sequence[Interval], stored: Sequence[Interval]
) -> tuple[list[int], list[int], dict[int, str]]:
    """Which candidates are new, which repeat a stored (or earlier candidate's) interval, and
    which overlap one and are refused, with the reason; candidates are taken in order.

    Returns (new, repeats, refused) as indexes into `candidates`.
    """
    kept: dict[str, list[Interval]] = defaultdict(list)
    for interval in stored:
        kept[interval.asset_id].append(interval)
    new: list[int] = []
    repeats: list[int] = []
    refused: dict[int, str] = {}
    for i, c in enumerate(candidates):
        clash = next((k for k in kept[c.asset_id] if k.start < c.end and c.start < k.end), None)
        if clash is None:
            new.append(i)
            kept[c.asset_id].append(c)
        elif clash == c:
            repeats.append(i)
        else:
            what = "other values for the stored" if clash.start == c.start else "overlaps the"
            refused[i] = (
                f"{what} interval {clash.start.isoformat()} + {clash.interval_s} s of asset"
                f" {c.asset_id}: one series per asset, corrections are not accepted"
            )
    return new, repeats, refused


async def admit(
    db: asyncpg.Pool | asyncpg.Connection,
    table: str,
    value_columns: Sequence[str],
    deliveries: Sequence[Delivery],
) -> tuple[list[Delivery], list[Delivery]]:
    """The telemetry deliveries among `deliveries` that are new to `table` (columns asset_id,
    interval_start, interval_s and `value_columns`), and those that repeat a stored reading;
    raises PoisonMessage, before anything is written, for readings that overlap stored ones."""
    telemetry = [d for d in deliveries if isinstance(d.payload, TelemetryInterval)]
    if not telemetry:
        return [], []
    candidates = [
        Interval(
            r.asset_id, r.interval_start, r.interval_s, tuple(getattr(r, c) for c in value_columns)
        )
        for d in telemetry
        if isinstance(r := d.payload, TelemetryInterval)
    ]
    bounds: dict[str, tuple[datetime, datetime]] = {}
    for c in candidates:
        lo, hi = bounds.get(c.asset_id, (c.start, c.end))
        bounds[c.asset_id] = (min(lo, c.start), max(hi, c.end))
    # `table` and the columns come from the calling service's code, never from a message.
    values_sql = ", ".join(f"t.{c}" for c in value_columns)
    rows = await db.fetch(
        f"""
        SELECT t.asset_id, t.interval_start, t.interval_s, {values_sql}
        FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS b(asset_id, lo, hi)
        JOIN {table} t ON t.asset_id = b.asset_id
         AND t.interval_start < b.hi AND t.interval_start > b.lo - $4::interval
         AND t.interval_start + make_interval(secs => t.interval_s) > b.lo
        """,
        list(bounds),
        [lo for lo, _ in bounds.values()],
        [hi for _, hi in bounds.values()],
        MAX_INTERVAL,
    )
    stored = [Interval(r[0], r[1], r[2], tuple(r[3:])) for r in rows]
    new, repeats, refused = sort_out(candidates, stored)
    if refused:
        raise PoisonMessage([(telemetry[i], reason) for i, reason in refused.items()])
    return [telemetry[i] for i in new], [telemetry[i] for i in repeats]
