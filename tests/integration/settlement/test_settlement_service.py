"""settlement on the real consumer runner, Kafka and PostgreSQL.

The shared topics carry other tests' events: the handler tests read from where the topics ended
when the test began and pass the handler only their own events (unique asset, resource and
instruction ids), with a database of their own. The whole-service test starts the process with a
grace so long that it files nothing for anyone.
"""

from __future__ import annotations

import asyncio
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
import pytest

from nexwatt_settlement.bootstrap import MIGRATIONS
from nexwatt_settlement.handlers import make_handler
from nexwatt_shared.codec import decode
from nexwatt_shared.contracts import (
    AssetRegistered,
    DispatchConfirmed,
    DispatchInstruction,
    TelemetryInterval,
)
from nexwatt_shared.envelope import CloudEvent
from nexwatt_shared.kafka.consumer import Delivery
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.postgres import database_url
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
WINDOW_START = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
GRACE_S = 180.0


def at(minutes: float) -> datetime:
    return WINDOW_START + timedelta(minutes=minutes)


@pytest.fixture
async def ctx(servers: dict[str, str]) -> AsyncIterator[dict]:
    async with handler_context(servers, "settlement", MIGRATIONS, TOPICS) as ctx:
        ctx["instruction"] = unique("I")
        ctx["rejected"] = unique("I-rejected")
        yield ctx


def is_mine(ctx: dict, d: Delivery) -> bool:
    p = d.payload
    if isinstance(p, DispatchInstruction | DispatchConfirmed):
        return p.instruction_id in (ctx["instruction"], ctx["rejected"])
    return p.asset_id in ctx["assets"].values()


def service_running(ctx: dict, seen: list[str]) -> AbstractAsyncContextManager[str]:
    handler = make_handler(ctx["pool"], ctx["producer"], GRACE_S, lookback_s=1800.0)
    return handler_running(ctx, TOPICS, handler, lambda d: is_mine(ctx, d), seen)


def asset(ctx: dict, name: str, cohort: str, status: str = "enrolled") -> AssetRegistered:
    return AssetRegistered(
        asset_id=ctx["assets"][name],
        status=status,
        asset_type="solar_storage",
        inverter="SolarEdge SE7600",
        vendor="solaredge",
        capacity_kw=7.6,
        storage_kwh=13.5,
        meter_id=f"M-{name}",
        iso="PJM",
        iso_zone="PJM-PEPCO",
        resource_id=ctx["resource"],
        cohort=cohort,
        telemetry_interval_s=60,
        version=1,
        updated_at=at(-120),
    )


def intervals(ctx: dict, name: str, first_min: int, length_s: int, kw: list[float]) -> list:
    return [
        TelemetryInterval(
            asset_id=ctx["assets"][name],
            interval_start=at(first_min + i * length_s / 60),
            interval_s=length_s,
            pv_kw=0.0,
            load_kw=1.0,
            battery_kw=v,
            net_kw=v - 1.0,
            soc_pct=60.0,
        )
        for i, v in enumerate(kw)
    ]


def dispatch(ctx: dict, instruction_id: str, status: str) -> tuple:
    window = {"window_start": at(0), "window_end": at(15)}
    instruction = DispatchInstruction(
        **window,
        instruction_id=instruction_id,
        resource_id=ctx["resource"],
        mw=0.012,
        issued_at=at(-2),
    )
    confirmed = DispatchConfirmed(
        **window,
        instruction_id=instruction_id,
        resource_id=ctx["resource"],
        status=status,
        reason="no headroom" if status == "rejected" else None,
        mw_requested=0.012,
        mw_confirmed=0.0 if status == "rejected" else 0.012,
        assets_commanded=2,
        assets_dispatched=0 if status == "rejected" else 2,
        instruction_received_at=at(-2),
        confirmed_at=at(-2),
        processing_ms=120.0,
    )
    return instruction, confirmed


async def reports(ctx: dict) -> list[CloudEvent]:
    """Every settlement event published for the test's resource, in order."""
    records = await read_all(ctx["bootstrap"], SETTLEMENT_FILED.name)
    return [decode(SETTLEMENT_FILED, r.value) for r in records if r.key == ctx["resource"].encode()]


async def count(pool: asyncpg.Pool, table: str) -> int:
    return await pool.fetchval(f"SELECT count(*) FROM {table}")


