"""Dispatch's view from the topics (every replica reads every partition) and its snapshot in
Redis: a restarted replica starts from the snapshot and reads only what came after it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from nexwatt_dispatch import snapshot
from nexwatt_dispatch.acks import AckBook
from nexwatt_dispatch.bootstrap import MIGRATIONS
from nexwatt_dispatch.handlers import StateHandler
from nexwatt_dispatch.log import DispatchLog
from nexwatt_dispatch.view import FleetView
from nexwatt_shared.contracts import AssetRegistered, TelemetryInterval
from nexwatt_shared.kafka.consumer import ConsumerRunner
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.postgres import open_pool
from nexwatt_shared.redis_client import open_redis
from nexwatt_shared.topics import ASSET_COMMAND_ACK, ASSET_REGISTERED, TELEMETRY_INTERVAL
from tests.helpers import eventually, unique

pytestmark = pytest.mark.integration
NOW = datetime(2026, 3, 12, 13, 15, tzinfo=UTC)
TOPICS = [ASSET_REGISTERED, TELEMETRY_INTERVAL, ASSET_COMMAND_ACK]


def record(asset_id: str, resource: str, version: int = 1) -> AssetRegistered:
    return AssetRegistered(
        asset_id=asset_id, status="enrolled", asset_type="solar_storage",
        inverter="SolarEdge SE7600", vendor="solaredge", capacity_kw=7.6 + version,
        storage_kwh=9.8, meter_id="M", iso="PJM", iso_zone="PJM-PEPCO", resource_id=resource,
        cohort="residential", telemetry_interval_s=300, version=version, updated_at=NOW,
    )  # fmt: skip


def reading(asset_id: str, soc_pct: float, minutes: int = 0) -> TelemetryInterval:
    return TelemetryInterval(
        asset_id=asset_id, interval_start=NOW + timedelta(minutes=minutes), interval_s=300,
        pv_kw=1.0, soc_pct=soc_pct,
    )  # fmt: skip


@pytest.fixture
async def ctx(servers: dict[str, str]) -> AsyncIterator[dict]:
    bootstrap = servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"]
    pool = await open_pool(
        servers["NEXWATT_POSTGRES_URL"], unique("test_view").replace("-", "_"), MIGRATIONS
    )
    redis = open_redis(servers["NEXWATT_REDIS_URL"], binary=True)
    producer = EventProducer(bootstrap, "test")
    await producer.start()
    running: list[tuple[asyncio.Event, asyncio.Task]] = []

    def replica(
        view: FleetView, start_at: dict | None = None
    ) -> tuple[ConsumerRunner, StateHandler]:
        """A replica's state consumer, running until the test ends."""
        handler = StateHandler(view, AckBook(), DispatchLog(pool), 900.0)
        runner = ConsumerRunner(
            bootstrap_servers=bootstrap, group_id=unique("test-view"), topics=TOPICS,
            handler=handler.handle,
            dead_letters=producer, replay=dict.fromkeys((t.name for t in TOPICS), 120.0),
            start_at=start_at,
        )  # fmt: skip
        stop = asyncio.Event()
        running.append((stop, asyncio.create_task(runner.run(stop))))
        return runner, handler

    yield {"producer": producer, "redis": redis, "replica": replica}
    for stop, task in running:
        stop.set()
        await task
    await producer.stop()
    await redis.aclose()
    await pool.close()


async def test_every_replica_sees_every_partition_and_a_restart_reads_on_from_the_snapshot(
    ctx: dict,
) -> None:
    resource = unique("NXW-PJM-V")
    assets = [unique(f"V-{k}") for k in range(6)]  # keyed by asset: spread over 3 partitions
    first, second = FleetView(), FleetView()
    (one, handler), _ = ctx["replica"](first), ctx["replica"](second)
    await ctx["producer"].publish_many(ASSET_REGISTERED, [record(a, resource) for a in assets])
    await ctx["producer"].publish_many(TELEMETRY_INTERVAL, [reading(a, 80.0) for a in assets])

    def holds(view: FleetView, soc_pct: float) -> bool:
        fleet = view.fleet(resource)
        return len(fleet) == len(assets) and bool((fleet.soc_pct == soc_pct).all())

    for view in (first, second):  # both replicas hold the whole resource
        await eventually(lambda v=view: asyncio.sleep(0, holds(v, 80.0)), bool, timeout_s=30)

    # A snapshot between batches, then more arrives: a new version of one asset and newer SoC.
    key = snapshot.key(unique("test-view"))
    async with handler.between_batches:  # as the service takes it
        taken, copy = dict(one.handled), first.copy()
    await snapshot.save(ctx["redis"], key, copy, taken)
    await ctx["producer"].publish(ASSET_REGISTERED, record(assets[0], resource, version=2))
    await ctx["producer"].publish_many(TELEMETRY_INTERVAL, [reading(a, 60.0, 5) for a in assets])

    # A restart: the view comes back from Redis, and reading goes on from where it was taken.
    restored = await snapshot.load(ctx["redis"], key)
    assert restored is not None
    view, positions = restored
    assert positions == taken and holds(view, 80.0)
    runner, _ = ctx["replica"](view, start_at=positions)
    await eventually(lambda: asyncio.sleep(0, holds(view, 60.0)), bool, timeout_s=30)
    fleet = view.fleet(resource)
    assert fleet.ratings.inverter_ac_kw[fleet.asset_ids.index(assets[0])] == pytest.approx(9.6)
    registered = next(tp for tp in positions if tp.topic == ASSET_REGISTERED.name)
    # It started at the snapshot's position on asset.registered, not at the topic's beginning:
    # exactly one more record since (the new version) is read there.
    await eventually(
        lambda: asyncio.sleep(0, runner.handled[registered]),
        lambda at: at == positions[registered] + 1,
        timeout_s=10,
    )
