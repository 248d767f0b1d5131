"""Dispatch at fleet scale, on the real local stack: the dispatch service as a process, fed
through Kafka, answered by a bench gateway (`tests.bench.gateway`).

The issue's goals, for a resource of 10,000 and of 100,000 assets: instruction -> last
`asset.command` on the bus p99 < 1 s; instruction -> `dispatch.confirmed` p99 < 2 s (acks
included); two instructions for different resources at once: neither slower than 1.2 x alone;
and the peak memory of the dispatch process at 100,000 assets.

Set-up (timed, printed): two resources of `assets` residential assets each, ids new on every
run, published directly as `AssetRegistered` records on `asset.registered` (through onboarding's
REST API, 100,000 registrations take minutes), commanded through five vendor-cloud connectors
(gateway ids `<run>-<vendor>-cloud`, shared by both resources: the commands per gateway are the
point) and one fresh `TelemetryInterval` per asset on `telemetry.interval` (5 minutes ending
now). Then the bench gateway, listening before anything is commanded, and dispatch under a
service name of its own (its own consumer groups and database; the instruction group starts at
the topic's end, so instructions of earlier runs are not answered again). Dispatch is ready
when its /readyz is: its state consumer has read `asset.registered` from the beginning (every
asset ever registered on the stack, not only this run's) and the last hour of telemetry and
acks, so its start-up time and memory depend on the stack's history: each run leaves its
2 x `assets` registrations on the compacted topic for good (their ids are new), and for an hour
its acks (100,000 per instruction at 100,000 assets).

Timed, per instruction (40 % of the resource's inverter kW over now..now+1 h, issued now): wall
time from publishing it to (a) its last `asset.command` message seen on the bus and (b) its
`dispatch.confirmed`, both seen by a watcher reading those topics from their end (it counts a
command's setpoints without decoding it, so that the watcher does not take CPU from what it
measures); also when the gateway's last ack was seen. `repeats` instructions one after another
for one resource, then `CONCURRENT_ROUNDS` rounds of one instruction for each resource at once:
each one's time to its answer over the median alone. Of the dispatch process: its RSS after
each instruction, its peak RSS (VmHWM) and its CPU time per instruction. Off the clock: every
command and ack of the first instruction decodes under its contract (`codec.decode`), and the
setpoints seen add up to the assets commanded.

`NEXWATT_BENCH_DISPATCH_ASSETS` (default "10000,100000") sets the sizes,
`NEXWATT_BENCH_DISPATCH_REPEATS` (default 10) the instructions per size.
Run alone: `deploy/local/with-env .venv/bin/python -m tests.bench.dispatch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition

from nexwatt_admin.launcher import Launcher
from nexwatt_shared.codec import decode
from nexwatt_shared.contracts import (
    AssetRegistered,
    DispatchConfirmed,
    DispatchInstruction,
    TelemetryInterval,
)
from nexwatt_shared.kafka.admin import partition_counts
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.observability import configure_logging
from nexwatt_shared.topics import (
    ASSET_COMMAND,
    ASSET_COMMAND_ACK,
    ASSET_REGISTERED,
    DISPATCH_CONFIRMED,
    DISPATCH_INSTRUCTION,
    TELEMETRY_INTERVAL,
    Topic,
)
from tests.bench.gateway import group_of
from tests.helpers import (
    commit_offsets,
    committed_offsets,
    drop_database,
    end_offsets,
    eventually,
    unique,
)

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = os.environ.get("NEXWATT_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
POSTGRES = os.environ.get("NEXWATT_POSTGRES_URL", "postgresql://nexwatt:nexwatt@127.0.0.1:15432")
SIZES = [int(n) for n in os.environ.get("NEXWATT_BENCH_DISPATCH_ASSETS", "10000,100000").split(",")]
REPEATS = int(os.environ.get("NEXWATT_BENCH_DISPATCH_REPEATS", "10"))
CONCURRENT_ROUNDS = 3
DISPATCH_PORT = 18384  # not the demo's, e2e's or run.py's ports
REQUEST_SHARE = 0.4  # of the resource's inverter kW
PUBLISH_CHUNK = 5000  # records per publish_many
SETTLE_S = 3.0  # after /readyz: it allows a lag of `ready_max_lag` records; let them in
PAUSE_S = 1.0  # between instructions: the previous one's acks are logged by then
ANSWER_TIMEOUT_S = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Product:
    """A residential solar + storage product and the vendor cloud that commands it."""

    vendor: str
    inverter: str
    coupling: str
    capacity_kw: float  # the inverter the battery discharges through [kW AC]
    storage_kwh: float
    battery_kw: float  # continuous [kW]


PRODUCTS = (
    Product("solaredge", "SolarEdge SE7600H + LG RESU 10H", "dc", 7.6, 9.8, 5.0),
    Product("tesla", "Tesla Powerwall 2", "ac", 5.0, 13.5, 5.0),
    Product("enphase", "Enphase IQ Battery 10T", "ac", 3.84, 10.08, 3.84),
    Product("generac", "Generac PWRcell M4", "dc", 7.6, 12.0, 6.0),
    Product("sma", "SMA Sunny Boy Storage 6.0 + BYD HVS 10.2", "ac", 6.0, 10.2, 6.0),
)
COHORTS = ("residential-east", "residential-west", "pilot", "low-income")


def gateway_of(run: str, product: Product) -> str:
    return f"{run}-{product.vendor}-cloud"


def fleet(run: str, resource_id: str, tag: str, n: int, now: datetime) -> list[AssetRegistered]:
    """`n` enrolled assets of the resource, the products in turn; one validated record per
    product, copied with each asset's own ids."""
    templates = [
        AssetRegistered(
            asset_id=f"{run}-{tag}-template",
            status="enrolled",
            asset_type="solar_storage",
            inverter=p.inverter,
            vendor=p.vendor,
            capacity_kw=p.capacity_kw,
            storage_kwh=p.storage_kwh,
            backup_reserve_pct=20.0,
            battery_continuous_kw=p.battery_kw,
            battery_peak_kw=round(1.4 * p.battery_kw, 2),
            round_trip_efficiency=0.9,
            coupling=p.coupling,
            pv_dc_kw=7.2,
            meter_id=f"M-{run}-{tag}-template",
            iso="PJM",
            iso_zone="PJM-PEPCO",
            resource_id=resource_id,
            gateway_id=gateway_of(run, p),
            cohort=COHORTS[0],
            telemetry_interval_s=300,
            version=1,
            updated_at=now,
        )
        for p in PRODUCTS
    ]
    records = []
    for i in range(n):
        asset_id = f"{run}-{tag}-{i:06d}"
        records.append(
            templates[i % len(templates)].model_copy(
                update={
                    "asset_id": asset_id,
                    "meter_id": f"M-{asset_id}",
                    "subscriber_id": f"S-{asset_id}",
                    "cohort": COHORTS[i % len(COHORTS)],
                }
            )
        )
    return records


