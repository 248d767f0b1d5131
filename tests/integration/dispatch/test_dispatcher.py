"""The dispatcher against real Redis, PostgreSQL and Kafka, with acks played by the test."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from nexwatt_dispatch.availability import Availability
from nexwatt_dispatch.bootstrap import MIGRATIONS
from nexwatt_dispatch.config import Settings
from nexwatt_dispatch.handlers import Dispatcher
from nexwatt_dispatch.log import DispatchLog
from nexwatt_shared.contracts import (
    AssetCommand,
    AssetCommandAck,
    AssetRegistered,
    DispatchInstruction,
    DispatchStatus,
    TelemetryInterval,
)
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.postgres import open_pool
from nexwatt_shared.redis_client import open_redis
from nexwatt_shared.topics import DISPATCH_CONFIRMED
from tests.helpers import TopicWatcher, unique

pytestmark = pytest.mark.integration
NOW = datetime(2026, 3, 12, 13, 17, tzinfo=UTC)


@pytest.fixture
async def ctx(servers: dict[str, str]) -> AsyncIterator[dict]:
    bootstrap = servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"]
    pool = await open_pool(
        servers["NEXWATT_POSTGRES_URL"], unique("test_dispatch").replace("-", "_"), MIGRATIONS
    )
    redis = open_redis(servers["NEXWATT_REDIS_URL"])
    producer = EventProducer(bootstrap, "test")
    await producer.start()
    watcher = await TopicWatcher(bootstrap, [DISPATCH_CONFIRMED]).start()
    availability = Availability(redis)
    settings = Settings(dispatch_ack_timeout_s=2.0)
    yield {
        "pool": pool,
        "availability": availability,
        "dispatcher": Dispatcher(settings, availability, DispatchLog(pool), producer),
        "watcher": watcher,
        "resource": unique("NXW-PJM-T"),
    }
    await watcher.stop()
    await producer.stop()
    await redis.aclose()
    await pool.close()


def asset(ctx: dict, asset_id: str, version: int = 1, status: str = "enrolled") -> AssetRegistered:
    # Lossless, battery rated as its inverter: the limits are headroom and energy.
    return AssetRegistered(
        round_trip_efficiency=1.0,
        asset_id=asset_id, status=status, asset_type="solar_storage", inverter="SolarEdge SE7600",
        vendor="solaredge", capacity_kw=7.6, storage_kwh=9.8, backup_reserve_pct=20.0,
        meter_id="M", iso="PJM", iso_zone="PJM-PEPCO", resource_id=ctx["resource"],
        cohort="residential", telemetry_interval_s=300, version=version, updated_at=NOW,
    )  # fmt: skip


def telemetry(asset_id: str, end: datetime, pv_kw: float, soc_pct: float) -> TelemetryInterval:
    return TelemetryInterval(
        asset_id=asset_id, interval_start=end - timedelta(minutes=5), interval_s=300,
        pv_kw=pv_kw, load_kw=1.0, battery_kw=0.0, net_kw=pv_kw - 1.0, soc_pct=soc_pct,
    )  # fmt: skip


async def acknowledge(availability: Availability, instruction_id: str, acks: dict) -> None:
    """Play the gateways: acknowledge each asset's command once dispatch has sent it."""
    await asyncio.sleep(0.2)
    await availability.record_acks(
        [
            AssetCommandAck(
                command_id=f"{instruction_id}:{asset_id}",
                instruction_id=instruction_id,
                asset_id=asset_id,
                accepted=kw > 0,
                setpoint_kw=kw,
                acked_at=NOW,
            )
            for asset_id, kw in acks.items()
        ]
    )


