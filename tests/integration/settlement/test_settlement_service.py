"""settlement on the real consumer runner, Kafka and PostgreSQL.

The shared topics carry other tests' events: the handler tests read from where the topics ended
when the test began and pass the handler only their own events (unique asset, resource and
instruction ids), with a database of their own. The whole-service test starts the process with a
grace so long that it files nothing for anyone.
"""

from __future__ import annotations

import asyncio
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
from nexwatt_shared.postgres import database_url
from nexwatt_shared.topics import (
    ASSET_REGISTERED,
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


def service_running(ctx: dict, seen: list[str]) -> AbstractAsyncContextManager[None]:
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
    # delivered_mw  = 4.0 + 5.0 = 9.0 kW = 0.009 MW over the whole window
    # delivered_mwh = 9.0 kW * 0.25 h = 2.25 kWh = 0.00225 MWh
    # performance   = 0.009 / 0.012 * 100 = 75 %
    # cohorts: east 4.0 kW * 0.25 h = 1.0 kWh (44.444 %), west 5.0 * 0.25 = 1.25 kWh (55.556 %)
    await producer.publish_many(
        ASSET_REGISTERED,
        [asset(ctx, "A", "east"), asset(ctx, "B", "west"), asset(ctx, "C", "east", "unenrolled")],
    )
    telemetry = [
        *intervals(ctx, "A", -30, 60, [1.0] * 30 + [5.0] * 15 + [0.0] * 2),  # ends 10:17
        *intervals(ctx, "B", -30, 300, [-2.0] * 6 + [3.0] * 3),  # ends 10:15
        *intervals(ctx, "C", 0, 300, [100.0] * 3),
    ]
    await producer.publish_many(TELEMETRY_INTERVAL, telemetry)
    instruction, confirmed = dispatch(ctx, ctx["instruction"], "confirmed")
    rejected_instruction, rejected = dispatch(ctx, ctx["rejected"], "rejected")
    await producer.publish_many(DISPATCH_INSTRUCTION, [instruction, rejected_instruction])
    await producer.publish_many(DISPATCH_CONFIRMED, [confirmed, rejected])
    published = 3 + len(telemetry) + 4

    seen: list[str] = []
    async with service_running(ctx, seen):
        await handled(seen, published)
        # The resource's watermark is at 10:17 (A's newest interval end), short of 10:18.
        assert await count(ctx["pool"], "reports") == 0
        assert await reports(ctx) == []

        await producer.publish_many(TELEMETRY_INTERVAL, intervals(ctx, "A", 17, 60, [0.0]))
        await handled(seen, published + 1)
        filed = await reports(ctx)
        assert len(filed) == 1
        event, report = filed[0], filed[0].data
        assert event.id == f"settlement:{ctx['instruction']}"
        assert report.instruction_id == ctx["instruction"]
        assert report.filed_at == at(18) == event.time
        assert report.delivered_mw == pytest.approx(0.009, abs=1e-9)
        assert report.delivered_mwh == pytest.approx(0.00225, abs=1e-9)
        assert report.performance_pct == pytest.approx(75.0, abs=1e-6)
        assert report.assets_metered == 2
        assert [(c.cohort, c.assets) for c in report.cohorts] == [("east", 1), ("west", 1)]
        assert [c.share_pct for c in report.cohorts] == [44.444, 55.556]
        assert report.intervals_csv.splitlines()[1:] == [
            f"2026-03-14T10:{m:02d}:00Z,-0.0010,0.0080,0.0090" for m in (0, 5, 10)
        ]
        rows = {t: await count(ctx["pool"], t) for t in ("telemetry", "reports")}
        assert rows == {"telemetry": len(telemetry) + 1, "reports": 1}

        # Redelivered telemetry (new event ids, same intervals) changes nothing.
        await producer.publish_many(TELEMETRY_INTERVAL, telemetry[-5:])
        await handled(seen, published + 1 + 5)

    # A fresh group replays every event into the same store: no second report, no new rows.
    replayed: list[str] = []
    async with service_running(ctx, replayed):
        await handled(replayed, len(seen))
    assert await reports(ctx) == filed
    assert {t: await count(ctx["pool"], t) for t in ("telemetry", "reports")} == rows


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
                    "SELECT count(*) FROM telemetry WHERE asset_id = $1", ctx["assets"]["A"]
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
