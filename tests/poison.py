"""Records that must never stop a consumer, per consumed topic, and records that must be served.

`poison(topic, now)` lists (name, value) pairs: each must end as a dead letter with a reason.
Telemetry's include contract v2's rules (quality and values agree, devices reporting within the
total) and records of the first version (`nexwatt.telemetry.interval.v1`, still read). Vendor
payloads on `telemetry.raw` are refused by the codec or, once decoded, by telemetry-ingest's
normalizer.
`tolerated(topic, asset_or_resource)` lists valid records in forms a newer or different
producer may send (unknown fields): each must be handled like any other.
The unit tests check each poison against the codec; the fault suite sends them all to the
running services.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from nexwatt_shared.topics import (
    ASSET_COMMAND_ACK,
    ASSET_REGISTERED,
    DISPATCH_CONFIRMED,
    DISPATCH_INSTRUCTION,
    TELEMETRY_INTERVAL,
    TELEMETRY_RAW,
    Topic,
)

SITE_TZ = ZoneInfo("America/New_York")  # the raw payloads' site: local times are read in it
# Every topic a service consumes.
CONSUMED = (
    ASSET_REGISTERED,
    TELEMETRY_RAW,
    TELEMETRY_INTERVAL,
    DISPATCH_INSTRUCTION,
    DISPATCH_CONFIRMED,
    ASSET_COMMAND_ACK,
)


def valid_data(topic: Topic, key: str, when: datetime) -> dict[str, Any]:
    """A valid payload of `topic` about `key` (an asset or a resource id), stamped `when`."""
    at = when.isoformat()
    window = {"window_start": at, "window_end": (when + timedelta(hours=1)).isoformat()}
    payloads: dict[str, dict[str, Any]] = {
        ASSET_REGISTERED.name: {
            "asset_id": key, "status": "enrolled", "asset_type": "solar_storage",
            "inverter": "SolarEdge SE7600", "vendor": "solaredge", "capacity_kw": 7.6,
            "storage_kwh": 9.8, "backup_reserve_pct": 20.0, "meter_id": f"MD-{key}",
            "iso": "PJM", "iso_zone": "PJM-PEPCO", "resource_id": f"NXW-PJM-{key}",
            "cohort": "residential", "telemetry_interval_s": 300, "version": 1,
            "updated_at": at,
        },
        # A SolarEdge powerDetails response: one quarter hour, local time of the site.
        TELEMETRY_RAW.name: {
            "powerDetails": {"timeUnit": "QUARTER_OF_AN_HOUR", "unit": "W", "meters": [
                {"type": "Production", "values": [{"date": f"{when.astimezone(SITE_TZ):%F %T}",
                                                   "value": 3000.0}]},
            ]},
        },
        TELEMETRY_INTERVAL.name: {
            "asset_id": key, "interval_start": at, "interval_s": 300, "pv_kw": 3.0,
            "load_kw": 1.0, "battery_kw": 0.0, "net_kw": 2.0, "soc_pct": 80.0,
        },
        DISPATCH_INSTRUCTION.name: {
            "instruction_id": f"I-{key}", "resource_id": key, "mw": 1.0, "issued_at": at,
            **window,
        },
        DISPATCH_CONFIRMED.name: {
            "instruction_id": f"I-{key}", "resource_id": key, "status": "rejected",
            "reason": "unknown resource", "mw_requested": 1.0, "mw_confirmed": 0.0,
            "assets_commanded": 0, "assets_dispatched": 0, "instruction_received_at": at,
            "confirmed_at": at, "processing_ms": 12.0, **window,
        },
        ASSET_COMMAND_ACK.name: {
            "command_id": f"I-{key}:r1:{key}:0-0", "instruction_id": f"I-{key}",
            "gateway_id": key, "acked_at": at,
            "acks": [{"asset_id": key, "accepted": True, "setpoint_kw": 2.0}],
        },
    }  # fmt: skip
    return payloads[topic.name]


RAW_FORMAT = f"{TELEMETRY_RAW.event_type}solaredge.power-details.v1"


def event_bytes(topic: Topic, data: Any, event_id: str, **envelope: Any) -> bytes:
    """A CloudEvent of `topic` around `data`, as raw JSON bytes (no validation on the way).
    On `telemetry.raw`: a SolarEdge format, about the asset the data's key names (`subject`),
    in New York."""
    body = {
        "specversion": "1.0", "id": event_id, "source": "urn:test:poison",
        "type": topic.event_type, "time": "2026-03-12T09:00:00Z", "data": data,
    }  # fmt: skip
    if topic is TELEMETRY_RAW:
        body |= {"type": RAW_FORMAT, "subject": "P-raw", "sitetimezone": SITE_TZ.key}
    return json.dumps(body | envelope).encode()


TELEMETRY_V1 = "nexwatt.telemetry.interval.v1"
_CHANNELS = ("pv_kw", "load_kw", "battery_kw", "net_kw", "soc_pct")
_ACTUAL = dict.fromkeys(_CHANNELS, "actual")  # the valid telemetry's channels, all measured
_NO_VALUES = dict.fromkeys(_CHANNELS)
# Records of the first telemetry version (every channel but SoC required) that break it.
_BAD_V1_TELEMETRY: list[tuple[str, dict[str, Any]]] = [
    ("v1 without PV", {"pv_kw": None}),
    ("v1 NaN battery", {"battery_kw": float("nan")}),
]
_ACK = {"asset_id": "A-1", "accepted": True, "setpoint_kw": 2.0}
# Field changes that break a valid payload, per topic: (name, {field: value}).
_BAD_FIELDS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    TELEMETRY_INTERVAL.name: [
        ("NaN", {"pv_kw": float("nan")}),
        ("interval end past year 9999", {"interval_start": "9999-12-31T23:30:00Z"}),
        ("UTC conversion past year 9999", {"interval_start": "9999-12-31T23:30:00-05:00"}),
        ("UTC conversion before year 1", {"interval_start": "0001-01-01T00:10:00+05:00"}),
        ("NUL in asset id", {"asset_id": "A\u0000B"}),
        ("1e308 kW of PV", {"pv_kw": 1e308}),
        ("-1e308 kW of battery", {"battery_kw": -1e308}),
        ("interval of 1e20 s", {"interval_s": 10**20}),
        # Contract v2: a channel is in a reading exactly when `quality` names it.
        ("a value whose quality is missing", {"quality": {**_ACTUAL, "pv_kw": "missing"}}),
        ("actual quality without a value", {"soc_pct": None, "quality": _ACTUAL}),
        ("an unknown channel in quality", {"quality": {**_ACTUAL, "wind_kw": "actual"}}),
        ("an unknown quality", {"quality": {**_ACTUAL, "pv_kw": "validated"}}),
        ("quality on no channel", {**_NO_VALUES, "quality": {}}),
        ("devices reporting beyond the total", {"devices_reporting": 24, "devices_total": 23}),
        ("quality as a list", {"quality": ["pv_kw", "actual"]}),
    ],
    # Vendor payloads are checked by telemetry-ingest's formats once decoded: each of these
    # is refused by the codec or by the normalizer, with the vendor, the field and the reason.
    TELEMETRY_RAW.name: [
        (
            "meters as an object",
            {"powerDetails": {"timeUnit": "QUARTER_OF_AN_HOUR", "unit": "W", "meters": {"a": 1}}},
        ),
        (
            "a string for a power",
            {
                "powerDetails": {
                    "timeUnit": "QUARTER_OF_AN_HOUR",
                    "unit": "W",
                    "meters": [
                        {
                            "type": "Production",
                            "values": [{"date": "2026-03-12 09:00:00", "value": "lots"}],
                        }
                    ],
                }
            },
        ),
        (
            "a time in the spring DST gap",
            {
                "powerDetails": {
                    "timeUnit": "QUARTER_OF_AN_HOUR",
                    "unit": "W",
                    "meters": [
                        {
                            "type": "Production",
                            "values": [{"date": "2026-03-08 02:15:00", "value": 1.0}],
                        }
                    ],
                }
            },
        ),
        (
            "horsepower",
            {"powerDetails": {"timeUnit": "QUARTER_OF_AN_HOUR", "unit": "hp", "meters": []}},
        ),
        ("a day-long interval", {"powerDetails": {"timeUnit": "DAY", "unit": "W", "meters": []}}),
        ("a JSON string for a payload", "powerDetails"),
    ],
    ASSET_REGISTERED.name: [
        ("NaN", {"capacity_kw": float("nan")}),
        ("NUL in meter id", {"meter_id": "M\u0000"}),
        ("lone surrogate in cohort", {"cohort": "res\ud800"}),
        ("version beyond a 32-bit integer", {"version": 2**40}),
        ("1e308 kW inverter", {"capacity_kw": 1e308}),
        ("updated in year 1", {"updated_at": "0001-01-01T00:10:00+05:00"}),
    ],
    DISPATCH_INSTRUCTION.name: [
        ("NaN", {"mw": float("nan")}),
        ("revision 0", {"revision": 0}),
        ("an unknown kind", {"kind": "drill"}),
        ("NUL in instruction id", {"instruction_id": "I-\u0000"}),
        ("1e308 MW requested", {"mw": 1e308}),
        ("window end past year 9999", {"window_end": "9999-12-31T23:30:00-05:00"}),
        ("a window of 26 years", {"window_start": "2000-01-01T00:00:00Z"}),
        ("an instruction id of 65 characters", {"instruction_id": "I" * 65}),
        ("control character in instruction id", {"instruction_id": "I-\u001b[2J"}),
    ],
    DISPATCH_CONFIRMED.name: [
        ("NaN", {"mw_confirmed": float("nan")}),
        ("NUL in reason", {"reason": "no\u0000"}),
        ("1e308 MW confirmed", {"mw_confirmed": 1e308}),
        ("assets beyond any fleet", {"assets_commanded": 10**12}),
    ],
    ASSET_COMMAND_ACK.name: [
        ("NaN", {"acks": [_ACK | {"setpoint_kw": float("nan")}]}),
        ("NUL in reason", {"acks": [_ACK | {"reason": "owner said no\u0000"}]}),
        ("NUL in command id", {"command_id": "C\u0000"}),
        ("1e308 kW setpoint", {"acks": [_ACK | {"setpoint_kw": 1e308}]}),
        ("an ack of no asset", {"acks": []}),
        ("more entries than a command carries", {"acks": [_ACK] * 2001}),
        ("a gateway id with a space", {"gateway_id": "gw 1"}),
    ],
}
# The field of each payload that carries its event time, to stamp it in the far future.
_EVENT_TIME_FIELD = {
    TELEMETRY_INTERVAL.name: "interval_start",
    ASSET_REGISTERED.name: "updated_at",
    DISPATCH_INSTRUCTION.name: "issued_at",
    DISPATCH_CONFIRMED.name: "confirmed_at",
    ASSET_COMMAND_ACK.name: "acked_at",
}


def poison(topic: Topic, key: str, now: datetime) -> list[tuple[str, bytes | None]]:
    """Records of `topic` that must each be dead-lettered, never stop or stall a consumer."""
    good = valid_data(topic, key, datetime(2026, 3, 12, 9, 0, tzinfo=now.tzinfo))
    deep = b"[" * 5000 + b"]" * 5000
    records: list[tuple[str, bytes | None]] = [
        ("not JSON", b'{"mw": "lots"'),
        ("not UTF-8", b"\xff\xfe\x00"),
        ("5,000 nested arrays", deep),
        (
            "5,000 nested arrays as data",
            b'{"type": "%s", "data": %s}' % (topic.event_type.encode(), deep),
        ),
        ("a 5,000-digit number", b"1" * 5000),
        ("256 KiB of control bytes", b"\x01" * 256 * 1024),  # a letter six times its size
        ("tombstone", None),
        ("wrong event type", event_bytes(topic, good, "p-t", type="nexwatt.other.v1")),
        ("NUL in the event id", event_bytes(topic, good, "p-\u0000")),
        (
            "envelope time past year 9999",
            event_bytes(topic, good, "p-e", time="9999-12-31T23:30:00-05:00"),
        ),
    ]
    for name, changes in _BAD_FIELDS[topic.name]:
        data = changes if topic is TELEMETRY_RAW else {**good, **changes}
        records.append((name, event_bytes(topic, data, f"p-{name}")))
    if topic is TELEMETRY_RAW:  # what the envelope says of the payload
        for name, envelope in (
            ("a format nobody reads", {"type": f"{TELEMETRY_RAW.event_type}nobody.thing.v1"}),
            ("no asset (subject)", {"subject": None}),
            ("an asset id the contract refuses", {"subject": "A B/C"}),
            ("a time zone that does not exist", {"sitetimezone": "Mars/Olympus_Mons"}),
            ("a time zone that is a path", {"sitetimezone": "../../etc/passwd"}),
            ("no time zone for local times", {"sitetimezone": None}),
        ):
            records.append((name, event_bytes(topic, good, f"p-{name}", **envelope)))
    if topic is TELEMETRY_INTERVAL:  # the first version is still read: and still checked
        for name, changes in _BAD_V1_TELEMETRY:
            data = {**good, **changes}
            records.append((name, event_bytes(topic, data, f"p-{name}", type=TELEMETRY_V1)))
    future = now + timedelta(days=365 * 70)  # a clock stamped around 2096
    if topic is TELEMETRY_RAW:
        ahead = valid_data(topic, key, future.replace(minute=0, second=0, microsecond=0))
    else:
        ahead = {**good, _EVENT_TIME_FIELD[topic.name]: future.isoformat()}
    records.append(("70 years ahead", event_bytes(topic, ahead, "f")))
    return records


def tolerated(topic: Topic, key: str, when: datetime, event_id: str) -> bytes:
    """A valid record of `topic` as a newer producer sends it: with fields we don't know."""
    data = {**valid_data(topic, key, when), "firmware": "4.2.1", "site": {"tilt_deg": 30}}
    subject = {"subject": key} if topic is TELEMETRY_RAW else {}
    return event_bytes(topic, data, event_id, traceparent="00-abc-def-01", **subject)