def readings(assets: list[AssetRegistered], end: datetime, seed: int) -> list[TelemetryInterval]:
    """One 5-minute reading per asset ending at `end`: a sunny afternoon, batteries idle and
    charged between 55 and 95 %."""
    rng = np.random.default_rng(seed)
    n = len(assets)
    pv_kw, load_kw = rng.uniform(0.5, 4.0, n), rng.uniform(0.4, 2.0, n)
    battery_kw, soc_pct = rng.uniform(-0.2, 0.0, n), rng.uniform(55.0, 95.0, n)
    start = end - timedelta(minutes=5)
    values = zip(
        pv_kw.tolist(), load_kw.tolist(), battery_kw.tolist(), soc_pct.tolist(), strict=True
    )
    return [
        TelemetryInterval(
            asset_id=a.asset_id,
            interval_start=start,
            interval_s=300,
            pv_kw=round(pv, 3),
            load_kw=round(load, 3),
            battery_kw=round(bat, 3),
            net_kw=round(pv + bat - load, 3),
            soc_pct=round(soc, 1),
        )
        for a, (pv, load, bat, soc) in zip(assets, values, strict=True)
    ]


async def publish(producer: EventProducer, topic: Topic, payloads: list) -> None:
    for start in range(0, len(payloads), PUBLISH_CHUNK):
        await producer.publish_many(topic, payloads[start : start + PUBLISH_CHUNK])


# --- watching the bus ------------------------------------------------------------------------


def _field(value: bytes, name: bytes) -> str | None:
    """A string member's value in an encoded event, found without decoding it: ids hold no
    quote (a quote in a string is escaped), so the first match is the member itself."""
    start = value.find(b'"' + name + b'":"')
    if start < 0:
        return None
    start += len(name) + 4
    return value[start : value.index(b'"', start)].decode()


@dataclass
class Seen:
    """What the watcher saw of one instruction: arrival times [perf_counter s]."""

    commands: dict[str, tuple[float, int]] = field(default_factory=dict)  # id -> (t, setpoints)
    acks: dict[str, tuple[float, int]] = field(default_factory=dict)
    confirmed_at: float | None = None
    answer: DispatchConfirmed | None = None
    kept: list[tuple[str, bytes]] = field(default_factory=list)  # commands and acks, if kept
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    def setpoints(self) -> int:
        return sum(n for _, n in self.commands.values())


