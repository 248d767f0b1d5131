"""The outbox relay on a real PostgreSQL, with a recording producer in place of Kafka, so that
publishing can be made to fail or to be slow on purpose. Each test has a database of its own."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
import pytest
from pydantic import BaseModel

from nexwatt_onboarding import store
from nexwatt_onboarding.bootstrap import MIGRATIONS
from nexwatt_onboarding.handlers import Onboarding
from nexwatt_onboarding.models import RegistrationRequest, Rejected, Violation
from nexwatt_onboarding.outbox import OutboxRelay
from nexwatt_onboarding.rules import load_rules
from nexwatt_shared.auth import DEFAULT_TENANT
from nexwatt_shared.contracts import AssetStatus
from nexwatt_shared.postgres import open_pool
from nexwatt_shared.topics import ASSET_REGISTERED, Topic
from tests.helpers import drop_database, eventually, registration, unique

pytestmark = pytest.mark.integration


class RecordingProducer:
    """Stands in for EventProducer.publish; `fail_on` maps a call number to when it fails:
    "before" (the broker never got it) or "after" (it did, but the answer was lost)."""

    def __init__(self, fail_on: dict[int, str] | None = None, max_delay_s: float = 0.0) -> None:
        self.sent: list[tuple[str, str, int, datetime]] = []  # event id, asset id, version, time
        self.calls = 0
        self.fail_on = fail_on or {}
        self.max_delay_s = max_delay_s

    async def publish(
        self, topic: Topic, payload: BaseModel, *, event_id: str, time: datetime
    ) -> None:
        assert topic is ASSET_REGISTERED
        self.calls += 1
        failure = self.fail_on.get(self.calls)
        if failure == "before":
            raise ConnectionError("broker unreachable")
        await asyncio.sleep(random.uniform(0, self.max_delay_s))
        self.sent.append((event_id, payload.asset_id, payload.version, time))
        if failure == "after":
            raise TimeoutError("no answer from the broker")

    def ids(self) -> list[str]:
        return [event_id for event_id, *_ in self.sent]


TENANT = DEFAULT_TENANT  # the relay doesn't care whose assets it publishes


def request(asset_id: str, **changes: object) -> RegistrationRequest:
    """The example registration for `asset_id`, on a meter of its own (a meter can be enrolled
    under one asset only)."""
    body = registration(asset_id=asset_id, **{"meter_id": f"M-{asset_id}", **changes})
    return RegistrationRequest.model_validate(body)


@pytest.fixture
async def pool(servers: dict[str, str]) -> AsyncIterator[asyncpg.Pool]:
    database = unique("test_outbox").replace("-", "_")
    pool = await open_pool(servers["NEXWATT_POSTGRES_URL"], database, MIGRATIONS)
    yield pool
    await pool.close()
    await drop_database(servers["NEXWATT_POSTGRES_URL"], database)


def onboarding(pool: asyncpg.Pool, relay: OutboxRelay | None = None) -> Onboarding:
    return Onboarding(pool, load_rules(), on_change=relay.wake if relay else lambda: None)


async def unsent(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")


async def test_a_change_and_its_outbox_row_are_committed_together(pool: asyncpg.Pool) -> None:
    service = onboarding(pool)
    await service.register(request("A-1"), TENANT)
    await service.register(request("A-1"), TENANT)  # identical: no row
    await service.register(request("A-1", capacity_kw=9.0), TENANT)
    await service.register(request("A-2", telemetry_interval=15), TENANT)  # rejected: no row
    rows = await pool.fetch("SELECT event_id, version, sent_at FROM outbox ORDER BY id")
    assert [(r["event_id"], r["version"], r["sent_at"]) for r in rows] == [
        ("A-1:v1", 1, None),
        ("A-1:v2", 2, None),
    ]
    assert await pool.fetchval("SELECT count(*) FROM assets") == 1


async def test_the_write_itself_refuses_another_tenants_asset(pool: asyncpg.Pool) -> None:
    # Isolation must not rest on every caller checking the owner first: a write that skipped
    # the check (a future bulk path) neither changes nor publishes another tenant's asset.
    await onboarding(pool).register(request("A-1"), TENANT)
    record = await store.get_asset(pool, "A-1")
    assert record is not None
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO tenants (tenant_id) VALUES ('other')")
    changed = record.model_copy(update={"version": 2, "capacity_kw": 1.0})
    with pytest.raises(store.AssetIdTaken):
        async with pool.acquire() as conn, conn.transaction():
            await store.save_asset(conn, changed, "other")
    assert await store.get_asset(pool, "A-1") == record
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_a_meter_taken_past_the_check_is_refused_by_the_index_with_the_same_answer(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = onboarding(pool)
    await service.register(request("A-1", meter_id="M-1"), TENANT)
    # The first check misses A-1, as it would were A-1 written by a replica that skipped the
    # meter lock; only the unique index stands between A-2 and the meter.
    checked: list[str | None] = []
    real_holder = store.meter_holder

    async def holder_missed_once(conn: asyncpg.Connection, meter_id: str) -> asyncpg.Record | None:
        holder = await real_holder(conn, meter_id) if checked else None
        checked.append(holder["asset_id"] if holder else None)
        return holder

    monkeypatch.setattr(store, "meter_holder", holder_missed_once)
    outcome = await service.register(request("A-2", meter_id="M-1"), TENANT)
    assert outcome == Rejected(
        telemetry_validated=True,
        asset_id="A-2",
        violations=[
            Violation(
                rule="meter_id",
                found="M-1",
                expected="a meter not enrolled under another asset (A-1 holds it)",
            )
        ],
    )
    assert checked == [None, "A-1"]  # refused by the index, then checked again
    assert await pool.fetchval("SELECT count(*) FROM assets") == 1
    assert await pool.fetchval("SELECT array_agg(event_id) FROM outbox") == ["A-1:v1"]


async def test_a_failed_publish_keeps_the_rest_for_later_and_sends_nothing_twice(
    pool: asyncpg.Pool,
) -> None:
    service = onboarding(pool)
    for asset_id in ["A-1", "A-2", "A-3"]:
        await service.register(request(asset_id), TENANT)
    producer = RecordingProducer(fail_on={2: "before"})
    relay = OutboxRelay(pool, producer)
    with pytest.raises(ConnectionError):
        await relay.publish_batch()
    assert producer.ids() == ["A-1:v1"]
    assert await unsent(pool) == 2  # A-1 was marked sent; wait

    assert await relay.publish_batch() == 2
    assert producer.ids() == ["A-1:v1", "A-2:v1", "A-3:v1"]
    assert await unsent(pool) == 0
    assert await relay.publish_batch() == 0


async def test_a_lost_acknowledgement_republishes_the_same_event(pool: asyncpg.Pool) -> None:
    await onboarding(pool).register(request("A-1"), TENANT)
    producer = RecordingProducer(fail_on={1: "after"})
    relay = OutboxRelay(pool, producer)
    with pytest.raises(TimeoutError):
        await relay.publish_batch()
    assert await unsent(pool) == 1  # not known to be sent: kept
    assert await relay.publish_batch() == 1
    # The broker may now hold it twice, as the same event: a consumer drops the second.
    first, second = producer.sent
    assert first == second
    assert first[0] == "A-1:v1"


async def test_replicas_publish_every_change_once_and_each_asset_in_version_order(
    pool: asyncpg.Pool,
) -> None:
    service = onboarding(pool)
    assets = [f"A-{i}" for i in range(5)]
    # Interleaved: the outbox holds every asset's v1, then every v2, and so on.
    for capacity_kw in [5.0, 6.0, 7.0]:
        for asset_id in assets:
            await service.register(request(asset_id, capacity_kw=capacity_kw), TENANT)
    for asset_id in assets:
        await service.change_status(asset_id, AssetStatus.SUSPENDED, TENANT)
    producer = RecordingProducer(max_delay_s=0.01)  # slow sends let the replicas overlap
    replicas = [OutboxRelay(pool, producer, poll_s=0.02, batch_size=3) for _ in range(3)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(relay.run(stop)) for relay in replicas]
    await eventually(lambda: unsent(pool), lambda n: n == 0, timeout_s=30)
    stop.set()
    await asyncio.gather(*tasks)

    assert len(producer.ids()) == 20
    assert len(set(producer.ids())) == 20
    for asset_id in assets:
        versions = [version for _, asset, version, _ in producer.sent if asset == asset_id]
        assert versions == [1, 2, 3, 4], asset_id


async def test_a_registration_wakes_the_relay_without_waiting_for_the_poll(
    pool: asyncpg.Pool,
) -> None:
    producer = RecordingProducer()
    relay = OutboxRelay(pool, producer, poll_s=10)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await asyncio.sleep(0.2)  # the relay has found nothing and sleeps on its 10 s poll
    await onboarding(pool, relay).register(request("A-1"), TENANT)
    await eventually(lambda: asyncio.sleep(0, producer.ids()), bool, timeout_s=2)
    stop.set()
    await asyncio.wait_for(task, timeout=2)  # `stop` ends the poll's sleep too
    assert producer.ids() == ["A-1:v1"]
