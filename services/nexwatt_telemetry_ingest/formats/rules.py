"""The normalization rules every format shares: time, units, plausibility (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from nexwatt_shared.contracts import (
    EARLIEST,
    LATEST,
    MAX_ASSET_KW,
    MAX_COUNT,
    Channel,
    Quality,
    ReadingSource,
    TelemetryInterval,
)
from nexwatt_telemetry_ingest.formats import FormatError

# --- time -----------------------------------------------------------------------------------


def localize(
    local: Sequence[datetime], tz: ZoneInfo | None, field: str, member: str = ""
) -> list[datetime]:
    """The UTC instants of wall-clock times without an offset, read in `tz`, taken as one
    series in order. Errors name the time `i` as `{field}[{i}]{member}`.

    - A time in the autumn's repeated hour is ambiguous: its first occurrence is the earlier
      instant (still daylight time); once the series has passed it, the same wall-clock time is
      the later instant (standard time). E.g. America/New_York, 2026-11-01: 01:30 then, after
      01:45, 01:00 again -> 05:30Z, 05:45Z, 06:00Z.
    - A time in the spring's skipped hour (2026-03-08 02:00-03:00 in New York) does not exist:
      FormatError.
    """
    if tz is None:
        raise FormatError("sitetimezone", "local times need the site's time zone in the envelope")
    out: list[datetime] = []
    for i, t in enumerate(local):
        at = f"{field}[{i}]{member}"
        if t.tzinfo is not None:
            raise FormatError(at, f"expected a local time without offset: {t}")
        try:  # year 1 or 9999 may leave datetime's range once shifted to UTC
            early = t.replace(tzinfo=tz, fold=0).astimezone(UTC)
            late = t.replace(tzinfo=tz, fold=1).astimezone(UTC)
            in_range = EARLIEST <= early < LATEST
        except OverflowError:
            in_range = False
        if not in_range:
            raise FormatError(at, f"{t:%Y-%m-%d %H:%M:%S} lies outside 2000-2100")
        if early.astimezone(tz).replace(tzinfo=None) != t:
            raise FormatError(at, f"{t:%Y-%m-%d %H:%M:%S} does not exist in {tz.key} (DST gap)")
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
    value = _float(seconds) * scale
    if not math.isfinite(value) or not EARLIEST.timestamp() <= value < LATEST.timestamp():
        raise FormatError(field, f"epoch time {seconds!r} lies outside 2000-2100")
    return datetime.fromtimestamp(value, UTC)


def start_of(end: datetime, interval_s: int) -> datetime:
    """Relabel an interval labelled by its end (Enphase `end_at`, inclusive CSV end times)."""
    return end - timedelta(seconds=interval_s)


# --- JSON shapes ----------------------------------------------------------------------------


def obj(value: object, field: str) -> dict[str, Any]:
    """A JSON object from a payload."""
    if not isinstance(value, dict):
        raise FormatError(field, f"expected an object, got {type(value).__name__}")
    return value


def array(value: object, field: str) -> list[Any]:
    """A JSON array from a payload."""
    if not isinstance(value, list):
        raise FormatError(field, f"expected an array, got {type(value).__name__}")
    return value


def member(parent: Mapping[str, Any], name: str, field: str) -> Any:
    """A member the format requires of the object at `field` (None when it is null)."""
    if name not in parent:
        raise FormatError(f"{field}.{name}" if field else name, "missing")
    return parent[name]


def text(value: object, field: str) -> str:
    """A string the format requires at `field`."""
    if not isinstance(value, str):
        raise FormatError(field, f"expected a string, got {value!r}"[:120])
    return value


def count(value: object, field: str) -> int | None:
    """A count of devices: None stays None; anything but a whole number 0 ... MAX_COUNT is
    refused."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise FormatError(field, f"expected a count of devices, got {value!r}"[:120])
    return value


# --- live values ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Polled:
    """A live vendor body in our polling envelope (see `polled`)."""

    start: datetime  # polled_at - interval_s
    interval_s: int
    response: object  # the vendor body exactly as received

    def reading(
        self,
        asset_id: str,
        channels: Mapping[Channel, float | None],
        source: ReadingSource,
        devices_reporting: int | None = None,
        devices_total: int | None = None,
    ) -> TelemetryInterval:
        """The one reading of a poll: over the poll period, every value `estimated`."""
        return reading(
            asset_id, self.start, self.interval_s, channels, source, quality=Quality.ESTIMATED,
            devices_reporting=devices_reporting, devices_total=devices_total,
        )  # fmt: skip


def polled(data: object) -> Polled:
    """Read the envelope a gateway or connector wraps live values in:
    `{"polled_at": <epoch s>, "interval_s": <poll period s, 1..3600>, "response": <body>}`.

    Live values (SMA getValues / measurements/live, Generac device status, SunSpec registers)
    are instantaneous and carry no time of their own. A reading of them covers
    [polled_at - interval_s, polled_at); being one sample rather than an average over that
    interval, its values are `estimated`, never `actual`.
    """
    envelope = obj(data, "")
    polled_at = from_epoch(member(envelope, "polled_at", ""), "polled_at")
    interval_s = member(envelope, "interval_s", "")
    if type(interval_s) is not int or not 0 < interval_s <= 3600:  # a bool is no period
        raise FormatError("interval_s", f"expected whole seconds 1..3600, got {interval_s!r}"[:120])
    start = polled_at - timedelta(seconds=interval_s)
    if start < EARLIEST:
        raise FormatError("polled_at", "the polled interval starts before 2000")
    return Polled(start, interval_s, member(envelope, "response", ""))


# --- units ----------------------------------------------------------------------------------


def number(value: object, field: str) -> float | None:
    """A numeric value from a payload: None stays None (missing); a bool or a string is
    refused. NaN and infinity are kept, an integer beyond float range becomes infinity (the
    reading flags them questionable)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FormatError(field, f"expected a number, got {value!r}"[:120])
    return _float(value)


def _float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # JSON integers are unbounded: 1 followed by 400 zeros
        return math.inf if value > 0 else -math.inf  # copysign would overflow as well


def magnitude(value: float | None) -> float | None:
    """A value the source sends as a magnitude (energy fed in, energy charged): a negative one
    becomes NaN, which `reading` flags questionable."""
    return math.nan if value is not None and value < 0 else value


def total(values: Sequence[float | None]) -> float | None:
    """The sum of several devices' values of one channel; missing when any of them is (a
    partial sum would understate the site)."""
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def mean(values: Sequence[float | None]) -> float | None:
    """The mean of several devices' values (a SoC of several batteries); missing when any is."""
    summed = total(values)
    return None if summed is None or not values else summed / len(values)


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
    quality: Quality | Mapping[Channel, Quality] = Quality.ACTUAL,
    devices_reporting: int | None = None,
    devices_total: int | None = None,
) -> TelemetryInterval:
    """One normalized reading of the `channels` given (in kW or %, already signed + = to the
    grid). A None value is carried as missing; NaN, infinity, negative PV or load, a SoC
    outside 0-100 % or a power beyond `MAX_ASSET_KW` is dropped and flagged questionable.
    `quality` is what the source says of its values (actual or estimated), for every channel
    or per channel (a channel not named: actual)."""
    given = quality if isinstance(quality, Mapping) else dict.fromkeys(channels, quality)
    values: dict[str, float | None] = {}
    qualities: dict[Channel, Quality] = {}
    for channel, value in channels.items():
        if value is None:
            values[channel], qualities[channel] = None, Quality.MISSING
        elif plausible(channel, value):
            values[channel] = round(value, 6)
            qualities[channel] = given.get(channel, Quality.ACTUAL)
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
