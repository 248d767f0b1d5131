"""Turning payloads into Kafka records and back, with the reason when a record is refused."""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import BaseModel, ValidationError

from nexwatt_shared.envelope import SOURCE_PREFIX, CloudEvent
from nexwatt_shared.topics import Topic


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
    idempotent across retries (e.g. derived from the instruction id)."""
    if not isinstance(payload, topic.payload):
        raise TypeError(f"{topic.name} carries {topic.payload.__name__}, not {type(payload)}")
    fields: dict[str, object] = {
        "source": f"{SOURCE_PREFIX}{source}",
        "type": topic.event_type,
        "dataschema": topic.dataschema,
        "subject": record_key(topic, payload),
        "data": payload,
    }
    if event_id is not None:
        fields["id"] = event_id
    if time is not None:
        fields["time"] = time
    return CloudEvent[topic.payload](**fields)  # type: ignore[name-defined]


def record_key(topic: Topic, payload: BaseModel) -> str | None:
    return str(getattr(payload, topic.key)) if topic.key else None


def encode(event: CloudEvent[BaseModel]) -> bytes:
    return event.model_dump_json(exclude_none=True).encode()


def decode(topic: Topic, value: bytes | None) -> CloudEvent[BaseModel]:
    """Parse and validate one record of `topic`; raise UndecodableMessage with the reason."""
    if value is None:
        raise UndecodableMessage("empty value (tombstone) on a topic that carries events")
    try:
        raw = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UndecodableMessage(f"not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise UndecodableMessage(f"not a CloudEvent: a JSON {type(raw).__name__}")
    if raw.get("type") != topic.event_type:
        raise UndecodableMessage(
            f"wrong event type {raw.get('type')!r} on {topic.name}: expected {topic.event_type!r}"
        )
    try:
        return CloudEvent[topic.payload].model_validate(raw)  # type: ignore[name-defined]
    except ValidationError as exc:
        raise UndecodableMessage(_describe(exc)) from exc


def _describe(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
    more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "schema validation failed: " + "; ".join(parts) + more
