"""The connector runner on real PostgreSQL and Kafka, against the local vendor stand-in:
cursors resume where the last published window ended, a failed publish re-sends the same
window with the same id, and one `nexwatt-ingest connect --once` round end to end (the SunSpec
device is a local Modbus server)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from nexwatt_shared.codec import decode
from nexwatt_shared.kafka.admin import create_topics
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.postgres import open_pool
from nexwatt_shared.topics import TELEMETRY_RAW, Topic
from nexwatt_telemetry_ingest.bootstrap import MIGRATIONS
from nexwatt_telemetry_ingest.connectors import solaredge
from nexwatt_telemetry_ingest.connectors.base import Site, window_event_id
from nexwatt_telemetry_ingest.connectors.runner import ConnectorRunner, CursorStore
from tests import vendor_servers as vs
from tests.helpers import read_all, unique
from tests.integration.telemetry_ingest.test_sunspec_modbus import modbus_server, sunspec_map

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
NY = "America/New_York"
T0 = datetime(2026, 7, 1, 14, 7, 30, tzinfo=UTC)  # 10:07:30 in New York


@pytest.fixture
def vendor() -> Iterator[vs.VendorServer]:
    with vs.VendorServer().running() as server:
        yield server


@pytest.fixture
async def device() -> AsyncIterator[str]:
    """A SunSpec inverter and battery on a local Modbus port; its site id."""
    async with modbus_server(40000, sunspec_map()) as site_id:
        yield site_id


@pytest.fixture
async def ctx(servers: dict[str, str]) -> AsyncIterator[dict]:
    bootstrap = servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"]
    topic = Topic(unique("test.telemetry.raw"), TELEMETRY_RAW.payload, "connector test")
    await create_topics(bootstrap, [topic])
    database = unique("test_connect").replace("-", "_")
    pool = await open_pool(servers["NEXWATT_POSTGRES_URL"], database, MIGRATIONS)
    producer = EventProducer(bootstrap, "test-connect")
    await producer.start()
    yield {"bootstrap": bootstrap, "topic": topic.name, "pool": pool, "producer": producer,
           "database": database, "postgres": servers["NEXWATT_POSTGRES_URL"]}  # fmt: skip
    await producer.stop()
    await pool.close()


def runner(ctx: dict, vendor: vs.VendorServer, site: Site, now: datetime, producer=None):
    client = solaredge.client(vendor.url)
    connector = solaredge.SolarEdge(client, SecretStr(vs.SOLAREDGE_KEY))
    return ConnectorRunner(
        {"solaredge": connector},
        [site],
        CursorStore(ctx["pool"]),
        producer or ctx["producer"],
        topic=ctx["topic"],
        backfill=timedelta(hours=24),
        clock=lambda: now,
    ), connector


async def test_a_restart_resumes_at_the_cursor_and_refetches_nothing(
    ctx: dict, vendor: vs.VendorServer
) -> None:
    site = Site(unique("BTM"), "solaredge", "1234567", NY)
    first, connector = runner(ctx, vendor, site, T0)
    # 2 endpoints, 300 a day less 4 %: 144 polls -> 600 s, rounded up to the 900 s grid.
    assert first.poll_s == {"solaredge": 900}
    assert await first.round() == 0
    await connector.aclose()
    # 14:07:30Z less the 15 min the vendor needs (13:52:30) -> 13:45Z on the quarter-hour
    # grid = 09:45 EDT; the first window starts 24 h before 14:07:30, on the grid: 14:00Z
    # the day before = 10:00 EDT. Battery samples are asked from 10 minutes earlier.
    assert [(r.path, r.query["startTime"], r.query["endTime"]) for r in vendor.requests] == [
        ("/site/1234567/energyDetails", "2026-06-30 10:00:00", "2026-07-01 09:44:59"),
        ("/site/1234567/storageData", "2026-06-30 09:50:00", "2026-07-01 09:44:59"),
    ]
    # A restart one poll later (900 s): each format continues at its own cursor.
    second, connector = runner(ctx, vendor, site, T0 + timedelta(seconds=900))
    assert await second.round() == 0
    assert await second.round() == 0  # nothing new yet: no request
    await connector.aclose()
    assert len(vendor.requests) == 4
    assert [(r.path, r.query["startTime"], r.query["endTime"]) for r in vendor.requests[2:]] == [
        ("/site/1234567/energyDetails", "2026-07-01 09:45:00", "2026-07-01 09:59:59"),
        ("/site/1234567/storageData", "2026-07-01 09:35:00", "2026-07-01 09:59:59"),
    ]
    records = await read_all(ctx["bootstrap"], ctx["topic"])
    assert len(records) == 4
    windows = [
        (datetime(2026, 6, 30, 14, tzinfo=UTC), datetime(2026, 7, 1, 13, 45, tzinfo=UTC)),
        (datetime(2026, 7, 1, 13, 45, tzinfo=UTC), datetime(2026, 7, 1, 14, 0, tzinfo=UTC)),
    ]
    assert sorted(decode(TELEMETRY_RAW, r.value).id for r in records) == sorted(
        window_event_id("solaredge", "1234567", f, since, until)
        for since, until in windows
        for f in solaredge.POLLED
    )
    cursors = await CursorStore(ctx["pool"]).load("solaredge", "1234567")
    assert cursors == dict.fromkeys(solaredge.POLLED, datetime(2026, 7, 1, 14, 0, tzinfo=UTC))


class BrokenProducer:
    async def send_raw_many(self, topic: str, records: list) -> None:
        raise ConnectionError("broker unreachable")


async def test_an_unacknowledged_publish_keeps_the_cursor_and_resends_the_same_id(
    ctx: dict, vendor: vs.VendorServer
) -> None:
    site = Site(unique("BTM"), "solaredge", "7654321", NY)
    broken, connector = runner(ctx, vendor, site, T0, producer=BrokenProducer())
    assert await broken.round() == 2  # both formats failed to publish
    await connector.aclose()
    assert await CursorStore(ctx["pool"]).load("solaredge", "7654321") == {}
    assert len(vendor.requests) == 2
    # Restarted later in the same quarter hour: the same windows, the same event ids.
    healed, connector = runner(ctx, vendor, site, T0 + timedelta(minutes=5))
    assert await healed.round() == 0
    await connector.aclose()
    assert len(vendor.requests) == 4
    assert [(r.path, r.query) for r in vendor.requests[2:]] == [
        (r.path, r.query) for r in vendor.requests[:2]
    ]
    since, until = datetime(2026, 6, 30, 14, tzinfo=UTC), datetime(2026, 7, 1, 13, 45, tzinfo=UTC)
    records = await read_all(ctx["bootstrap"], ctx["topic"])
    assert sorted(decode(TELEMETRY_RAW, r.value).id for r in records) == sorted(
        window_event_id("solaredge", "7654321", f, since, until) for f in solaredge.POLLED
    )
    cursors = await CursorStore(ctx["pool"]).load("solaredge", "7654321")
    assert cursors == dict.fromkeys(solaredge.POLLED, until)


async def test_one_connect_round_publishes_every_vendor_payload(
    ctx: dict, vendor: vs.VendorServer, device: str, tmp_path: Path
) -> None:
    sites = [
        {"asset_id": unique("BTM-SE"), "vendor": "solaredge", "site_id": "1234567", "timezone": NY},
        {"asset_id": unique("BTM-EN"), "vendor": "enphase", "site_id": "4242", "timezone": NY},
        {"asset_id": unique("BTM-SW"), "vendor": "sma-webconnect", "site_id": "inverter-1",
         "timezone": "Europe/Berlin"},
        {"asset_id": unique("BTM-SX"), "vendor": "sma-ennexos", "site_id": "manager-1",
         "timezone": "Europe/Berlin"},
        {"asset_id": unique("BTM-GN"), "vendor": "generac", "site_id": "sys-77",
         "timezone": "America/Chicago"},
        {"asset_id": unique("BTM-SS"), "vendor": "sunspec", "site_id": device, "timezone": NY},
    ]  # fmt: skip
    path = tmp_path / "sites.json"
    path.write_text(json.dumps(sites))
    env = {
        **os.environ,
        "NEXWATT_POSTGRES_DATABASE": ctx["database"],
        "NEXWATT_SOLAREDGE_BASE_URL": vendor.url,
        "NEXWATT_SOLAREDGE_API_KEY": vs.SOLAREDGE_KEY,
        "NEXWATT_ENPHASE_BASE_URL": vendor.url,
        "NEXWATT_ENPHASE_API_KEY": vs.ENPHASE_KEY,
        "NEXWATT_ENPHASE_ACCESS_TOKEN": vs.ENPHASE_TOKEN,
        "NEXWATT_SMA_BASE_URL": vendor.url,
        "NEXWATT_SMA_PASSWORD": vs.SMA_PASSWORD,
        "NEXWATT_SMA_ENNEXOS_USERNAME": vs.ENNEXOS_USER,
        "NEXWATT_SMA_ENNEXOS_PASSWORD": vs.ENNEXOS_PASSWORD,
        "NEXWATT_GENERAC_BASE_URL": vendor.url,
        "NEXWATT_GENERAC_TOKEN": vs.GENERAC_TOKEN,
        "NEXWATT_SUNSPEC_POLL_S": "120",
        "NEXWATT_LOG_LEVEL": "DEBUG",
    }
    vendor.fail("/storageData", 503)  # retried within the round
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from nexwatt_telemetry_ingest.cli import main; main()",
        "connect", "--sites", str(path), "--once", "--topic", ctx["topic"],
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    output = stdout.decode()
    assert proc.returncode == 0, output
    for secret in vs.SECRETS:
        assert secret not in output
    records = await read_all(ctx["bootstrap"], ctx["topic"])
    by_asset = {s["asset_id"]: s for s in sites}
    # Where each window ended (the runner's clock is the real one here).
    cursors = {
        (row["vendor"], row["format"]): row["covered_until"]
        for row in await ctx["pool"].fetch(
            "SELECT vendor, format, covered_until FROM connector_cursors"
        )
    }
    seen = []
    for record in records:
        event = decode(TELEMETRY_RAW, record.value)
        site = by_asset[event.subject]
        assert record.key.decode() == event.subject
        assert event.sitetimezone == site["timezone"]
        assert event.source == f"urn:nexwatt:service:connector-{site['vendor']}"
        fmt = event.type.removeprefix("nexwatt.telemetry.raw.")
        seen.append((site["vendor"], fmt))
        data = event.data.root
        if site["vendor"] == "sunspec":  # read now, for the poll period set
            assert data["interval_s"] == 120
            assert data["response"]["models"]["103"] == {"W": 420, "W_SF": 1}
        if site["vendor"] in ("sma-webconnect", "sma-ennexos", "generac", "sunspec"):
            # Live values are labelled as the poll period ending where the window ended.
            until = cursors[(site["vendor"], fmt)]
            assert data["polled_at"] == int(until.timestamp())
            assert data["polled_at"] % data["interval_s"] == 0
        if site["vendor"] == "enphase":  # nothing past the window (still filling in)
            until = cursors[(site["vendor"], fmt)]
            assert data["intervals"]
            assert max(i["end_at"] for i in data["intervals"]) <= until.timestamp()
    assert sorted(seen) == sorted(
        [("solaredge", f) for f in solaredge.POLLED]
        + [("enphase", f) for f in ("enphase.production-micro.v1", "enphase.battery.v1",
                                    "enphase.consumption-meter.v1")]
        + [("sma-webconnect", "sma.webconnect-values.v1"), ("sma-ennexos", "sma.ennexos-live.v1"),
           ("generac", "generac.pwrcell-devices.v1"),
           ("sunspec", "sunspec.modbus-models.v1")]
    )  # fmt: skip
    assert vendor.count("/storageData") == 2
    assert vendor.count("/powerDetails") == 0  # no longer polled
    # Battery samples are asked from 10 minutes before the energy details' window.
    (energy,) = vendor.made("/energyDetails")
    storage = vendor.made("/storageData")[-1]  # the retry, after the 503
    local = datetime.strptime(energy.query["startTime"], "%Y-%m-%d %H:%M:%S")
    start = local.replace(tzinfo=ZoneInfo(NY)).astimezone(UTC)
    assert storage.query["startTime"] == solaredge.local_time(start - timedelta(minutes=10), NY)
    assert storage.query["endTime"] == energy.query["endTime"]
    # One cursor per site and format: SolarEdge 2, Enphase 3, the four live vendors 1 each.
    rows = await ctx["pool"].fetchval("SELECT count(*) FROM connector_cursors")
    assert rows == 9
