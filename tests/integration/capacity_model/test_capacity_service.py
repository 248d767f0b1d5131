"""capacity-model's handler on the real consumer runner, Kafka and PostgreSQL.

The shared topics carry other tests' events: each test reads from where the topics ended when it
began, passes the handler only its own assets (unique ids, a unique resource), and uses a
database of its own. Nothing is published for anyone else's resource.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from nexwatt_capacity_model import offer_store
from nexwatt_capacity_model.bootstrap import MIGRATIONS, api
from nexwatt_capacity_model.handlers import make_handler
from nexwatt_capacity_model.store import current_snapshot
from nexwatt_shared.codec import decode
from nexwatt_shared.contracts import AssetRegistered, CapacitySnapshot, TelemetryInterval
from nexwatt_shared.envelope import CloudEvent
from nexwatt_shared.topics import ASSET_REGISTERED, CAPACITY_SNAPSHOT, TELEMETRY_INTERVAL
from tests.helpers import (
    deliveries,
    handled,
    handler_context,
    handler_running,
    read_all,
)

pytestmark = pytest.mark.integration
TOPICS = [ASSET_REGISTERED, TELEMETRY_INTERVAL]
T0 = datetime(2026, 3, 13, 10, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
async def ctx(servers: dict[str, str]) -> AsyncIterator[dict]:
    async with handler_context(servers, "capacity", MIGRATIONS, TOPICS) as ctx:
        yield ctx


def service_running(ctx: dict, seen: list[str]) -> AbstractAsyncContextManager[None]:
    mine = set(ctx["assets"].values())
    handler = make_handler(ctx["pool"], ctx["producer"], freshness_s=900.0)
    return handler_running(ctx, TOPICS, handler, lambda d: d.payload.asset_id in mine, seen)


def asset(ctx: dict, name: str, version: int, **changes: object) -> AssetRegistered:
    fields = {
        "asset_id": ctx["assets"][name],
        "status": "enrolled",
        "asset_type": "solar_storage",
        "inverter": "SolarEdge SE7600",
        "vendor": "solaredge",
        "capacity_kw": 7.6,
        "storage_kwh": 13.5,
        "backup_reserve_pct": 20.0,
        # Lossless, other ratings left out (battery power = the inverter's, PV = the inverter's,
        # DC-coupled): the figures are inverter headroom and energy above the reserve.
        "round_trip_efficiency": 1.0,
        "meter_id": f"M-{name}",
        "iso": "PJM",
        "iso_zone": "PJM-PEPCO",
        "resource_id": ctx["resource"],
        "cohort": "east",
        "telemetry_interval_s": 60,
        "version": version,
        "updated_at": at(-60 + version),
    }
    return AssetRegistered(**{**fields, **changes})


def telemetry(ctx: dict, name: str, end_min: float, pv_kw: float, soc_pct: float):
    return TelemetryInterval(
        asset_id=ctx["assets"][name],
        interval_start=at(end_min - 1),
        interval_s=60,
        pv_kw=pv_kw,
        load_kw=1.0,
        battery_kw=0.0,
        net_kw=pv_kw - 1.0,
        soc_pct=soc_pct,
    )


async def snapshots(ctx: dict) -> list[CloudEvent]:
    """Every snapshot event published for the test's resource, in order."""
    records = await read_all(ctx["bootstrap"], CAPACITY_SNAPSHOT.name)
    return [
        decode(CAPACITY_SNAPSHOT, r.value) for r in records if r.key == ctx["resource"].encode()
    ]


def snapshot_of(
    *, enrolled: int, ucap_mw: tuple[float, float, float], **figures: object
) -> dict[str, object]:
    """What a snapshot of one cohort ("east") whose assets all report should say."""
    ucap = dict(zip(("2025/26", "2026/27", "2027/28"), ucap_mw, strict=True))
    return {
        **figures,
        "assets_enrolled": enrolled,
        "assets_reporting": enrolled,
        "ucap_mw": ucap,
        "cohorts": [
            {
                "cohort": "east",
                "assets_enrolled": enrolled,
                "assets_reporting": enrolled,
                "available_mw": figures["available_mw"],
                "icap_mw": figures["icap_mw"],
                "ucap_mw": ucap,
            }
        ],
    }


