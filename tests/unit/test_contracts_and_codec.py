from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from nexwatt_shared.codec import (
    UndecodableMessage,
    decode,
    encode,
    envelope,
    record_key,
    refuse_if_ahead,
)
from nexwatt_shared.contracts import (
    DispatchInstruction,
    TelemetryInterval,
    answer_event_id,
    conflict_event_id,
    is_conflict_answer,
)
from nexwatt_shared.settings import ServiceSettings
from nexwatt_shared.topics import ALL, DISPATCH_INSTRUCTION, TELEMETRY_INTERVAL, TELEMETRY_RAW
from nexwatt_telemetry_ingest.formats import FormatError
from nexwatt_telemetry_ingest.normalize import normalize
from tests.poison import CONSUMED, event_bytes, poison, tolerated, valid_data


def instruction(**changes: object) -> DispatchInstruction:
    fields = {
        "instruction_id": "I-1",
        "resource_id": "NXW-PJM-0042",
        "mw": 44.5,
        "window_start": "2026-03-12T09:15:00Z",
        "window_end": "2026-03-12T10:15:00Z",
        "issued_at": "2026-03-12T09:17:00Z",
    }
    return DispatchInstruction.model_validate({**fields, **changes})


def test_datetimes_with_an_offset_are_normalized_to_utc() -> None:
    eastern = timezone(timedelta(hours=-5))
    got = instruction(window_start=datetime(2026, 3, 12, 4, 15, tzinfo=eastern))
    assert got.window_start == datetime(2026, 3, 12, 9, 15, tzinfo=UTC)
    assert got.window_start.utcoffset() == timedelta(0)


def test_naive_datetimes_and_backward_windows_are_refused_with_the_field() -> None:
    with pytest.raises(ValidationError, match="window_start"):
        instruction(window_start="2026-03-12T09:15:00")
    with pytest.raises(ValidationError, match="window_end must be after window_start"):
        instruction(window_end="2026-03-12T09:00:00Z")


def test_answer_ids_cannot_collide_whatever_the_instruction_ids() -> None:
    # Instruction ids are the ISO's and may hold ':' or '#'; an answer id of the form
    # "confirmed:<id>:r<revision>" made ("a:r2", 1) and ("a", 2) one event id, and the outbox
    # kept only one of the two answers.
    ids = [
        answer_event_id("a:r2", 1),
        answer_event_id("a", 2),
        answer_event_id("a", 1),
        answer_event_id("-r2:a", 1),
        answer_event_id("2:a", 2),
        conflict_event_id("a", 1, "0123abcd"),
        answer_event_id("a:conflict:0123abcd", 1),
        answer_event_id("conflict-0123abcd:r1:a", 1),
    ]
    assert len(set(ids)) == len(ids)
    assert ids[2] == "confirmed:a"  # the first revision keeps the id it always had
    assert [is_conflict_answer(i) for i in ids] == [False] * 5 + [True, False, False]
    assert is_conflict_answer("confirmed:a:r2:conflict:0123456789abcdef")  # the form before


def test_an_event_round_trips_through_the_wire_format() -> None:
    sent = envelope(DISPATCH_INSTRUCTION, instruction(), source="test", event_id="evt-1")
    wire = json.loads(encode(sent))
    assert wire["specversion"] == "1.0"
    assert wire["type"] == "nexwatt.dispatch.instruction.v1"
    assert wire["subject"] == "NXW-PJM-0042"
    assert wire["data"]["mw"] == 44.5
    assert wire["data"]["window_start"] == "2026-03-12T09:15:00Z"
    got = decode(DISPATCH_INSTRUCTION, encode(sent))
    assert got == sent and got.id == "evt-1"
    assert record_key(DISPATCH_INSTRUCTION, got.data) == "NXW-PJM-0042"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty value"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a CloudEvent: a JSON list"),
        (b'{"type": "nexwatt.other.v1"}', "wrong event type 'nexwatt.other.v1'"),
        (
            b'{"type": "nexwatt.telemetry.interval.v1", "source": "x", "data": {}}',
            "schema validation failed: data.asset_id: Field required",
        ),
        # Python's json writes and reads NaN; one NaN reading would poison every sum after it.
        (
            b'{"type": "nexwatt.telemetry.interval.v1", "source": "x", "data": {"asset_id": "A",'
            b' "interval_start": "2026-03-12T09:00:00Z", "interval_s": 300, "pv_kw": 1,'
            b' "load_kw": 1, "battery_kw": NaN, "net_kw": 0}}',
            "data.battery_kw: Input should be a finite number",
        ),
    ],
)
def test_undecodable_records_say_why(value: bytes | None, reason: str) -> None:
    with pytest.raises(UndecodableMessage, match=reason.replace("[", r"\[")):
        decode(TELEMETRY_INTERVAL, value)


