"""The telemetry history the simulator publishes before its live loop, for customer baselines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from nexwatt_fleet_sim.config import Settings
from nexwatt_fleet_sim.fleet import build_fleet
from nexwatt_fleet_sim.history import BATCH, history_hours, hourly_history, publish_history
from nexwatt_fleet_sim.simulator import Simulator
from nexwatt_shared.contracts import Channel, Quality, TelemetryInterval
from nexwatt_shared.topics import TELEMETRY_INTERVAL, Topic

START = datetime(2026, 3, 12, 13, 0, tzinfo=UTC)  # 09:00 in New York


def _by_asset(readings: list[TelemetryInterval]) -> dict[str, list[TelemetryInterval]]:
    out: dict[str, list[TelemetryInterval]] = {}
    for r in readings:
        out.setdefault(r.asset_id, []).append(r)
    return out


class RecordingProducer:
    """Keeps what would have been published: (topic, event ids, payloads) per call."""

    source = "fleet-sim"

    def __init__(self, stop_after_live: asyncio.Event | None = None) -> None:
        self.calls: list[tuple[str, list[str], list[Any]]] = []
        self.stop_after_live = stop_after_live

    async def publish_many(
        self, topic: Topic, payloads: Sequence[Any], *, event_id: Callable[[Any], str]
    ) -> None:
        self.calls.append((topic.name, [event_id(p) for p in payloads], list(payloads)))
        if self.stop_after_live and any(p.interval_s != 3600 for p in payloads):
            self.stop_after_live.set()

    async def send_raw_many(self, topic: str, records: Sequence[Any]) -> None:
        self.calls.append((topic, [], list(records)))


def test_the_history_covers_whole_hours_up_to_the_start_for_every_reporting_asset() -> None:
    settings = Settings(
        sim_assets=20, sim_start=START, sim_history_days=2, sim_offline_fraction=0.2
    )
    fleet = build_fleet(settings)
    readings = list(hourly_history(fleet, settings))
    by_asset = _by_asset(readings)
    # Every asset that reports, SolarEdge ones included (offline ones never report): 2 days x
    # 24 hourly readings, in order, the last one ending at the start.
    assert fleet.offline.any() and fleet.solaredge.any()
    assert list(by_asset) == [
        a for a, off in zip(fleet.asset_ids, fleet.offline, strict=True) if not off
    ]
    expected = [START - timedelta(hours=48) + timedelta(hours=k) for k in range(48)]
    for series in by_asset.values():
        assert [r.interval_start for r in series] == expected
        assert {r.interval_s for r in series} == {3600}
        assert series[-1].interval_end == START
    # Time order across the fleet: hour by hour.
    assert [r.interval_start for r in readings] == sorted(r.interval_start for r in readings)


def test_a_start_within_an_hour_ends_the_history_at_that_hour() -> None:
    # 08:44 EDT = 12:44 UTC: 14 x 24 hours from 12:00 UTC on 2026-02-26 to 12:00 on 03-12; the
    # 44 minutes from 12:00 to the start get none (an hourly reading would overlap the live
    # loop's first readings).
    start = datetime.fromisoformat("2026-03-12T08:44:00-04:00")
    hours = history_hours(start, 14)
    assert len(hours) == 14 * 24
    assert hours[0] == datetime(2026, 2, 26, 12, 0, tzinfo=UTC)
    assert hours[-1] + timedelta(hours=1) == datetime(2026, 3, 12, 12, 0, tzinfo=UTC)
    assert history_hours(start, 0) == []


def test_readings_follow_the_live_conventions_and_self_consumption() -> None:
    settings = Settings(sim_assets=20, sim_start=START, sim_history_days=2)
    fleet = build_fleet(settings)
    reserve_pct = 100.0 * fleet.ratings.reserve_kwh / fleet.storage_kwh
    index = {a: i for i, a in enumerate(fleet.asset_ids)}
    readings = list(hourly_history(fleet, settings))
    for r in readings:
        # The live loop's sign: net = pv + battery - load, + = export.
        assert r.net_kw == pytest.approx(r.pv_kw + r.battery_kw - r.load_kw, abs=1e-3)
        assert reserve_pct[index[r.asset_id]] - 0.005 <= r.soc_pct <= 100.0
        assert r.load_kw > 0
        assert r.quality == dict.fromkeys(
            (Channel.PV_KW, Channel.LOAD_KW, Channel.BATTERY_KW, Channel.NET_KW, Channel.SOC_PCT),
            Quality.ACTUAL,
        )
    # Solar time at 77 W is UTC - 5:08: the hour from 05:00 UTC is around solar midnight: no
    # PV, and the batteries cover load (never more: no export) unless at their reserve. The
    # hour from 17:00 UTC holds solar noon: PV, and batteries charging from the surplus.
    night = [r for r in readings if r.interval_start.hour == 5]
    noon = [r for r in readings if r.interval_start.hour == 17]
    assert {r.pv_kw for r in night} == {0.0}
    assert all(r.battery_kw >= 0 and r.net_kw <= 1e-4 for r in night)
    assert any(r.battery_kw > 0 for r in night)
    assert all(r.pv_kw > 0 for r in noon)
    assert any(r.battery_kw < 0 for r in noon)
    # Each asset's state of charge follows a daily cycle: it moves through the day.
    for series in _by_asset(readings).values():
        soc = [r.soc_pct for r in series]
        assert max(soc) - min(soc) > 5.0


def test_the_history_is_deterministic_for_a_seed() -> None:
    settings = Settings(sim_assets=20, sim_start=START, sim_history_days=1)
    first = list(hourly_history(build_fleet(settings), settings))
    assert first == list(hourly_history(build_fleet(settings), settings))
    other = settings.model_copy(update={"sim_seed": settings.sim_seed + 1})
    assert first != list(hourly_history(build_fleet(other), other))


def test_a_storage_only_asset_carries_no_pv() -> None:
    settings = Settings(sim_assets=20, sim_start=START, sim_history_days=1)
    fleet = build_fleet(settings)
    fleet.registrations[3]["type"] = "storage"  # the fleet itself builds none
    fleet.pv_dc_kw[3] = 0.0
    readings = [r for r in hourly_history(fleet, settings) if r.asset_id == fleet.asset_ids[3]]
    assert len(readings) == 24
    for r in readings:
        # Without PV it never charges (no charging from the grid); it covers load.
        assert r.pv_kw is None and Channel.PV_KW not in r.quality
        assert r.battery_kw >= 0.0
        assert r.net_kw == pytest.approx(r.battery_kw - r.load_kw, abs=1e-4)


def test_the_history_is_the_fleets_past() -> None:
    # Start on a whole hour: the fleet's state after the history is the one its last hour
    # reported. Start 44 minutes later: the same hourly readings (the history stops at the
    # hour), and the state moves on through the 44 unreported minutes.
    on_the_hour = Settings(sim_assets=20, sim_start=START, sim_history_days=1)
    fleet = build_fleet(on_the_hour)
    before = fleet.soc_pct()
    readings = list(hourly_history(fleet, on_the_hour))
    last = {r.asset_id: r.soc_pct for r in readings if r.interval_start.hour == 12}
    reporting = [i for i, a in enumerate(fleet.asset_ids) if a in last]  # not the offline
    assert fleet.soc_pct()[reporting] == pytest.approx(
        [last[fleet.asset_ids[i]] for i in reporting], abs=0.005
    )
    assert not np.allclose(fleet.soc_pct(), before)

    later = on_the_hour.model_copy(update={"sim_start": START + timedelta(minutes=44)})
    moved = build_fleet(later)
    assert list(hourly_history(moved, later)) == readings
    assert not np.allclose(moved.soc_pct(), fleet.soc_pct())


async def test_publishing_sends_batches_with_natural_key_ids() -> None:
    settings = Settings(
        sim_assets=300, sim_start=START, sim_history_days=1, sim_offline_fraction=0.0
    )
    readings = list(hourly_history(build_fleet(settings), settings))
    producer = RecordingProducer()
    sent = await publish_history(producer, readings, asyncio.Event())  # type: ignore[arg-type]
    assert sent == len(readings) == 300 * 24
    assert [len(payloads) for _, _, payloads in producer.calls] == [BATCH, 300 * 24 - BATCH]
    assert {topic for topic, _, _ in producer.calls} == {TELEMETRY_INTERVAL.name}
    ids = [i for _, call_ids, _ in producer.calls for i in call_ids]
    assert ids[0] == f"{readings[0].asset_id}@20260311T130000Z/3600"
    assert len(set(ids)) == len(ids)

    stopped = asyncio.Event()
    stopped.set()
    assert await publish_history(RecordingProducer(), readings, stopped) == 0  # type: ignore[arg-type]


@pytest.mark.parametrize("days", [1, 0])
async def test_the_simulator_publishes_the_history_before_anything_live(days: int) -> None:
    settings = Settings(
        sim_assets=20, sim_start=START, sim_history_days=days, sim_speed=1e9, sim_seed=3
    )
    stop = asyncio.Event()
    producer = RecordingProducer(stop_after_live=stop)
    sim = Simulator(settings, build_fleet(settings), producer)  # type: ignore[arg-type]
    await asyncio.wait_for(sim.run(stop), timeout=10)
    history = [p for _, _, ps in producer.calls for p in ps if getattr(p, "interval_s", 0) == 3600]
    assert len(history) == 20 * 24 * days
    if days:
        first_live = next(
            k for k, (_, _, payloads) in enumerate(producer.calls)
            if any(getattr(p, "interval_s", 0) != 3600 for p in payloads)
        )  # fmt: skip
        assert all(p.interval_s == 3600 for _, _, ps in producer.calls[:first_live] for p in ps)
        assert producer.calls[0][2][0].interval_start == START - timedelta(days=1)
    # The live loop then starts at the start, as before.
    assert sim.clock > START