def assert_snapshot(got: CapacitySnapshot, resource_id: str, expected: dict[str, object]) -> None:
    """Equal to the hand-worked figures within 1e-6 MW (snapshots are rounded to the watt,
    and a half watt may round either way)."""

    def flat(value: object, path: str = "") -> dict[str, object]:
        if isinstance(value, dict):
            return {
                k: v for key, item in value.items() for k, v in flat(item, f"{path}/{key}").items()
            }
        if isinstance(value, list):
            return {
                k: v for i, item in enumerate(value) for k, v in flat(item, f"{path}/{i}").items()
            }
        return {path: value}

    assert got.resource_id == resource_id
    found = flat(got.model_dump(exclude={"resource_id"}))
    want = flat(expected)
    assert set(found) == set(want)
    for key, value in want.items():
        if isinstance(value, float):
            assert found[key] == pytest.approx(value, abs=1e-6), key
        else:
            assert found[key] == value, key


async def test_snapshot_is_published_with_the_hand_computed_figures_and_only_on_change(
    ctx: dict,
) -> None:
    producer = ctx["producer"]
    # A 7.6 kW, 13.5 kWh, reserve 20 %, interval ending 10:00, pv 2.0, soc 80:
    #   min(7.6 - 2.0 = 5.6 kW, (80 - 20)/100 * 13.5 = 8.1 kWh / 1 h) = 5.6 kW
    # B 5.0 kW, 10 kWh, reserve 30 %, ending 09:50 (fresh within 900 s), pv 0.5, soc 50:
    #   min(4.5 kW, (50 - 30)/100 * 10 = 2.0 kWh / 1 h) = 2.0 kW
    # C suspended: not counted.
    # -> 2 enrolled, 2 reporting, nameplate 12.6 kW, storage 23.5 kWh, available 7.6 kW,
    #    as of 10:00 (the newest input: A's interval end; the records are from 09:01)
    await producer.publish_many(
        ASSET_REGISTERED,
        [
            asset(ctx, "A", 1),
            asset(ctx, "B", 1, capacity_kw=5.0, storage_kwh=10.0, backup_reserve_pct=30.0),
            asset(ctx, "C", 1, status="suspended", capacity_kw=10.0),
        ],
    )
    await producer.publish_many(
        TELEMETRY_INTERVAL,
        [
            telemetry(ctx, "A", -1, pv_kw=1.0, soc_pct=90.0),  # older: superseded
            telemetry(ctx, "A", 0, pv_kw=2.0, soc_pct=80.0),
            telemetry(ctx, "B", -10, pv_kw=0.5, soc_pct=50.0),
        ],
    )
    #
    # Accreditation, by part (the battery at min(power, energy above the reserve / 4 h),
    # 4-hour class; PV, fixed, at what the shared inverter has left over the battery):
    #   A battery min(7.6, 13.5 * 0.8 / 4 = 2.7) = 2.7 kW; PV min(7.6, 7.6 - 2.7) = 4.9 kW;
    #     ICAP 7.6 kW; 2025/26 4.9 * 0.10 + 2.7 * 0.55 = 1.975; 2026/27 0.392 + 1.35 = 1.742;
    #     2027/28 0.343 + 1.566 = 1.909 kW
    #   B battery min(5.0, 10 * 0.7 / 4 = 1.75) = 1.75 kW; PV 5.0 - 1.75 = 3.25 kW; ICAP 5 kW;
    #     2025/26 0.325 + 0.9625 = 1.2875; 2026/27 0.26 + 0.875 = 1.135; 2027/28 0.2275
    #     + 1.015 = 1.2425 kW
    # -> ICAP 12.6 kW; UCAP 3.2625, 2.877, 3.1515 kW, all in cohort "east".
    expected = snapshot_of(
        as_of=at(0), enrolled=2, nameplate_mw=0.0126, storage_mwh=0.0235, available_mw=0.0076,
        icap_mw=0.0126, ucap_mw=(0.0032625, 0.002877, 0.0031515),
    )  # fmt: skip
    # B suspended by version 2 (updated 10:01); its replayed version 1 changes nothing.
    # -> 1 enrolled, 1 reporting, 7.6 kW, 13.5 kWh, 5.6 kW, as of 10:01; A's accreditation
    suspended = snapshot_of(
        as_of=at(1), enrolled=1, nameplate_mw=0.0076, storage_mwh=0.0135, available_mw=0.0056,
        icap_mw=0.0076, ucap_mw=(0.001975, 0.001742, 0.001909),
    )  # fmt: skip
    seen: list[str] = []
    async with service_running(ctx, seen):
        await handled(seen, 6)
        published = await snapshots(ctx)
        assert_snapshot(published[-1].data, ctx["resource"], expected)
        assert published[-1].id.startswith(f"capacity:{ctx['resource']}:")

        await producer.publish(
            ASSET_REGISTERED, asset(ctx, "B", 2, status="suspended", updated_at=at(1))
        )
        await producer.publish(ASSET_REGISTERED, asset(ctx, "B", 1, capacity_kw=5.0))
        await handled(seen, 8)
        published = await snapshots(ctx)
        assert_snapshot(published[-1].data, ctx["resource"], suspended)

        # The same telemetry again, and a newer interval with the same figures: no new snapshot.
        await producer.publish(TELEMETRY_INTERVAL, telemetry(ctx, "A", 0, pv_kw=2.0, soc_pct=80.0))
        await producer.publish(TELEMETRY_INTERVAL, telemetry(ctx, "A", 2, pv_kw=2.0, soc_pct=80.0))
        await handled(seen, 10)
        assert await snapshots(ctx) == published

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api(ctx["pool"])), base_url="http://capacity"
    ) as client:
        found = await client.get(f"/v1/resources/{ctx['resource']}/capacity")
        missing = await client.get("/v1/resources/NXW-PJM-NONE/capacity")
        whole = await client.get("/v1/portfolio/capacity")
    assert found.status_code == 200
    assert CapacitySnapshot.model_validate(found.json()) == published[-1].data
    # The test's database holds this one resource: the portfolio is it.
    assert whole.status_code == 200
    assert whole.json()["resources"] == [found.json()]
    assert whole.json()["ucap_mw"] == found.json()["ucap_mw"]
    assert missing.status_code == 404


