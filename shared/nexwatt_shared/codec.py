"""Turning payloads into Kafka records and back, with the reason when a record is refused."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from nexwatt_shared.contracts import Name, UtcDatetime, VendorPayload
from nexwatt_shared.envelope import SOURCE_PREFIX, SPEC_VERSION, CloudEvent
from nexwatt_shared.topics import TELEMETRY_RAW, Topic

_NAME: TypeAdapter[str] = TypeAdapter(Name)
_TIME: TypeAdapter[datetime] = TypeAdapter(UtcDatetime)


class UndecodableMessage(ValueError):
    """The record is not a valid event for its topic; the text says what is wrong."""


def envelope(
    topic: Topic,
    payload: BaseModel,
    *,
    source: str,
    event_id: str | None = None,
    time: datetime | None = None,
) -> CloudEvent[BaseModel]:
    """Wrap a payload in a CloudEvent for `topic`. Pass `event_id` when the event must be
    idempotent across retries (e.g. derived from the instruction id).

    The payload is a contract instance, validated when it was made: it is not validated again
    (that doubled the cost of publishing readings); the envelope's own values are."""
    if not isinstance(payload, topic.payload):
        raise TypeError(f"{topic.name} carries {topic.payload.__name__}, not {type(payload)}")
    fields: dict[str, object] = {
        "source": _NAME.validate_python(f"{SOURCE_PREFIX}{source}"),
        "type": topic.event_type,
        "dataschema": topic.dataschema,
        "subject": record_key(topic, payload),
        "data": payload,
    }
    if event_id is not None:
        fields["id"] = _NAME.validate_python(event_id)
    if time is not None:
        fields["time"] = _TIME.validate_python(time)
    return _current(topic).model_construct(**fields)


def encode_data(
    topic: Topic, data: dict[str, Any], *, source: str, event_id: str, time: datetime
) -> bytes:
    """The record `encode(envelope(topic, payload, ...))` makes, from a payload given as plain
    JSON-ready values (datetimes in UTC), encoded by orjson: for a payload of many items,
    where building a model per item costs more than all the rest (dispatch's 100,000
    setpoints: ~380 ms of models against ~50 ms this way, `make bench`). No validation: the
    caller builds `data` from values it computed within the contract, and its tests decode
    what it makes under the contract."""
    key = data.get(topic.key) if topic.key else None
    event = {
        "specversion": SPEC_VERSION,
        "id": event_id,
        "source": f"{SOURCE_PREFIX}{source}",
        "type": topic.event_type,
        "time": time,
        **({"subject": str(key)} if key is not None else {}),
        "datacontenttype": "application/json",
        "dataschema": topic.dataschema,
        "data": data,
    }
    return orjson.dumps(event, option=orjson.OPT_UTC_Z)


def record_key(topic: Topic, payload: BaseModel) -> str | None:
    return str(getattr(payload, topic.key)) if topic.key else None


def encode(event: CloudEvent[BaseModel]) -> bytes:
    return event.model_dump_json(exclude_none=True).encode()


