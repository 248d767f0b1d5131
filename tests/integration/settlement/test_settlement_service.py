"""settlement on the real consumer runner, Kafka and PostgreSQL.

The shared topics carry other tests' events: the handler tests read from where the topics ended
when the test began and pass the handler only their own events (unique asset, resource and
instruction ids), with a database of their own. The whole-service test starts the process with a
coverage threshold of 100 % and is given no instruction of its own: it files nothing.

Windows lie two days back (a window older than the restatement deadline is filed final at
once). Assets discharge nothing in their history, so their High X of Y baseline is 0 kW, except
where a test says otherwise; the arithmetic of the baselines themselves is in the unit tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import numpy as np
import pytest
from aiokafka.partitioner import DefaultPartitioner

from nexwatt_settlement import domain, store
from nexwatt_settlement.baselines import ParticipationModel
from nexwatt_settlement.bootstrap import MIGRATIONS
from nexwatt_settlement.domain import BaselineMethod, Due, Program
from nexwatt_settlement.handlers import SETTLEMENT_FAILURES, WINDOWS_WAITING, Settler
from nexwatt_settlement.market_time import MarketClock
from nexwatt_settlement.money import PerformanceRates
from nexwatt_shared.codec import decode
from nexwatt_shared.contracts import (
    AssetRegistered,
    DataQuality,
    DispatchConfirmed,
    DispatchInstruction,
    ReadingSource,
    SettlementFiled,
    TelemetryInterval,
)
from nexwatt_shared.envelope import CloudEvent
from nexwatt_shared.kafka.consumer import Delivery
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.postgres import database_url
from nexwatt_shared.series import channel_intervals
from nexwatt_shared.topics import (
    ASSET_REGISTERED,
    DEAD_LETTER,
    DISPATCH_CONFIRMED,
    DISPATCH_INSTRUCTION,
    SETTLEMENT_FILED,
    TELEMETRY_INTERVAL,
)
from tests.helpers import (
    commit_offsets,
    eventually,
    handled,
    handler_context,
    handler_running,
    read_all,
    unique,
)

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.integration
TOPICS = [DISPATCH_INSTRUCTION, DISPATCH_CONFIRMED, TELEMETRY_INTERVAL, ASSET_REGISTERED]
# Two days back, on the hour: recent enough to be restated, old enough to be in the past.
WINDOW_START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
HISTORY_DAYS = 14
RATES = PerformanceRates(100.0, 50.0, source="test")  # [$/MW per 5-minute interval]


def at(minutes: float) -> datetime:
    return WINDOW_START + timedelta(minutes=minutes)


def program(threshold: float) -> Program:
    return Program(
        model=ParticipationModel.DER_AGGREGATOR,
        method=BaselineMethod.HIGH_X_OF_Y,
        clock=MarketClock(),
        coverage_threshold=threshold,
        rates=RATES,
    )


def settler(ctx: dict, threshold: float = 0.98, final_after_s: float = 60 * 86400.0,
            producer: EventProducer | None = None, stall_s: float = 3600.0,
            restate_every_s: float = 0.0) -> Settler:  # fmt: skip
    timing = store.Timing(final_after_s, stall_s, restate_every_s)
    return Settler(ctx["pool"], producer or ctx["producer"], program(threshold), timing)


@pytest.fixture
async def ctx(servers: dict[str, str]) -> AsyncIterator[dict]:
    async with handler_context(servers, "settlement", MIGRATIONS, TOPICS) as ctx:
        ctx["instruction"] = unique("I")
        ctx["rejected"] = unique("I-rejected")
        ctx["assets"].update({name: unique(f"T-{name}") for name in "E"})
        yield ctx


def is_mine(ctx: dict, d: Delivery) -> bool:
    p = d.payload
    if isinstance(p, DispatchInstruction | DispatchConfirmed):
        return p.instruction_id in (ctx["instruction"], ctx["rejected"])
    return p.asset_id in ctx["assets"].values()


def service_running(
    ctx: dict, seen: list[str], handler: Settler | None = None
) -> AbstractAsyncContextManager[str]:
    handle = (handler or settler(ctx)).handle
    return handler_running(ctx, TOPICS, handle, lambda d: is_mine(ctx, d), seen)


def asset(
    ctx: dict, name: str, cohort: str, status: str = "enrolled", version: int = 1,
    updated_at: datetime | None = None,
) -> AssetRegistered:  # fmt: skip
    asset_id = ctx["assets"].get(name, name)
    return AssetRegistered(
        asset_id=asset_id,
        status=status,
        asset_type="solar_storage",
        inverter="SolarEdge SE7600",
        vendor="solaredge",
        capacity_kw=7.6,
        storage_kwh=13.5,
        meter_id=f"M-{asset_id}",
        iso="PJM",
        iso_zone="PJM-PEPCO",
        resource_id=ctx["resource"],
        subscriber_id=f"S-{asset_id}",
        cohort=cohort,
        telemetry_interval_s=300,
        version=version,
        updated_at=updated_at or at(-HISTORY_DAYS * 24 * 60),
    )


def intervals(ctx: dict, name: str, first_min: int, length_s: int, kw: list[float]) -> list:
    return [
        TelemetryInterval(
            asset_id=ctx["assets"].get(name, name),
            interval_start=at(first_min + i * length_s / 60),
            interval_s=length_s,
            battery_kw=v,
            net_kw=v - 1.0,
        )
        for i, v in enumerate(kw)
    ]


def history(ctx: dict, name: str, kw: float = 0.0) -> list:
    """Hourly readings for HISTORY_DAYS days up to an hour before the window, then 5-minute
    readings up to the window: the baseline's days and the hour before, all at `kw`."""
    hours = HISTORY_DAYS * 24
    return [
        *intervals(ctx, name, -hours * 60, 3600, [kw] * (hours - 1)),
        *intervals(ctx, name, -60, 300, [kw] * 12),
    ]


