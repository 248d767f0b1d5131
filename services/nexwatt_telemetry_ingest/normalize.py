"""From a `telemetry.raw` event to standard readings: pick the format by the event type, read
the envelope's asset and time zone, parse, and refuse readings from the future."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ValidationError

from nexwatt_shared.contracts import TelemetryInterval, VendorPayload
from nexwatt_shared.envelope import CloudEvent
from nexwatt_shared.topics import TELEMETRY_RAW, Topic
from nexwatt_telemetry_ingest.formats import FormatError, RawContext
from nexwatt_telemetry_ingest.formats.catalog import FORMATS


def reading_id(r: TelemetryInterval) -> str:
    """The event id of a normalized reading: its natural key, so a payload fetched or sent
    twice yields the same ids (consumers also drop exact repeats by value)."""
    channels = "+".join(sorted(r.quality))
    return f"{r.asset_id}@{r.interval_start:%Y%m%dT%H%M%SZ}/{r.interval_s}/{channels}"


def normalize(
    event: CloudEvent[BaseModel], now: datetime, max_ahead: timedelta, topic: Topic = TELEMETRY_RAW
) -> list[TelemetryInterval]:
    """The readings in one raw event. Raises FormatError naming the vendor format, the field
    and the reason when the payload cannot be read, or when a reading ends more than
    `max_ahead` after `now` (the source's clock or time zone is wrong: nothing of it is kept).
    """
    name = event.type.removeprefix(topic.event_type)
    fmt = FORMATS.get(name)
    if fmt is None:
        raise FormatError("type", f"no parser for format {name!r}; known: {', '.join(FORMATS)}")
    try:
        if not event.subject:
            raise FormatError("subject", "the envelope names no asset (subject)")
        data = event.data
        assert isinstance(data, VendorPayload)
        ctx = RawContext(event.subject, _zone(event.sitetimezone), event.time)
        readings = fmt.parse(data.root, ctx)
    except FormatError as exc:
        raise FormatError(exc.field, f"{fmt.vendor} {fmt.endpoint}: {exc.reason}") from exc
    except ValidationError as exc:  # a reading the contract refuses (e.g. an asset id pattern)
        raise FormatError("", f"{fmt.vendor} {fmt.endpoint}: {exc.errors()[0]['msg']}") from exc
    for r in readings:
        if r.interval_end > now + max_ahead:
            raise FormatError(
                "",
                f"{fmt.vendor} {fmt.endpoint}: reading {r.interval_start.isoformat()} ends"
                f" {(r.interval_end - now).total_seconds():.0f} s after the wall clock (at most"
                f" {max_ahead.total_seconds():.0f} s accepted): check the source's clock and"
                " time zone",
            )
    return readings


def _zone(name: str | None) -> ZoneInfo | None:
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # also "../x", a folder
        raise FormatError("sitetimezone", f"unknown IANA time zone {name!r}") from exc