def decode(topic: Topic, value: bytes | None) -> CloudEvent[BaseModel]:
    """Parse and validate one record of `topic`; raise UndecodableMessage with the reason.

    A tolerant reader: fields this version does not know (a newer producer's additions) are
    ignored, so additive schema changes roll out without loss. Whatever else goes wrong with
    the bytes (nesting too deep, numbers or dates that overflow) is an UndecodableMessage too:
    nothing a producer sends escapes as another exception and stops a consumer."""
    if value is None:
        raise UndecodableMessage("empty value (tombstone) on a topic that carries events")
    # Fast path, the common case: a valid event of the topic's current type, parsed and
    # validated in one pass of pydantic-core. Anything else takes the path below, which says
    # precisely what is wrong (or reads an older version).
    try:
        event = _current(topic).model_validate_json(value, extra="ignore")
        if event.type == topic.event_type or (
            topic.formats and topic.payload_for(event.type) is not None
        ):
            return event
    except Exception:  # whatever it is, the slow path below finds and reports the reason
        pass
    try:
        raw = json.loads(value)
    except RecursionError as exc:
        raise UndecodableMessage("not JSON: nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise UndecodableMessage(f"not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise UndecodableMessage(f"not a CloudEvent: a JSON {type(raw).__name__}")
    payload = topic.payload_for(raw.get("type"))
    if payload is None:
        expected = (
            f"{topic.event_type}<vendor>.<format>.v<n>" if topic.formats else topic.event_type
        )
        raise UndecodableMessage(
            f"wrong event type {_quoted(raw.get('type'))} on {topic.name}: expected {expected!r}"
        )
    try:
        event = CloudEvent[payload].model_validate(raw, extra="ignore")  # type: ignore[valid-type]
        upgrade = getattr(event.data, "upgrade", None)
        if upgrade is None:
            return event
        # An older version still read: consumers only ever see the current payload.
        return CloudEvent[topic.payload].model_validate(  # type: ignore[name-defined]
            {**event.model_dump(), "type": topic.event_type, "data": upgrade()}
        )
    except ValidationError as exc:
        raise UndecodableMessage(_describe(exc)) from exc
    except Exception as exc:  # a validator that overflowed or recursed: still the data's fault
        raise UndecodableMessage(f"invalid event: {type(exc).__name__}: {exc}") from exc


def raw_envelope(
    fmt: str,
    asset_id: str,
    data: dict[str, Any] | list[Any],
    *,
    site_timezone: str,
    source: str,
    event_id: str | None = None,
    topic: Topic = TELEMETRY_RAW,
) -> CloudEvent[BaseModel]:
    """Wrap a vendor's own payload for `telemetry.raw` (or another topic of formats): the type
    names its format (e.g. `solaredge.storage-data.v1`), the subject is the asset and
    `sitetimezone` the site's IANA time zone, which local timestamps without an offset are
    read in."""
    fields: dict[str, object] = {
        "source": f"{SOURCE_PREFIX}{source}",
        "type": f"{topic.event_type}{fmt}",
        "dataschema": topic.dataschema,
        "subject": asset_id,
        "sitetimezone": site_timezone,
        "data": VendorPayload(data),
    }
    if event_id is not None:
        fields["id"] = event_id
    if topic.payload_for(fields["type"]) is None:
        raise ValueError(f"not a format name: {fmt!r} (expected <vendor>.<format>.v<n>)")
    return CloudEvent[VendorPayload](**fields)  # type: ignore[arg-type]


_CURRENT: dict[str, type[CloudEvent[Any]]] = {}


def _current(topic: Topic) -> type[CloudEvent[Any]]:
    """The event model of the topic's current payload (parametrizing a generic is not free)."""
    model = _CURRENT.get(topic.name)
    if model is None:
        model = _CURRENT[topic.name] = CloudEvent[topic.payload]  # type: ignore[name-defined]
    return model


def refuse_if_ahead(event: CloudEvent[BaseModel], now: datetime, max_ahead: timedelta) -> None:
    """Raise UndecodableMessage when the event's time lies more than `max_ahead` after `now`
    (the wall clock): a clock far ahead would mark an asset fresh, or settle a window, early.
    A vendor's raw payload has no event time until it is parsed: its readings are checked then.
    """
    if isinstance(event.data, VendorPayload):
        return
    event_time: datetime = event.data.event_time  # type: ignore[attr-defined]
    if event_time > now + max_ahead:
        raise UndecodableMessage(
            f"event time {event_time.isoformat()} is {(event_time - now).total_seconds():.0f} s"
            f" after the wall clock (at most {max_ahead.total_seconds():.0f} s is accepted)"
        )


def _quoted(value: object) -> str:
    """A short, printable rendering of a value from the wire, for a reason text."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
    more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "schema validation failed: " + "; ".join(parts) + more