def dispatch(ctx: dict, instruction_id: str, status: str, mw: float = 0.012) -> tuple:
    window = {"window_start": at(0), "window_end": at(15)}
    instruction = DispatchInstruction(
        **window,
        instruction_id=instruction_id,
        resource_id=ctx["resource"],
        mw=mw,
        issued_at=at(-2),
    )
    confirmed = DispatchConfirmed(
        **window,
        instruction_id=instruction_id,
        resource_id=ctx["resource"],
        status=status,
        reason="no headroom" if status == "rejected" else None,
        mw_requested=mw,
        mw_confirmed=0.0 if status == "rejected" else mw,
        assets_commanded=0 if status == "rejected" else 2,  # refused before any command
        assets_dispatched=0 if status == "rejected" else 2,
        instruction_received_at=at(-2),
        confirmed_at=at(-2),
        processing_ms=120.0,
    )
    return instruction, confirmed


async def enrol(ctx: dict, records: list[AssetRegistered]) -> None:
    """Publish asset records and have them stored before anything else is published: in
    production enrolment precedes events by days (a record consumed after its window's data
    changes the fleet and restates the window; that is not what these tests are about)."""
    await ctx["producer"].publish_many(ASSET_REGISTERED, records)
    seen: list[str] = []
    async with service_running(ctx, seen):
        await handled(seen, len(records))


async def a_delivers_b_silent(ctx: dict, a_kw: float) -> int:
    """Enrol A (east) and B (west) with their history; A delivers `a_kw` in the window's three
    slots, B reports nothing in it. Returns the records the handler will see."""
    await enrol(ctx, [asset(ctx, "A", "east"), asset(ctx, "B", "west")])
    data = [*history(ctx, "A"), *history(ctx, "B"), *intervals(ctx, "A", 0, 300, [a_kw] * 3)]
    await ctx["producer"].publish_many(TELEMETRY_INTERVAL, data)
    return 2 + len(data)


async def reports(ctx: dict) -> list[CloudEvent]:
    """Every settlement event published for the test's resource, in order."""
    records = await read_all(ctx["bootstrap"], SETTLEMENT_FILED.name)
    return [decode(SETTLEMENT_FILED, r.value) for r in records if r.key == ctx["resource"].encode()]


async def count(pool: asyncpg.Pool, table: str) -> int:
    return await pool.fetchval(f"SELECT count(*) FROM {table}")


async def letters_of(ctx: dict, group: str) -> list[str]:
    return [
        json.loads(r.value)["data"]["error"]
        for r in await read_all(ctx["bootstrap"], DEAD_LETTER.name)
        if dict(r.headers)["nexwatt.consumer.group"] == group.encode()
    ]


