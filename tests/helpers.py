"""Small helpers the integration and e2e tests share."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from nexwatt_shared.contracts import TelemetryInterval

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


async def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """Sum of the group's committed offsets over the topic's partitions (0 where none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


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
