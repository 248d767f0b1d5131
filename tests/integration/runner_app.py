"""A minimal service on the real consumer runner, run as a subprocess by test_consumer_runner.

It consumes one test topic and writes each event into PostgreSQL idempotently (`events`, keyed
by event id) while logging every attempt (`attempts`, no key), so a test can tell a replay from
a duplicate. Knobs (environment):
  RUNNER_TOPIC, RUNNER_GROUP, RUNNER_DATABASE  what to read and where to write
  CRASH_AFTER_WRITE=1   die (os._exit) after the first batch's write, before its commit
  HANDLER_DELAY_S       sleep this long in each batch (to be caught mid-stream by SIGTERM)
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg

from nexwatt_shared.contracts import TelemetryInterval
from nexwatt_shared.kafka.consumer import ConsumerRunner, Delivery
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.observability import configure_logging
from nexwatt_shared.postgres import open_pool
from nexwatt_shared.service import ServiceProcess, health_app
from nexwatt_shared.settings import ServiceSettings
from nexwatt_shared.topics import Topic

SCHEMA = Path(__file__).with_name("runner_app_migrations")


def make_topic(name: str) -> Topic:
    return Topic(name, TelemetryInterval, "test topic", key="asset_id", partitions=2)


def make_handler(pool: asyncpg.Pool, crash_after_write: bool, delay_s: float):
    async def handle(batch: list[Delivery]) -> None:
        rows = [(d.event.id, d.partition, d.offset) for d in batch]
        async with pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO attempts (event_id, part, off) VALUES ($1, $2, $3)", rows
            )
            await conn.executemany(
                "INSERT INTO events (event_id, part, off) VALUES ($1, $2, $3)"
                " ON CONFLICT (event_id) DO NOTHING",
                rows,
            )
        if crash_after_write:
            os._exit(3)  # the write is in, the offsets are not committed
        await asyncio.sleep(delay_s)

    return handle


async def main() -> None:
    settings = ServiceSettings(
        service_name="runner-test", postgres_database=os.environ["RUNNER_DATABASE"], http_port=0
    )
    configure_logging("runner-test", "INFO")
    pool = await open_pool(settings.postgres_url, settings.database, SCHEMA)
    producer = EventProducer(settings.kafka_bootstrap_servers, "runner-test")
    await producer.start()
    runner = ConsumerRunner(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=os.environ["RUNNER_GROUP"],
        topics=[make_topic(os.environ["RUNNER_TOPIC"])],
        handler=make_handler(
            pool,
            os.environ.get("CRASH_AFTER_WRITE") == "1",
            float(os.environ.get("HANDLER_DELAY_S", "0")),
        ),
        dead_letters=producer,
        max_records=int(os.environ.get("MAX_RECORDS", "500")),
    )
    process = ServiceProcess(
        settings=settings,
        app=health_app("runner-test", {}),
        workers=[runner.run],
        closers=[producer.stop, pool.close],
    )
    await process.run()


if __name__ == "__main__":
    asyncio.run(main())