async def test_allocation_confirmation_and_replay(ctx: dict) -> None:
    a, b, c = (unique(f"T-{x}") for x in "ABC")
    availability: Availability = ctx["availability"]
    # A: headroom 7.6 - 2.6 = 5.0 kW; energy (90 - 20) % * 9.8 kWh / 1 h = 6.86 kW -> 5.0 kW
    # B: headroom 7.6 - 0.6 = 7.0 kW; energy (50 - 20) % * 9.8 / 1 h = 2.94 kW -> 2.94 kW
    # C: unenrolled after enrolling (version 2): not part of the resource any more.
    await availability.apply_registrations([asset(ctx, a), asset(ctx, b), asset(ctx, c)])
    await availability.apply_registrations([asset(ctx, c, version=2, status="unenrolled")])
    await availability.apply_registrations([asset(ctx, a, version=1)])  # a replay: no effect
    await availability.apply_telemetry(
        [telemetry(a, NOW, 2.6, 90.0), telemetry(b, NOW, 0.6, 50.0),
         telemetry(b, NOW - timedelta(minutes=5), 9.9, 99.0)]  # older: must not win
    )  # fmt: skip
    # 0.006 MW = 6 kW over limits 5.0 + 2.94 = 7.94 -> A 3.778 kW, B 2.222 kW (pro rata);
    # B's gateway acknowledges only 2.0 kW -> confirmed 5.778 kW, partial.
    instruction = DispatchInstruction(
        instruction_id=unique("I"), resource_id=ctx["resource"], mw=0.006,
        window_start=NOW - timedelta(minutes=2), window_end=NOW + timedelta(hours=1), issued_at=NOW,
    )  # fmt: skip
    await asyncio.gather(
        ctx["dispatcher"].answer(instruction),
        acknowledge(availability, instruction.instruction_id, {a: 3.778, b: 2.0}),
    )
    mine = {"instruction_id": instruction.instruction_id}
    [answer] = await ctx["watcher"].wait_for(DISPATCH_CONFIRMED, **mine)
    assert answer.status == DispatchStatus.PARTIAL
    assert answer.mw_confirmed == pytest.approx(0.005778, abs=1e-9)
    assert (answer.assets_commanded, answer.assets_dispatched) == (2, 2)
    commands = await ctx["pool"].fetch(
        "SELECT asset_id, setpoint_kw, limit_kw FROM commands WHERE instruction_id = $1",
        instruction.instruction_id,
    )
    got = {r["asset_id"]: (r["setpoint_kw"], r["limit_kw"]) for r in commands}
    assert got[a] == pytest.approx((6 * 5.0 / 7.94, 5.0), abs=1e-3)
    assert got[b] == pytest.approx((6 * 2.94 / 7.94, 2.94), abs=1e-3)

    # Redelivered: nothing is decided again, and nothing more is published...
    answer_id = f"confirmed:{instruction.instruction_id}"
    await ctx["dispatcher"].answer(instruction)
    await asyncio.sleep(1.0)
    assert len(ctx["watcher"].payloads(DISPATCH_CONFIRMED, **mine)) == 1
    # ...unless the first try died between recording its answer and publishing it: then the
    # recorded bytes go out, byte for byte the same record.
    await ctx["pool"].execute(
        "UPDATE outbox SET published_at = NULL WHERE event_id = $1", answer_id
    )
    await ctx["dispatcher"].answer(instruction)
    await ctx["watcher"].wait_for(DISPATCH_CONFIRMED, count=2, **mine)
    sent = [
        record.value
        for name, record, event in ctx["watcher"].events
        if event is not None and event.data.instruction_id == instruction.instruction_id
    ]
    assert len(sent) == 2 and sent[0] == sent[1]
    assert json.loads(sent[0])["id"] == answer_id
    assert await ctx["pool"].fetchval("SELECT count(*) FROM commands") == 2


async def test_an_unknown_resource_is_rejected_and_logged(ctx: dict) -> None:
    instruction = DispatchInstruction(
        instruction_id=unique("I"), resource_id=unique("NXW-PJM-NONE"), mw=1.0,
        window_start=NOW, window_end=NOW + timedelta(hours=1), issued_at=NOW,
    )  # fmt: skip
    await ctx["dispatcher"].answer(instruction)
    [answer] = await ctx["watcher"].wait_for(
        DISPATCH_CONFIRMED, instruction_id=instruction.instruction_id
    )
    assert answer.status == DispatchStatus.REJECTED and "unknown resource" in answer.reason
    row = await ctx["pool"].fetchrow(
        "SELECT status, reason FROM instructions WHERE instruction_id = $1",
        instruction.instruction_id,
    )
    assert row["status"] == "rejected" and "unknown resource" in row["reason"]