class Watcher:
    """Reads `asset.command`, `asset.command-ack` and `dispatch.confirmed` from their ends (no
    group): commands and acks are timed and counted by their bytes (a 100,000-asset
    instruction is 6 MB of commands and 7.5 MB of acks; decoding them would take the CPU
    being measured), answers are decoded."""

    TOPICS = (ASSET_COMMAND, ASSET_COMMAND_ACK, DISPATCH_CONFIRMED)

    def __init__(self, run: str) -> None:
        self.run = run
        self.seen: dict[str, Seen] = defaultdict(Seen)
        self.keep: set[str] = set()  # instructions whose records are kept for a check
        self._consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Watcher:
        await self._consumer.start()
        names = [t.name for t in self.TOPICS]
        counts = await partition_counts(BOOTSTRAP, names)
        partitions = [TopicPartition(t, p) for t in names for p in range(counts[t])]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self._consumer.position(tp)  # pinned before anything is published
        self._task = asyncio.create_task(self._collect())
        return self

    async def _collect(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=1000)
            now = time.perf_counter()
            for tp, records in batch.items():
                for record in records:
                    self._note(tp.topic, record.value, now)

    def _note(self, topic: str, value: bytes, now: float) -> None:
        instruction_id = _field(value, b"instruction_id")
        if instruction_id is None or not instruction_id.startswith(self.run):
            return
        seen = self.seen[instruction_id]
        if topic == DISPATCH_CONFIRMED.name:
            answer = decode(DISPATCH_CONFIRMED, value).data
            assert isinstance(answer, DispatchConfirmed)
            seen.confirmed_at, seen.answer = now, answer
            seen.answered.set()
            return
        if instruction_id in self.keep:
            seen.kept.append((topic, value))
        book = seen.commands if topic == ASSET_COMMAND.name else seen.acks
        command_id = _field(value, b"command_id") or ""
        book.setdefault(command_id, (now, value.count(b'"asset_id":')))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._consumer.stop()


def check_kept(seen: Seen) -> int:
    """Decode every kept command and ack under its contract (raises if one does not); returns
    how many records were checked."""
    for topic, value in seen.kept:
        decode(ASSET_COMMAND if topic == ASSET_COMMAND.name else ASSET_COMMAND_ACK, value)
    return len(seen.kept)


# --- the processes ---------------------------------------------------------------------------


def start_gateway(launcher: Launcher, prefix: str) -> None:
    """`python -m tests.bench.gateway` as one of the launcher's processes (stopped with them)."""
    name = "bench-gateway"
    log = launcher.logs[name] = (launcher.log_dir / f"{name}.log").open("ab")
    launcher.procs[name] = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.gateway", "--prefix", prefix],
        cwd=ROOT, env=launcher.env, stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


async def gateway_listening(launcher: Launcher, prefix: str) -> None:
    async def offsets() -> int:
        launcher.check_alive("bench-gateway")
        found = await committed_offsets(BOOTSTRAP, group_of(prefix))
        return sum(1 for tp in found if tp.topic == ASSET_COMMAND.name)

    await eventually(offsets, lambda n: n > 0, timeout_s=60)


def proc_status_mib(pid: int) -> dict[str, float]:
    """VmHWM (peak RSS) and VmRSS of a process [MiB]."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def cpu_s(pid: int) -> float:
    """User + system CPU time of a process so far [s]."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    utime, stime = stat[stat.rindex(")") + 2 :].split()[11:13]
    return (int(utime) + int(stime)) / CLOCK_TICKS


# --- measuring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """One instruction, from its publication [s]."""

    commands_s: float  # to its last command seen on the bus
    acks_s: float  # to the gateway's last ack seen
    confirmed_s: float  # to its answer seen
    answer: DispatchConfirmed
    setpoints_seen: int


def instruction(run: str, name: str, resource_id: str, mw: float) -> DispatchInstruction:
    now = datetime.now(UTC)
    return DispatchInstruction(
        instruction_id=f"{run}-{name}", resource_id=resource_id, mw=round(mw, 3),
        window_start=now, window_end=now + timedelta(hours=1), issued_at=now,
    )  # fmt: skip


