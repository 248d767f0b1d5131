"""The consumer loop every service runs: batch, handle, write, then commit.

Per batch from `getmany()`:
1. decode and validate each record against its topic's contract, and refuse one whose event
   time lies too far after the wall clock; a refused record goes to the dead-letter topic with
   the reason and its origin, and is counted: it never stalls its partition;
2. hand the valid records to the service's handler, which writes them to its store:
   - a handler that finds messages at fault raises `PoisonMessage` (before writing) and only
     those are dead-lettered; the rest is handled again;
   - an error known to be the data's (a value, overflow or encoding error, validation, a
     PostgreSQL data or constraint error: `is_data_error`) splits the batch in halves until the
     record that fails on its own is found, and that record is dead-lettered with the error;
   - any other error (a server unreachable, read-only or shutting down, a timeout, a missing
     permission, a bug) is not the message's fault: the batch is kept and retried with backoff;
     while it lasts the lag is still measured and, after `max_retry_s`, the runner reports
     itself not ready, so a human looks instead of records being dead-lettered by guess;
3. commit `last offset + 1` per partition, only after the handler returned.

A crash between 2 and 3 replays the batch, so handlers are idempotent. SIGTERM (the service's
stop event) lets the batch in hand finish and commit, then the consumer leaves its group.

In broadcast mode (`replay`) every replica reads every partition, for a view each one keeps in
memory: partitions are assigned, not shared out by the group, and reading starts over at each
start, from the beginning of a topic or from some time back, whatever was committed. Commits
still go to the group, so operators see how far it has read.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import redis.exceptions
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError, MessageSizeTooLargeError
from pydantic import BaseModel

from nexwatt_shared.codec import UndecodableMessage, decode, encode, envelope, refuse_if_ahead
from nexwatt_shared.contracts import DeadLetter
from nexwatt_shared.envelope import CloudEvent, utcnow
from nexwatt_shared.kafka.admin import partition_counts
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.observability import (
    BATCH_SECONDS,
    CONSUMER_LAG,
    DEAD_LETTERS,
    HANDLER_RETRIES,
    MESSAGES_CONSUMED,
)
from nexwatt_shared.topics import DEAD_LETTER, Topic

log = structlog.get_logger()
# A letter must fit in one record (Kafka's default limit is 1 MiB): it carries a value whole
# (base64) only up to this size, a text preview of its start, and a key only up to a size.
DEAD_LETTER_MAX_VALUE_BYTES = 256 * 1024
DEAD_LETTER_PREVIEW_BYTES = 16 * 1024
DEAD_LETTER_MAX_KEY_BYTES = 16 * 1024
DEAD_LETTER_MAX_BYTES = 900 * 1024  # an encoded letter; beyond it only the origin is kept
REASON_MAX_CHARS = 2000
_DATA_ERRORS = (
    ValueError,  # also UnicodeError, JSON and pydantic validation errors
    ArithmeticError,  # OverflowError, ZeroDivisionError
    RecursionError,
    asyncpg.DataError,  # class 22: a value the column cannot hold (NUL, out of range)
    asyncpg.IntegrityConstraintViolationError,  # class 23: a unique or check constraint
    MessageSizeTooLargeError,  # an output built from the record is too large to publish
    redis.exceptions.DataError,
)
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Delivery:
    """One valid record: its event and where it came from."""

    topic: Topic
    partition: int
    offset: int
    key: bytes | None  # as it arrived
    event: CloudEvent[BaseModel]
    value: bytes  # the record as it arrived, for a dead letter byte for byte

    @property
    def payload(self) -> BaseModel:
        return self.event.data

    @property
    def where(self) -> tuple[str, int, int]:
        return self.topic.name, self.partition, self.offset


BatchHandler = Callable[[list[Delivery]], Awaitable[None]]
# A record to dead-letter: (topic, partition, offset), key, value, reason.
Refusal = tuple[tuple[str, int, int], bytes | None, bytes, str]


class PoisonMessage(Exception):
    """Raised by a handler, before it writes anything, for messages that can never be handled
    (the messages' fault): each (delivery, reason) is dead-lettered and the rest handled."""

    def __init__(self, refusals: Sequence[tuple[Delivery, str]]) -> None:
        super().__init__("; ".join(reason for _, reason in refusals))
        self.refusals = list(refusals)


def is_data_error(exc: BaseException) -> bool:
    """Whether `exc` is known to come from the data a handler was given (isolate the record
    that causes it), rather than from a server, the network or the code (retry, and alert)."""
    return isinstance(exc, _DATA_ERRORS)


def dead_letter(
    origin: tuple[str, int, int],
    group: str,
    key: bytes | None,
    value: bytes,
    reason: str,
    failed_at: datetime,
    whole: bool = True,
) -> DeadLetter:
    """The letter for a refused record, bounded so that it always fits in one Kafka record:
    the value byte for byte only up to `DEAD_LETTER_MAX_VALUE_BYTES` (and only when `whole`),
    the start of it as text, the key only up to `DEAD_LETTER_MAX_KEY_BYTES`. Without the value,
    the origin says where to replay it from."""
    topic, partition, offset = origin
    carries_value = whole and len(value) <= DEAD_LETTER_MAX_VALUE_BYTES
    carries_key = key is not None and len(key) <= DEAD_LETTER_MAX_KEY_BYTES
    return DeadLetter(
        original_topic=topic,
        original_partition=partition,
        original_offset=offset,
        consumer_group=group,
        error=printable(reason),
        key=key[:1024].decode(errors="replace") if key is not None and whole else None,
        key_base64=base64.b64encode(key).decode() if carries_key and key is not None else None,
        value_text=value[:DEAD_LETTER_PREVIEW_BYTES].decode(errors="replace") if whole else "",
        value_base64=base64.b64encode(value).decode() if carries_value else "",
        value_bytes=len(value),
        truncated=not carries_value,
        failed_at=failed_at,
    )


def printable(text: str, limit: int = REASON_MAX_CHARS) -> str:
    """`text` cut to `limit` with control characters and lone surrogates escaped, so a reason
    quoting bad input can travel in a header, a log line or a store."""
    escaped = text[:limit].encode("utf-8", "backslashreplace").decode()
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", escaped)


def _names(partitions: set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, group: str) -> None:
        self.group = group

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # A batch in hand may still finish and try to commit: `_commit` keeps only partitions
        # still assigned, and the new owner replays the rest (handlers are idempotent).
        log.info("partitions revoked", group=self.group, partitions=_names(revoked))
        for tp in revoked:
            CONSUMER_LAG.labels(self.group, tp.topic, str(tp.partition)).set(0)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned", group=self.group, partitions=_names(assigned))


class ConsumerRunner:
    def __init__(
        self,
        *,
        bootstrap_servers: str,
        group_id: str,
        topics: Sequence[Topic],
        handler: BatchHandler,
        dead_letters: EventProducer,
        max_records: int = 500,
        backoff_s: tuple[float, float] = (0.2, 10.0),
        max_ahead_s: float = 300.0,
        security: dict[str, Any] | None = None,
        replay: Mapping[str, float | None] | None = None,
        start_at: Mapping[TopicPartition, int] | None = None,
        partition_check_s: float = 60.0,
        first: str | None = None,
    ) -> None:
        """`replay`: broadcast mode; per topic name, how far back to start reading at each
        start [s of record time before now], None for the topic's beginning. `start_at`: in
        broadcast mode, offsets to start some partitions at instead (a restored snapshot's);
        a time-based start later than one of these wins (what lies between is too old);
        `partition_check_s`: in broadcast mode, how often to look for partitions added to the
        topics [s]. `first`: in broadcast mode, a topic read up to where it ended at the start
        before the others are read at all (e.g. the registrations the others' records refer
        to)."""
        self.group_id = group_id
        self.bootstrap_servers = bootstrap_servers
        self.security = security
        self.replay = replay
        self.start_at = dict(start_at or {})
        self.partition_check_s = partition_check_s
        self.first = first
        self._first_ends: dict[TopicPartition, int] = {}  # while the others wait for `first`
        # Broadcast mode: per partition, the offset up to which records have been handled.
        self.handled: dict[TopicPartition, int] = {}
        self.topics = {t.name: t for t in topics}
        self.handler = handler
        self.dead_letters = dead_letters
        self.max_records = max_records
        self.backoff_s = backoff_s
        self.max_ahead = timedelta(seconds=max_ahead_s)
        self.lag: int | None = None  # records behind, over assigned partitions; None = unknown
        self.retrying_since: float | None = None  # monotonic time the current retries began
        # First offset of the batch in hand per partition: not consumed until it is committed.
        self._in_hand: dict[TopicPartition, int] = {}
        self._consumer = AIOKafkaConsumer(
            **(security or {}),
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            client_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    def ready(self, max_lag: int, max_retry_s: float) -> bool:
        """Caught up to within `max_lag` records, and not stuck retrying for `max_retry_s`."""
        stuck = (
            self.retrying_since is not None and time.monotonic() - self.retrying_since > max_retry_s
        )
        return self.lag is not None and self.lag <= max_lag and not stuck

    async def run(self, stop: asyncio.Event) -> None:
        consumer = self._consumer
        await consumer.start()
        if self.replay is None:
            consumer.subscribe(list(self.topics), listener=_Rebalance(self.group_id))
        else:
            await self._assign_all(self.replay)
        log.info("consumer started", group=self.group_id, topics=list(self.topics))
        next_check = time.monotonic() + self.partition_check_s
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=self.max_records)
                if batch:
                    with BATCH_SECONDS.labels(self.group_id).time():
                        if not await self._process(batch, stop):
                            break  # stopped while retrying: leave the batch uncommitted
                await self._measure_lag()
                if self._first_ends:
                    self._resume_when_first_is_read()
                if self.replay is not None and time.monotonic() >= next_check:
                    await self._assign_added_partitions()
                    next_check = time.monotonic() + self.partition_check_s
        finally:
            await consumer.stop()
            log.info("consumer stopped", group=self.group_id)

    async def _assign_all(self, replay: Mapping[str, float | None]) -> None:
        """Broadcast mode: read every partition, from where `replay` says."""
        consumer = self._consumer
        counts = await partition_counts(self.bootstrap_servers, list(self.topics), self.security)
        missing = [t for t in self.topics if not counts.get(t)]
        if missing:  # read nothing of them for ever? no: fail, and be restarted once they exist
            raise RuntimeError(f"topics without partitions (not created yet?): {missing}")
        partitions = [TopicPartition(t, p) for t in self.topics for p in range(counts[t])]
        consumer.assign(partitions)
        since_ms = {
            tp: int((time.time() - back_s) * 1000)
            for tp in partitions
            if (back_s := replay.get(tp.topic)) is not None
        }
        # The ends first: a partition with nothing that recent starts at its end as it was
        # then, so a record published while we look is still read.
        ends = await consumer.end_offsets(list(since_ms)) if since_ms else {}
        found = await consumer.offsets_for_times(since_ms) if since_ms else {}
        for tp in partitions:
            at = found.get(tp)
            by_time = (ends[tp] if at is None else at.offset) if tp in since_ms else None
            restored = self.start_at.get(tp)
            if restored is not None:
                consumer.seek(tp, max(restored, by_time or 0))
            elif by_time is not None:
                consumer.seek(tp, by_time)
            else:
                await consumer.seek_to_beginning(tp)
            self.handled[tp] = await consumer.position(tp)
        if self.first is not None:
            mine = [tp for tp in partitions if tp.topic == self.first]
            self._first_ends = {tp: end for tp, end in (await consumer.end_offsets(mine)).items()}
            consumer.pause(*(tp for tp in partitions if tp.topic != self.first))
            self._resume_when_first_is_read()
        log.info(
            "reading every partition (broadcast)",
            group=self.group_id,
            partitions=_names(set(partitions)),
            replay_s={t: replay.get(t) for t in self.topics},
        )

    def _resume_when_first_is_read(self) -> None:
        """Read the other topics once `first` is read up to where it ended at the start."""
        if all(self.handled.get(tp, 0) >= end for tp, end in self._first_ends.items()):
            self._consumer.resume(*self._consumer.paused())
            log.info("read up to the start's end: reading the rest", group=self.group_id,
                     topic=self.first)  # fmt: skip
            self._first_ends = {}

    async def _assign_added_partitions(self) -> None:
        """Broadcast mode: read partitions added to the topics since the start too (from
        their beginning: all they hold is new), every partition already read going on from
        where it is. A subscribed group is told by the broker; an assignment is not."""
        consumer = self._consumer
        try:
            counts = await partition_counts(
                self.bootstrap_servers, list(self.topics), self.security
            )
        except Exception as exc:  # the broker away: the next check tries again
            log.warning("partition counts not read", group=self.group_id, error=str(exc))
            return
        current = consumer.assignment()
        added = {TopicPartition(t, p) for t in self.topics for p in range(counts.get(t, 0))}
        added -= current
        if not added:
            return
        positions = {tp: await consumer.position(tp) for tp in current}
        consumer.assign([*current, *added])
        for tp, at in positions.items():
            consumer.seek(tp, at)
        for tp in added:
            await consumer.seek_to_beginning(tp)
            self.handled[tp] = await consumer.position(tp)
        if self._first_ends:  # a new assignment reads everything: the others still wait
            consumer.pause(*(tp for tp in consumer.assignment() if tp.topic != self.first))
        log.info("partitions added: reading them too", group=self.group_id,
                 partitions=_names(added))  # fmt: skip

    async def _process(
        self, batch: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event
    ) -> bool:
        deliveries: list[Delivery] = []
        refused: list[Refusal] = []
        now = utcnow()
        self._in_hand = {tp: records[0].offset for tp, records in batch.items() if records}
        for tp, records in batch.items():
            topic = self.topics[tp.topic]
            for record in records:
                try:
                    deliveries.append(self._admit(topic, record, now))
                except Exception as exc:  # whatever decoding raises is the record's fault
                    reason = (
                        str(exc)
                        if isinstance(exc, UndecodableMessage)
                        else f"undecodable: {type(exc).__name__}: {exc}"
                    )
                    origin = (record.topic, record.partition, record.offset)
                    refused.append((origin, record.key, record.value or b"", reason))
        if not await self._dead_letter(refused, stop):
            return False
        if deliveries and not await self._handle(deliveries, stop):
            return False
        for tp, records in batch.items():
            MESSAGES_CONSUMED.labels(self.group_id, tp.topic).inc(len(records))
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        if self.replay is not None:
            self.handled |= offsets
        await self._commit(offsets)
        self._in_hand = {}
        return True

    def _admit(self, topic: Topic, record: ConsumerRecord, now: datetime) -> Delivery:
        """The record as a Delivery, or UndecodableMessage with the reason it is refused."""
        event = decode(topic, record.value)
        refuse_if_ahead(event, now, self.max_ahead)
        return Delivery(topic, record.partition, record.offset, record.key, event, record.value)

    async def _handle(self, deliveries: list[Delivery], stop: asyncio.Event) -> bool:
        """Handle every delivery or dead-letter it; False if asked to stop while retrying."""
        delay, max_delay = self.backoff_s
        while deliveries:
            try:
                await self.handler(deliveries)
                self.retrying_since = None
                return True
            except PoisonMessage as poison:
                refused = {d.where for d, _ in poison.refusals}
                letters = [(d.where, d.key, d.value, reason) for d, reason in poison.refusals]
                if not await self._dead_letter(letters, stop):
                    return False
                kept = [d for d in deliveries if d.where not in refused]
                if len(kept) == len(deliveries):  # a handler bug: retried and alerted, like any
                    if not await self._wait_to_retry(poison, delay, len(deliveries), stop):
                        return False
                    delay = min(delay * 2, max_delay)
                deliveries = kept
            except Exception as exc:
                if not is_data_error(exc):
                    if not await self._wait_to_retry(exc, delay, len(deliveries), stop):
                        return False
                    delay = min(delay * 2, max_delay)
                    continue
                self.retrying_since = None
                if len(deliveries) == 1:
                    [d] = deliveries
                    reason = f"handler failed on this record: {type(exc).__name__}: {exc}"
                    return await self._dead_letter([(d.where, d.key, d.value, reason)], stop)
                log.warning(
                    "handler failed on the data; narrowing the batch down",
                    group=self.group_id,
                    batch_size=len(deliveries),
                    error=printable(f"{type(exc).__name__}: {exc}", 300),
                )
                half = len(deliveries) // 2
                return await self._handle(deliveries[:half], stop) and await self._handle(
                    deliveries[half:], stop
                )
        return True

    async def _wait_to_retry(
        self, exc: Exception, delay: float, batch_size: int, stop: asyncio.Event
    ) -> bool:
        """Count and log the retry, keep the lag measured, wait `delay`; False if stopped."""
        HANDLER_RETRIES.labels(self.group_id).inc()
        if self.retrying_since is None:
            self.retrying_since = time.monotonic()
        log.warning(
            "failed, not because of the data; retrying the batch",
            group=self.group_id,
            error=printable(f"{type(exc).__name__}: {exc}", 300),
            retry_in_s=delay,
            retrying_for_s=round(time.monotonic() - self.retrying_since, 1),
            batch_size=batch_size,
        )
        await self._measure_lag(ask_broker=True)
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
            return False
        except TimeoutError:
            return True

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assigned = self._consumer.assignment()
        offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group rebalanced while we worked: the new owner replays; handlers are idempotent.
            log.warning("commit failed after rebalance", group=self.group_id, error=str(exc))

    async def _dead_letter(self, refusals: Sequence[Refusal], stop: asyncio.Event) -> bool:
        """Send a letter for each refused record, pipelined, and count them; retried while
        Kafka cannot take them. False if asked to stop first (the records stay uncommitted and
        are refused again after a restart)."""
        if not refusals:
            return True
        letters = self._letters(refusals, whole=True)
        delay, max_delay = self.backoff_s
        while True:
            try:
                await self.dead_letters.send_raw_many(DEAD_LETTER.name, letters)
                break
            except MessageSizeTooLargeError:
                # The broker takes less than Kafka's default: keep only where each record is.
                letters = self._letters(refusals, whole=False)
            except KafkaError as exc:
                if not await self._wait_to_retry(exc, delay, len(letters), stop):
                    return False
                delay = min(delay * 2, max_delay)
        self.retrying_since = None
        for (topic, partition, offset), _, _, reason in refusals:
            DEAD_LETTERS.labels(self.group_id, topic).inc()
            log.warning(
                "dead-lettered",
                group=self.group_id,
                topic=topic,
                partition=partition,
                offset=offset,
                reason=printable(reason),
            )
        return True

    def _letters(
        self, refusals: Sequence[Refusal], whole: bool
    ) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
        """Each refusal's letter as a record (key, value, headers), within Kafka's size limit."""
        records = []
        for origin, key, value, reason in refusals:
            letter = dead_letter(origin, self.group_id, key, value, reason, utcnow(), whole)
            body = encode(envelope(DEAD_LETTER, letter, source=self.group_id))
            if len(body) > DEAD_LETTER_MAX_BYTES:  # a guard: the bounds above keep it smaller
                letter = dead_letter(origin, self.group_id, key, value, reason, utcnow(), False)
                body = encode(envelope(DEAD_LETTER, letter, source=self.group_id))
            headers = [
                ("nexwatt.error", letter.error.encode()),
                ("nexwatt.original.topic", origin[0].encode()),
                ("nexwatt.original.partition", str(origin[1]).encode()),
                ("nexwatt.original.offset", str(origin[2]).encode()),
                ("nexwatt.consumer.group", self.group_id.encode()),
            ]
            records.append((key if letter.key_base64 is not None else None, body, headers))
        return records

    async def _measure_lag(self, ask_broker: bool = False) -> None:
        """Records behind the partitions' ends (the batch in hand counts as not consumed), from
        the last fetch's high watermarks, or from the broker itself (`ask_broker`) while no
        fetch happens because a batch is retried."""
        assigned = list(self._consumer.assignment())
        ends: dict[TopicPartition, int | None]
        if ask_broker:
            try:
                ends = dict(await asyncio.wait_for(self._consumer.end_offsets(assigned), 5))
            except (KafkaError, TimeoutError) as exc:
                log.warning("lag unknown: end offsets unavailable", error=str(exc))
                return
        else:
            ends = {tp: self._consumer.highwater(tp) for tp in assigned}
        total = 0
        for tp in assigned:
            end = ends.get(tp)
            if end is None:
                return  # not fetched yet: lag unknown
            position = self._in_hand.get(tp)
            if position is None:
                position = await self._consumer.position(tp)
            behind = max(end - position, 0)
            CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(behind)
            total += behind
        self.lag = total
