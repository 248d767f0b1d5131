"""JSON Schemas of every topic's payload, the hourly ISO report, and an AsyncAPI 3.0 document."""

from __future__ import annotations

import json
import re
from typing import Any

from nexwatt_shared.contracts import HourlyDelivery
from nexwatt_shared.envelope import SPEC_VERSION
from nexwatt_shared.topics import ALL, Topic


def payload_schema(topic: Topic) -> dict[str, Any]:
    schema = topic.payload.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": topic.dataschema,
        **schema,
    }


def _message(topic: Topic) -> dict[str, Any]:
    event_type: dict[str, Any] = {"const": topic.event_type}
    extensions: dict[str, Any] = {}
    if topic.formats:  # telemetry.raw: the type names the vendor format; the site's time zone
        event_type = {
            "type": "string",
            "pattern": f"^{re.escape(topic.event_type)}[a-z0-9]+([.-][a-z0-9]+)*\\.v[0-9]+$",
            "description": "The format, e.g. nexwatt.telemetry.raw.solaredge.storage-data.v1",
        }
        extensions["sitetimezone"] = {
            "type": "string",
            "description": "The site's IANA time zone (local vendor times are read in it)",
        }
    return {
        "name": topic.payload.__name__,
        "title": topic.event_type,
        "contentType": "application/cloudevents+json",
        "summary": topic.description,
        "payload": {
            "type": "object",
            "description": f"CloudEvents {SPEC_VERSION} envelope (structured JSON mode); "
            "`id` is the idempotency key.",
            "required": ["specversion", "id", "source", "type", "time", "data"],
            "properties": {
                "specversion": {"const": SPEC_VERSION},
                "id": {"type": "string"},
                "source": {"type": "string", "format": "uri"},
                "type": event_type,
                "time": {"type": "string", "format": "date-time"},
                "subject": {"type": "string", "description": "The message key"},
                "datacontenttype": {"const": "application/json"},
                "dataschema": {"const": topic.dataschema},
                "data": {"$ref": f"./{topic.name}.json"},
                **extensions,
            },
        },
    }


def asyncapi() -> dict[str, Any]:
    channels, operations = {}, {}
    for t in ALL:
        cid = t.name.replace(".", "_").replace("-", "_")
        channels[cid] = {
            "address": t.name,
            "description": t.description,
            "messages": {t.payload.__name__: _message(t)},
            "bindings": {
                "kafka": {
                    "partitions": t.partitions,
                    "topicConfiguration": {
                        "cleanup.policy": [t.cleanup_policy],
                        "retention.ms": t.retention_ms,
                    },
                }
            },
            "x-key": t.key or ("asset id, also the subject" if t.formats else None),
            "x-producers": list(t.producers),
            "x-consumers": list(t.consumers),
        }
        operations[f"publish_{cid}"] = {"action": "send", "channel": {"$ref": f"#/channels/{cid}"}}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Nexwatt event bus",
            "version": "1.0.0",
            "description": "Topics between Nexwatt's services, the ISO adapter, inverter "
            "gateways and analysts. Every value is a CloudEvent in structured JSON mode; "
            "power is positive when delivered to the grid; times are UTC, intervals labelled "
            "by their start.",
        },
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": operations,
    }


def iso_report_schema() -> dict[str, Any]:
    """The hourly ISO-format settlement report (`settlement.filed` carries it as `iso_report`,
    and as CSV in `iso_report_csv` with the same columns in this order)."""
    item = HourlyDelivery.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:nexwatt:schema:settlement-iso-report:v1",
        "title": "Hourly kWh per registration, in the shape of a PJM demand-response settlement",
        "type": "array",
        "items": item,
        "x-csv-columns": list(item["properties"]),
    }


def render_all() -> dict[str, str]:
    """File name -> content of everything `make schemas` writes into schemas/."""
    files = {f"{t.name}.json": payload_schema(t) for t in ALL}
    files["asyncapi.json"] = asyncapi()
    files["settlement.iso-report.json"] = iso_report_schema()
    return {name: json.dumps(doc, indent=2, sort_keys=True) + "\n" for name, doc in files.items()}
