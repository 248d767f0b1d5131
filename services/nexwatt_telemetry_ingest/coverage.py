"""How well an asset's telemetry covers a window: what the historian answers to "what coverage
does asset X have over the last 7 days?" (pure functions on arrays)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from pydantic import BaseModel, Field

from nexwatt_shared.contracts import CHANNELS, Channel, Quality

USABLE = (Quality.ACTUAL.value, Quality.ESTIMATED.value)


class ChannelCoverage(BaseModel):
    channel: Channel
    coverage_pct: float = Field(description="Share of the window covered by usable values [%]")
    longest_gap_s: float = Field(description="Longest stretch without a usable value [s]")
    longest_gap_start: datetime | None = Field(description="Where that gap begins")
    resolution_s: int | None = Field(description="The most common interval length [s]")
    readings: int = Field(description="Intervals stored, whatever their quality")
    missing: int = Field(description="Intervals the source reported without a value")
    questionable: int = Field(description="Intervals whose value was refused as implausible")


class Coverage(BaseModel):
    asset_id: str
    window_start: datetime
    window_end: datetime
    channels: list[ChannelCoverage]


def window_coverage(
    window_start_s: float, window_end_s: float, starts_s: np.ndarray, lengths_s: np.ndarray
) -> tuple[float, float, float | None]:
    """Coverage of [window_start_s, window_end_s) [epoch s] by non-overlapping intervals
    (`starts_s` ascending, `lengths_s` [s]): (covered share [%], longest gap [s], gap start
    [epoch s], None when there is no gap)."""
    span = window_end_s - window_start_s
    lo = np.clip(starts_s, window_start_s, window_end_s)
    hi = np.clip(starts_s + lengths_s, window_start_s, window_end_s)
    covered_pct = float(np.sum(hi - lo)) / span * 100.0 if span > 0 else 0.0
    # Gaps: before the first interval, between consecutive ones, after the last.
    edges_lo = np.concatenate(([window_start_s], hi))
    edges_hi = np.concatenate((lo, [window_end_s]))
    gaps = edges_hi - edges_lo
    i = int(np.argmax(gaps))
    if gaps[i] <= 0:
        return covered_pct, 0.0, None
    return covered_pct, float(gaps[i]), float(edges_lo[i])


def channel_coverage(
    channel: Channel,
    window: tuple[datetime, datetime],
    starts_s: np.ndarray,
    lengths_s: np.ndarray,
    qualities: np.ndarray,
) -> ChannelCoverage:
    """One channel's coverage from its stored intervals (time order; arrays of one length)."""
    usable = np.isin(qualities, USABLE)
    pct, gap_s, gap_start = window_coverage(
        window[0].timestamp(), window[1].timestamp(), starts_s[usable], lengths_s[usable]
    )
    lengths, counts = np.unique(lengths_s, return_counts=True)
    return ChannelCoverage(
        channel=channel,
        coverage_pct=round(pct, 6),
        longest_gap_s=gap_s,
        longest_gap_start=None if gap_start is None else datetime.fromtimestamp(gap_start, UTC),
        resolution_s=int(lengths[np.argmax(counts)]) if lengths.size else None,
        readings=int(starts_s.size),
        missing=int(np.sum(qualities == Quality.MISSING.value)),
        questionable=int(np.sum(qualities == Quality.QUESTIONABLE.value)),
    )


def asset_coverage(
    asset_id: str, window: tuple[datetime, datetime], rows: list[tuple[str, datetime, int, str]]
) -> Coverage:
    """Coverage of every channel from stored (channel, interval_start, interval_s, quality)
    rows in time order per channel; a channel without rows has 0 % coverage."""
    per_channel: dict[str, list[tuple[datetime, int, str]]] = {c.value: [] for c in CHANNELS}
    for channel, start, length, quality in rows:
        per_channel.setdefault(channel, []).append((start, length, quality))
    result = []
    for channel in CHANNELS:
        found = per_channel[channel.value]
        result.append(
            channel_coverage(
                channel,
                window,
                np.array([s.timestamp() for s, _, _ in found], dtype=float),
                np.array([n for _, n, _ in found], dtype=float),
                np.array([q for _, _, q in found], dtype=object),
            )
        )
    return Coverage(
        asset_id=asset_id, window_start=window[0], window_end=window[1], channels=result
    )


DEFAULT_WINDOW = timedelta(days=7)
MAX_WINDOW = timedelta(days=400)
