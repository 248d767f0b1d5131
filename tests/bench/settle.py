"""Settling a 1-hour event over a large resource, on the real PostgreSQL and Kafka.

The issue's goal: a 1-hour event of a 100,000-asset resource (5-minute data, 30 days of history
for the CBL) settled in under 30 s on this machine, and the per-batch "what is due" check not
scanning every asset.

Set-up (not timed, durations printed): a database of its own, migrated like settlement's, filled
with COPY: `assets` asset versions (one resource, 4 cohorts, a subscriber each, 5-10 kW); the
hourly roll-up (`hourly`, channel battery_kw) of 30 days of history (by default) plus the event
day, the battery idle ~N(0.05, 0.02) kW, ~1 % of history asset-days with an hour half measured,
local hours as long as the wall clock makes them (DST days); the 5-minute battery_kw telemetry
of the hour before the event (idle) and of the event (discharging 3-5 kW); then the instruction
and its confirmation through `store.save_inputs` (which counts the window's coverage once:
timed apart). The window is 17:00-18:00 America/New_York of the most recent non-holiday Tuesday
at least two days back; the event day is rolled up to the window's end (the hours after it are
not in yet).

Timed:
1. `store.due` (the work item), then one `Settler.settle(work)` end to end, with the real
   producer publishing the report on `settlement.filed`; each store and domain call it makes is
   timed by wrapping the module's function for the call (the service is not changed), the rest
   is "other". Peak RSS of the settle (the high-water mark is reset before it, where Linux
   allows) and of the whole process.
2. Per consumed batch, with the resource's window open: `store.save_inputs` with 2,000 new
   5-minute readings of the resource's assets, after the window (new hour: rolled up, no window
   touched) and late (5 h before it: the filed window marked for a restatement), and
   `store.due` after each; medians over a few batches.

`NEXWATT_BENCH_SETTLE_ASSETS` (default 100000) sets the size, `NEXWATT_BENCH_SETTLE_HISTORY_DAYS`
(default 30) the history; `NEXWATT_BENCH_SETTLE_PROFILE` (a file path) runs the settle under
cProfile and writes its stats there.
Run alone: `deploy/local/with-env .venv/bin/python -m tests.bench.settle [assets ...]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import functools
import json
import os
import platform
import pstats
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from itertools import repeat
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from nexwatt_settlement import domain, store
from nexwatt_settlement.bootstrap import MIGRATIONS
from nexwatt_settlement.bootstrap import program as settlement_program
from nexwatt_settlement.bootstrap import timing as settlement_timing
from nexwatt_settlement.config import Settings
from nexwatt_settlement.domain import Program
from nexwatt_settlement.handlers import Settler
from nexwatt_settlement.market_time import HOURS, MarketClock, is_holiday
from nexwatt_shared.contracts import (
    AssetStatus,
    Channel,
    DispatchConfirmed,
    DispatchInstruction,
    DispatchStatus,
    Quality,
)
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.observability import configure_logging
from nexwatt_shared.postgres import open_pool
from nexwatt_shared.series import Interval
from nexwatt_shared.wiring import tune_gc
from tests.helpers import drop_database, unique

ASSETS = int(os.environ.get("NEXWATT_BENCH_SETTLE_ASSETS", "100000"))
PROFILE = os.environ.get("NEXWATT_BENCH_SETTLE_PROFILE", "")
# Days of hourly history before the event day; the service reads up to
# `Program.history_days` (45): NEXWATT_BENCH_SETTLE_HISTORY_DAYS=45 fills all it reads.
HISTORY_DAYS = int(os.environ.get("NEXWATT_BENCH_SETTLE_HISTORY_DAYS", "30"))
COHORTS = 4
BATCH_READINGS = 2000
BATCHES = 5
GOAL_S = 30.0
SLOT = timedelta(minutes=5)
CHANNEL = Channel.BATTERY_KW.value
RESULTS = Path(__file__).with_name("results")
ROOT = Path(__file__).resolve().parents[2]


def progress(message: str) -> None:
    print(f"    {message}", flush=True)


def event_window(now: datetime, clock: MarketClock) -> tuple[datetime, datetime]:
    """17:00-18:00 market time of the most recent Tuesday, not a holiday, 2+ days back."""
    day = now.astimezone(clock.zone).date() - timedelta(days=2)
    while day.weekday() != 1 or is_holiday(day):
        day -= timedelta(days=1)
    start = datetime.combine(day, clock_time(17), clock.zone).astimezone(UTC)
    return start, start + timedelta(hours=1)


def hour_seconds(day: date, clock: MarketClock) -> np.ndarray:
    """Seconds of each local hour 0-23 of `day`: 3600, 0 for the spring hour that never
    happens, 7200 for the autumn hour that happens twice (as `market_time` rolls them up)."""
    seconds = np.zeros(HOURS)
    t = datetime.combine(day, clock_time(0), clock.zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), clock_time(0), clock.zone).astimezone(UTC)
    while t < end:
        seconds[clock.local_hour(t)] += 3600.0
        t += timedelta(hours=1)
    return seconds


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set of this process [MB], from /proc (Linux)."""
    fields = {}
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    kb = {k: float(fields[k].split()[0]) for k in ("VmRSS", "VmHWM") if k in fields}
    return kb.get("VmRSS", float("nan")) / 1024, kb.get("VmHWM", float("nan")) / 1024


