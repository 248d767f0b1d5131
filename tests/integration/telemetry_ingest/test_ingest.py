"""telemetry-ingest's historian and normalizer on real PostgreSQL, Redis and Kafka."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from nexwatt_shared.contracts import Channel, Quality, TelemetryInterval
from nexwatt_shared.kafka.consumer import PoisonMessage
from nexwatt_shared.postgres import open_pool
from nexwatt_shared.topics import TELEMETRY_INTERVAL
from nexwatt_telemetry_ingest.bootstrap import MIGRATIONS
from nexwatt_telemetry_ingest.coverage import asset_coverage
from nexwatt_telemetry_ingest.handlers import make_historian
from nexwatt_telemetry_ingest.store import channel_intervals, latest
from tests.helpers import deliveries, unique

pytestmark = pytest.mark.integration
T0 = datetime(2026, 7, 1, 14, 0, tzinfo=UTC)


@pytest.fixture
async def pool(servers: dict[str, str]) -> AsyncIterator[asyncpg.Pool]:
    database = unique("test_ingest").replace("-", "_")
    pool = await open_pool(servers["NEXWATT_POSTGRES_URL"], database, MIGRATIONS)
    yield pool
    await pool.close()


def power(asset: str, minute: int, pv_kw: float | None = 3.0) -> TelemetryInterval:
    """A 15-minute SolarEdge-like reading: PV, load and net (PV may be reported missing)."""
    quality = {Channel.LOAD_KW: Quality.ACTUAL, Channel.NET_KW: Quality.ACTUAL}
    quality[Channel.PV_KW] = Quality.MISSING if pv_kw is None else Quality.ACTUAL
    return TelemetryInterval(
        asset_id=asset, interval_start=T0 + timedelta(minutes=minute), interval_s=900,
        pv_kw=pv_kw, load_kw=1.0, net_kw=(pv_kw or 0.0) - 1.0, quality=quality,
    )  # fmt: skip


def battery(asset: str, minute: int, kw: float = -1.5, soc: float = 60.0) -> TelemetryInterval:
    """A 5-minute battery reading."""
    return TelemetryInterval(
        asset_id=asset, interval_start=T0 + timedelta(minutes=minute), interval_s=300,
        battery_kw=kw, soc_pct=soc,
    )  # fmt: skip


async def test_channels_at_their_own_resolution_are_stored_once(pool: asyncpg.Pool) -> None:
    handle = make_historian(pool)
    a = unique("A")
    first = [power(a, 0), power(a, 15, pv_kw=None)] + [battery(a, m) for m in range(0, 30, 5)]
    await handle(deliveries(TELEMETRY_INTERVAL, first))
    # Redelivered (new event ids, same values): nothing changes, nothing is refused.
    await handle(deliveries(TELEMETRY_INTERVAL, first[:3]))
    stored = await channel_intervals(pool, a, T0, T0 + timedelta(hours=1))
    summary = {
        c: (len(ivs), sum(i.interval_s for i in ivs), sum(i.value is not None for i in ivs))
        for c in {i.channel for i in stored}
        for ivs in [[i for i in stored if i.channel == c]]
    }
    # PV: two 15-min intervals, the second reported missing (NULL, never 0); battery: six 5-min.
    assert summary == {
        "battery_kw": (6, 1800, 6), "load_kw": (2, 1800, 2), "net_kw": (2, 1800, 2),
        "pv_kw": (2, 1800, 1), "soc_pct": (6, 1800, 6),
    }  # fmt: skip
    # One row per reading: 2 power readings and 6 battery readings.
    assert await pool.fetchval("SELECT count(*) FROM readings WHERE asset_id = $1", a) == 8
    newest = await latest(pool, a)
    # PV, load, net from the newest power reading (14:15, PV missing there), battery and SoC
    # from the newest battery reading (14:25).
    seen = {
        c: (v.interval_start.minute, v.interval_s, v.value, v.quality) for c, v in newest.items()
    }
    assert seen == {
        Channel.PV_KW: (15, 900, None, "missing"), Channel.LOAD_KW: (15, 900, 1.0, "actual"),
        Channel.NET_KW: (15, 900, -1.0, "actual"), Channel.BATTERY_KW: (25, 300, -1.5, "actual"),
        Channel.SOC_PCT: (25, 300, 60.0, "actual"),
    }  # fmt: skip
    # A late, older reading never moves the cache backwards.
    await handle(deliveries(TELEMETRY_INTERVAL, [battery(a, 30), battery(a, 35, soc=61.0)]))
    await handle(deliveries(TELEMETRY_INTERVAL, [battery(a, 30)]))
    assert (await latest(pool, a))[Channel.SOC_PCT].interval_start.minute == 35
    assert await latest(pool, unique("nobody")) == {}


async def test_a_correction_is_refused_and_nothing_of_its_batch_written(
    pool: asyncpg.Pool,
) -> None:
    handle = make_historian(pool)
    a = unique("A")
    await handle(deliveries(TELEMETRY_INTERVAL, [battery(a, 0)]))
    with pytest.raises(PoisonMessage) as refused:
        # 14:05 is new, but 14:00 comes with another value: the whole batch is refused first.
        await handle(deliveries(TELEMETRY_INTERVAL, [battery(a, 5), battery(a, 0, kw=-2.0)]))
    assert "battery_kw: other values for the stored interval" in str(refused.value)
    assert len(refused.value.refusals) == 1
    assert await pool.fetchval("SELECT count(*) FROM readings WHERE asset_id = $1", a) == 1


async def test_coverage_over_a_window(pool: asyncpg.Pool) -> None:
    a = unique("A")
    # PV over 14:00-15:00: 14:00 and 14:30 actual, 14:15 missing, 14:45 absent.
    await make_historian(pool)(
        deliveries(TELEMETRY_INTERVAL, [power(a, 0), power(a, 15, pv_kw=None), power(a, 30)])
    )
    window = (T0, T0 + timedelta(hours=1))
    rows = await channel_intervals(pool, a, *window)
    cover = asset_coverage(a, window, [(i.channel, i.start, i.interval_s, i.quality) for i in rows])
    pv = next(c for c in cover.channels if c.channel == Channel.PV_KW)
    # Usable PV: 2 x 900 s of 3600 s = 50 %; the longest gap is 14:45-15:00 (900 s), which ties
    # with 14:15-14:30 (900 s): the first one found is reported.
    assert pv.coverage_pct == pytest.approx(50.0, abs=1e-9)
    assert pv.longest_gap_s == pytest.approx(900.0)
    assert pv.longest_gap_start == T0 + timedelta(minutes=15)
    assert (pv.resolution_s, pv.readings, pv.missing) == (900, 3, 1)
    soc = next(c for c in cover.channels if c.channel == Channel.SOC_PCT)
    assert (soc.coverage_pct, soc.longest_gap_s, soc.resolution_s) == (0.0, 3600.0, None)


async def test_v1_rows_move_into_the_historian(servers: dict[str, str], tmp_path: Path) -> None:
    """A store written by the first contract keeps its readings, one row per channel, even when
    the database's sessions are not in UTC (partitions are UTC months)."""
    database = unique("test_ingest_v1").replace("-", "_")
    shutil.copy(MIGRATIONS / "001_interval_readings.sql", tmp_path)
    pool = await open_pool(servers["NEXWATT_POSTGRES_URL"], database, tmp_path)
    # 03:00Z on April 1st is still March 31st in Los Angeles.
    april = datetime(2026, 4, 1, 3, 0, tzinfo=UTC)
    await pool.execute(
        "INSERT INTO interval_readings VALUES ('A', $1, 300, 3, 1, -0.5, 1.5, NULL, 'e1')", april
    )
    await pool.execute(f"ALTER DATABASE {database} SET timezone TO 'America/Los_Angeles'")
    await pool.close()
    pool = await open_pool(servers["NEXWATT_POSTGRES_URL"], database, MIGRATIONS)
    stored = await channel_intervals(pool, "A", april, april + timedelta(hours=1))
    await pool.close()
    # soc_pct was NULL in v1 (not reported): not carried, rather than a stored 0.
    assert sorted((i.channel, i.value, i.quality) for i in stored) == [
        ("battery_kw", -0.5, "actual"), ("load_kw", 1.0, "actual"), ("net_kw", 1.5, "actual"),
        ("pv_kw", 3.0, "actual"),
    ]  # fmt: skip