async def test_a_replay_after_a_crash_resends_the_decision_instead_of_deciding_again(
    ctx: dict,
) -> None:
    a, b = unique("T-A"), unique("T-B")
    availability: Availability = ctx["availability"]
    await availability.apply_registrations([asset(ctx, a), asset(ctx, b)])
    await availability.apply_telemetry([telemetry(a, NOW, 0.6, 90.0), telemetry(b, NOW, 0.6, 90.0)])
    instruction = DispatchInstruction(
        instruction_id=unique("I"), resource_id=ctx["resource"], mw=0.004,
        window_start=NOW, window_end=NOW + timedelta(hours=1), issued_at=NOW,
    )  # fmt: skip
    # The first delivery decided "all 4 kW on A" and crashed before answering; B has since
    # become just as available, so deciding again would split the request.
    dispatch_log: DispatchLog = ctx["dispatcher"].log
    await dispatch_log.record_instruction(instruction)
    decided = AssetCommand(
        command_id=f"{instruction.instruction_id}:{a}", instruction_id=instruction.instruction_id,
        asset_id=a, resource_id=ctx["resource"], setpoint_kw=4.0, window_start=NOW,
        window_end=NOW + timedelta(hours=1), issued_at=NOW,
    )  # fmt: skip
    await dispatch_log.record_commands([decided], [6.86])
    await asyncio.gather(
        ctx["dispatcher"].answer(instruction),
        acknowledge(availability, instruction.instruction_id, {a: 4.0}),
    )
    [answer] = await ctx["watcher"].wait_for(
        DISPATCH_CONFIRMED, instruction_id=instruction.instruction_id
    )
    assert answer.status == DispatchStatus.CONFIRMED
    assert (answer.assets_commanded, answer.mw_confirmed) == (1, pytest.approx(0.004))


async def test_a_replayed_registration_restores_membership(ctx: dict) -> None:
    a = unique("T-A")
    availability: Availability = ctx["availability"]
    await availability.apply_registrations([asset(ctx, a)])
    await availability.redis.srem(f"dispatch:resource:{ctx['resource']}", a)  # state lost
    await availability.apply_registrations([asset(ctx, a)])  # the same record, replayed
    assert (await availability.fleet(ctx["resource"])).asset_ids == [a]
    await availability.apply_registrations([asset(ctx, a, version=2, status="suspended")])
    await availability.apply_registrations([asset(ctx, a, version=1)])  # older: ignored
    assert (await availability.fleet(ctx["resource"])).asset_ids == []


async def test_an_asset_whose_soc_is_reported_missing_is_not_dispatched(ctx: dict) -> None:
    a, b = unique("T-A"), unique("T-B")
    availability: Availability = ctx["availability"]
    # Both as in the first test's A (headroom 7.6 - 2.6 = 5.0 kW binds, energy 6.86 kW), but
    # B's newest battery reading (ending at NOW) reports its SoC missing: B is not available,
    # even though its SoC of 5 minutes before was 90 %. A 15-minute PV reading of B changes
    # nothing. 0.006 MW asked -> A alone, at its 5.0 kW limit.
    missing = TelemetryInterval(
        asset_id=b, interval_start=NOW - timedelta(minutes=5), interval_s=300,
        quality={"battery_kw": "missing", "soc_pct": "missing"},
    )  # fmt: skip
    pv_only = TelemetryInterval(
        asset_id=b, interval_start=NOW - timedelta(minutes=15), interval_s=900, pv_kw=2.6
    )
    await availability.apply_registrations([asset(ctx, a), asset(ctx, b)])
    await availability.apply_telemetry(
        [telemetry(a, NOW, 2.6, 90.0), telemetry(b, NOW - timedelta(minutes=5), 2.6, 90.0),
         missing, pv_only]
    )  # fmt: skip
    fleet = await availability.fleet(ctx["resource"])
    assert fleet.asset_ids == sorted([a, b])
    at_b = fleet.asset_ids.index(b)
    assert np.isnan(fleet.soc_pct[at_b]) and fleet.soc_end_epoch[at_b] == NOW.timestamp()
    instruction = DispatchInstruction(
        instruction_id=unique("I"), resource_id=ctx["resource"], mw=0.006,
        window_start=NOW, window_end=NOW + timedelta(hours=1), issued_at=NOW,
    )  # fmt: skip
    await asyncio.gather(
        ctx["dispatcher"].answer(instruction),
        acknowledge(availability, instruction.instruction_id, {a: 5.0}),
    )
    [answer] = await ctx["watcher"].wait_for(
        DISPATCH_CONFIRMED, instruction_id=instruction.instruction_id
    )
    assert answer.assets_commanded == 1 and answer.mw_confirmed == pytest.approx(0.005)
    assert answer.reason == "fleet limit 0.005 MW"

    # A resource whose only asset's SoC is missing: nothing to command, and the reason says so.
    alone = {**ctx, "resource": unique("NXW-PJM-T")}
    await availability.apply_registrations([asset(alone, b, version=2)])
    lonely = instruction.model_copy(
        update={"instruction_id": unique("I"), "resource_id": alone["resource"]}
    )
    await ctx["dispatcher"].answer(lonely)
    [rejected] = await ctx["watcher"].wait_for(
        DISPATCH_CONFIRMED, instruction_id=lonely.instruction_id
    )
    assert rejected.status == DispatchStatus.REJECTED
    assert rejected.reason == "no asset available: 1 of 1 assets with SoC unknown or stale"