async def test_preliminary_once_coverage_is_reached_then_late_data_restates_it_with_the_diff(
    ctx: dict,
) -> None:
    producer = ctx["producer"]
    # Window 00:00-00:15 (three 5-minute slots), 0.012 MW asked, threshold 75 %. Baselines 0 kW
    # (14 days of idle history each). Cohorts: east A, C; west B, E; each asset 7.6 kW.
    # A: 5.0 kW in all three slots;  B: 3.0 kW in slots 1-2, slot 3 held back;
    # C: 2.0 kW in all three, unenrolled an hour AFTER the window: it counts, enrolled as of it;
    # E: no window data at first.
    # Coverage: (3 + 2 + 3 + 0) / 12 asset-slots = 66.7 % < 75 %: nothing is filed.
    # B's slot 3 arrives: 9 / 12 = 75 %: preliminary v1,
    #   delivered 5 + 3 + 2 = 10 kW in slots 1-2, 5 + 3 + 2 = 10 kW in slot 3 -> 0.010 MW,
    #   0.010 MW * 0.25 h = 0.0025 MWh = 2500 Wh; east (A + C) 7 kW * 0.25 h = 1750 Wh,
    #   west (B) 750 Wh.
    #   PAI money: shortfall 0.012 - 0.010 = 0.002 MW * 100 $/MW-interval * 3 intervals
    #   = $0.60 charge -> net -60 cents, split by accredited kW: east 15.2, west 15.2 -> -30/-30.
    # E's window data arrives late, 1.5 kW in all three slots: restated v2,
    #   delivered 0.0115 MW, 2875 Wh; diff +375 Wh (1.5 kW * 0.25 h), all in west, in the one
    #   hour the window touches. Shortfall 0.0005 MW * 100 * 3 = $0.15 -> -15 cents:
    #   east/west 7.5 each -> largest remainder, the tie to the lower index: east -8, west -7.
    # A "correction" of A's slot 1 overlaps its stored interval: dead-lettered, not restated.
    await enrol(ctx,
        [asset(ctx, "A", "east"), asset(ctx, "B", "west"), asset(ctx, "C", "east"),
         asset(ctx, "E", "west"),
         asset(ctx, "C", "east", "unenrolled", version=2, updated_at=at(75))],
    )  # fmt: skip
    await producer.publish_many(
        TELEMETRY_INTERVAL, [r for name in "ABCE" for r in history(ctx, name)]
    )
    window = [
        *intervals(ctx, "A", 0, 300, [5.0] * 3),
        *intervals(ctx, "B", 0, 300, [3.0] * 2),
        *intervals(ctx, "C", 0, 300, [2.0] * 3),
    ]
    await producer.publish_many(TELEMETRY_INTERVAL, window)
    instruction, confirmed = dispatch(ctx, ctx["instruction"], "confirmed")
    rejected_instruction, rejected = dispatch(ctx, ctx["rejected"], "rejected")
    await producer.publish_many(DISPATCH_INSTRUCTION, [instruction, rejected_instruction])
    await producer.publish_many(DISPATCH_CONFIRMED, [confirmed, rejected])
    published = 5 + 4 * (HISTORY_DAYS * 24 - 1 + 12) + len(window) + 4

    seen: list[str] = []
    handler = settler(ctx, threshold=0.75)
    async with service_running(ctx, seen, handler) as group:
        await handled(seen, published)
        assert await reports(ctx) == []
        assert (
            await ctx["pool"].fetchval(
                "SELECT state FROM instructions WHERE instruction_id = $1", ctx["instruction"]
            )
            == "waiting"
        )

        late_b = intervals(ctx, "B", 10, 300, [3.0])
        await producer.publish_many(TELEMETRY_INTERVAL, late_b)
        await handled(seen, published + 1)
        [v1] = await eventually(lambda: reports(ctx), lambda found: len(found) == 1)
        report = v1.data
        assert v1.id == f"settlement:{ctx['instruction']}:v1"
        assert (report.version, report.supersedes, report.data_quality) == (
            1, None, DataQuality.PRELIMINARY,
        )  # fmt: skip
        assert report.coverage_pct == pytest.approx(75.0, abs=1e-9)
        assert report.assets_enrolled == 4
        assert report.baseline_methods == {"pjm-high-x-of-y-adjusted": 4}
        assert report.delivered_mw == pytest.approx(0.010, abs=1e-9)
        assert report.delivered_mwh == pytest.approx(0.0025, abs=1e-9)
        assert [(c.cohort, c.assets, round(c.delivered_mwh * 1e6)) for c in report.cohorts] == [
            ("east", 2, 1750), ("west", 2, 750),
        ]  # fmt: skip
        assert report.performance.charge_cents == 60
        assert report.performance.net_cents == -60
        assert [c.performance_cents for c in report.cohorts] == [-30, -30]
        [hour] = report.iso_report
        assert (hour.baseline_kwh, hour.metered_kwh, hour.reduction_kwh) == (0.0, 2.5, 2.5)
        assert report.iso_report_csv.splitlines()[0] == (
            "registration_id,date,hour_ending,baseline_kwh,metered_kwh,reduction_kwh"
        )
        payouts = await ctx["pool"].fetch(
            "SELECT subscriber_id, cents FROM payouts WHERE instruction_id = $1 AND version = 1"
            " ORDER BY subscriber_id",
            ctx["instruction"],
        )
        assert sum(p["cents"] for p in payouts) == -60
        assert len(payouts) == 4

        correction = intervals(ctx, "A", 0, 300, [9.0])
        late_e = intervals(ctx, "E", 0, 300, [1.5] * 3)
        await producer.publish_many(TELEMETRY_INTERVAL, [*correction, *late_e])
        await handled(seen, published + 4)  # the correction is dead-lettered
        [_, v2] = await eventually(lambda: reports(ctx), lambda found: len(found) == 2)
        restated = v2.data
        assert v2.id == f"settlement:{ctx['instruction']}:v2"
        assert (restated.version, restated.supersedes, restated.data_quality) == (
            2, report.report_id, DataQuality.RESTATED,
        )  # fmt: skip
        assert restated.delivered_mw == pytest.approx(0.0115, abs=1e-9)
        assert restated.coverage_pct == pytest.approx(100.0, abs=1e-9)
        assert restated.diff is not None
        assert restated.diff.previous_report_id == report.report_id
        assert restated.diff.delivered_wh == 375
        assert restated.diff.metered_wh == 375
        assert restated.diff.baseline_wh == 0
        assert restated.diff.cohorts_wh == {"west": 375}
        assert list(restated.diff.hours_wh.values()) == [375]
        assert restated.performance.net_cents == -15
        assert [c.performance_cents for c in restated.cohorts] == [-8, -7]
        letters = await letters_of(ctx, group)
        assert len(letters) == 1 and letters[0].startswith("battery_kw: other values for")
        rows = {t: await count(ctx["pool"], t) for t in ("telemetry", "reports", "payouts")}

    # A fresh group replays every event into the same store: no new version, no new rows.
    replayed: list[str] = []
    async with service_running(ctx, replayed, settler(ctx, threshold=0.75)):
        await handled(replayed, len(seen))
    assert len(await reports(ctx)) == 2
    assert {t: await count(ctx["pool"], t) for t in ("telemetry", "reports", "payouts")} == rows