def test_a_payload_on_the_wrong_topic_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        envelope(TELEMETRY_INTERVAL, instruction(), source="test")


def test_every_topic_is_keyed_by_a_field_of_its_payload() -> None:
    for topic in ALL:
        if topic.key:
            assert topic.key in topic.payload.model_fields, topic.name
    assert TelemetryInterval.model_fields["net_kw"].description.startswith("Average power")


def test_kafka_security_options_follow_the_settings() -> None:
    assert ServiceSettings(kafka_security_protocol="PLAINTEXT").kafka_security() == {}
    sasl = ServiceSettings(
        kafka_security_protocol="sasl_ssl",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password="pw",
    ).kafka_security()
    assert sasl["security_protocol"] == "SASL_SSL" and sasl["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (sasl["sasl_plain_username"], sasl["sasl_plain_password"]) == ("svc", "pw")
    assert sasl["ssl_context"] is not None
    assert "sasl_mechanism" not in ServiceSettings(kafka_security_protocol="SSL").kafka_security()


NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("topic", CONSUMED, ids=lambda t: t.name)
def test_every_poison_record_is_refused_with_a_reason_never_another_exception(topic) -> None:
    """By the codec; on `telemetry.raw`, by the codec or telemetry-ingest's normalizer."""
    for name, value in poison(topic, "A-1", NOW):
        try:
            event = decode(topic, value)
            refuse_if_ahead(event, NOW, timedelta(seconds=300))
            if topic is TELEMETRY_RAW:
                normalize(event, NOW, timedelta(seconds=300))
        except (UndecodableMessage, FormatError) as exc:
            assert str(exc), name
        else:
            raise AssertionError(f"{topic.name}: {name!r} was accepted")


@pytest.mark.parametrize("topic", CONSUMED, ids=lambda t: t.name)
def test_fields_a_newer_producer_adds_are_ignored(topic) -> None:
    when = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
    event = decode(topic, tolerated(topic, "A-1", when, "evt-new"))
    assert event.id == "evt-new"
    if topic is TELEMETRY_RAW:  # the vendor's payload travels whole; its parser ignores extras
        plain = decode(
            topic, event_bytes(topic, valid_data(topic, "A-1", when), "e", subject="A-1")
        )
        readings = normalize(event, NOW, timedelta(0))
        assert len(readings) == 1 and readings == normalize(plain, NOW, timedelta(0))
        return
    assert event.data.model_dump(mode="json") == topic.payload.model_validate(
        valid_data(topic, "A-1", when)
    ).model_dump(mode="json")


def test_what_we_build_stays_strict_about_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        DispatchInstruction.model_validate({**instruction().model_dump(), "priority": 1})


def test_an_event_time_within_the_allowed_skew_is_accepted() -> None:
    at = NOW + timedelta(seconds=240)  # the interval ends 240 s after the wall clock
    reading = TelemetryInterval.model_validate(
        {**valid_data(TELEMETRY_INTERVAL, "A-1", at - timedelta(seconds=300))}
    )
    event = envelope(TELEMETRY_INTERVAL, reading, source="test")
    refuse_if_ahead(event, NOW, timedelta(seconds=300))  # ends 240 s ahead: fine
    with pytest.raises(UndecodableMessage, match="240 s after the wall clock"):
        refuse_if_ahead(event, NOW, timedelta(seconds=200))


@pytest.mark.parametrize(
    ("start", "interval_s"),
    [
        ("1999-12-31T23:59:59Z", 60),  # before 2000
        ("2099-12-31T23:30:00Z", 3600),  # ends after 2100
    ],
)
def test_intervals_outside_2000_to_2100_are_refused(start: str, interval_s: int) -> None:
    data = {**valid_data(TELEMETRY_INTERVAL, "A-1", NOW), "interval_start": start}
    with pytest.raises(ValidationError, match=r"2000-01-01|2100-01-01"):
        TelemetryInterval.model_validate({**data, "interval_s": interval_s})
