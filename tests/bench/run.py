"""`make bench`: measured numbers, on the real local stack, written to tests/bench/results/.

1. allocation: the pure dispatch math over 100k assets (median of repeats) [ms];
2. ingest: standard readings/s through the consumer runner and telemetry-ingest's historian
   (series check, PostgreSQL COPY) on a topic of its own, against a bare aiokafka
   consumer of the same backlog (no decoding, no writes): the ratio is the figure to watch;
   normalize: Enphase payloads (288 readings each) through the normalizer and the historian
   running together in one process [readings/s];
   backfill: a year of 15-minute meter data per meter (Download My Data CSV) through
   `nexwatt-ingest import`'s own code, parsing alone and parsing + publishing [readings/s];
3. dead letters: refused records/s through the runner (malformed JSON on a topic of its own,
   each turned into a letter on `dead.letter`): how fast a flood of bad records drains;
4. dispatch at scale (`tests.bench.dispatch`): resources of 10,000 and 100,000 assets
   (`NEXWATT_BENCH_DISPATCH_ASSETS`), the dispatch service as a process and a bench gateway
   acknowledging: instruction -> last command on the bus and -> `dispatch.confirmed` (p50 /
   p99), two resources at once against one alone, peak memory. The issue's goals: < 1 s,
   < 2 s, <= 1.2 x;
5. settlement: one 1-hour event of a 100,000-asset resource (`NEXWATT_BENCH_SETTLE_ASSETS`)
   settled end to end (`tests.bench.settle`: 30 days of hourly history, 5-minute data, the
   report published), per phase [s] and peak RSS; and the per-batch cost with its window open
   (`store.save_inputs` of 2,000 readings, `store.due`) [ms]. The issue's goal: under 30 s;
6. capacity model: a 100,000-asset resource (`NEXWATT_BENCH_CAPACITY_ASSETS`,
   `tests.bench.capacity`): full recompute from memory and from the store, one asset's
   telemetry to a published snapshot [ms]. The issue's goals: < 1 s, < 10 ms, within 2 s.

Times on a shared 2-core machine are noisy: compare ratios within one run.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition

from nexwatt_dispatch.domain import allocate, dispatchable_kw
from nexwatt_shared.codec import encode, envelope, raw_envelope
from nexwatt_shared.contracts import TelemetryInterval, VendorPayload
from nexwatt_shared.kafka.admin import create_topics
from nexwatt_shared.kafka.consumer import BatchHandler, ConsumerRunner, Delivery
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.observability import configure_logging
from nexwatt_shared.postgres import open_pool
from nexwatt_shared.power_model import AssetRatings
from nexwatt_shared.topics import (
    Topic,
)
from nexwatt_shared.wiring import tune_gc
from nexwatt_telemetry_ingest.bootstrap import MIGRATIONS as INGEST_MIGRATIONS
from nexwatt_telemetry_ingest.handlers import make_historian, make_normalizer
from tests.bench.backfill import bench_backfill
from tests.bench.capacity import ASSETS as CAPACITY_ASSETS
from tests.bench.capacity import bench_capacity
from tests.bench.capacity import summary as capacity_summary
from tests.bench.dispatch import REPEATS as DISPATCH_REPEATS
from tests.bench.dispatch import SIZES as DISPATCH_SIZES
from tests.bench.dispatch import bench_dispatch_scale
from tests.bench.dispatch import summary as dispatch_summary
from tests.bench.settle import ASSETS as SETTLE_ASSETS
from tests.bench.settle import bench_settle
from tests.bench.settle import summary as settle_summary
from tests.helpers import committed_total, eventually, unique

ROOT = Path(__file__).resolve().parents[2]
# 100 meters = 3.5 M readings, a few minutes; the rate is per reading, so 1,000 meters (35 M)
# takes ten times as long at the same rate: NEXWATT_BENCH_BACKFILL_METERS=1000 to measure it.
BACKFILL_METERS = int(os.environ.get("NEXWATT_BENCH_BACKFILL_METERS", "100"))
RESULTS = Path(__file__).with_name("results")
BOOTSTRAP = os.environ.get("NEXWATT_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
POSTGRES = os.environ.get("NEXWATT_POSTGRES_URL", "postgresql://nexwatt:nexwatt@127.0.0.1:15432")


def bench_allocation(n: int = 100_000, repeats: int = 21) -> dict[str, float]:
    rng = np.random.default_rng(1)
    capacity = rng.uniform(5, 2000, n)
    ratings = AssetRatings(
        battery_continuous_kw=capacity, battery_peak_kw=capacity, usable_kwh=capacity * 1.3,
        round_trip_efficiency=0.9, coupling="dc", pv_dc_kw=capacity, inverter_ac_kw=capacity,
        backup_reserve_pct=20.0,
    )  # fmt: skip
    args = (ratings, capacity * 0.4, rng.uniform(30, 95, n))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ages = rng.uniform(0, 1200, n)
        limits = dispatchable_kw(*args, 1.0, ages, ages, 900.0)
        allocate(limits.sum() * 0.8, limits, 0.1)
        times.append(time.perf_counter() - t0)
    return {"assets": n, "median_ms": statistics.median(times) * 1000}


async def new_topic(prefix: str) -> Topic:
    """A 3-partition telemetry topic of the bench's own."""
    topic = Topic(unique(prefix), TelemetryInterval, "bench", "asset_id", 3)
    await create_topics(BOOTSTRAP, [topic])
    return topic