def reset_peak_rss() -> bool:
    """Reset the process's RSS high-water mark (Linux >= 4.0), so a peak read afterwards is
    the settle's own, not the set-up's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


async def set_up(
    pool: asyncpg.Pool,
    program: Program,
    assets: int,
    resource_id: str,
    window: tuple[datetime, datetime],
    rng: np.random.Generator,
) -> tuple[list[str], dict[str, float]]:
    """The resource's asset versions, hourly history and telemetry, by COPY; the instruction
    and confirmation through `store.save_inputs`. Returns the asset ids and step durations."""
    clock = program.clock
    window_start, window_end = window
    durations: dict[str, float] = {}
    ids = [f"BS-{i:06d}" for i in range(assets)]

    t0 = time.perf_counter()
    capacity = rng.uniform(5.0, 10.0, assets)
    updated_at = datetime(2026, 1, 1, tzinfo=UTC)
    await pool.copy_records_to_table(
        "asset_versions",
        records=[
            (a, 1, resource_id, f"cohort-{i % COHORTS}", f"SUB-{i:06d}", float(capacity[i]),
             AssetStatus.ENROLLED.value, updated_at)
            for i, a in enumerate(ids)
        ],
        columns=["asset_id", "version", "resource_id", "cohort", "subscriber_id", "capacity_kw",
                 "status", "updated_at"],
    )  # fmt: skip
    durations["asset_versions_s"] = time.perf_counter() - t0
    progress(f"asset_versions: {assets:,} rows in {durations['asset_versions_s']:.1f} s")

    # 5-minute telemetry: the hour before the event idle, the event discharging 3-5 kW.
    t0 = time.perf_counter()
    starts = [window_start - timedelta(hours=1) + k * SLOT for k in range(24)]
    idle = rng.normal(0.05, 0.02, (assets, 12))
    discharge = rng.uniform(3.0, 5.0, (assets, 1)) + rng.normal(0.0, 0.1, (assets, 12))
    values = np.hstack([idle, discharge])  # (assets, 24) [kW]
    actual = Quality.ACTUAL.value
    chunk = 10_000
    for first in range(0, assets, chunk):
        await pool.copy_records_to_table(
            "telemetry",
            records=[
                (ids[i], CHANNEL, starts[k], 300, float(values[i, k]), actual)
                for i in range(first, min(first + chunk, assets))
                for k in range(24)
            ],
            columns=["asset_id", "channel", "interval_start", "interval_s", "value", "quality"],
        )
    durations["telemetry_s"] = time.perf_counter() - t0
    progress(f"telemetry: {assets * 24:,} rows in {durations['telemetry_s']:.1f} s")

    # Hourly roll-up: HISTORY_DAYS of history and the event day up to the window's end.
    t0 = time.perf_counter()
    event_day = clock.local_date(window_start)
    before_hour = clock.local_hour(window_start - timedelta(hours=1))
    event_hour = clock.local_hour(window_start)
    days = [event_day - timedelta(days=d) for d in range(HISTORY_DAYS, -1, -1)]
    incomplete = 0
    for day in days:
        seconds = np.broadcast_to(hour_seconds(day, clock), (assets, HOURS)).copy()
        kw = rng.normal(0.05, 0.02, (assets, HOURS))
        if day == event_day:
            kw[:, before_hour] = values[:, :12].mean(axis=1)
            kw[:, event_hour] = values[:, 12:].mean(axis=1)
            seconds[:, event_hour + 1 :] = 0.0
        else:  # ~1 % of asset-days with one hour half measured
            short = np.flatnonzero(rng.random(assets) < 0.01)
            hours = rng.integers(0, HOURS, short.size)
            seconds[short, hours] = np.minimum(seconds[short, hours], 1800.0)
            incomplete += short.size
        kwh = (kw * seconds / 3600.0).astype(store.FLOATS)
        seconds = seconds.astype(store.FLOATS)
        await pool.copy_records_to_table(
            "hourly",
            records=zip(
                ids,
                repeat(CHANNEL),
                repeat(day),
                [row.tobytes() for row in kwh],
                [row.tobytes() for row in seconds],
                strict=False,
            ),
            columns=["asset_id", "channel", "day", "kwh", "covered_s"],
        )
    durations["hourly_s"] = time.perf_counter() - t0
    progress(
        f"hourly: {assets * len(days):,} rows ({len(days)} local days, {incomplete:,}"
        f" asset-days incomplete) in {durations['hourly_s']:.1f} s"
    )

    t0 = time.perf_counter()
    await pool.execute("VACUUM ANALYZE")  # what autovacuum does after a load: plans, vis. map
    durations["vacuum_analyze_s"] = time.perf_counter() - t0
    progress(f"VACUUM ANALYZE in {durations['vacuum_analyze_s']:.1f} s")

    # The instruction and its confirmation, as the consumer stores them: the window's coverage
    # is counted once, over the fleet, when both are in.
    mw = round(assets * 4.0 / 1000.0, 3)
    instruction = DispatchInstruction(
        instruction_id=unique("BENCH-SETTLE"), resource_id=resource_id, mw=mw,
        window_start=window_start, window_end=window_end,
        issued_at=window_start - timedelta(minutes=30),
    )  # fmt: skip
    confirmation = DispatchConfirmed(
        window_start=window_start, window_end=window_end,
        instruction_id=instruction.instruction_id, resource_id=resource_id,
        status=DispatchStatus.CONFIRMED, mw_requested=mw, mw_confirmed=mw,
        assets_commanded=assets, assets_dispatched=assets,
        instruction_received_at=instruction.issued_at,
        confirmed_at=instruction.issued_at + timedelta(seconds=1), processing_ms=800.0,
    )  # fmt: skip
    t0 = time.perf_counter()
    await store.save_inputs(pool, program, [], [], [instruction], [confirmation])
    durations["confirmation_coverage_count_s"] = time.perf_counter() - t0
    row = await pool.fetchrow(
        "SELECT state, assets_expected, covered_s FROM instructions WHERE instruction_id = $1",
        instruction.instruction_id,
    )
    assert row["state"] == "waiting", row
    assert row["assets_expected"] == assets, row
    assert abs(row["covered_s"] - assets * 3600.0) < 1e-3, row
    progress(
        f"instruction + confirmation (store.save_inputs, the window's coverage counted once"
        f" over the fleet) in {durations['confirmation_coverage_count_s']:.2f} s:"
        f" {row['assets_expected']:,} assets expected, covered fully"
    )
    return ids, durations


def timed(fn: Callable[..., Any], name: str, phases: dict[str, float]) -> Callable[..., Any]:
    """`fn`, adding its wall time to `phases[name]` [s]."""
    if asyncio.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0

    return wrapper


@contextlib.contextmanager
def phase_timers(phases: dict[str, float], settler: Settler) -> Iterator[None]:
    """Time each store and domain call `Settler.settle` makes, for the block."""
    targets: list[tuple[object, str, str]] = [
        (store, "fleet_as_of", "store.fleet_as_of"),
        (store, "readings", "store.readings"),
        (store, "event_days", "store.event_days"),
        (store, "history", "store.history"),
        (domain, "settle", "domain.settle"),
        (store, "recount", "store.recount"),
        (store, "latest_report", "store.latest_report"),
        (domain, "baseline_accuracy", "domain.baseline_accuracy"),
        (domain, "build_report", "domain.build_report"),
        (store, "clear_dirty", "store.clear_dirty"),
        (settler, "file", "Settler.file (record + publish)"),
    ]
    originals = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in targets]
    for owner, attr, name in targets:
        setattr(owner, attr, timed(getattr(owner, attr), name, phases))
    try:
        yield
    finally:
        for owner, attr, fn in originals:
            if owner is settler:
                delattr(settler, attr)  # back to the class's method
            else:
                setattr(owner, attr, fn)


async def batch_costs(
    pool: asyncpg.Pool,
    program: Program,
    settings: Settings,
    ids: list[str],
    window: tuple[datetime, datetime],
    rng: np.random.Generator,
) -> dict[str, float]:
    """`store.save_inputs` of 2,000 new readings of the resource's assets, and `store.due`
    after it, with the resource's window open: medians over a few batches [ms]."""
    window_start, window_end = window

    def batch(start: datetime) -> list[Interval]:
        chosen = rng.choice(len(ids), BATCH_READINGS, replace=False)
        return [
            Interval(ids[i], CHANNEL, start, 300, float(v), Quality.ACTUAL.value)
            for i, v in zip(chosen, rng.normal(0.05, 0.02, chosen.size), strict=True)
        ]

    async def due() -> list[store.Work]:
        return await store.due(
            pool, program.coverage_threshold, datetime.now(UTC), settlement_timing(settings)
        )

    out: dict[str, float] = {"readings_per_batch": BATCH_READINGS, "batches": BATCHES}
    kinds = {
        "after_window": window_end,  # a new hour of the event day: rolled up, touches nothing
        "late": window_start - timedelta(hours=5),  # the filed window's look-before: dirty
    }
    for kind, first in kinds.items():
        save_ms, due_ms = [], []
        for k in range(BATCHES):
            intervals = batch(first + k * SLOT)
            t0 = time.perf_counter()
            await store.save_inputs(pool, program, [], intervals, [], [])
            save_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            await due()
            due_ms.append((time.perf_counter() - t0) * 1000)
        out[f"save_inputs_{kind}_ms"] = statistics.median(save_ms)
        out[f"save_inputs_{kind}_max_ms"] = max(save_ms)
        out[f"due_after_{kind}_ms"] = statistics.median(due_ms)
    dirty = await pool.fetchval("SELECT bool_or(dirty) FROM instructions")
    out["late_data_marked_window_dirty"] = bool(dirty)
    return out


