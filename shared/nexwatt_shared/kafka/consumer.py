"""The consumer loop every service runs: batch, handle, write, then commit.

Per batch from `getmany()`:
1. decode and validate each record against its topic's contract; a record that fails goes to the
   dead-letter topic with the reason and its origin in headers, and is counted: it never stalls
   its partition;
2. hand the valid records to the service's handler, which writes them to its store; a handler
   error that is not the message's fault (database down) is retried with backoff, the batch kept;
   a handler that finds one message at fault raises `PoisonMessage` and only that one is
   dead-lettered;
3. commit `last offset + 1` per partition, only after the handler returned.

A crash between 2 and 3 replays the batch, so handlers are idempotent. SIGTERM (the service's
stop event) lets the batch in hand finish and commit, then the consumer leaves its group.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError
from pydantic import BaseModel

from nexwatt_shared.codec import UndecodableMessage, decode, encode, envelope
from nexwatt_shared.contracts import DeadLetter
from nexwatt_shared.envelope import CloudEvent, utcnow
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
# Two copies of the value (text + base64) stay well under Kafka's 1 MiB default record limit.
DEAD_LETTER_MAX_VALUE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Delivery:
    """One valid record: its event and where it came from."""

    topic: Topic
    partition: int
    offset: int
    key: str | None
    event: CloudEvent[BaseModel]
    value: bytes  # the record as it arrived, for a dead letter byte for byte

    @property
    def payload(self) -> BaseModel:
        return self.event.data


BatchHandler = Callable[[list[Delivery]], Awaitable[None]]


class PoisonMessage(Exception):
    """Raised by a handler when this one message can never be handled (the message's fault)."""

    def __init__(self, delivery: Delivery, reason: str) -> None:
        super().__init__(reason)
        self.delivery = delivery
        self.reason = reason


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
        security: dict[str, Any] | None = None,
    ) -> None:
        self.group_id = group_id
        self.topics = {t.name: t for t in topics}
        self.handler = handler
        self.dead_letters = dead_letters
        self.max_records = max_records
        self.backoff_s = backoff_s
        self.lag: int | None = None  # records behind, over assigned partitions; None = unknown
        self._consumer = AIOKafkaConsumer(
            **(security or {}),
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            client_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    def caught_up(self, max_lag: int) -> bool:
        return self.lag is not None and self.lag <= max_lag

    async def run(self, stop: asyncio.Event) -> None:
        consumer = self._consumer
        await consumer.start()
        consumer.subscribe(list(self.topics), listener=_Rebalance(self.group_id))
        log.info("consumer started", group=self.group_id, topics=list(self.topics))
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=self.max_records)
                if batch:
                    with BATCH_SECONDS.labels(self.group_id).time():
                        if not await self._process(batch, stop):
                            break  # stopped while retrying: leave the batch uncommitted
                await self._measure_lag()
        finally:
            await consumer.stop()
            log.info("consumer stopped", group=self.group_id)

    async def _process(
        self, batch: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event
    ) -> bool:
        deliveries: list[Delivery] = []
        for tp, records in batch.items():
            topic = self.topics[tp.topic]
            for record in records:
                try:
                    event = decode(topic, record.value)
                except UndecodableMessage as exc:
                    await self._dead_letter(record, str(exc))
                    continue
                key = record.key.decode(errors="replace") if record.key is not None else None
                deliveries.append(
                    Delivery(topic, record.partition, record.offset, key, event, record.value)
                )
        if deliveries and not await self._handle(deliveries, stop):
            return False
        for tp, records in batch.items():
            MESSAGES_CONSUMED.labels(self.group_id, tp.topic).inc(len(records))
        await self._commit({tp: records[-1].offset + 1 for tp, records in batch.items()})
        return True

    async def _handle(self, deliveries: list[Delivery], stop: asyncio.Event) -> bool:
        """Run the handler until it succeeds; False if asked to stop first."""
        delay, max_delay = self.backoff_s
        while True:
            try:
                await self.handler(deliveries)
                return True
            except PoisonMessage as poison:
                d = poison.delivery
                await self._send_dead_letter(
                    d.topic.name, d.partition, d.offset, d.key, d.value, poison.reason
                )
                where = (d.topic.name, d.partition, d.offset)
                deliveries = [
                    x for x in deliveries if (x.topic.name, x.partition, x.offset) != where
                ]
                if not deliveries:
                    return True
            except Exception:
                HANDLER_RETRIES.labels(self.group_id).inc()
                log.exception(
                    "handler failed; retrying the batch",
                    group=self.group_id,
                    retry_in_s=delay,
                    batch_size=len(deliveries),
                )
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                    return False
                except TimeoutError:
                    delay = min(delay * 2, max_delay)

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

    async def _dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        key = record.key.decode(errors="replace") if record.key is not None else None
        await self._send_dead_letter(
            record.topic, record.partition, record.offset, key, record.value or b"", reason
        )

    async def _send_dead_letter(
        self, topic: str, partition: int, offset: int, key: str | None, value: bytes, reason: str
    ) -> None:
        # A letter must fit in one record: carry a value only up to a cap (its origin says
        # where to replay the rest from), or the letter itself would fail and stall the stream.
        whole = len(value) <= DEAD_LETTER_MAX_VALUE_BYTES
        letter = DeadLetter(
            original_topic=topic,
            original_partition=partition,
            original_offset=offset,
            consumer_group=self.group_id,
            error=reason[:2000],
            key=key,
            value_text=value[:DEAD_LETTER_MAX_VALUE_BYTES].decode(errors="replace"),
            value_base64=base64.b64encode(value).decode() if whole else "",
            value_bytes=len(value),
            truncated=not whole,
            failed_at=utcnow(),
        )
        event = envelope(DEAD_LETTER, letter, source=self.group_id)
        headers = [
            ("nexwatt.error", reason[:2000].encode()),
            ("nexwatt.original.topic", topic.encode()),
            ("nexwatt.original.partition", str(partition).encode()),
            ("nexwatt.original.offset", str(offset).encode()),
            ("nexwatt.consumer.group", self.group_id.encode()),
        ]
        await self.dead_letters.send_raw(DEAD_LETTER.name, key, encode(event), headers)
        DEAD_LETTERS.labels(self.group_id, topic).inc()
        log.warning(
            "dead-lettered",
            group=self.group_id,
            topic=topic,
            partition=partition,
            offset=offset,
            reason=reason,
        )

    async def _measure_lag(self) -> None:
        total = 0
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            if end is None:
                return  # not fetched yet: lag unknown
            behind = max(end - await self._consumer.position(tp), 0)
            CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(behind)
            total += behind
        self.lag = total