async def timed(
    watcher: Watcher, producer: EventProducer, instructions: list[DispatchInstruction]
) -> list[Timing]:
    """Publish the instructions at once; each one's times once it is answered."""
    t0 = time.perf_counter()
    await producer.publish_many(DISPATCH_INSTRUCTION, instructions)
    timings = []
    for i in instructions:
        seen = watcher.seen[i.instruction_id]
        await asyncio.wait_for(seen.answered.wait(), ANSWER_TIMEOUT_S)
        assert seen.answer is not None and seen.confirmed_at is not None
        await all_commands_in(seen, seen.answer.assets_commanded)
        last_command = max((t for t, _ in seen.commands.values()), default=float("nan"))
        last_ack = max((t for t, _ in seen.acks.values()), default=float("nan"))
        timings.append(
            Timing(last_command - t0, last_ack - t0, seen.confirmed_at - t0, seen.answer,
                   seen.setpoints())
        )  # fmt: skip
    return timings


async def all_commands_in(seen: Seen, commanded: int, timeout_s: float = 5.0) -> None:
    """Commands go out before the answer, but on other partitions: let the last ones in (a
    count that never matches is reported, not waited for)."""
    with contextlib.suppress(AssertionError):
        await eventually(
            lambda: asyncio.sleep(0, seen.setpoints()), lambda k: k >= commanded, timeout_s
        )


def stats_ms(values_s: list[float]) -> dict[str, float]:
    ms = np.asarray(values_s) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


def progress(message: str) -> None:
    print(f"    {message}", flush=True)


async def start_processes(launcher: Launcher, run: str, service: str) -> float:
    """The bench gateway (listening), then dispatch as `service`; how long dispatch took to be
    ready [s]."""
    start_gateway(launcher, f"{run}-")
    await gateway_listening(launcher, f"{run}-")
    # Instructions of earlier runs stay unanswered: this service's group starts at the end.
    ends = await end_offsets(BOOTSTRAP, [DISPATCH_INSTRUCTION])
    await commit_offsets(BOOTSTRAP, f"nexwatt.{service}", ends)
    began = time.perf_counter()
    launcher.start(
        "dispatch",
        env={"NEXWATT_HTTP_PORT": str(DISPATCH_PORT), "NEXWATT_SERVICE_NAME": service},
    )
    await launcher.wait_ready({"dispatch": DISPATCH_PORT}, timeout_s=600)
    return time.perf_counter() - began


async def both_at_once(
    watcher: Watcher,
    producer: EventProducer,
    run: str,
    resources: dict[str, str],
    mw: float,
    alone: list[Timing],
) -> list[dict]:
    """`CONCURRENT_ROUNDS` rounds of one instruction per resource, published together: each
    round's times, and the slower one's over the median alone."""
    alone_s = statistics.median(t.confirmed_s for t in alone)
    alone_commands_s = statistics.median(t.commands_s for t in alone)
    rounds = []
    for k in range(CONCURRENT_ROUNDS):
        both = [instruction(run, f"{tag}C{k}", rid, mw) for tag, rid in resources.items()]
        timings = await timed(watcher, producer, both)
        rounds.append({
            "confirmed_ms": [round(t.confirmed_s * 1000, 1) for t in timings],
            "commands_ms": [round(t.commands_s * 1000, 1) for t in timings],
            "confirmed_over_alone": round(max(t.confirmed_s for t in timings) / alone_s, 2),
            "commands_over_alone": round(
                max(t.commands_s for t in timings) / alone_commands_s, 2
            ),
        })  # fmt: skip
        progress(f"both at once {k + 1}/{CONCURRENT_ROUNDS}: {rounds[-1]}")
        await asyncio.sleep(PAUSE_S)
    return rounds