async def bench_settle(assets: int = ASSETS) -> dict[str, object]:
    """Set up a resource of `assets` assets, settle its window, measure the per-batch cost."""
    settings = Settings()
    program = settlement_program(settings)
    rng = np.random.default_rng(9)
    database = unique("bench_settle").replace("-", "_")
    resource_id = "NXW-PJM-BENCH-SETTLE"
    window = event_window(datetime.now(UTC), program.clock)
    result: dict[str, object] = {
        "assets": assets,
        "history_days": HISTORY_DAYS,
        "service_history_days_read": program.history_days,
        "window_start": window[0].isoformat(),
        "baseline_method": str(program.method),
        "participation_model": str(program.model),
    }
    producer = EventProducer(
        settings.kafka_bootstrap_servers, "bench-settlement", settings.kafka_security()
    )
    await producer.start()
    pool = await open_pool(settings.postgres_url, database, MIGRATIONS)
    try:
        t0 = time.perf_counter()
        progress(f"set-up: database {database}, window {window[0]:%Y-%m-%d %H:%M} UTC")
        ids, durations = await set_up(pool, program, assets, resource_id, window, rng)
        result["setup_s"] = time.perf_counter() - t0
        result["setup"] = durations
        progress(f"set-up done in {result['setup_s']:.1f} s")

        t0 = time.perf_counter()
        work = await store.due(
            pool, program.coverage_threshold, datetime.now(UTC), settlement_timing(settings)
        )
        result["due_ms"] = (time.perf_counter() - t0) * 1000
        [item] = work
        settler = Settler(pool, producer, program, settlement_timing(settings))
        phases: dict[str, float] = {}
        profiler = cProfile.Profile() if PROFILE else None
        rss_before, _ = rss_mb()
        hwm_reset = reset_peak_rss()
        progress(f"settling (RSS before {rss_before:.0f} MB) ...")
        with phase_timers(phases, settler):
            t0 = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            await settler.settle(item)
            if profiler is not None:
                profiler.disable()
            total = time.perf_counter() - t0
        _, settle_peak = rss_mb()
        result["settle_s"] = total
        result["phases_s"] = {**phases, "other": total - sum(phases.values())}
        result["rss_before_settle_mb"] = rss_before
        result["peak_rss_settle_mb"] = settle_peak if hwm_reset else None
        result["peak_rss_process_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["within_goal"] = total < GOAL_S
        if profiler is not None:
            profiler.dump_stats(PROFILE)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)

        report = await store.latest_report(pool, item.due.instruction_id)
        assert report is not None, "the settle filed no report"
        published = await pool.fetchval(
            "SELECT published_at IS NOT NULL FROM outbox WHERE event_id = $1",
            f"settlement:{report.instruction_id}:v{report.version}",
        )
        result["report"] = {
            "version": report.version,
            "data_quality": report.data_quality.value,
            "delivered_mw": report.delivered_mw,
            "mw_requested": report.mw_requested,
            "coverage_pct": report.coverage_pct,
            "assets_enrolled": report.assets_enrolled,
            "assets_metered": report.assets_metered,
            "baseline_methods": report.baseline_methods,
            "payouts": await pool.fetchval("SELECT count(*) FROM payouts"),
            "published": bool(published),
        }
        progress(f"settled in {total:.2f} s: {result['phases_s']}")
        progress(f"report: {result['report']}")

        progress(f"per batch ({BATCH_READINGS:,} readings, {BATCHES} batches) ...")
        result["per_batch"] = await batch_costs(pool, program, settings, ids, window, rng)
    finally:
        await pool.close()
        await producer.stop()
        await drop_database(settings.postgres_url, database)
    return result