async def test_no_preliminary_report_while_one_partition_of_the_window_is_held_back(
    ctx: dict,
) -> None:
    # 40 assets of the resource, each with its history in. Their window telemetry is spread by
    # key over telemetry.interval's partitions as Kafka does, and one partition's is held back.
    # Each discharges 2.0 kW over the 15-minute window against a 0 kW baseline. Coverage stays
    # short of 98 % and nothing is filed, though the other partitions' newest readings are past
    # the window's end. Once the held-back records arrive the window is filed, and its latest
    # version has coverage 100 %, 40 * 2.0 kW = 0.080 MW.
    producer = ctx["producer"]
    names = [f"{ctx['resource']}-{i:02d}" for i in range(40)]
    ctx["assets"].update({name: name for name in names})
    partitioner = DefaultPartitioner()
    partitions = list(range(TELEMETRY_INTERVAL.partitions))
    held = {n for n in names if partitioner(n.encode(), partitions, partitions) == 2}
    assert 0 < len(held) < len(names)
    await enrol(ctx, [asset(ctx, n, "east") for n in names])
    await producer.publish_many(TELEMETRY_INTERVAL, [r for n in names for r in history(ctx, n)])
    window = {n: intervals(ctx, n, 0, 300, [2.0] * 3 + [0.0]) for n in names}
    await producer.publish_many(
        TELEMETRY_INTERVAL, [r for n in names if n not in held for r in window[n]]
    )
    instruction, confirmed = dispatch(ctx, ctx["instruction"], "confirmed", mw=0.08)
    await producer.publish_many(DISPATCH_INSTRUCTION, [instruction])
    await producer.publish_many(DISPATCH_CONFIRMED, [confirmed])
    published = len(names) * (1 + HISTORY_DAYS * 24 - 1 + 12) + 4 * (len(names) - len(held)) + 2

    seen: list[str] = []
    attempts = WINDOWS_WAITING._value.get()
    async with service_running(ctx, seen):
        await handled(seen, published)
        assert await reports(ctx) == []
        # The per-batch count kept the window from being computed at all while short.
        assert WINDOWS_WAITING._value.get() == attempts
        covered = await ctx["pool"].fetchval(
            "SELECT covered_s / (assets_expected * 900.0) FROM instructions"
            " WHERE instruction_id = $1",
            ctx["instruction"],
        )
        assert covered == pytest.approx((len(names) - len(held)) / len(names), abs=1e-9)

        await producer.publish_many(
            TELEMETRY_INTERVAL, [r for n in sorted(held) for r in window[n]]
        )
        await handled(seen, published + 4 * len(held))
        # The held-back records may arrive over several batches: a preliminary at >= 98 %
        # may come before the last of them, restated when it arrives.
        filed = await eventually(
            lambda: reports(ctx), lambda found: found and found[-1].data.coverage_pct == 100.0
        )
    assert filed[0].data.data_quality == DataQuality.PRELIMINARY
    assert filed[0].data.coverage_pct >= 98.0
    latest = filed[-1].data
    assert latest.assets_enrolled == 40
    assert latest.delivered_mw == pytest.approx(0.080, abs=1e-9)
    assert latest.performance.net_cents == 0


async def test_a_window_past_its_deadline_is_filed_final_and_later_data_is_refused(
    ctx: dict,
) -> None:
    # Deadline one day after the window's end; the window ended two days ago: final once no
    # data has arrived for the stall time (1 s), even at 50 % coverage (B never reported).
    # A 4.0 kW over the window, baseline 0: 0.004 MW. B's data arriving afterwards is kept but
    # files nothing.
    producer = ctx["producer"]
    published = await a_delivers_b_silent(ctx, 4.0)
    seen: list[str] = []
    async with service_running(ctx, seen, settler(ctx, final_after_s=86400.0, stall_s=1.0)):
        await handled(seen, published)
        instruction, confirmed = dispatch(ctx, ctx["instruction"], "confirmed")
        await producer.publish_many(DISPATCH_INSTRUCTION, [instruction])
        await producer.publish_many(DISPATCH_CONFIRMED, [confirmed])
        await handled(seen, published + 2)
        assert await reports(ctx) == []  # the window's data may still be streaming in
        await asyncio.sleep(1.5)
        await producer.publish_many(TELEMETRY_INTERVAL, intervals(ctx, "A", 60, 300, [0.0]))
        await handled(seen, published + 3)
        [final] = await eventually(lambda: reports(ctx), lambda found: len(found) == 1)
        assert final.data.data_quality == DataQuality.FINAL
        assert final.data.coverage_pct == pytest.approx(50.0, abs=1e-9)
        assert final.data.delivered_mw == pytest.approx(0.004, abs=1e-9)
        await producer.publish_many(TELEMETRY_INTERVAL, intervals(ctx, "B", 0, 300, [3.0] * 3))
        await handled(seen, published + 3 + 3)
    assert len(await reports(ctx)) == 1
    assert (
        await ctx["pool"].fetchval(
            "SELECT state FROM instructions WHERE instruction_id = $1", ctx["instruction"]
        )
        == "final"
    )


