"""The consumer runner on a real broker and a real PostgreSQL.

Each test uses a topic, a consumer group and a database of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from nexwatt_shared.codec import encode, envelope
from nexwatt_shared.kafka.admin import create_topics
from nexwatt_shared.kafka.consumer import ConsumerRunner, Delivery, PoisonMessage
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.postgres import open_pool
from nexwatt_shared.topics import DEAD_LETTER
from tests.helpers import committed_total, eventually, read_all, reading, unique
from tests.integration.runner_app import SCHEMA, make_topic

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture
async def setup(servers: dict[str, str]) -> AsyncIterator[dict]:
    name = unique("test.runner")
    topic = make_topic(name)
    await create_topics(servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"], [topic])
    database = name.replace(".", "_").replace("-", "_")
    pool = await open_pool(servers["NEXWATT_POSTGRES_URL"], database, SCHEMA)
    producer = EventProducer(servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"], "test")
    await producer.start()
    yield {
        "bootstrap": servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"],
        "topic": topic,
        "group": unique("test.group"),
        "database": database,
        "pool": pool,
        "producer": producer,
    }
    await producer.stop()
    await pool.close()


async def count(pool: asyncpg.Pool, table: str) -> int:
    return await pool.fetchval(f"SELECT count(*) FROM {table}")


async def produce(ctx: dict, n: int) -> None:
    readings = [reading(f"A-{i % 7}", i) for i in range(n)]
    await ctx["producer"].publish_many(ctx["topic"], readings)


def start_app(ctx: dict, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.runner_app"],
        cwd=ROOT,
        env={
            **os.environ,
            "RUNNER_TOPIC": ctx["topic"].name,
            "RUNNER_GROUP": ctx["group"],
            "RUNNER_DATABASE": ctx["database"],
            **env,
        },
        stdout=subprocess.DEVNULL,
    )


async def wait_exit(proc: subprocess.Popen, timeout_s: float = 30) -> int:
    return await eventually(
        lambda: asyncio.sleep(0, proc.poll()), lambda rc: rc is not None, timeout_s
    )


def in_process_runner(ctx: dict, handler) -> ConsumerRunner:
    return ConsumerRunner(
        bootstrap_servers=ctx["bootstrap"],
        group_id=ctx["group"],
        topics=[ctx["topic"]],
        handler=handler,
        dead_letters=ctx["producer"],
        backoff_s=(0.05, 0.2),
    )


async def test_offsets_are_committed_only_after_the_handler_has_written(setup: dict) -> None:
    ctx = setup
    await produce(ctx, 5)
    release, entered = asyncio.Event(), asyncio.Event()
    written: list[str] = []

    async def handler(batch: list[Delivery]) -> None:
        entered.set()
        await release.wait()
        written.extend(d.event.id for d in batch)

    stop = asyncio.Event()
    task = asyncio.create_task(in_process_runner(ctx, handler).run(stop))
    await asyncio.wait_for(entered.wait(), 30)
    await asyncio.sleep(1.0)  # time enough for any early commit to land
    assert await committed_total(ctx["bootstrap"], ctx["group"], ctx["topic"].name) == 0
    release.set()
    await eventually(
        lambda: committed_total(ctx["bootstrap"], ctx["group"], ctx["topic"].name), lambda n: n == 5
    )
    assert len(written) == 5
    stop.set()
    await task


async def test_a_crash_between_write_and_commit_replays_without_duplicates(setup: dict) -> None:
    ctx = setup
    await produce(ctx, 40)
    crashed = start_app(ctx, CRASH_AFTER_WRITE="1")
    assert await wait_exit(crashed) == 3
    written_before_crash = await count(ctx["pool"], "events")
    assert written_before_crash > 0
    assert await committed_total(ctx["bootstrap"], ctx["group"], ctx["topic"].name) == 0

    app = start_app(ctx)
    await eventually(
        lambda: committed_total(ctx["bootstrap"], ctx["group"], ctx["topic"].name),
        lambda n: n == 40,
    )
    app.send_signal(signal.SIGTERM)
    assert await wait_exit(app) == 0
    assert await count(ctx["pool"], "events") == 40  # no duplicate rows...
    assert await count(ctx["pool"], "attempts") == 40 + written_before_crash  # ...after a replay


async def test_sigterm_mid_stream_stops_cleanly_and_a_restart_loses_nothing(setup: dict) -> None:
    ctx = setup
    await produce(ctx, 300)
    app = start_app(ctx, HANDLER_DELAY_S="0.1", MAX_RECORDS="10")
    await eventually(lambda: count(ctx["pool"], "events"), lambda n: n >= 30)
    app.send_signal(signal.SIGTERM)
    assert await wait_exit(app, 15) == 0
    done_at_stop = await count(ctx["pool"], "events")
    assert done_at_stop < 300, "the stream should have been stopped part way"
    # The batch in hand was finished and committed: nothing written is uncommitted.
    assert await committed_total(ctx["bootstrap"], ctx["group"], ctx["topic"].name) == done_at_stop

    app = start_app(ctx, MAX_RECORDS="50")
    await eventually(
        lambda: committed_total(ctx["bootstrap"], ctx["group"], ctx["topic"].name),
        lambda n: n == 300,
    )
    app.send_signal(signal.SIGTERM)
    assert await wait_exit(app) == 0
    assert await count(ctx["pool"], "events") == 300
    assert await count(ctx["pool"], "attempts") == 300  # a clean stop replays nothing


async def test_garbage_is_dead_lettered_with_its_reason_and_the_stream_goes_on(
    setup: dict,
) -> None:
    ctx = setup
    producer, topic = ctx["producer"], ctx["topic"]
    good = [reading("A-1", 0), reading("A-1", 1)]
    wrong_type = json.loads(encode(envelope(topic, good[0], source="test")))
    wrong_type["type"] = "nexwatt.dispatch.instruction.v1"
    bad_schema = json.loads(encode(envelope(topic, good[0], source="test")))
    bad_schema["data"]["interval_start"] = "2026-03-12T09:00:00"  # no offset: not UTC-aware
    await producer.publish(topic, good[0])
    await producer.send_raw(topic.name, "A-1", b"{not json")
    await producer.send_raw(topic.name, "A-1", json.dumps(bad_schema).encode())
    await producer.send_raw(topic.name, "A-1", json.dumps(wrong_type).encode())
    huge = b"x" * 650_000  # a letter carrying it twice would exceed Kafka's 1 MiB record limit
    await producer.send_raw(topic.name, "A-1", huge)
    await producer.publish(topic, good[1])

    seen: list[Delivery] = []

    async def handler(batch: list[Delivery]) -> None:
        seen.extend(batch)

    stop = asyncio.Event()
    task = asyncio.create_task(in_process_runner(ctx, handler).run(stop))
    await eventually(
        lambda: committed_total(ctx["bootstrap"], ctx["group"], topic.name), lambda n: n == 6
    )
    stop.set()
    await task
    assert [d.payload for d in seen] == good

    letters = [
        r
        for r in await read_all(ctx["bootstrap"], DEAD_LETTER.name)
        if dict(r.headers).get("nexwatt.original.topic") == topic.name.encode()
    ]
    reasons = [dict(r.headers)["nexwatt.error"].decode() for r in letters]
    assert len(letters) == 4
    assert reasons[0].startswith("not JSON")
    assert reasons[3].startswith("not JSON")
    oversized = json.loads(letters[3].value)["data"]
    assert oversized["truncated"] and oversized["value_bytes"] == len(huge)
    assert oversized["value_base64"] == "" and len(oversized["value_text"]) == 16 * 1024
    assert "interval_start" in reasons[1] and "timezone" in reasons[1]
    assert reasons[2].startswith("wrong event type 'nexwatt.dispatch.instruction.v1'")
    body = json.loads(letters[0].value)
    assert body["type"] == DEAD_LETTER.event_type
    assert body["data"]["value_text"] == "{not json"
    assert body["data"]["original_offset"] == 1
    assert body["data"]["consumer_group"] == ctx["group"]


async def test_handler_errors_are_retried_and_poison_is_isolated(setup: dict) -> None:
    ctx = setup
    await produce(ctx, 6)
    failures = 2
    handled: list[Delivery] = []

    async def handler(batch: list[Delivery]) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionError("database down")  # not the messages' fault: retry the batch
        poison = next((d for d in batch if d.payload.interval_start.minute == 3), None)
        if poison is not None:
            raise PoisonMessage([(poison, "minute 3 is cursed")])
        handled.extend(batch)

    stop = asyncio.Event()
    task = asyncio.create_task(in_process_runner(ctx, handler).run(stop))
    await eventually(
        lambda: committed_total(ctx["bootstrap"], ctx["group"], ctx["topic"].name),
        lambda n: n == 6,
    )
    stop.set()
    await task
    assert failures == 0
    assert sorted(d.payload.interval_start.minute for d in handled) == [0, 1, 2, 4, 5]
    letters = [
        r
        for r in await read_all(ctx["bootstrap"], DEAD_LETTER.name)
        if dict(r.headers).get("nexwatt.original.topic") == ctx["topic"].name.encode()
    ]
    assert [dict(r.headers)["nexwatt.error"] for r in letters] == [b"minute 3 is cursed"]


async def test_a_record_the_database_refuses_is_found_by_halving_and_dead_lettered(
    setup: dict,
) -> None:
    ctx = setup
    await produce(ctx, 9)
    # The handler writes each batch in one statement; PostgreSQL refuses the whole statement
    # when one row is bad (here: text with NUL, which its text type cannot hold).
    poisoned = {4}
    calls: list[int] = []

    async def handler(batch: list[Delivery]) -> None:
        calls.append(len(batch))
        rows = [
            (d.event.id + ("\x00" if d.payload.interval_start.minute in poisoned else ""),
             d.partition, d.offset)
            for d in batch
        ]  # fmt: skip
        await ctx["pool"].executemany(
            "INSERT INTO events (event_id, part, off) VALUES ($1, $2, $3)"
            " ON CONFLICT (event_id) DO NOTHING",
            rows,
        )

    stop = asyncio.Event()
    task = asyncio.create_task(in_process_runner(ctx, handler).run(stop))
    await eventually(
        lambda: committed_total(ctx["bootstrap"], ctx["group"], ctx["topic"].name),
        lambda n: n == 9,
    )
    stop.set()
    await task
    assert await count(ctx["pool"], "events") == 8
    assert len(calls) > 1, "the batch was narrowed down"
    letters = [
        json.loads(r.value)["data"]
        for r in await read_all(ctx["bootstrap"], DEAD_LETTER.name)
        if dict(r.headers).get("nexwatt.original.topic") == ctx["topic"].name.encode()
    ]
    assert len(letters) == 1
    assert '"interval_start":"2026-03-12T09:04:00Z"' in letters[0]["value_text"]
    assert letters[0]["error"].startswith("handler failed on this record: ")
    assert "0x00" in letters[0]["error"]


async def test_while_the_store_is_down_the_runner_retries_and_reports_not_ready(
    setup: dict,
) -> None:
    ctx = setup
    await produce(ctx, 3)
    outage = asyncio.Event()
    outage.set()

    async def handler(batch: list[Delivery]) -> None:
        if outage.is_set():
            raise ConnectionRefusedError(111, "connection refused")  # not the data's fault

    runner = in_process_runner(ctx, handler)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await eventually(lambda: asyncio.sleep(0, runner.retrying_since), lambda t: t is not None)
    # The lag is still measured while no batch completes; readiness fails past max_retry_s.
    await eventually(lambda: asyncio.sleep(0, runner.lag), lambda lag: lag == 3)
    await asyncio.sleep(0.3)
    assert runner.ready(max_lag=1000, max_retry_s=60.0)
    assert not runner.ready(max_lag=1000, max_retry_s=0.1)
    assert await committed_total(ctx["bootstrap"], ctx["group"], ctx["topic"].name) == 0
    outage.clear()
    await eventually(
        lambda: committed_total(ctx["bootstrap"], ctx["group"], ctx["topic"].name),
        lambda n: n == 3,
    )
    assert runner.retrying_since is None and runner.ready(max_lag=1000, max_retry_s=0.1)
    stop.set()
    await task


async def test_a_broadcast_reader_reads_partitions_added_while_it_runs(setup: dict) -> None:
    # A broadcast reader is assigned its partitions, so the broker tells it nothing when an
    # operator adds some (e.g. to scale telemetry-ingest): it looks for itself.
    ctx = setup
    seen: list[tuple[int, str]] = []

    async def handler(batch: list[Delivery]) -> None:
        seen.extend((d.partition, d.event.id) for d in batch)

    runner = ConsumerRunner(
        bootstrap_servers=ctx["bootstrap"], group_id=ctx["group"], topics=[ctx["topic"]],
        handler=handler, dead_letters=ctx["producer"], replay={ctx["topic"].name: None},
        partition_check_s=0.5,
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await produce(ctx, 4)
    await eventually(lambda: asyncio.sleep(0, len(seen)), lambda n: n == 4)
    admin = AIOKafkaAdminClient(bootstrap_servers=ctx["bootstrap"])
    await admin.start()
    try:
        await admin.create_partitions({ctx["topic"].name: NewPartitions(total_count=3)})
    finally:
        await admin.close()
    value = encode(envelope(ctx["topic"], reading("A-new", 99), source="test", event_id="new"))
    producer = AIOKafkaProducer(bootstrap_servers=ctx["bootstrap"])
    await producer.start()
    try:
        await producer.send_and_wait(ctx["topic"].name, value, partition=2)
    finally:
        await producer.stop()
    await eventually(lambda: asyncio.sleep(0, seen), lambda got: (2, "new") in got)
    assert len(seen) == 5  # what was read before is not read again
    stop.set()
    await task


async def test_a_broadcast_reader_reads_the_first_topic_up_to_its_end_before_the_others(
    setup: dict,
) -> None:
    # Dispatch's view reads the registrations there are before the telemetry that refers to
    # them: none has to wait for its asset.
    ctx = setup
    later = make_topic(unique("test.runner.later"))
    await create_topics(ctx["bootstrap"], [later])
    await ctx["producer"].publish_many(later, [reading(f"B-{i}", i) for i in range(30)])
    await produce(ctx, 300)
    order: list[str] = []

    async def handler(batch: list[Delivery]) -> None:
        order.extend(d.topic.name for d in batch)

    runner = ConsumerRunner(
        bootstrap_servers=ctx["bootstrap"], group_id=ctx["group"], topics=[ctx["topic"], later],
        handler=handler, dead_letters=ctx["producer"], max_records=50,
        replay={ctx["topic"].name: None, later.name: None}, first=ctx["topic"].name,
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await eventually(lambda: asyncio.sleep(0, len(order)), lambda n: n == 330)
    assert order[:300] == [ctx["topic"].name] * 300  # in several batches of at most 50
    stop.set()
    await task
