"""What every service's `bootstrap()` needs: open its resources, build its consumers, and
collect readiness checks and closers, so each bootstrap says only what is particular to it."""

from __future__ import annotations

import argparse
import asyncio
import gc
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from fastapi import FastAPI
from redis.asyncio import Redis

from nexwatt_shared.kafka.consumer import BatchHandler, ConsumerRunner
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.observability import configure_logging
from nexwatt_shared.postgres import open_pool
from nexwatt_shared.redis_client import open_redis
from nexwatt_shared.service import Closer, ReadinessCheck, ServiceProcess, Worker, health_app
from nexwatt_shared.settings import ServiceSettings
from nexwatt_shared.topics import Topic


@dataclass
class Resources:
    settings: ServiceSettings
    producer: EventProducer
    pool: asyncpg.Pool | None = None
    redis: Redis | None = None
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    closers: list[Closer] = field(default_factory=list)

    def consumer(
        self,
        topics: Sequence[Topic],
        handler: BatchHandler,
        role: str = "",
        max_records: int | None = None,
        replay: Mapping[str, float | None] | None = None,
        start_at: Mapping[TopicPartition, int] | None = None,
        first: str | None = None,
    ) -> ConsumerRunner:
        """A consumer in the service's group (or the group `<service group>.<role>` when a
        service needs several loops); /readyz waits until each has caught up, and fails while
        one has been retrying a batch for longer than `ready_max_retry_s`. `replay`: every
        replica reads every partition (`ConsumerRunner`'s broadcast mode), some from `start_at`, and
        the topic `first` up to its end before the others."""
        group = f"{self.settings.consumer_group}.{role}" if role else self.settings.consumer_group
        runner = ConsumerRunner(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=group,
            topics=topics,
            handler=handler,
            dead_letters=self.producer,
            max_records=max_records or self.settings.consumer_max_records,
            max_ahead_s=self.settings.event_time_max_ahead_s,
            security=self.settings.kafka_security(),
            replay=replay,
            start_at=start_at,
            first=first,
        )

        async def ready() -> bool:
            return runner.ready(self.settings.ready_max_lag, self.settings.ready_max_retry_s)

        self.checks[f"kafka:{role}" if role else "kafka"] = ready
        return runner

    def process(self, workers: Sequence[Worker], app: FastAPI | None = None) -> ServiceProcess:
        return ServiceProcess(
            settings=self.settings,
            app=health_app(self.settings.service_name, self.checks, app),
            workers=list(workers),
            closers=self.closers,
        )


async def open_resources(
    settings: ServiceSettings, *, migrations: Path | None = None, redis: bool = False
) -> Resources:
    """Start the producer; open PostgreSQL (migrated) when `migrations` is given, and Redis
    (values come back as bytes)."""
    configure_logging(settings.service_name, settings.log_level)
    producer = EventProducer(
        settings.kafka_bootstrap_servers, settings.service_name, settings.kafka_security()
    )
    await producer.start()
    res = Resources(settings=settings, producer=producer, closers=[producer.stop])
    if migrations is not None:
        pool = await open_pool(settings.postgres_url, settings.database, migrations)
        res.pool = pool
        res.closers.append(pool.close)

        async def postgres_answers() -> bool:
            return await pool.fetchval("SELECT 1") == 1

        res.checks["postgres"] = postgres_answers
    if redis:
        client = open_redis(settings.redis_url, binary=True)
        res.redis = client
        res.closers.append(client.aclose)

        async def redis_answers() -> bool:
            return bool(await client.ping())

        res.checks["redis"] = redis_answers
    return res


GC_YOUNG_THRESHOLD = 100_000


def tune_gc() -> None:
    """Collect less often: a consumer makes and drops tens of thousands of small objects per
    batch, and at Python's default (a young collection every 700 allocations) the collector
    cost a third of telemetry-ingest's throughput (`make bench`). What bootstrap built lives
    for the whole process: frozen, no collection walks it again."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)


def service_main(
    settings_type: type[ServiceSettings],
    bootstrap: Callable[[Any], Coroutine[Any, Any, ServiceProcess]],
    migrations: Path | None = None,
    commands: dict[str, Callable[[Any], Coroutine[Any, Any, None]]] | None = None,
) -> None:
    """The command line of every service: `run` (default), `migrate`, and any `commands` of
    its own (name -> coroutine taking the settings)."""
    settings = settings_type()

    async def run(settings: ServiceSettings) -> None:
        process = await bootstrap(settings)
        tune_gc()
        await process.run()

    async def migrate(settings: ServiceSettings) -> None:
        configure_logging(settings.service_name, settings.log_level)
        if migrations is not None:
            pool = await open_pool(settings.postgres_url, settings.database, migrations)
            await pool.close()

    available = {"run": run, "migrate": migrate, **(commands or {})}
    parser = argparse.ArgumentParser(prog=f"nexwatt-{settings.service_name}")
    parser.add_argument("command", nargs="?", default="run", choices=list(available))
    args = parser.parse_args()
    asyncio.run(available[args.command](settings))
