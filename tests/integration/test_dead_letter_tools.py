"""`nexwatt-admin dead-letters list | show | replay` on a real broker.

Real letters come from the real `ConsumerRunner` refusing records of a topic of the test's own
(`dead.letter` is shared by every test, so everything here filters by that origin topic): a
record that is not JSON (carried whole by its letter) and one over the letter's size cap
(truncated: replay must read it from its origin). Both have a key that is not valid UTF-8, so
only an exact replay gets it back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from nexwatt_admin.dead_letters import (
    REPLAYED_FROM,
    Filter,
    KafkaAccess,
    Letter,
    LetterError,
    connected,
    exact_key,
    list_letters,
    list_row,
    needs_origin,
    parse_letter,
    render_show,
    replay_letters,
    scan,
    show_letter,
)
from nexwatt_shared.contracts import DeadLetter, TelemetryInterval
from nexwatt_shared.kafka.admin import create_topics
from nexwatt_shared.kafka.consumer import (
    DEAD_LETTER_PREVIEW_BYTES,
    ConsumerRunner,
    Delivery,
)
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.topics import Topic
from tests.helpers import committed_total, eventually, read_all, reading, unique

pytestmark = pytest.mark.integration

KEY = b"\xffA-1"  # not UTF-8: a letter's key text has a replacement character instead
BAD = b"{not json \xff}"
HUGE = b"\x00\xff" + b"x" * 300_000 + b"\xfe the end"  # over the cap; the tail is only at origin


@dataclass(frozen=True)
class Refused:
    """A test topic after a real consumer runner refused some of its records."""

    kafka: KafkaAccess
    topic: str
    group: str
    originals: dict[bytes, ConsumerRecord]  # the refused records on the topic, by value
    letters: dict[bytes, Letter]  # their letters, by original value

    def origin(self, value: bytes) -> str:
        record = self.originals[value]
        return f"{self.topic}[{record.partition}]@{record.offset}"


async def letters_from(kafka: KafkaAccess, flt: Filter) -> list[Letter]:
    async with connected(kafka) as reader:
        return [letter async for letter in scan(reader, flt)]


async def refuse(bootstrap: str, key: bytes, values: list[bytes]) -> Refused:
    """Produce one good reading and `values` to a new topic, let a runner dead-letter them."""
    topic = Topic(
        unique("test.dead-letters"), TelemetryInterval, "test topic", key="asset_id", partitions=2
    )
    await create_topics(bootstrap, [topic])
    group = unique("test.group")
    producer = EventProducer(bootstrap, "test")
    await producer.start()
    try:
        await producer.publish(topic, reading("A-1", 0))
        for value in values:
            await producer.send_raw(topic.name, key, value)
        handled: list[Delivery] = []

        async def handler(batch: list[Delivery]) -> None:
            handled.extend(batch)

        runner = ConsumerRunner(
            bootstrap_servers=bootstrap,
            group_id=group,
            topics=[topic],
            handler=handler,
            dead_letters=producer,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        await eventually(
            lambda: committed_total(bootstrap, group, topic.name),
            lambda n: n == 1 + len(values),
        )
        stop.set()
        await task
    finally:
        await producer.stop()
    assert len(handled) == 1
    kafka = KafkaAccess(bootstrap)
    letters = await letters_from(kafka, Filter(topic=topic.name))
    assert len(letters) == len(values)
    originals = {r.value: r for r in await read_all(bootstrap, topic.name) if r.value in values}
    by_value = {}
    for letter in letters:
        assert letter.letter is not None
        record = next(
            r
            for r in originals.values()
            if r.offset == letter.letter.original_offset
            and r.partition == letter.letter.original_partition
        )
        by_value[record.value] = letter
    return Refused(kafka, topic.name, group, originals, by_value)


@pytest.fixture(scope="module")
async def refused(servers: dict[str, str]) -> AsyncIterator[Refused]:
    yield await refuse(servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"], KEY, [BAD, HUGE])


def cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line)


async def test_list_shows_each_letter_with_its_origin(
    refused: Refused, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await list_letters(refused.kafka, Filter(topic=refused.topic)) == 2
    header, *rows = capsys.readouterr().out.splitlines()
    assert cells(header) == ["OFFSET", "FAILED AT", "GROUP", "ORIGIN", "SIZE", "ERROR"]
    by_origin = {cells(row)[3]: cells(row) for row in rows}
    assert set(by_origin) == {refused.origin(BAD), refused.origin(HUGE)}
    bad, huge = by_origin[refused.origin(BAD)], by_origin[refused.origin(HUGE)]
    assert bad[0] == str(refused.letters[BAD].offset)
    assert huge[0] == str(refused.letters[HUGE].offset)
    assert bad[2] == huge[2] == refused.group
    assert bad[4] == f"{len(BAD)} B"
    assert huge[4] == f"{len(HUGE)} B (truncated)"
    assert bad[5].startswith("not JSON: ") and huge[5].startswith("not JSON: ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", bad[1])


async def test_list_filters_by_group_and_time(refused: Refused) -> None:
    hour = timedelta(hours=1)
    now = datetime.now(UTC)
    mine = Filter(group=refused.group, topic=refused.topic, since=now - hour)
    assert [x.offset for x in await letters_from(refused.kafka, mine)] == sorted(
        x.offset for x in refused.letters.values()
    )
    assert await letters_from(refused.kafka, Filter(group="nobody", topic=refused.topic)) == []
    later = Filter(topic=refused.topic, since=now + hour)
    assert await letters_from(refused.kafka, later) == []


async def test_show_returns_the_letter_with_the_exact_bytes(
    refused: Refused, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_record = refused.originals[BAD]
    letter = await show_letter(refused.kafka, refused.letters[BAD].offset)
    assert letter.original_value() == BAD
    dl = letter.letter
    assert dl is not None
    assert (dl.original_topic, dl.original_partition, dl.original_offset) == (
        refused.topic,
        bad_record.partition,
        bad_record.offset,
    )
    assert dl.consumer_group == refused.group
    assert dl.key == KEY.decode(errors="replace")
    # None until consumers fill key_base64; replay then reads the key from the origin record.
    assert dl.key_base64 in (None, base64.b64encode(KEY).decode())
    out = capsys.readouterr().out
    head, rest = out.split("\n", 1)
    assert head.startswith(f"dead.letter@{letter.offset}, written ")
    pretty, original = rest.split("\n\noriginal value ", 1)
    assert json.loads(pretty)["data"]["original_offset"] == bad_record.offset
    assert original == f"(whole, {len(BAD)} bytes):\n{BAD.decode(errors='replace')}\n"

    huge = await show_letter(refused.kafka, refused.letters[HUGE].offset)
    assert huge.original_value() is None
    assert huge.letter is not None and huge.letter.truncated
    assert huge.letter.value_bytes == len(HUGE)
    assert huge.letter.value_text == HUGE[:DEAD_LETTER_PREVIEW_BYTES].decode(errors="replace")
    assert (
        f"original value (truncated: the text below is only the start of {len(HUGE)} bytes; "
        f"replay reads the whole value from {refused.origin(HUGE)}):"
    ) in capsys.readouterr().out


async def test_show_of_an_offset_without_a_letter_is_not_found(refused: Refused) -> None:
    with pytest.raises(LetterError, match=r"^no letter at dead\.letter@999999999$"):
        await show_letter(refused.kafka, 999_999_999)


async def test_replay_refuses_an_origin_outside_the_registry_without_force(
    refused: Refused,
) -> None:
    offset = refused.letters[BAD].offset
    with pytest.raises(LetterError, match=r"is not in the topic registry; pass --force"):
        await replay_letters(refused.kafka, [offset])
    assert await replayed(refused) == {}


async def test_a_dry_run_sends_nothing(
    refused: Refused, capsys: pytest.CaptureFixture[str]
) -> None:
    everything = Filter(group=refused.group, topic=refused.topic)
    replays = await replay_letters(refused.kafka, everything, force=True, dry_run=True)
    assert sorted((r.key, r.value) for r in replays) == sorted([(KEY, BAD), (KEY, HUGE)])
    out = capsys.readouterr().out
    for value in (BAD, HUGE):
        assert f"would replay dead.letter@{refused.letters[value].offset} -> " in out
    assert "dry run: 2 to replay" in out
    assert await replayed(refused) == {}


async def replayed(refused: Refused) -> dict[bytes, ConsumerRecord]:
    """Records on the test topic that carry the replayed-from header, by header value."""
    records = await read_all(refused.kafka.bootstrap_servers, refused.topic)
    return {dict(r.headers)[REPLAYED_FROM]: r for r in records if REPLAYED_FROM in dict(r.headers)}


async def test_replay_puts_the_exact_records_back_whole_or_truncated(
    refused: Refused, capsys: pytest.CaptureFixture[str]
) -> None:
    offsets = [refused.letters[BAD].offset, refused.letters[HUGE].offset]
    replays = await replay_letters(refused.kafka, offsets, force=True)
    assert [r.offset for r in replays] == offsets
    assert replays[1].fetched_from == refused.origin(HUGE)  # truncated: read from its origin

    back = await replayed(refused)
    assert set(back) == {f"dead.letter@{o}".encode() for o in offsets}
    for value, offset in zip((BAD, HUGE), offsets, strict=True):
        record = back[f"dead.letter@{offset}".encode()]
        assert record.key == KEY
        assert record.value == value
        assert list(record.headers) == [(REPLAYED_FROM, f"dead.letter@{offset}".encode())]
        # The same key lands on the same partition, behind the records it was refused among.
        assert record.partition == refused.originals[value].partition
        assert record.offset > refused.originals[value].offset
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "2 replayed"
    assert out[1] == (
        f"replayed dead.letter@{offsets[1]} -> {refused.topic}  key {KEY!r}  {len(HUGE)} B "
        f"(read from {refused.origin(HUGE)})"
    )


async def test_a_truncated_letter_whose_origin_is_gone_cannot_be_replayed(
    servers: dict[str, str],
) -> None:
    bootstrap = servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"]
    gone = await refuse(bootstrap, b"A-2", [BAD, HUGE])
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_records(
            {TopicPartition(gone.topic, p): RecordsToDelete(before_offset=-1) for p in (0, 1)}
        )
    finally:
        await admin.close()

    huge = gone.letters[HUGE].offset
    with pytest.raises(
        LetterError,
        match=rf"^dead\.letter@{huge}: the original record {re.escape(gone.origin(HUGE))} is no "
        r"longer retained, and the letter does not hold it whole \(value truncated\)$",
    ):
        await replay_letters(gone.kafka, [gone.letters[BAD].offset, huge], force=True)
    assert await replayed(gone) == {}  # nothing sent, not even the replayable one

    # A letter that carries its record whole needs nothing from its origin.
    await replay_letters(gone.kafka, [gone.letters[BAD].offset], force=True)
    [record] = (await replayed(gone)).values()
    assert (record.key, record.value) == (b"A-2", BAD)


def test_an_unreadable_letter_is_listed_as_such() -> None:
    letter = parse_letter(7, 1_773_306_000_000, b"\x00 garbage")
    assert letter.letter is None and letter.problem is not None
    assert letter.problem.startswith("not JSON: ")
    row = list_row(letter)
    assert row[:5] == ("7", "2026-03-12T09:00:00Z", "-", "-", "-")
    assert row[5].startswith("unreadable letter: not JSON: ")
    assert Filter().matches(letter)
    assert not Filter(topic="telemetry.interval").matches(letter)
    assert render_show(letter).startswith(
        "dead.letter@7, written 2026-03-12T09:00:00Z: not a readable dead letter: not JSON: "
    )
    # Control characters from the wire are shown escaped, never sent to the terminal.
    assert render_show(letter).endswith("\n\\x00 garbage")
    assert "\x1b" not in render_show(parse_letter(8, 0, b"\x1b[2J\x9b0m"))


def test_a_letter_from_before_key_base64_reads_an_inexact_key_from_its_origin() -> None:
    fields = {
        "original_topic": "telemetry.interval",
        "original_partition": 0,
        "original_offset": 1,
        "consumer_group": "nexwatt.dispatch",
        "error": "not JSON",
        "value_text": "x",
        "value_base64": "eA==",
        "value_bytes": 1,
        "failed_at": datetime(2026, 3, 12, 9, tzinfo=UTC),
    }
    exact = DeadLetter(**fields, key="\ufffdA-1", key_base64=base64.b64encode(KEY).decode())
    assert exact_key(exact) == KEY and not needs_origin(exact)
    assert needs_origin(DeadLetter(**fields, key="\ufffdA-1"))
    text_only = DeadLetter(**fields, key="A-1")
    assert exact_key(text_only) == b"A-1" and not needs_origin(text_only)
    no_key = DeadLetter(**fields)
    assert exact_key(no_key) is None and not needs_origin(no_key)


def test_the_cli_lists_letters_and_exits_2_when_not_found(refused: Refused) -> None:
    admin = str(Path(sys.executable).with_name("nexwatt-admin"))
    listed = subprocess.run(
        [admin, "dead-letters", "list", "--topic", refused.topic, "--group", refused.group],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.startswith("OFFSET")
    assert sorted(cells(row)[3] for row in rows) == sorted(
        [refused.origin(BAD), refused.origin(HUGE)]
    )
    assert "2 letters" in listed.stderr.splitlines()

    missing = subprocess.run(
        [admin, "dead-letters", "show", "999999999"], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2
    assert (
        missing.stderr.strip() == "nexwatt-admin dead-letters: no letter at dead.letter@999999999"
    )