async def test_a_replay_from_the_start_publishes_nothing_new(ctx: dict) -> None:
    producer = ctx["producer"]
    await producer.publish(ASSET_REGISTERED, asset(ctx, "A", 1))
    await producer.publish(TELEMETRY_INTERVAL, telemetry(ctx, "A", 0, pv_kw=2.0, soc_pct=80.0))
    seen: list[str] = []
    async with service_running(ctx, seen):
        await handled(seen, 2)
    published = await snapshots(ctx)
    # 7.6 kW rating, min(7.6 - 2.0, (80 - 20)/100 * 13.5 = 8.1) = 5.6 kW available.
    assert published[-1].data.available_mw == pytest.approx(0.0056, abs=1e-9)

    replayed: list[str] = []
    async with service_running(ctx, replayed):  # a fresh group: every event again
        await handled(replayed, 2)
    assert await snapshots(ctx) == published
    assert await ctx["pool"].fetchval("SELECT count(*) FROM assets") == 1
    assert await ctx["pool"].fetchval("SELECT count(*) FROM snapshots") == 1


async def test_a_reading_with_a_missing_soc_makes_the_asset_unavailable_until_one_is_known(
    ctx: dict,
) -> None:
    producer = ctx["producer"]
    a = ctx["assets"]["A"]
    # A: 7.6 kW, 13.5 kWh, reserve 20 %. 10:00 pv 2.0, soc 80 -> min(5.6, 8.1) = 5.6 kW.
    # 10:00-10:05 battery reading with the SoC reported missing: unknown as of 10:05 ->
    #   enrolled, not reporting, 0 kW available (never "soc 0", never the old 80).
    # 10:00-10:15 PV reading (pv 3.0): carries no SoC, leaves it unknown -> still 0.
    # 10:15-10:20 battery reading, soc 50: min(7.6 - 3.0 = 4.6, (50 - 20)/100 * 13.5 = 4.05)
    #   = 4.05 kW, PV (ended 10:15) and SoC (10:20) both fresh.
    missing = TelemetryInterval(
        asset_id=a, interval_start=at(0), interval_s=300,
        quality={"battery_kw": "missing", "soc_pct": "missing"},
    )  # fmt: skip
    pv = TelemetryInterval(asset_id=a, interval_start=at(0), interval_s=900, pv_kw=3.0)
    soc = TelemetryInterval(
        asset_id=a, interval_start=at(15), interval_s=300, battery_kw=0.0, soc_pct=50.0
    )
    await producer.publish(ASSET_REGISTERED, asset(ctx, "A", 1))
    await producer.publish(TELEMETRY_INTERVAL, telemetry(ctx, "A", 0, pv_kw=2.0, soc_pct=80.0))
    seen: list[str] = []
    async with service_running(ctx, seen):
        await handled(seen, 2)
        assert (await snapshots(ctx))[-1].data.available_mw == pytest.approx(0.0056, abs=1e-9)

        await producer.publish(TELEMETRY_INTERVAL, missing)
        await handled(seen, 3)
        last = (await snapshots(ctx))[-1].data
        assert (last.assets_enrolled, last.assets_reporting, last.available_mw) == (1, 0, 0.0)
        assert last.as_of == at(5)

        await producer.publish(TELEMETRY_INTERVAL, pv)
        await handled(seen, 4)
        last = (await snapshots(ctx))[-1].data
        assert (last.assets_reporting, last.available_mw) == (0, 0.0)

        await producer.publish(TELEMETRY_INTERVAL, soc)
        await handled(seen, 5)
        last = (await snapshots(ctx))[-1].data
        assert last.assets_reporting == 1
        assert last.available_mw == pytest.approx(0.00405, abs=1e-9)
    rows = await ctx["pool"].fetch(
        "SELECT channel, interval_end, value, quality FROM latest_channels ORDER BY channel"
    )
    assert [tuple(r) for r in rows] == [
        ("pv_kw", at(15), 3.0, "actual"),
        ("soc_pct", at(20), 50.0, "actual"),
    ]


