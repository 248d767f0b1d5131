"""Dead-letter tooling behind `nexwatt-admin dead-letters list | show | replay`.

Letters are read from `dead.letter` without a consumer group (assign and seek: nothing is
committed, nobody's offsets move) and addressed by their offset in that topic, which the registry
gives one partition. Replay sends a letter's original record back to its origin topic with the
exact key and value bytes: from the letter when it carries them, else from the origin record
itself, which must still be retained. The pure parts (parsing, filtering, formatting, what to
send) are plain functions; Kafka is touched only by `connected`, `scan`, `fetch_letter`,
`record_at`, `plan_replay` and the three commands.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from nexwatt_shared.codec import UndecodableMessage, decode
from nexwatt_shared.contracts import DeadLetter
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.settings import ServiceSettings
from nexwatt_shared.topics import BY_NAME, DEAD_LETTER

REPLAYED_FROM = "nexwatt.replayed-from"
ERROR_WIDTH = 80  # characters of the error shown by `list`; `show` has all of it
FETCH_TIMEOUT_MS = 1000


class LetterError(Exception):
    """What the operator asked for cannot be done; the text says why (exit code 2)."""


@dataclass(frozen=True)
class KafkaAccess:
    """Where the cluster is and how to authenticate to it."""

    bootstrap_servers: str
    security: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> KafkaAccess:
        return cls(settings.kafka_bootstrap_servers, settings.kafka_security())


@dataclass(frozen=True)
class Letter:
    """One record of `dead.letter`: the letter in it, or why it is not a readable letter.

    Attributes
    ----------
    offset
        Its offset in `dead.letter`, the letter's address for `show` and `replay`.
    written_at
        The record's timestamp.
    raw
        The record's value as stored.
    letter
        The decoded letter; None when the value is not one (then `problem` says why).
    problem
        Why the value is not a readable letter.
    """

    offset: int
    written_at: datetime
    raw: bytes | None
    letter: DeadLetter | None
    problem: str | None = None

    @property
    def failed_at(self) -> datetime:
        """When the consumer refused the record (the record's timestamp if unreadable)."""
        return self.letter.failed_at if self.letter is not None else self.written_at

    @property
    def origin(self) -> str | None:
        """`topic[partition]@offset` of the original record."""
        if self.letter is None:
            return None
        dl = self.letter
        return f"{dl.original_topic}[{dl.original_partition}]@{dl.original_offset}"

    def original_value(self) -> bytes | None:
        """The original value byte for byte, or None when the letter carries only its start."""
        if self.letter is None or self.letter.truncated:
            return None
        return base64.b64decode(self.letter.value_base64)


@dataclass(frozen=True)
class Filter:
    """Which letters to take; None means any."""

    group: str | None = None
    topic: str | None = None  # the origin topic
    since: datetime | None = None  # letters that failed at or after this

    def matches(self, letter: Letter) -> bool:
        """Whether `letter` passes. An unreadable letter has no known group or origin, so it
        passes only when neither is asked for."""
        if self.since is not None and letter.failed_at < self.since:
            return False
        if self.group is None and self.topic is None:
            return True
        dl = letter.letter
        return (
            dl is not None
            and self.group in (None, dl.consumer_group)
            and self.topic in (None, dl.original_topic)
        )

    def describe(self) -> str:
        parts = [
            f"{name} {value}"
            for name, value in (("group", self.group), ("topic", self.topic))
            if value is not None
        ]
        if self.since is not None:
            parts.append(f"since {_iso(self.since)}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Replay:
    """One record to send back: where, with which exact key and value bytes."""

    offset: int  # of the letter in dead.letter
    topic: str
    key: bytes | None
    value: bytes
    fetched_from: str | None = None  # the origin record the bytes were read from, if not the letter

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return [(REPLAYED_FROM, f"{DEAD_LETTER.name}@{self.offset}".encode())]

    def describe(self) -> str:
        source = f" (read from {self.fetched_from})" if self.fetched_from else ""
        return (
            f"{DEAD_LETTER.name}@{self.offset} -> {self.topic}  key {self.key!r}  "
            f"{len(self.value)} B{source}"
        )


# --- pure parts ----------------------------------------------------------------------------


def parse_letter(offset: int, timestamp_ms: int, value: bytes | None) -> Letter:
    """Decode one `dead.letter` record; a value that is not a letter is kept with the reason."""
    written_at = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    try:
        event = decode(DEAD_LETTER, value)
    except UndecodableMessage as exc:
        return Letter(offset, written_at, value, None, str(exc))
    letter = event.data
    assert isinstance(letter, DeadLetter)  # decode validated it against DEAD_LETTER's payload
    return Letter(offset, written_at, value, letter)


def exact_key(letter: DeadLetter) -> bytes | None:
    """The original key's bytes as far as the letter knows them (see `needs_origin`)."""
    if letter.key_base64 is not None:
        return base64.b64decode(letter.key_base64)
    return letter.key.encode() if letter.key is not None else None


def needs_origin(letter: DeadLetter) -> bool:
    """Whether the exact record must be read from its origin: the value was truncated, or the
    key is known only as text that had bytes replaced while decoding it (letters written
    before `key_base64` was filled)."""
    lossy_key = letter.key_base64 is None and letter.key is not None and "\ufffd" in letter.key
    return letter.truncated or lossy_key


def list_row(letter: Letter) -> tuple[str, ...]:
    """The `list` columns of one letter: offset, failed at, group, origin, size, error."""
    dl = letter.letter
    if dl is None:
        return (
            str(letter.offset),
            _iso(letter.failed_at),
            "-",
            "-",
            "-",
            _cut(f"unreadable letter: {letter.problem}", ERROR_WIDTH),
        )
    size = f"{dl.value_bytes} B" + (" (truncated)" if dl.truncated else "")
    return (
        str(letter.offset),
        _iso(dl.failed_at),
        dl.consumer_group,
        letter.origin or "-",
        size,
        _cut(dl.error, ERROR_WIDTH),
    )


LIST_HEADER = ("OFFSET", "FAILED AT", "GROUP", "ORIGIN", "SIZE", "ERROR")


def format_table(rows: Sequence[tuple[str, ...]]) -> str:
    """Rows under `LIST_HEADER`, each column as wide as its widest cell."""
    table = [LIST_HEADER, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(LIST_HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def render_show(letter: Letter) -> str:
    """The whole letter as pretty JSON, then the original value as text and whether it is whole."""
    head = f"{DEAD_LETTER.name}@{letter.offset}, written {_iso(letter.written_at)}"
    dl = letter.letter
    if dl is None:
        text = f"{head}: not a readable dead letter: {letter.problem}\n{_pretty(letter.raw)}"
        return _printable(text)
    if dl.truncated:
        whole = (
            f"truncated: the text below is only the start of {dl.value_bytes} bytes; "
            f"replay reads the whole value from {letter.origin}"
        )
    else:
        whole = f"whole, {dl.value_bytes} bytes"
    return _printable(
        f"{head}\n{_pretty(letter.raw)}\n\noriginal value ({whole}):\n{dl.value_text}"
    )


def _pretty(raw: bytes | None) -> str:
    if raw is None:
        return "(no value)"
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, too deep: show what is there
        return raw.decode(errors="replace")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _cut(text: str, width: int) -> str:
    line = _printable(" ".join(text.split()))  # one line per letter, whatever the layout
    return line if len(line) <= width else line[: width - 1] + "…"


# C0 and C1 controls but newline and tab: a record's bytes must not drive the operator's terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


# --- Kafka ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    """A consumer without a group (it only assigns and seeks, so nothing is ever committed),
    and the partitions of every topic when it connected."""

    consumer: AIOKafkaConsumer
    partitions: dict[str, set[int]]


async def _partitions(kafka: KafkaAccess) -> dict[str, set[int]]:
    admin = AIOKafkaAdminClient(
        **kafka.security, bootstrap_servers=kafka.bootstrap_servers, client_id="nexwatt-admin"
    )
    await admin.start()
    try:
        # Every topic: asking for one by name could create it where the broker auto-creates.
        described = await admin.describe_topics()
    finally:
        await admin.close()
    return {
        t["topic"]: {p["partition"] for p in t["partitions"]}
        for t in described
        if t["error_code"] == 0
    }


@asynccontextmanager
async def connected(kafka: KafkaAccess) -> AsyncIterator[Reader]:
    """A `Reader` on the cluster, closed on exit."""
    partitions = await _partitions(kafka)
    consumer = AIOKafkaConsumer(
        **kafka.security,
        bootstrap_servers=kafka.bootstrap_servers,
        client_id="nexwatt-admin",
        # A position that retention deleted meanwhile resumes at the oldest record still kept.
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        yield Reader(consumer, partitions)
    finally:
        await consumer.stop()


def _dead_letter_partition(reader: Reader) -> TopicPartition:
    partitions = reader.partitions.get(DEAD_LETTER.name)
    if not partitions:
        raise LetterError(
            f"topic {DEAD_LETTER.name} does not exist: run nexwatt-admin create-topics"
        )
    if partitions != {0}:
        # An offset names a letter only within one partition, and the registry gives it one.
        raise LetterError(
            f"topic {DEAD_LETTER.name} has {len(partitions)} partitions; these tools address "
            "letters by offset and need the single partition the registry creates"
        )
    return TopicPartition(DEAD_LETTER.name, 0)


async def scan(reader: Reader, flt: Filter) -> AsyncIterator[Letter]:
    """The letters in `dead.letter` that pass `flt`, oldest first, up to the end it had when
    the scan began; says on stderr which offsets it reads."""
    tp = _dead_letter_partition(reader)
    consumer = reader.consumer
    consumer.assign([tp])
    first = (await consumer.beginning_offsets([tp]))[tp]
    end = (await consumer.end_offsets([tp]))[tp]
    if flt.since is not None:
        # A letter's record is stamped when it is sent, just after its failed_at, by the same
        # process: no letter before the first record stamped at or after `since` can match.
        found = (await consumer.offsets_for_times({tp: flt.since.timestamp() * 1000}))[tp]
        first = found.offset if found is not None else end
    if first >= end:
        return
    print(f"reading {DEAD_LETTER.name} offsets {first}..{end - 1}", file=sys.stderr)
    consumer.seek(tp, first)
    while await consumer.position(tp) < end:
        for record in (await consumer.getmany(tp, timeout_ms=FETCH_TIMEOUT_MS)).get(tp, []):
            if record.offset >= end:
                return
            letter = parse_letter(record.offset, record.timestamp, record.value)
            if flt.matches(letter):
                yield letter


async def record_at(
    reader: Reader, topic: str, partition: int, offset: int
) -> ConsumerRecord | None:
    """The record at exactly `topic[partition]@offset`, or None if the topic, the partition or
    the record is gone (retention, compaction, deletion)."""
    if partition not in reader.partitions.get(topic, set()):
        return None  # asking for offsets of a partition that does not exist would block
    tp = TopicPartition(topic, partition)
    consumer = reader.consumer
    consumer.assign([tp])
    first = (await consumer.beginning_offsets([tp]))[tp]
    end = (await consumer.end_offsets([tp]))[tp]
    if not first <= offset < end:
        return None
    consumer.seek(tp, offset)
    while await consumer.position(tp) <= offset:
        for record in (await consumer.getmany(tp, timeout_ms=FETCH_TIMEOUT_MS)).get(tp, []):
            if record.offset >= offset:
                # Compaction leaves gaps: a later record in the place of ours means it is gone.
                return record if record.offset == offset else None
    return None


async def fetch_letter(reader: Reader, offset: int) -> Letter:
    """The letter at `offset` of `dead.letter`; LetterError if there is none."""
    tp = _dead_letter_partition(reader)
    record = await record_at(reader, tp.topic, tp.partition, offset)
    if record is None:
        raise LetterError(f"no letter at {DEAD_LETTER.name}@{offset}")
    return parse_letter(record.offset, record.timestamp, record.value)


async def plan_replay(reader: Reader, letter: Letter, *, force: bool) -> Replay:
    """What replaying `letter` sends, with its exact bytes; LetterError when it cannot or
    should not be replayed."""
    ref = f"{DEAD_LETTER.name}@{letter.offset}"
    dl = letter.letter
    if dl is None:
        raise LetterError(f"{ref} is not a readable dead letter: {letter.problem}")
    topic = dl.original_topic
    if topic not in BY_NAME and not force:
        raise LetterError(
            f"{ref}: origin topic {topic!r} is not in the topic registry; "
            "pass --force to replay to it anyway"
        )
    if topic not in reader.partitions:
        raise LetterError(f"{ref}: origin topic {topic!r} does not exist")
    if not needs_origin(dl):
        return Replay(letter.offset, topic, exact_key(dl), base64.b64decode(dl.value_base64))
    record = await record_at(reader, topic, dl.original_partition, dl.original_offset)
    if record is None:
        raise LetterError(
            f"{ref}: the original record {letter.origin} is no longer retained, and the letter "
            f"does not hold it whole ({'value truncated' if dl.truncated else 'key not exact'})"
        )
    value = record.value or b""
    if len(value) != dl.value_bytes:
        # Offsets restart when a topic is deleted and created again: not the same record.
        raise LetterError(
            f"{ref}: {letter.origin} holds {len(value)} bytes, the letter says {dl.value_bytes}; "
            "it is not the original record (was the topic recreated?)"
        )
    return Replay(letter.offset, topic, record.key, value, fetched_from=letter.origin)


# --- the commands --------------------------------------------------------------------------


async def list_letters(kafka: KafkaAccess, flt: Filter) -> int:
    """Print one line per letter passing `flt`; return how many were listed."""
    async with connected(kafka) as reader:
        rows = [list_row(letter) async for letter in scan(reader, flt)]
    if not rows:
        match = f" match {flt.describe()}" if flt.describe() else ""
        print(f"no dead letters{match}", file=sys.stderr)
        return 0
    print(format_table(rows))
    print(f"{len(rows)} letter{'s' if len(rows) != 1 else ''}", file=sys.stderr)
    return len(rows)


async def show_letter(kafka: KafkaAccess, offset: int) -> Letter:
    """Print the letter at `offset` whole and return it; LetterError if there is none."""
    async with connected(kafka) as reader:
        letter = await fetch_letter(reader, offset)
    print(render_show(letter))
    return letter


async def replay_letters(
    kafka: KafkaAccess,
    selection: Sequence[int] | Filter,
    *,
    force: bool = False,
    dry_run: bool = False,
) -> list[Replay]:
    """Send the original records of the selected letters (offsets, or every letter passing a
    filter) back to their origin topics; return what was sent (or would be, on a dry run).

    Every letter is checked and its bytes gathered before anything is sent, so a bad offset or
    a record no longer retained leaves the topics as they were (LetterError).
    """
    async with connected(kafka) as reader:
        if isinstance(selection, Filter):
            letters = [letter async for letter in scan(reader, selection)]
        else:
            letters = [await fetch_letter(reader, o) for o in dict.fromkeys(selection)]
        replays = [await plan_replay(reader, letter, force=force) for letter in letters]
    if not replays:
        print("no dead letters to replay", file=sys.stderr)
        return []
    if dry_run:
        for replay in replays:
            print(f"would replay {replay.describe()}")
        print(
            f"dry run: {len(replays)} to replay, each with header "
            f"{REPLAYED_FROM}={DEAD_LETTER.name}@<offset>; nothing sent"
        )
        return replays
    producer = EventProducer(kafka.bootstrap_servers, "admin", kafka.security)
    await producer.start()
    try:
        for replay in replays:
            await producer.send_raw(replay.topic, replay.key, replay.value, replay.headers)
            print(f"replayed {replay.describe()}")
    finally:
        await producer.stop()
    print(f"{len(replays)} replayed")
    return replays