async def drain_s(topic: Topic, handler: BatchHandler, producer: EventProducer, n: int) -> float:
    """Wall time [s] for a fresh group on the real runner to handle and commit `n` records."""
    group = unique("bench")
    runner = ConsumerRunner(
        bootstrap_servers=BOOTSTRAP, group_id=group, topics=[topic], handler=handler,
        dead_letters=producer, max_records=2000,
    )  # fmt: skip
    stop = asyncio.Event()
    t0 = time.perf_counter()
    task = asyncio.create_task(runner.run(stop))
    await eventually(
        lambda: committed_total(BOOTSTRAP, group, topic.name), lambda k: k >= n, timeout_s=600
    )
    elapsed = time.perf_counter() - t0
    stop.set()
    await task
    return elapsed


def interval_records(topic: Topic, n: int, assets: int = 1000) -> list[tuple[str, bytes, tuple]]:
    """`n` encoded readings (all five channels, 5-minute) of `assets` assets for `topic`."""
    t0 = datetime(2026, 7, 1, tzinfo=UTC)
    records = []
    for i in range(n):
        asset = f"B-{i % assets}"
        r = TelemetryInterval(
            asset_id=asset, interval_start=t0 + timedelta(minutes=5 * (i // assets)),
            interval_s=300, pv_kw=3.2, load_kw=1.1, battery_kw=-0.5, net_kw=1.6, soc_pct=55.0,
        )  # fmt: skip
        event = envelope(topic, r, source="bench", event_id=f"bench-{i}")
        records.append((asset, encode(event), ()))
    return records


async def raw_consume_s(topic: Topic, n: int) -> float:
    """Wall time [s] for a bare aiokafka consumer to fetch `n` records of `topic` from the
    start: no decoding, no writes, no commits. The reference ingest is compared with."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    await consumer.start()
    partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    seen, t0 = 0, time.perf_counter()
    while seen < n:
        batch = await consumer.getmany(timeout_ms=500, max_records=2000)
        seen += sum(len(records) for records in batch.values())
    elapsed = time.perf_counter() - t0
    await consumer.stop()
    return elapsed


async def bench_ingest(records: int = 200_000) -> dict[str, float]:
    """The historian path (decode, series check, PostgreSQL, Redis) against a bare consumer of
    the same backlog."""
    topic = await new_topic("bench.telemetry")
    producer = EventProducer(BOOTSTRAP, "bench")
    await producer.start()
    data = interval_records(topic, records)
    for start in range(0, records, 10_000):
        await producer.send_raw_many(topic.name, data[start : start + 10_000])
    raw_s = await raw_consume_s(topic, records)
    pool = await open_pool(POSTGRES, unique("bench_ingest").replace("-", "_"), INGEST_MIGRATIONS)
    elapsed = await drain_s(topic, make_historian(pool), producer, records)
    stored = await pool.fetchval("SELECT count(*) FROM readings")
    assert stored == records, stored
    await producer.stop()
    await pool.close()
    return {
        "readings": records,
        "raw_consume_per_s": records / raw_s,
        "ingest_per_s": records / elapsed,
        "ingest_over_raw": raw_s / elapsed,
    }


def enphase_day(end_at_first: int, intervals: int = 288) -> dict:
    """An Enphase `telemetry/production_micro` day: 288 five-minute intervals of 24 micros."""
    return {
        "system_id": 1, "granularity": "day", "total_devices": 24, "items": "intervals",
        "intervals": [
            {"end_at": end_at_first + 300 * k, "devices_reporting": 24, "powr": 3000, "enwh": 250}
            for k in range(intervals)
        ],
    }  # fmt: skip


async def bench_normalize(sites: int = 500) -> dict[str, float]:
    """Vendor payloads to the historian in one process: the normalizer (telemetry.raw ->
    telemetry.interval) and the historian loop running together, each on its own topic."""
    raw = Topic(unique("bench.raw"), VendorPayload, "bench", partitions=3, formats=True)
    out = Topic(unique("bench.interval"), TelemetryInterval, "bench", "asset_id", 3, version=2)
    await create_topics(BOOTSTRAP, [raw, out])
    producer = EventProducer(BOOTSTRAP, "bench")
    await producer.start()
    first_end = int(datetime(2026, 7, 1, 0, 5, tzinfo=UTC).timestamp())
    for start in range(0, sites, 50):
        await producer.send_raw_many(raw.name, [
            (f"E-{k}", encode(raw_envelope("enphase.production-micro.v1", f"E-{k}",
             enphase_day(first_end), site_timezone="UTC", source="bench", topic=raw)), ())
            for k in range(start, min(start + 50, sites))
        ])  # fmt: skip
    readings = sites * 288
    pool = await open_pool(POSTGRES, unique("bench_norm").replace("-", "_"), INGEST_MIGRATIONS)
    normalizer = ConsumerRunner(
        bootstrap_servers=BOOTSTRAP, group_id=unique("bench"), topics=[raw],
        handler=make_normalizer(producer, timedelta(minutes=5), out), dead_letters=producer,
        max_records=20,
    )  # fmt: skip
    stop = asyncio.Event()
    t0 = time.perf_counter()
    task = asyncio.create_task(normalizer.run(stop))
    elapsed = await drain_s(out, make_historian(pool), producer, readings)
    total = time.perf_counter() - t0
    stop.set()
    await task
    assert await pool.fetchval("SELECT count(*) FROM readings") == readings
    await producer.stop()
    await pool.close()
    return {
        "payloads": sites,
        "readings": readings,
        "readings_per_s": readings / total,
        "historian_drain_s": elapsed,
    }


async def bench_dead_letters(records: int = 20_000) -> dict[str, float]:
    topic = await new_topic("bench.garbage")
    producer = EventProducer(BOOTSTRAP, "bench")
    await producer.start()
    garbage = [(f"G-{i % 500}", b'{"not": json', ()) for i in range(records)]
    for start in range(0, records, 5000):
        await producer.send_raw_many(topic.name, garbage[start : start + 5000])

    async def handle(batch: list[Delivery]) -> None:
        raise AssertionError("every record is garbage")

    elapsed = await drain_s(topic, handle, producer, records)
    await producer.stop()
    return {"records": records, "seconds": elapsed, "letters_per_s": records / elapsed}


async def main() -> None:
    configure_logging("bench", "ERROR")  # a flood of dead-letter warnings is the point
    results: dict[str, object] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }
    print("allocation (pure numpy) ...", flush=True)
    results["allocation"] = bench_allocation()
    print(f"    {results['allocation']}", flush=True)
    tune_gc()  # as every service does at start: `nexwatt_shared.wiring.tune_gc`
    print("ingest throughput ...", flush=True)
    results["ingest"] = await bench_ingest()
    print(f"    {results['ingest']}", flush=True)
    print("normalize vendor payloads + historian ...", flush=True)
    results["normalize"] = await bench_normalize()
    print(f"    {results['normalize']}", flush=True)
    print(f"meter-data backfill, {BACKFILL_METERS} meters x 365 days of CSV ...", flush=True)
    results["backfill"] = await bench_backfill(BACKFILL_METERS, 365)
    print(f"    {results['backfill']}", flush=True)
    print("dead letters ...", flush=True)
    results["dead_letters"] = await bench_dead_letters()
    print(f"    {results['dead_letters']}", flush=True)
    results["dispatch"] = []
    for assets in DISPATCH_SIZES:
        print(f"dispatch at scale, {assets:,} assets per resource ...", flush=True)
        row = await bench_dispatch_scale(assets, DISPATCH_REPEATS)
        results["dispatch"].append(row)  # type: ignore[union-attr]
        print(f"    {dispatch_summary(row)}", flush=True)
    print(f"capacity model, {CAPACITY_ASSETS:,} assets ...", flush=True)
    results["capacity"] = await bench_capacity(CAPACITY_ASSETS)
    print(f"    {capacity_summary(results['capacity'])}", flush=True)
    print(f"settlement of a 1-hour event, {SETTLE_ASSETS:,} assets ...", flush=True)
    settled = await bench_settle(SETTLE_ASSETS)
    results["settle"] = settled
    print(f"    {settle_summary(settled)}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{results['when']}.json".replace(":", "")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