async def test_two_replicas_each_publish_what_the_other_wrote(ctx: dict) -> None:
    """Each replica keeps its own books; the store carries the other's writes to them.

    Replica 1 takes A's record, replica 2 B's (both in the resource): replica 2's first
    snapshot reads both from the store. A's telemetry reaches replica 1, which must count B
    (replica 2 wrote it since replica 1 last read); B's reaches replica 2, which must see A's
    (written by replica 1). Then replica 2 moves A to another resource: replica 1's next
    snapshot of the resource no longer counts it. Figures as in the first test: A 5.6 kW,
    B 2.0 kW (lossless, reserve 30 %, soc 50 -> 2.0 kWh for 1 h).
    """
    pool, producer = ctx["pool"], ctx["producer"]
    one = make_handler(pool, producer, freshness_s=900.0)
    two = make_handler(pool, producer, freshness_s=900.0)
    b_rated = {"capacity_kw": 5.0, "storage_kwh": 10.0, "backup_reserve_pct": 30.0}

    async def last() -> CapacitySnapshot:
        snap = await current_snapshot(pool, ctx["resource"])
        assert snap is not None
        return snap

    await one(deliveries(ASSET_REGISTERED, [asset(ctx, "A", 1)]))
    await two(deliveries(ASSET_REGISTERED, [asset(ctx, "B", 1, **b_rated)]))
    assert (await last()).assets_enrolled == 2

    await one(deliveries(TELEMETRY_INTERVAL, [telemetry(ctx, "A", 0, pv_kw=2.0, soc_pct=80.0)]))
    snap = await last()
    assert (snap.assets_enrolled, snap.assets_reporting) == (2, 1)
    assert snap.available_mw == pytest.approx(0.0056, abs=1e-9)

    await two(deliveries(TELEMETRY_INTERVAL, [telemetry(ctx, "B", -10, pv_kw=0.5, soc_pct=50.0)]))
    snap = await last()
    assert (snap.assets_enrolled, snap.assets_reporting) == (2, 2)
    assert snap.available_mw == pytest.approx(0.0076, abs=1e-9)

    moved = asset(ctx, "A", 2, resource_id=f"{ctx['resource']}-X", updated_at=at(2))
    await two(deliveries(ASSET_REGISTERED, [moved]))
    await one(deliveries(TELEMETRY_INTERVAL, [telemetry(ctx, "B", -5, pv_kw=0.5, soc_pct=60.0)]))
    snap = await last()
    # B alone: min(4.5, (60 - 30) / 100 * 10 = 3.0) = 3.0 kW.
    assert (snap.assets_enrolled, snap.available_mw) == (1, pytest.approx(0.003, abs=1e-9))


