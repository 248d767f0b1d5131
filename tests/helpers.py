"""Small helpers the integration and e2e tests share."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import BaseModel

from nexwatt_shared.codec import envelope
from nexwatt_shared.contracts import TelemetryInterval
from nexwatt_shared.kafka.consumer import BatchHandler, ConsumerRunner, Delivery
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.postgres import database_url, open_pool
from nexwatt_shared.topics import Topic

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout_s: float = 30.0
) -> T:
    """Poll `probe` until `done(value)`; fail with the last value seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout_s}s; last value: {value!r}")
        await asyncio.sleep(0.2)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def reading(asset_id: str, minute: int) -> TelemetryInterval:
    start = datetime(2026, 3, 12, 9, 0, tzinfo=UTC) + timedelta(minutes=minute)
    return TelemetryInterval(
        asset_id=asset_id,
        interval_start=start,
        interval_s=60,
        pv_kw=3.0,
        load_kw=1.0,
        battery_kw=0.0,
        net_kw=2.0,
        soc_pct=80.0,
    )


async def committed_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    """The group's committed offset of every partition it has committed on."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items()}


async def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """Sum of the group's committed offsets over the topic's partitions (0 where none)."""
    offsets = await committed_offsets(bootstrap, group)
    return sum(offset for tp, offset in offsets.items() if tp.topic == topic and offset > 0)


async def read_all(bootstrap: str, topic: str, timeout_s: float = 5.0) -> list:
    """Every record currently in `topic`, from the beginning, without a consumer group."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        # Without a group, every partition is assigned to us once metadata arrives.
        await eventually(lambda: asyncio.sleep(0, consumer.assignment()), bool, timeout_s)
        tps = list(consumer.assignment())
        ends = await consumer.end_offsets(tps)
        records = []
        while time.monotonic() < deadline:
            behind = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
            if not behind:
                break
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


class TopicWatcher:
    """Collects every event published on some topics from the moment it starts (no group)."""

    def __init__(self, bootstrap: str, topics: list) -> None:
        self.topics = {t.name: t for t in topics}
        self.events: list = []  # (topic name, record, decoded event or None)
        self._consumer = AIOKafkaConsumer(
            *self.topics, bootstrap_servers=bootstrap, auto_offset_reset="latest"
        )
        self._task: asyncio.Task | None = None

    async def start(self) -> TopicWatcher:
        await self._consumer.start()
        await eventually(lambda: asyncio.sleep(0, self._consumer.assignment()), bool, 30)
        for tp in self._consumer.assignment():
            await self._consumer.position(tp)  # pin 'latest' before anything is published
        self._task = asyncio.create_task(self._collect())
        return self

    async def _collect(self) -> None:
        from nexwatt_shared.codec import UndecodableMessage, decode

        while True:
            for tp, records in (await self._consumer.getmany(timeout_ms=200)).items():
                for record in records:
                    try:
                        event = decode(self.topics[tp.topic], record.value)
                    except UndecodableMessage:
                        event = None
                    self.events.append((tp.topic, record, event))

    def payloads(self, topic, **match: object) -> list:
        """Decoded payloads on `topic` whose fields equal `match`."""
        return [
            e.data
            for name, _, e in self.events
            if name == topic.name
            and e is not None
            and all(getattr(e.data, k) == v for k, v in match.items())
        ]

    async def wait_for(self, topic, timeout_s: float = 60.0, count: int = 1, **match: object):
        return await eventually(
            lambda: asyncio.sleep(0, self.payloads(topic, **match)),
            lambda found: len(found) >= count,
            timeout_s,
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._consumer.stop()


async def end_offsets(bootstrap: str, topics: list[Topic]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return await consumer.end_offsets(
            [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]
        )
    finally:
        await consumer.stop()


async def commit_offsets(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Start `group` at `offsets` instead of the topics' beginning."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


def only(keep: Callable[[Delivery], bool], handler: BatchHandler, seen: list[str]) -> BatchHandler:
    """The handler, given only the deliveries `keep` accepts; their ids go to `seen` after."""

    async def filtered(batch: list[Delivery]) -> None:
        mine = [d for d in batch if keep(d)]
        if mine:
            await handler(mine)
        seen.extend(d.event.id for d in mine)

    return filtered


# The product page's example registration (POST /v1/assets/register).
SEED_REGISTRATION = {
    "asset_id": "BTM-00291",
    "type": "solar_storage",
    "inverter": "SolarEdge SE7600",
    "capacity_kw": 7.6,
    "storage_kwh": 9.8,
    "meter_id": "MD-78421-C",
    "iso_zone": "PJM-PEPCO",
    "telemetry_interval": 5,
}


def registration(**changes: object) -> dict:
    """The example registration with some fields changed."""
    return {**SEED_REGISTRATION, **changes}


@asynccontextmanager
async def handler_context(
    servers: dict[str, str], service: str, migrations: Path, topics: list[Topic]
) -> AsyncIterator[dict]:
    """What a test of one service's handler needs: its own database, a producer, where the
    topics ended when the test began, and a fresh resource with assets A, B, C and D."""
    bootstrap = servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"]
    database = unique(f"test_{service}").replace("-", "_")
    pool = await open_pool(servers["NEXWATT_POSTGRES_URL"], database, migrations)
    producer = EventProducer(bootstrap, "test")
    await producer.start()
    try:
        yield {
            "bootstrap": bootstrap,
            "pool": pool,
            "producer": producer,
            "start": await end_offsets(bootstrap, topics),
            "resource": unique("NXW-PJM-T"),
            "assets": {name: unique(f"T-{name}") for name in "ABCD"},
        }
    finally:
        await producer.stop()
        await pool.close()


@asynccontextmanager
async def handler_running(
    ctx: dict,
    topics: list[Topic],
    handler: BatchHandler,
    keep: Callable[[Delivery], bool],
    seen: list[str],
) -> AsyncIterator[str]:
    """A service's handler on the real consumer runner, in a fresh group (yielded) starting
    where the topics ended when the test began (`handler_context`), given only the test's own
    events."""
    group = unique("test.group")
    await commit_offsets(ctx["bootstrap"], group, ctx["start"])
    runner = ConsumerRunner(
        bootstrap_servers=ctx["bootstrap"],
        group_id=group,
        topics=topics,
        handler=only(keep, handler, seen),
        dead_letters=ctx["producer"],
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield group
    finally:
        stop.set()
        await task


async def handled(seen: list[str], n: int) -> None:
    """Wait until the handler has handled `n` of the test's events."""
    await eventually(lambda: asyncio.sleep(0, len(seen)), lambda k: k == n)


def deliveries(topic: Topic, payloads: list[BaseModel], source: str = "test") -> list[Delivery]:
    """Payloads as the consumer runner hands them to a handler, without a broker between."""
    return [
        Delivery(topic, 0, offset, None, envelope(topic, payload, source=source), b"")
        for offset, payload in enumerate(payloads)
    ]


async def drop_database(server_url: str, database: str) -> None:
    """Drop a test's or a benchmark's own database, whoever is still connected to it."""
    conn = await asyncpg.connect(database_url(server_url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await conn.close()