def summary(row: dict[str, Any]) -> str:
    batch, report = row["per_batch"], row["report"]
    return (
        f"settle {row['assets']:,} assets: {row['settle_s']:.1f} s"
        f" ({'within' if row['within_goal'] else 'OVER'} the {GOAL_S:.0f} s goal),"
        f" peak RSS {row['peak_rss_settle_mb'] or row['peak_rss_process_mb']:.0f} MB,"
        f" {report['delivered_mw']} MW delivered, coverage {report['coverage_pct']} %;"
        f" per batch of {batch['readings_per_batch']:,}: save_inputs"
        f" {batch['save_inputs_after_window_ms']:.0f} ms (late data"
        f" {batch['save_inputs_late_ms']:.0f} ms), due {batch['due_after_late_ms']:.1f} ms"
    )


async def main(sizes: list[int]) -> None:
    configure_logging("bench", "WARNING")
    tune_gc()  # as the service does at start
    results: dict[str, object] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "settle": [],
    }
    for assets in sizes:
        print(f"settlement of a 1-hour event, {assets:,} assets ...", flush=True)
        row = await bench_settle(assets)
        results["settle"].append(row)  # type: ignore[union-attr]
        print(f"    {summary(row)}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"settle-{results['when']}.json".replace(":", "")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [ASSETS]))