async def test_the_fleets_soc_is_recorded_as_a_program_days_window_opens(ctx: dict) -> None:
    """Wednesday 1 July 2026: A (13.5 kWh, reserve 20 %) at 80 %, B (10 kWh, reserve 30 %) at
    50 %, both reading at 16:05 EDT: (13.5 x 80 + 10 x 50) / 23.5 = 67.234 %, reserve (13.5 x
    20 + 10 x 30) / 23.5 = 24.255 %. A later reading the same day (16:10) changes nothing:
    the day's first stays. At 15:55 nothing is recorded."""
    pool = ctx["pool"]
    handle = make_handler(pool, ctx["producer"], freshness_s=900.0)
    opening = datetime(2026, 7, 1, 20, 5, tzinfo=UTC)  # 16:05 EDT

    def reading(name: str, end: datetime, soc_pct: float) -> TelemetryInterval:
        return TelemetryInterval(
            asset_id=ctx["assets"][name], interval_start=end - timedelta(minutes=5),
            interval_s=300, pv_kw=1.0, battery_kw=0.0, soc_pct=soc_pct,
        )  # fmt: skip

    b_rated = {"capacity_kw": 5.0, "storage_kwh": 10.0, "backup_reserve_pct": 30.0}
    await handle(deliveries(ASSET_REGISTERED, [asset(ctx, "A", 1), asset(ctx, "B", 1, **b_rated)]))
    before = opening - timedelta(minutes=10)
    await handle(deliveries(TELEMETRY_INTERVAL, [reading("A", before, 90.0)]))
    assert await pool.fetchval("SELECT count(*) FROM soc_at_window_start") == 0
    await handle(
        deliveries(TELEMETRY_INTERVAL, [reading("A", opening, 80.0), reading("B", opening, 50.0)])
    )
    later = opening + timedelta(minutes=5)
    await handle(deliveries(TELEMETRY_INTERVAL, [reading("A", later, 20.0)]))
    rows = await pool.fetch("SELECT * FROM soc_at_window_start")
    assert [(r["resource_id"], r["local_date"], r["assets"]) for r in rows] == [
        (ctx["resource"], date(2026, 7, 1), 2)
    ]
    assert rows[0]["soc_pct"] == pytest.approx((13.5 * 80 + 10 * 50) / 23.5, abs=1e-9)
    assert rows[0]["reserve_pct"] == pytest.approx((13.5 * 20 + 10 * 30) / 23.5, abs=1e-9)


async def test_every_spell_in_the_program_is_kept_for_churn(ctx: dict) -> None:
    """A: enrolled (v1, 09:01), unenrolled (v2, 09:02), enrolled again (v3, 09:03), its
    versions arriving newest first; B: enrolled (v1), suspended (v2): one spell, still in;
    C: first seen unenrolled: no spell. A replayed batch adds nothing."""
    pool = ctx["pool"]
    handle = make_handler(pool, ctx["producer"], freshness_s=900.0)
    batch = [
        asset(ctx, "A", 3),
        asset(ctx, "A", 2, status="unenrolled"),
        asset(ctx, "B", 1),
        asset(ctx, "C", 1, status="unenrolled"),
        asset(ctx, "A", 1),
    ]
    await handle(deliveries(ASSET_REGISTERED, batch))
    await handle(deliveries(ASSET_REGISTERED, [asset(ctx, "B", 2, status="suspended")]))
    await handle(deliveries(ASSET_REGISTERED, batch))
    spells = sorted(
        await offer_store.lifecycle(pool, ctx["resource"]), key=lambda s: (s[1], s[2] is None)
    )
    assert spells == [("east", at(-59), at(-58)), ("east", at(-59), None), ("east", at(-57), None)]
