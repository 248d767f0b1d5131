"""telemetry-ingest's normalizer on a real broker: vendor payloads in, standard readings out,
a payload it cannot read dead-lettered with the vendor, the field and the reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from nexwatt_shared.codec import encode, raw_envelope
from nexwatt_shared.contracts import Channel, DeadLetter, TelemetryInterval, VendorPayload
from nexwatt_shared.kafka.admin import create_topics
from nexwatt_shared.kafka.consumer import ConsumerRunner
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.topics import DEAD_LETTER, Topic
from nexwatt_telemetry_ingest.handlers import make_normalizer
from tests.helpers import TopicWatcher, eventually, unique

pytestmark = pytest.mark.integration
# 2026-07-01 14:00 in New York (EDT, UTC-4) is 18:00Z.
EPOCH_1405Z = int(datetime(2026, 7, 1, 14, 5, tzinfo=UTC).timestamp())


def enphase_battery(end_at: int, charge_wh: float, discharge_wh: float) -> dict:
    return {
        "system_id": 7, "granularity": "day", "total_devices": 2,
        "intervals": [{
            "end_at": end_at,
            "charge": {"enwh": charge_wh, "devices_reporting": 2},
            "discharge": {"enwh": discharge_wh, "devices_reporting": 1},
            "soc": {"percent": 64, "devices_reporting": 2},
        }],
    }  # fmt: skip


def solaredge_power(date: str, production_w: float | None) -> dict:
    meter = {"date": date} if production_w is None else {"date": date, "value": production_w}
    return {
        "powerDetails": {
            "timeUnit": "QUARTER_OF_AN_HOUR", "unit": "W",
            "meters": [{"type": "Production", "values": [meter]}],
        }
    }  # fmt: skip


@pytest.fixture
async def normalizer(servers: dict[str, str]) -> AsyncIterator[dict]:
    bootstrap = servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"]
    raw = Topic(unique("test.raw"), VendorPayload, "test", partitions=2, formats=True)
    out = Topic(unique("test.interval"), TelemetryInterval, "test", "asset_id", 2, version=2)
    await create_topics(bootstrap, [raw, out, DEAD_LETTER])
    producer = EventProducer(bootstrap, "test")
    await producer.start()
    watcher = await TopicWatcher(bootstrap, [out, DEAD_LETTER]).start()
    runner = ConsumerRunner(
        bootstrap_servers=bootstrap, group_id=unique("test.normalizer"), topics=[raw],
        handler=make_normalizer(producer, timedelta(minutes=5), out), dead_letters=producer,
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    yield {"raw": raw, "out": out, "producer": producer, "watcher": watcher}
    stop.set()
    await task
    await watcher.stop()
    await producer.stop()


async def send(ctx: dict, fmt: str, asset: str, data: dict, tz: str = "America/New_York") -> None:
    event = raw_envelope(fmt, asset, data, site_timezone=tz, source="test", topic=ctx["raw"])
    await ctx["producer"].send_raw_many(ctx["raw"].name, [(asset, encode(event), ())])


async def test_vendor_payloads_become_standard_readings(normalizer: dict) -> None:
    ctx, watcher = normalizer, normalizer["watcher"]
    a, b = unique("EN"), unique("SE")
    # Enphase: 100 Wh charged, 600 Wh discharged in the 15 minutes ending 14:05Z
    # -> +2.0 kW ((600 - 100) Wh / 0.25 h), labelled 13:50Z; one of two batteries discharging.
    await send(ctx, "enphase.battery.v1", a, enphase_battery(EPOCH_1405Z, 100, 600))
    # SolarEdge: 14:00 local (EDT) is 18:00Z; 3200 W -> 3.2 kW; 14:15 has no value: missing.
    await send(ctx, "solaredge.power-details.v1", b, solaredge_power("2026-07-01 14:00:00", 3200))
    await send(ctx, "solaredge.power-details.v1", b, solaredge_power("2026-07-01 14:15:00", None))
    readings = await eventually(
        lambda: asyncio.sleep(0, watcher.payloads(ctx["out"])), lambda r: len(r) >= 3
    )
    enphase = next(r for r in readings if r.asset_id == a)
    assert enphase.interval_start == datetime(2026, 7, 1, 13, 50, tzinfo=UTC)
    assert (enphase.interval_s, enphase.battery_kw, enphase.soc_pct) == (900, 2.0, 64.0)
    assert (enphase.devices_reporting, enphase.devices_total) == (1, 2)
    solar = sorted((r for r in readings if r.asset_id == b), key=lambda r: r.interval_start)
    assert [(r.interval_start.hour, r.interval_start.minute) for r in solar] == [(18, 0), (18, 15)]
    assert solar[0].pv_kw == pytest.approx(3.2, abs=1e-9)
    assert (solar[1].pv_kw, solar[1].quality[Channel.PV_KW]) == (None, "missing")
    assert solar[0].source is not None and solar[0].source.vendor == "solaredge"


async def test_an_unreadable_payload_is_dead_lettered_and_the_next_one_served(
    normalizer: dict,
) -> None:
    ctx, watcher = normalizer, normalizer["watcher"]
    a = unique("SE")
    broken = solaredge_power("2026-03-08 02:15:00", 1000)  # not a time in New York (DST gap)
    await send(ctx, "solaredge.power-details.v1", a, broken)
    await send(ctx, "nobody.format.v1", a, {"x": 1})
    await send(ctx, "solaredge.power-details.v1", a, solaredge_power("2026-07-01 14:00:00", 10))
    await eventually(
        lambda: asyncio.sleep(0, watcher.payloads(ctx["out"], asset_id=a)), lambda r: len(r) == 1
    )
    letters = await eventually(
        lambda: asyncio.sleep(
            0, [d for d in watcher.payloads(DEAD_LETTER) if d.original_topic == ctx["raw"].name]
        ),
        lambda found: len(found) == 2,
    )
    reasons = sorted(letter.error for letter in letters)
    assert "no parser for format 'nobody.format.v1'" in reasons[0]
    assert "solaredge" in reasons[1] and "powerDetails.meters[0].values[0].date" in reasons[1]
    assert "does not exist in America/New_York" in reasons[1]
    assert all(isinstance(letter, DeadLetter) for letter in letters)


async def test_a_payload_sent_twice_gives_the_same_event_ids(normalizer: dict) -> None:
    ctx, watcher = normalizer, normalizer["watcher"]
    a = unique("EN")
    for _ in range(2):
        await send(ctx, "enphase.battery.v1", a, enphase_battery(EPOCH_1405Z, 0, 250))
    await eventually(
        lambda: asyncio.sleep(0, watcher.payloads(ctx["out"], asset_id=a)), lambda r: len(r) == 2
    )
    ids = [e.id for name, _, e in watcher.events if e is not None and e.subject == a]
    assert len(ids) == 2 and ids[0] == ids[1]
