"""The normalization rules every format shares: time, units, plausibility (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from nexwatt_shared.contracts import (
    EARLIEST,
    LATEST,
    MAX_ASSET_KW,
    Channel,
    Quality,
    ReadingSource,
    TelemetryInterval,
)
from nexwatt_telemetry_ingest.formats import FormatError

# --- time -----------------------------------------------------------------------------------


def localize(local: Sequence[datetime], tz: ZoneInfo, field: str) -> list[datetime]:
    """The UTC instants of wall-clock times without an offset, read in `tz`, taken as one
    series in order.

    - A time in the autumn's repeated hour is ambiguous: its first occurrence is the earlier
      instant (still daylight time); once the series has passed it, the same wall-clock time is
      the later instant (standard time). E.g. America/New_York, 2026-11-01: 01:30 then, after
      01:45, 01:00 again -> 05:30Z, 05:45Z, 06:00Z.
    - A time in the spring's skipped hour (2026-03-08 02:00-03:00 in New York) does not exist:
      FormatError.
    """
    out: list[datetime] = []
    for i, t in enumerate(local):
        if t.tzinfo is not None:
            raise FormatError(f"{field}[{i}]", f"expected a local time without offset: {t}")
        first = t.replace(tzinfo=tz, fold=0)
        second = t.replace(tzinfo=tz, fold=1)
        early, late = first.astimezone(UTC), second.astimezone(UTC)
        if early.astimezone(tz).replace(tzinfo=None) != t:
            raise FormatError(
                f"{field}[{i}]", f"{t:%Y-%m-%d %H:%M:%S} does not exist in {tz.key} (DST gap)"
            )
        ambiguous = early != late
        out.append(late if ambiguous and out and early <= out[-1] else early)
    return out


def parse_local(text: object, pattern: str, field: str) -> datetime:
    """A local date-time string like '2026-07-01 14:15:00' (`pattern` for strptime)."""
    if not isinstance(text, str):
        raise FormatError(field, f"expected a date-time string, got {type(text).__name__}")
    try:
        return datetime.strptime(text, pattern)
    except ValueError as exc:
        raise FormatError(field, f"not a date-time like {pattern!r}: {text[:40]!r}") from exc


def from_epoch(seconds: object, field: str, scale: float = 1.0) -> datetime:
    """A UTC instant from epoch seconds (`scale` 1e-3 for milliseconds), bounded to the
    contract's range."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise FormatError(field, f"expected epoch {'ms' if scale != 1 else 's'}, got {seconds!r}")
    value = float(seconds) * scale
    if not math.isfinite(value) or not EARLIEST.timestamp() <= value < LATEST.timestamp():
        raise FormatError(field, f"epoch time {seconds!r} lies outside 2000-2100")
    return datetime.fromtimestamp(value, UTC)


def start_of(end: datetime, interval_s: int) -> datetime:
    """Relabel an interval labelled by its end (Enphase `end_at`, inclusive CSV end times)."""
    return end - timedelta(seconds=interval_s)


# --- units ----------------------------------------------------------------------------------


def number(value: object, field: str) -> float | None:
    """A numeric value from a payload: None stays None (missing); a bool or a string is
    refused. NaN and infinity are kept (the reading flags them questionable)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FormatError(field, f"expected a number, got {value!r}"[:120])
    return float(value)


def scaled(raw: float | None, power_of_ten: int) -> float | None:
    """raw x 10^power_of_ten (SunSpec `*_SF`, ESPI `powerOfTenMultiplier`)."""
    return None if raw is None else raw * 10.0**power_of_ten


def kw_from_w(watts: float | None) -> float | None:
    return None if watts is None else watts / 1000.0


def kw_from_wh(wh: float | None, interval_s: int) -> float | None:
    """The average power [kW] of `wh` [Wh] delivered over `interval_s` [s]."""
    return None if wh is None else wh / 1000.0 / (interval_s / 3600.0)


# --- one reading ----------------------------------------------------------------------------


def reading(
    asset_id: str,
    start: datetime,
    interval_s: int,
    channels: Mapping[Channel, float | None],
    source: ReadingSource,
    *,
    quality: Quality = Quality.ACTUAL,
    devices_reporting: int | None = None,
    devices_total: int | None = None,
) -> TelemetryInterval:
    """One normalized reading of the `channels` given (in kW or %, already signed + = to the
    grid). A None value is carried as missing; NaN, infinity, negative PV or load, a SoC
    outside 0-100 % or a power beyond `MAX_ASSET_KW` is dropped and flagged questionable.
    `quality` is what the source says of its values (actual or estimated)."""
    values: dict[str, float | None] = {}
    qualities: dict[Channel, Quality] = {}
    for channel, value in channels.items():
        if value is None:
            values[channel], qualities[channel] = None, Quality.MISSING
        elif plausible(channel, value):
            values[channel], qualities[channel] = round(value, 6), quality
        else:
            values[channel], qualities[channel] = None, Quality.QUESTIONABLE
    return TelemetryInterval(
        asset_id=asset_id,
        interval_start=start,
        interval_s=interval_s,
        quality=qualities,
        devices_reporting=devices_reporting,
        devices_total=devices_total,
        source=source,
        **values,  # type: ignore[arg-type]
    )


def plausible(channel: Channel, value: float) -> bool:
    if not math.isfinite(value):
        return False
    if channel is Channel.SOC_PCT:
        return 0.0 <= value <= 100.0
    if channel in (Channel.PV_KW, Channel.LOAD_KW) and value < 0:
        return False
    return abs(value) <= MAX_ASSET_KW
