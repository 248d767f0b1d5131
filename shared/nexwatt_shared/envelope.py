"""CloudEvents 1.0 envelope, structured JSON mode: the value of every Nexwatt Kafka message.

`id` is the idempotency key: a consumer that sees the same id twice must change nothing the
second time.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from nexwatt_shared.contracts import Name, UtcDatetime

Payload = TypeVar("Payload", bound=BaseModel)

SPEC_VERSION = "1.0"
SOURCE_PREFIX = "urn:nexwatt:service:"


class CloudEvent(BaseModel, Generic[Payload]):
    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: str = SPEC_VERSION
    id: Name = Field(default_factory=lambda: str(uuid.uuid4()))
    source: Name = Field(description="URI of the producer, urn:nexwatt:service:<name>")
    type: str = Field(min_length=1, description="e.g. nexwatt.dispatch.confirmed.v1")
    time: UtcDatetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: Name | None = Field(None, description="The entity the event is about (the Kafka key)")
    datacontenttype: str = "application/json"
    dataschema: str | None = None
    # Extension attribute of `telemetry.raw`: local timestamps without an offset are read in it.
    sitetimezone: str | None = Field(
        None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$",
        description="The site's IANA time zone, e.g. America/New_York (telemetry.raw)",
    )
    data: Payload


def utcnow() -> datetime:
    return datetime.now(UTC)