async def bench_dispatch_scale(assets: int, repeats: int = REPEATS) -> dict:
    """Two resources of `assets` assets, dispatch and the bench gateway as processes;
    `repeats` instructions for one resource, then both at once (see the module's doc)."""
    run = unique("B11").upper().replace("-", "")
    service = f"dispatch-bench-{run.lower()}"
    database = f"nexwatt_{service.replace('-', '_')}"
    resources = {tag: f"NXW-PJM-{run}-{tag}" for tag in "AB"}
    launcher = Launcher(ROOT / ".stack/logs/bench" / f"dispatch-{run}")
    producer = EventProducer(BOOTSTRAP, "bench-dispatch")
    await producer.start()
    watcher: Watcher | None = None
    try:
        began = time.perf_counter()
        now = datetime.now(UTC)
        fleets = {tag: fleet(run, rid, tag, assets, now) for tag, rid in resources.items()}
        for tag, records in fleets.items():
            await publish(producer, ASSET_REGISTERED, records)
            telemetry = readings(records, datetime.now(UTC), seed=ord(tag))
            await publish(producer, TELEMETRY_INTERVAL, telemetry)
        setup_s = time.perf_counter() - began
        progress(f"{2 * assets:,} registrations + readings published in {setup_s:.1f} s")
        mw = REQUEST_SHARE * sum(r.capacity_kw for r in fleets["A"]) / 1000

        ready_s = await start_processes(launcher, run, service)
        pid = launcher.procs["dispatch"].pid
        ready_mib = proc_status_mib(pid)
        progress(f"dispatch ready in {ready_s:.1f} s, RSS {ready_mib['VmRSS']:.0f} MiB")
        await asyncio.sleep(SETTLE_S)
        watcher = await Watcher(run).start()

        alone: list[Timing] = []
        rss_mib: list[float] = []  # after each instruction: what an instruction leaves behind
        cpu_before = cpu_s(pid)
        for k in range(repeats):
            i = instruction(run, f"A{k}", resources["A"], mw)
            if k == 0:
                watcher.keep.add(i.instruction_id)
            [timing] = await timed(watcher, producer, [i])
            alone.append(timing)
            rss_mib.append(round(proc_status_mib(pid)["VmRSS"], 1))
            progress(
                f"alone {k + 1}/{repeats}: commands {timing.commands_s * 1000:.0f} ms, acks"
                f" {timing.acks_s * 1000:.0f} ms, confirmed {timing.confirmed_s * 1000:.0f} ms"
                f" ({timing.answer.status}, {timing.answer.assets_commanded:,} commanded)"
            )
            await asyncio.sleep(PAUSE_S)
        cpu_per_instruction_s = (cpu_s(pid) - cpu_before) / repeats

        rounds = await both_at_once(watcher, producer, run, resources, mw, alone)
        memory = proc_status_mib(pid)

        first = watcher.seen[alone[0].answer.instruction_id]
        checked = check_kept(first)
        answers = [t.answer for t in alone]
        return {
            "assets": assets,
            "run": run,
            "repeats": repeats,
            "mw_requested": answers[0].mw_requested,
            "setup_s": round(setup_s, 1),
            "dispatch_ready_s": round(ready_s, 1),
            "statuses": sorted({a.status.value for a in answers}),
            "assets_commanded_median": statistics.median(a.assets_commanded for a in answers),
            "assets_dispatched_median": statistics.median(a.assets_dispatched for a in answers),
            "setpoints_seen_match_commanded": all(
                t.setpoints_seen == t.answer.assets_commanded for t in alone
            ),
            "command_messages_per_instruction": len(first.commands),
            "records_decoded_under_contract": checked,
            "commands": stats_ms([t.commands_s for t in alone]),
            "gateway_acks": stats_ms([t.acks_s for t in alone]),
            "confirmed": stats_ms([t.confirmed_s for t in alone]),
            "dispatch_processing": stats_ms([a.processing_ms / 1000 for a in answers]),
            "concurrent": rounds,
            "concurrent_worst_over_alone": max(r["confirmed_over_alone"] for r in rounds),
            "dispatch_cpu_s_per_instruction": round(cpu_per_instruction_s, 2),
            "dispatch_rss_ready_mib": round(ready_mib["VmRSS"], 1),
            "dispatch_rss_after_each_mib": rss_mib,
            "dispatch_peak_rss_mib": round(memory["VmHWM"], 1),
            "logs": str(launcher.log_dir.relative_to(ROOT)),
        }
    finally:
        launcher.stop_all()
        if watcher is not None:
            await watcher.stop()
        await producer.stop()
        await drop_database(POSTGRES, database)


def summary(row: dict) -> str:
    c, a = row["commands"], row["confirmed"]
    return (
        f"{row['assets']:,} assets ({row['assets_commanded_median']:,.0f} commanded):"
        f" last command p50 {c['p50_ms']:.0f} / p99 {c['p99_ms']:.0f} ms (goal < 1000),"
        f" confirmed p50 {a['p50_ms']:.0f} / p99 {a['p99_ms']:.0f} ms (goal < 2000);"
        f" two at once: {row['concurrent_worst_over_alone']:.2f} x alone (goal <= 1.2);"
        f" dispatch peak RSS {row['dispatch_peak_rss_mib']:.0f} MiB, ready after"
        f" {row['dispatch_ready_s']:.0f} s"
    )


async def main() -> None:
    configure_logging("bench", "ERROR")
    rows = []
    for assets in SIZES:
        print(f"dispatch at scale, {assets:,} assets per resource ...", flush=True)
        rows.append(await bench_dispatch_scale(assets, REPEATS))
        print(f"    {summary(rows[-1])}", flush=True)
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
