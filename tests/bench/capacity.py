"""The capacity model at fleet scale, on the real PostgreSQL and Kafka.

The issue's goals: a full recompute of a 100,000-asset portfolio (available MW, UCAP, per
cohort) under 1 s; an incremental update after one asset's telemetry under 10 ms; a snapshot
published within 2 s of the event that changed it.

Set-up (timed, printed): a database of its own, migrated like the capacity model's; one
resource of `assets` residential assets (4 cohorts, mixed AC/DC coupling) registered and
reporting through the service's own handler, in consumer-sized batches.

Timed:
1. In memory (`book.py`, `domain.py`): the book built from 100,000 store rows; a full recompute
   of the snapshot from the arrays; one asset's new SoC, then the snapshot (median of 50).
2. The handler end to end, with the real producer: a restarted replica (empty books) handling
   one telemetry record: it reads every asset from the store, recomputes and publishes; then
   one asset's telemetry at a time on a warm replica: store, read what changed, recompute,
   publish and record (median and max of 20). What the handler takes is the time from the
   record's arrival to the snapshot's publication, less the consumer's fetch.

`NEXWATT_BENCH_CAPACITY_ASSETS` (default 100000) sets the size.
Run alone: `deploy/local/with-env .venv/bin/python -m tests.bench.capacity`.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from nexwatt_capacity_model import store
from nexwatt_capacity_model.book import Books
from nexwatt_capacity_model.bootstrap import MIGRATIONS
from nexwatt_capacity_model.config import Settings
from nexwatt_capacity_model.domain import snapshot
from nexwatt_capacity_model.handlers import make_handler
from nexwatt_shared.contracts import AssetRegistered, TelemetryInterval
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.postgres import open_pool
from nexwatt_shared.topics import ASSET_REGISTERED, TELEMETRY_INTERVAL
from tests.helpers import deliveries, drop_database, unique

ASSETS = int(os.environ.get("NEXWATT_BENCH_CAPACITY_ASSETS", "100000"))
BATCH = 5000  # records per consumed batch during set-up
NOW = datetime(2026, 7, 1, 20, 0, tzinfo=UTC)  # 4 pm in PJM, a program hour


def progress(message: str) -> None:
    print(f"    {message}", flush=True)


def fleet(resource_id: str, n: int, rng: np.random.Generator) -> list[AssetRegistered]:
    cohorts = ("residential-east", "residential-west", "pilot", "low-income")
    return [
        AssetRegistered(
            asset_id=f"BENCH-CAP-{i:06d}",
            status="enrolled",
            asset_type="solar_storage",
            inverter="SolarEdge SE7600H",
            vendor="solaredge",
            capacity_kw=7.6,
            storage_kwh=float(rng.choice([9.8, 13.5, 10.0])),
            backup_reserve_pct=20.0,
            battery_continuous_kw=5.0,
            battery_peak_kw=7.5,
            round_trip_efficiency=0.9,
            coupling="dc" if i % 3 else "ac",
            pv_dc_kw=float(rng.uniform(5, 10)),
            meter_id=f"M-BENCH-CAP-{i}",
            iso="PJM",
            iso_zone="PJM-PEPCO",
            resource_id=resource_id,
            cohort=cohorts[i % len(cohorts)],
            telemetry_interval_s=300,
            version=1,
            updated_at=NOW - timedelta(days=30),
        )
        for i in range(n)
    ]


def reading(asset_id: str, end: datetime, pv_kw: float, soc_pct: float) -> TelemetryInterval:
    return TelemetryInterval(
        asset_id=asset_id, interval_start=end - timedelta(minutes=5), interval_s=300,
        pv_kw=pv_kw, battery_kw=0.0, soc_pct=soc_pct,
    )  # fmt: skip


def in_memory(rows: store.Columns, resource_id: str) -> dict[str, float]:
    books = Books()
    t0 = time.perf_counter()
    book = books.load(resource_id, store.Changes(rows, {}, "0"))
    built_ms = (time.perf_counter() - t0) * 1000
    full = []
    for _ in range(10):
        book._view = book._ratings_view = None  # as after a change of ratings
        t0 = time.perf_counter()
        snapshot(resource_id, book.view(), NOW, 900.0)
        full.append((time.perf_counter() - t0) * 1000)
    incremental = []
    for k in range(50):
        t0 = time.perf_counter()
        book.put_channels(
            {
                "asset_id": np.array([book.ids[k]]),
                "channel": np.array(["soc_pct"]),
                "end_s": np.array([NOW.timestamp()]),
                "value": np.array([50.0]),
            }
        )
        snapshot(resource_id, book.view(), NOW, 900.0)
        incremental.append((time.perf_counter() - t0) * 1000)
    return {
        "book_from_rows_ms": built_ms,
        "full_recompute_from_arrays_ms": statistics.median(full),
        "incremental_one_asset_median_ms": statistics.median(incremental),
        "incremental_one_asset_max_ms": max(incremental),
    }


async def bench_capacity(assets: int = ASSETS) -> dict[str, object]:
    settings = Settings()
    rng = np.random.default_rng(11)
    database = unique("bench_capacity").replace("-", "_")
    resource_id = unique("NXW-PJM-BENCH-CAP")
    result: dict[str, object] = {"assets": assets}
    producer = EventProducer(
        settings.kafka_bootstrap_servers, "bench-capacity", settings.kafka_security()
    )
    await producer.start()
    pool = await open_pool(settings.postgres_url, database, MIGRATIONS)
    try:
        records = fleet(resource_id, assets, rng)
        readings = [
            reading(r.asset_id, NOW, float(rng.uniform(0, 6)), float(rng.uniform(20, 100)))
            for r in records
        ]
        handle = make_handler(pool, producer, settings.capacity_freshness_s)
        t0 = time.perf_counter()
        for topic, payloads in ((ASSET_REGISTERED, records), (TELEMETRY_INTERVAL, readings)):
            batch = deliveries(topic, payloads)
            for start in range(0, len(batch), BATCH):
                await handle(batch[start : start + BATCH])
        result["setup_s"] = time.perf_counter() - t0
        progress(f"{assets:,} assets registered and reporting in {result['setup_s']:.1f} s")

        t0 = time.perf_counter()
        rows = (await store.resource_rows(pool, resource_id)).assets
        result["store_read_ms"] = (time.perf_counter() - t0) * 1000
        result["in_memory"] = in_memory(rows, resource_id)
        progress(f"in memory: {result['in_memory']}")

        # A restarted replica: its first record reads every asset of the resource.
        restarted = make_handler(pool, producer, settings.capacity_freshness_s)
        first = deliveries(
            TELEMETRY_INTERVAL,
            [reading(records[0].asset_id, NOW + timedelta(minutes=5), 1.0, 90.0)],
        )
        t0 = time.perf_counter()
        await restarted(first)
        result["restarted_replica_first_snapshot_ms"] = (time.perf_counter() - t0) * 1000

        times = []
        for k in range(1, 21):
            one = deliveries(
                TELEMETRY_INTERVAL,
                [reading(records[k].asset_id, NOW + timedelta(minutes=5), 1.0, 30.0 + k)],
            )
            t0 = time.perf_counter()
            await restarted(one)
            times.append((time.perf_counter() - t0) * 1000)
        result["one_record_to_published_median_ms"] = statistics.median(times)
        result["one_record_to_published_max_ms"] = max(times)
        snap = await store.current_snapshot(pool, resource_id)
        assert snap is not None and snap.assets_enrolled == assets
        result["snapshot"] = snap.model_dump(mode="json", exclude={"cohorts"})
    finally:
        await pool.close()
        await producer.stop()
        await drop_database(settings.postgres_url, database)
    return result


def summary(result: dict[str, object]) -> str:
    memory = result["in_memory"]
    assert isinstance(memory, dict)
    full_ms, one_ms = (
        memory["full_recompute_from_arrays_ms"],
        memory["incremental_one_asset_median_ms"],
    )
    return (
        f"{result['assets']:,} assets: full recompute {full_ms:.1f} ms from arrays,"
        f" {result['restarted_replica_first_snapshot_ms']:.0f} ms from the store (restarted"
        f" replica); one asset's telemetry {one_ms:.1f} ms in memory,"
        f" {result['one_record_to_published_median_ms']:.0f} ms"
        f" (max {result['one_record_to_published_max_ms']:.0f}) from record to published"
    )


if __name__ == "__main__":
    outcome = asyncio.run(bench_capacity())
    print(json.dumps(outcome, indent=2))
    print(summary(outcome))