async def test_report_is_filed_once_after_window_end_plus_grace_with_the_hand_computed_delivery(
    ctx: dict,
) -> None:
    producer = ctx["producer"]
    # Window 10:00-10:15, grace 180 s -> settled once the watermark reaches 10:18.
    # A (east), 1-minute telemetry: 1.0 kW over 09:30-10:00 -> baseline 1.0 kW;
    #   5.0 kW over 10:00-10:15 -> delivers 5.0 - 1.0 = 4.0 kW; 0 kW over 10:15-10:17
    # B (west), 5-minute telemetry: -2.0 kW over 09:30-10:00 -> baseline -2.0 kW;
    #   3.0 kW over 10:00-10:15 -> delivers 3.0 - (-2.0) = 5.0 kW
    # C unenrolled: its 100 kW count for nothing.
    # D (east) reports once, in June: a clock far ahead of the others', though not of the wall
    #   clock. It must not move the resource's watermark; it delivers nothing in the window.
    # Two readings of A overlap its stored ones (a re-send 1 s late, a "correction"): refused.
    # delivered_mw  = 4.0 + 5.0 = 9.0 kW = 0.009 MW over the whole window
    # delivered_mwh = 9.0 kW * 0.25 h = 2.25 kWh = 0.00225 MWh
    # performance   = 0.009 / 0.012 * 100 = 75 %
    # cohorts: east 4.0 kW * 0.25 h = 1.0 kWh (44.444 %), west 5.0 * 0.25 = 1.25 kWh (55.556 %)
    await producer.publish_many(
        ASSET_REGISTERED,
        [asset(ctx, "A", "east"), asset(ctx, "B", "west"), asset(ctx, "C", "east", "unenrolled"),
         asset(ctx, "D", "east")],
    )  # fmt: skip
    telemetry = [
        *intervals(ctx, "A", -30, 60, [1.0] * 30 + [5.0] * 15 + [0.0] * 2),  # ends 10:17
        *intervals(ctx, "B", -30, 300, [-2.0] * 6 + [3.0] * 3),  # ends 10:15
        *intervals(ctx, "C", 0, 300, [100.0] * 3),
        *intervals(ctx, "D", 79 * 24 * 60, 300, [0.0]),  # 2026-06-01
    ]
    await producer.publish_many(TELEMETRY_INTERVAL, telemetry)
    [late_copy] = intervals(ctx, "A", 5 + 1 / 60, 60, [5.0])  # 10:05:01
    [correction] = intervals(ctx, "A", 5, 60, [9.0])
    await producer.publish_many(TELEMETRY_INTERVAL, [late_copy, correction])
    instruction, confirmed = dispatch(ctx, ctx["instruction"], "confirmed")
    rejected_instruction, rejected = dispatch(ctx, ctx["rejected"], "rejected")
    await producer.publish_many(DISPATCH_INSTRUCTION, [instruction, rejected_instruction])
    await producer.publish_many(DISPATCH_CONFIRMED, [confirmed, rejected])
    published = 4 + len(telemetry) + 4

    seen: list[str] = []
    async with service_running(ctx, seen) as group:
        await handled(seen, published)
        # The resource's watermark is the time most of its enrolled assets reached: of A at
        # 10:17, B at 10:15 and D in June, 10:17 (the median), short of 10:18.
        assert await count(ctx["pool"], "reports") == 0
        assert await reports(ctx) == []
        letters = [
            json.loads(r.value)["data"]["error"]
            for r in await read_all(ctx["bootstrap"], DEAD_LETTER.name)
            if dict(r.headers)["nexwatt.consumer.group"] == group.encode()
        ]
        assert len(letters) == 2, letters
        # Both channels kept (battery_kw, net_kw) overlap; the reason names each.
        assert letters[0].startswith(
            "battery_kw: overlaps the interval 2026-03-14T10:05:00+00:00 + 60 s"
        )
        assert "; net_kw: overlaps the interval" in letters[0]
        assert letters[1].startswith(
            "battery_kw: other values for the stored interval 2026-03-14T10:05:00"
        )

        # A reaches 10:18 and B 10:20: the watermark (the median) is 10:20; the window is settled.
        more = [*intervals(ctx, "A", 17, 60, [0.0]), *intervals(ctx, "B", 15, 300, [0.0])]
        await producer.publish_many(TELEMETRY_INTERVAL, more)
        await handled(seen, published + 2)
        filed = await reports(ctx)
        assert len(filed) == 1
        event, report = filed[0], filed[0].data
        assert event.id == f"settlement:{ctx['instruction']}"
        assert report.instruction_id == ctx["instruction"]
        assert report.filed_at == at(20) == event.time
        assert report.delivered_mw == pytest.approx(0.009, abs=1e-9)
        assert report.delivered_mwh == pytest.approx(0.00225, abs=1e-9)
        assert report.performance_pct == pytest.approx(75.0, abs=1e-6)
        assert report.assets_metered == 2
        assert [(c.cohort, c.assets) for c in report.cohorts] == [("east", 2), ("west", 1)]
        assert [c.share_pct for c in report.cohorts] == [44.444, 55.556]
        assert report.intervals_csv.splitlines()[1:] == [
            f"2026-03-14T10:{m:02d}:00Z,-0.0010,0.0080,0.0090" for m in (0, 5, 10)
        ]
        rows = {t: await count(ctx["pool"], t) for t in ("telemetry", "reports")}
        # One row per reading and channel kept: battery_kw and net_kw.
        assert rows == {"telemetry": 2 * (len(telemetry) + 2), "reports": 1}

        # Redelivered telemetry (new event ids, same intervals) changes nothing.
        await producer.publish_many(TELEMETRY_INTERVAL, telemetry[-5:])
        await handled(seen, published + 2 + 5)

    # A fresh group replays every event into the same store: no second report, no new rows.
    replayed: list[str] = []
    async with service_running(ctx, replayed):
        await handled(replayed, len(seen))
    assert await reports(ctx) == filed
    assert {t: await count(ctx["pool"], t) for t in ("telemetry", "reports")} == rows


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
            "NEXWATT_SETTLEMENT_GRACE_S": str(10 * 365 * 86400),  # files nothing for anyone
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
    await producer.publish_many(
        ASSET_REGISTERED, [asset(ctx, "A", "east"), asset(ctx, "B", "west")]
    )
    telemetry = [
        *intervals(ctx, "A", -30, 300, [1.0] * 6 + [5.0] * 3 + [0.0]),  # ends 10:20
        *intervals(ctx, "B", -30, 300, [0.0] * 6 + [3.0] * 3 + [0.0]),
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
            handler_running(ctx, TOPICS, make_handler(ctx["pool"], producer, GRACE_S, 1800.0),
                            keep, first),
            handler_running(ctx, TOPICS, make_handler(ctx["pool"], other, GRACE_S, 1800.0),
                            keep, second),
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
            await producer.publish_many(TELEMETRY_INTERVAL, intervals(ctx, "A", 20, 300, [0.0]))
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