async def test_channels_at_their_own_resolutions_are_admitted_and_a_missing_one_kept_missing(
    ctx: dict,
) -> None:
    # One SolarEdge-like asset: a 15-minute power reading 10:00-10:15 (pv, load, net) and
    # 5-minute battery readings (battery, SoC) at 10:00 and 10:05; 10:10 reported missing.
    # Settlement keeps net_kw (one 900 s row) and battery_kw (three 300 s rows, the last
    # without a value, quality missing): none clashes with another, nothing is dead-lettered.
    a = ctx["assets"]["A"]
    power = TelemetryInterval(
        asset_id=a, interval_start=at(0), interval_s=900, pv_kw=3.0, load_kw=1.0, net_kw=2.0
    )
    battery = [
        TelemetryInterval(asset_id=a, interval_start=at(m), interval_s=300, battery_kw=kw,
                          soc_pct=80.0)
        for m, kw in ((0, 1.5), (5, 2.5))
    ] + [
        TelemetryInterval(asset_id=a, interval_start=at(10), interval_s=300,
                          quality={"battery_kw": "missing", "soc_pct": "missing"})
    ]  # fmt: skip
    await ctx["producer"].publish(ASSET_REGISTERED, asset(ctx, "A", "east"))
    await ctx["producer"].publish_many(TELEMETRY_INTERVAL, [power, *battery])
    seen: list[str] = []
    async with service_running(ctx, seen) as group:
        await handled(seen, 5)
        letters = [
            r
            for r in await read_all(ctx["bootstrap"], DEAD_LETTER.name)
            if dict(r.headers)["nexwatt.consumer.group"] == group.encode()
        ]
    assert letters == []
    rows = await ctx["pool"].fetch(
        "SELECT channel, interval_start, interval_s, value, quality FROM telemetry"
        " WHERE asset_id = $1 ORDER BY channel, interval_start",
        a,
    )
    assert [tuple(r) for r in rows] == [
        ("battery_kw", at(0), 300, 1.5, "actual"),
        ("battery_kw", at(5), 300, 2.5, "actual"),
        ("battery_kw", at(10), 300, None, "missing"),
        ("net_kw", at(0), 900, 2.0, "actual"),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_the_service_process_stores_what_it_consumes_and_stops_cleanly(
    ctx: dict, servers: dict[str, str]
) -> None:
    name, database, port = unique("settlement-test"), unique("test_settlement_svc"), free_port()
    database = database.replace("-", "_")
    await commit_offsets(ctx["bootstrap"], f"nexwatt.{name}", ctx["start"])
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nexwatt_settlement",
        cwd=ROOT,
        env={
            **os.environ,
            "NEXWATT_SERVICE_NAME": name,
            "NEXWATT_POSTGRES_DATABASE": database,
            "NEXWATT_HTTP_PORT": str(port),
            "NEXWATT_SETTLEMENT_COVERAGE_THRESHOLD_PCT": "100",  # no instruction of its own
        },
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:

        async def ready() -> int:
            async with httpx.AsyncClient() as client:
                try:
                    return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code
                except httpx.TransportError:
                    return 0

        await eventually(ready, lambda status: status == 200)
        await ctx["producer"].publish_many(
            TELEMETRY_INTERVAL, intervals(ctx, "A", 0, 60, [1.0, 2.0])
        )
        conn = await asyncpg.connect(database_url(servers["NEXWATT_POSTGRES_URL"], database))
        try:
            await eventually(
                lambda: conn.fetchval(
                    "SELECT count(*) FROM telemetry WHERE asset_id = $1 AND channel = 'battery_kw'",
                    ctx["assets"]["A"],
                ),
                lambda n: n == 2,
            )
        finally:
            await conn.close()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_two_replicas_file_one_content_and_a_recorded_report_survives_a_crash(
    ctx: dict, servers: dict[str, str]
) -> None:
    # Two replicas on one database, each in a group of its own so that both see every event
    # and both try to settle the window; their reports differ (each names itself as the
    # source), so two publications could not be mistaken for one.
    other = EventProducer(servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"], "settlement-replica-2")
    await other.start()
    producer = ctx["producer"]
    await enrol(ctx, [asset(ctx, "A", "east"), asset(ctx, "B", "west")])
    telemetry = [
        *history(ctx, "A"),
        *history(ctx, "B"),
        *intervals(ctx, "A", 0, 300, [5.0] * 3 + [0.0]),
        *intervals(ctx, "B", 0, 300, [3.0] * 3 + [0.0]),
    ]
    await producer.publish_many(TELEMETRY_INTERVAL, telemetry)
    instruction, confirmed = dispatch(ctx, ctx["instruction"], "confirmed")
    await producer.publish_many(DISPATCH_INSTRUCTION, [instruction])
    await producer.publish_many(DISPATCH_CONFIRMED, [confirmed])
    published = 2 + len(telemetry) + 2
    keep = lambda d: is_mine(ctx, d)  # noqa: E731
    first, second = [], []
    try:
        async with (
            handler_running(ctx, TOPICS, settler(ctx).handle, keep, first),
            handler_running(ctx, TOPICS, settler(ctx, producer=other).handle, keep, second),
        ):  # fmt: skip
            await handled(first, published)
            await handled(second, published)
            await asyncio.sleep(1.0)
            filed = await reports(ctx)
            assert len(filed) == 1
            recorded = await ctx["pool"].fetchval("SELECT value FROM outbox")
            [record] = [
                r
                for r in await read_all(ctx["bootstrap"], SETTLEMENT_FILED.name)
                if r.key == ctx["resource"].encode()
            ]
            assert record.value == recorded

            # A replica dies between recording its report and publishing it: the next batch
            # publishes the recorded bytes, whoever handles it.
            await ctx["pool"].execute("UPDATE outbox SET published_at = NULL")
            await producer.publish_many(TELEMETRY_INTERVAL, intervals(ctx, "A", 25, 300, [0.0]))
            await handled(first, published + 1)
            await eventually(lambda: reports(ctx), lambda found: len(found) == 2)
            again = [
                r.value
                for r in await read_all(ctx["bootstrap"], SETTLEMENT_FILED.name)
                if r.key == ctx["resource"].encode()
            ]
            assert again == [recorded, recorded]
    finally:
        await other.stop()


async def test_inputs_that_cannot_be_settled_yet_are_kept_and_a_failing_window_blocks_no_other(
    ctx: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kept with a reason, nothing settled on a guess: a confirmation of an instruction not seen
    # (yet), an instruction without a confirmation, telemetry of an asset without a record.
    # Then two resources' windows are due and computing the first raises: the second is filed
    # all the same, the failure is counted, and the first is filed on the next batch.
    producer = ctx["producer"]
    other = unique("NXW-PJM-T2")
    first, second = ctx["instruction"], unique("I-second")
    ctx["assets"]["X"] = unique("T-X")  # never registered
    orphan, _ = dispatch(ctx, unique("I-unconfirmed"), "confirmed")
    _, stray = dispatch(ctx, unique("I-unknown"), "confirmed")
    unknown = intervals(ctx, "X", 0, 300, [1.0])
    saved = await store.save_inputs(
        ctx["pool"],
        program(0.98),
        [],
        [i for r in unknown for i in channel_intervals(r, store.CHANNELS)],
        [orphan],
        [stray],
    )  # what the handler logs, each with its reason
    assert saved.unconfirmed == [orphan.instruction_id]
    assert saved.unmatched == [stray.instruction_id]
    assert saved.unknown_assets == [ctx["assets"]["X"]]
    assert await count(ctx["pool"], "instructions") == 1
    assert await count(ctx["pool"], "confirmations") == 1
    assert await count(ctx["pool"], "telemetry") == 2  # battery_kw and net_kw

    # Two resources, each one asset delivering 2.0 kW against a 0 kW baseline.
    assets = [
        asset(ctx, "A", "east"),
        asset(ctx, "B", "east").model_copy(update={"resource_id": other}),
    ]
    await enrol(ctx, assets)
    data = [*history(ctx, "A"), *history(ctx, "B"), *intervals(ctx, "A", 0, 300, [2.0] * 3),
            *intervals(ctx, "B", 0, 300, [2.0] * 3)]  # fmt: skip
    await producer.publish_many(TELEMETRY_INTERVAL, data)
    windows = [dispatch(ctx, first, "confirmed", mw=0.002)]
    windows.append(tuple(
        m.model_copy(update={"instruction_id": second, "resource_id": other})
        for m in dispatch(ctx, second, "confirmed", mw=0.002)
    ))  # fmt: skip
    await producer.publish_many(DISPATCH_INSTRUCTION, [i for i, _ in windows])
    await producer.publish_many(DISPATCH_CONFIRMED, [c for _, c in windows])
    ctx["instruction"], ctx["rejected"] = first, second
    real_settle = domain.settle

    def failing(due: Due, *args: object) -> object:
        if due.resource_id == ctx["resource"]:
            raise RuntimeError("a bug in one resource's report")
        return real_settle(due, *args)

    failures = SETTLEMENT_FAILURES._value.get()
    monkeypatch.setattr(domain, "settle", failing)
    seen: list[str] = []
    async with service_running(ctx, seen):
        await handled(seen, 2 + len(data) + 4)
        filed = await eventually(
            lambda: read_all(ctx["bootstrap"], SETTLEMENT_FILED.name),
            lambda records: any(r.key == other.encode() for r in records),
        )
        assert [decode(SETTLEMENT_FILED, r.value).data.instruction_id
                for r in filed if r.key == other.encode()] == [second]  # fmt: skip
        assert await reports(ctx) == []
        assert SETTLEMENT_FAILURES._value.get() > failures
        monkeypatch.setattr(domain, "settle", real_settle)
        await producer.publish_many(TELEMETRY_INTERVAL, intervals(ctx, "A", 60, 300, [0.0]))
        await handled(seen, 2 + len(data) + 5)
        [report] = await eventually(lambda: reports(ctx), lambda found: len(found) == 1)
    assert report.data.instruction_id == first
    assert report.data.delivered_mw == pytest.approx(0.002, abs=1e-9)


async def test_a_window_whose_data_stops_short_of_the_threshold_is_filed_once_it_stalls(
    ctx: dict,
) -> None:
    # A delivers 4.0 kW over the window; B (enrolled, with history) never reports in it: 50 %
    # coverage. Not filed while the coverage may still grow; once it has not grown for the
    # stall time (1 s here), the next batch files it preliminary as it is: 0.004 MW at 50 %.
    producer = ctx["producer"]
    published = await a_delivers_b_silent(ctx, 4.0)
    instruction, confirmed = dispatch(ctx, ctx["instruction"], "confirmed")
    await producer.publish_many(DISPATCH_INSTRUCTION, [instruction])
    await producer.publish_many(DISPATCH_CONFIRMED, [confirmed])
    seen: list[str] = []
    async with service_running(ctx, seen, settler(ctx, stall_s=1.0)):
        await handled(seen, published + 2)
        assert await reports(ctx) == []
        await asyncio.sleep(1.5)
        await producer.publish_many(TELEMETRY_INTERVAL, intervals(ctx, "A", 30, 300, [0.0]))
        await handled(seen, published + 3)
        [filed] = await eventually(lambda: reports(ctx), lambda found: len(found) == 1)
    assert filed.data.data_quality == DataQuality.PRELIMINARY
    assert filed.data.coverage_pct == pytest.approx(50.0, abs=1e-9)
    assert filed.data.delivered_mw == pytest.approx(0.004, abs=1e-9)


async def test_late_data_restates_a_window_at_most_once_per_restatement_interval(
    ctx: dict,
) -> None:
    # A and B deliver 2.0 kW; v1 is filed at 100 %. Late data then arrives for the hour before
    # the window (what its Hour Before fallback and the adjustment read): the window is marked,
    # but with an interval of an hour since v1 no v2 is filed yet.
    producer = ctx["producer"]
    await enrol(ctx, [asset(ctx, "A", "east"), asset(ctx, "B", "west")])
    hours = HISTORY_DAYS * 24
    data = [
        *intervals(ctx, "A", -hours * 60, 3600, [0.0] * (hours - 1)),
        *intervals(ctx, "B", -hours * 60, 3600, [0.0] * (hours - 1)),
        *intervals(ctx, "A", 0, 300, [2.0] * 3),
        *intervals(ctx, "B", 0, 300, [2.0] * 3),
    ]
    await producer.publish_many(TELEMETRY_INTERVAL, data)
    instruction, confirmed = dispatch(ctx, ctx["instruction"], "confirmed")
    await producer.publish_many(DISPATCH_INSTRUCTION, [instruction])
    await producer.publish_many(DISPATCH_CONFIRMED, [confirmed])
    seen: list[str] = []
    async with service_running(ctx, seen, settler(ctx, restate_every_s=3600.0)):
        await handled(seen, 2 + len(data) + 2)
        [v1] = await eventually(lambda: reports(ctx), lambda found: len(found) == 1)
        assert v1.data.coverage_pct == pytest.approx(100.0, abs=1e-9)
        late = intervals(ctx, "A", -60, 300, [1.0] * 12)
        await producer.publish_many(TELEMETRY_INTERVAL, late)
        await handled(seen, 2 + len(data) + 2 + len(late))
        assert await ctx["pool"].fetchval(
            "SELECT dirty FROM instructions WHERE instruction_id = $1", ctx["instruction"]
        )
        await asyncio.sleep(1.0)
    assert len(await reports(ctx)) == 1


async def test_an_asset_record_consumed_after_its_window_was_filed_restates_it(ctx: dict) -> None:
    # A is enrolled; B's telemetry is in but its record is consumed only after v1 was filed
    # (a replay where asset.registered lags): B enrolled since before the window, so v2
    # restates the window with it. 2.0 kW each: v1 0.002 MW, v2 0.004 MW, diff +500 Wh.
    producer = ctx["producer"]
    await enrol(ctx, [asset(ctx, "A", "east")])
    data = [*history(ctx, "A"), *history(ctx, "B"), *intervals(ctx, "A", 0, 300, [2.0] * 3),
            *intervals(ctx, "B", 0, 300, [2.0] * 3)]  # fmt: skip
    await producer.publish_many(TELEMETRY_INTERVAL, data)
    instruction, confirmed = dispatch(ctx, ctx["instruction"], "confirmed", mw=0.004)
    await producer.publish_many(DISPATCH_INSTRUCTION, [instruction])
    await producer.publish_many(DISPATCH_CONFIRMED, [confirmed])
    seen: list[str] = []
    async with service_running(ctx, seen):
        await handled(seen, 1 + len(data) + 2)
        [v1] = await eventually(lambda: reports(ctx), lambda found: len(found) == 1)
        assert (v1.data.assets_enrolled, v1.data.delivered_mw) == (1, pytest.approx(0.002))
        await producer.publish(ASSET_REGISTERED, asset(ctx, "B", "west"))
        await handled(seen, 1 + len(data) + 2 + 1)
        [_, v2] = await eventually(lambda: reports(ctx), lambda found: len(found) == 2)
    assert v2.data.data_quality == DataQuality.RESTATED
    assert v2.data.assets_enrolled == 2
    assert v2.data.delivered_mw == pytest.approx(0.004, abs=1e-9)
    assert v2.data.diff is not None and v2.data.diff.delivered_wh == 500


async def test_late_data_of_an_asset_unenrolled_since_restates_the_window(ctx: dict) -> None:
    # A and C deliver 2.0 kW each; C is unenrolled an hour after the window, and its window
    # data arrives only after v1 (filed with A alone at the stall): v2 adds C's 2.0 kW *
    # 0.25 h = +500 Wh. C was enrolled as of the window, so its late data counts.
    producer = ctx["producer"]
    left = asset(ctx, "C", "east", "unenrolled", version=2, updated_at=at(75))
    await enrol(ctx, [asset(ctx, "A", "east"), asset(ctx, "C", "east"), left])
    data = [*history(ctx, "A"), *history(ctx, "C"), *intervals(ctx, "A", 0, 300, [2.0] * 3)]
    await producer.publish_many(TELEMETRY_INTERVAL, data)
    instruction, confirmed = dispatch(ctx, ctx["instruction"], "confirmed", mw=0.004)
    await producer.publish_many(DISPATCH_INSTRUCTION, [instruction])
    await producer.publish_many(DISPATCH_CONFIRMED, [confirmed])
    seen: list[str] = []
    async with service_running(ctx, seen, settler(ctx, stall_s=1.0)):
        await handled(seen, 3 + len(data) + 2)
        await asyncio.sleep(1.5)
        await producer.publish_many(TELEMETRY_INTERVAL, intervals(ctx, "A", 30, 300, [0.0]))
        [v1] = await eventually(lambda: reports(ctx), lambda found: len(found) == 1)
        assert v1.data.delivered_mw == pytest.approx(0.002, abs=1e-9)
        await producer.publish_many(TELEMETRY_INTERVAL, intervals(ctx, "C", 0, 300, [2.0] * 3))
        [_, v2] = await eventually(lambda: reports(ctx), lambda found: len(found) == 2)
    assert v2.data.delivered_mw == pytest.approx(0.004, abs=1e-9)
    assert v2.data.diff is not None and v2.data.diff.delivered_wh == 500


async def test_a_version_computed_before_the_latest_data_leaves_the_window_marked(
    ctx: dict,
) -> None:
    # Store-level guards for two settlers racing (a consumer batch and the deadline timer, or
    # two replicas): a version computed from an older count of data arrivals is recorded but
    # leaves the window marked for a restatement; a version that no longer follows the latest
    # (filed meanwhile), or one after the final, is refused.
    pool = ctx["pool"]
    instruction, confirmed = dispatch(ctx, ctx["instruction"], "confirmed")
    await store.save_inputs(pool, program(0.98), [], [], [instruction], [confirmed])
    await pool.execute("UPDATE instructions SET data_seq = 5")
    fleet = domain.Fleet([], [], [], np.zeros(0))
    due = domain.Due(
        instruction.instruction_id, ctx["resource"], at(0), at(15), (0.0,), (0.012,), 0.012, 1
    )
    empty = domain.History(at(0).date(), np.zeros((0, 1, 24)), frozenset())
    result = domain.settle(due, fleet, domain.Readings.of(fleet, []), empty, program(0.98))

    def version(quality: DataQuality, previous: SettlementFiled | None) -> SettlementFiled:
        report, _ = domain.build_report(
            due, fleet, result, [], program(0.98), quality, previous, datetime.now(UTC)
        )
        return report

    v1 = version(DataQuality.PRELIMINARY, None)
    async with pool.acquire() as conn, conn.transaction():
        assert await store.record_report(conn, v1, [], data_seq=4)  # data 5 came meanwhile
    state = await pool.fetchrow("SELECT state, dirty FROM instructions")
    assert (state["state"], state["dirty"]) == ("filed", True)
    async with pool.acquire() as conn, conn.transaction():
        assert not await store.record_report(conn, v1, [], data_seq=5)  # v1 is filed already
    v2 = version(DataQuality.FINAL, v1)
    async with pool.acquire() as conn, conn.transaction():
        assert await store.record_report(conn, v2, [], data_seq=5)
    v3 = version(DataQuality.RESTATED, v2)
    async with pool.acquire() as conn, conn.transaction():
        assert not await store.record_report(conn, v3, [], data_seq=5)  # final stands
    assert await pool.fetchval("SELECT state FROM instructions") == "final"
    assert await count(pool, "reports") == 2


async def test_a_window_wholly_covered_by_billing_quality_meter_data_is_final_at_once(
    ctx: dict,
) -> None:
    # Demand response, measured at the site meter. A and B's utility meter data (Green Button,
    # source "espi") covers their history and the whole window: billing-quality, so version 1
    # is final. Site load = -net_kw: 2.0 kW in the history (the baseline), 0.5 kW in the
    # window -> each is credited 2.0 - 0.5 = 1.5 kW; 3.0 kW = 0.003 MW for the resource.
    meter = ReadingSource(vendor="espi", endpoint="green-button-atom")

    def metered(name: str, first_min: int, length_s: int, load_kw: list[float]) -> list:
        return [
            TelemetryInterval(
                asset_id=ctx["assets"][name],
                interval_start=at(first_min + i * length_s / 60),
                interval_s=length_s,
                net_kw=-v,
                source=meter,
            )
            for i, v in enumerate(load_kw)
        ]

    await enrol(ctx, [asset(ctx, "A", "east"), asset(ctx, "B", "west")])
    hours = HISTORY_DAYS * 24
    data = [
        r
        for name in "AB"
        for r in [
            *metered(name, -hours * 60, 3600, [2.0] * hours),
            *metered(name, 0, 300, [0.5] * 3),
        ]
    ]
    await ctx["producer"].publish_many(TELEMETRY_INTERVAL, data)
    instruction, confirmed = dispatch(ctx, ctx["instruction"], "confirmed", mw=0.003)
    await ctx["producer"].publish_many(DISPATCH_INSTRUCTION, [instruction])
    await ctx["producer"].publish_many(DISPATCH_CONFIRMED, [confirmed])
    demand_response = Settler(
        ctx["pool"],
        ctx["producer"],
        dataclasses.replace(program(0.98), model=ParticipationModel.DEMAND_RESPONSE),
        store.Timing(60 * 86400.0, 3600.0, 0.0),
    )
    seen: list[str] = []
    async with service_running(ctx, seen, demand_response):
        await handled(seen, 2 + len(data) + 2)
        [final] = await eventually(lambda: reports(ctx), lambda found: len(found) == 1)
    assert final.data.data_quality == DataQuality.FINAL
    assert final.data.participation_model == "demand-response"
    assert final.data.delivered_mw == pytest.approx(0.003, abs=1e-9)
