"""SIGKILL at random moments, with two replicas of dispatch and settlement, loses nothing and
never publishes two contents under one event id.

The story runs as in the e2e tier (12 assets at 120x, a 1 MW instruction), with a second
replica of dispatch and of settlement in the same groups and databases. While it runs, a seeded
chaos loop SIGKILLs every service process once (both replicas), in a random order at random
moments, and starts it again. Then:
- telemetry-ingest holds exactly one row per interval the fleet published;
- every event id on `dispatch.confirmed` and `settlement.filed` carries one content, byte for
  byte, however often it was published; the instruction is answered and, unless rejected,
  settled.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import asyncpg
import pytest

from nexwatt_admin.launcher import Launcher
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.postgres import database_url
from nexwatt_shared.topics import (
    DISPATCH_CONFIRMED,
    DISPATCH_INSTRUCTION,
    SETTLEMENT_FILED,
    TELEMETRY_INTERVAL,
)
from tests.helpers import TopicWatcher, eventually
from tests.story import ROOT, Story, platform_running

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]
SEEDS = (11, 23, 37)
REPLICATED = ("dispatch", "settlement")
# Acks may wait out a rebalance after a kill: give them longer than the default 5 s.
EXTRA_ENV = {"NEXWATT_DISPATCH_ACK_TIMEOUT_S": "20"}


class Platform:
    """The running platform's service processes, each addressable by its launcher key."""

    def __init__(self, story: Story, launcher: Launcher) -> None:
        self.story, self.launcher = story, launcher

    def start(self, name: str, replica: int = 1) -> str:
        env = {**self.story.service_env(name, replica), **EXTRA_ENV}
        return self.launcher.start(name, env=env, replica=replica)

    @property
    def ports(self) -> dict[str, int]:
        ports = dict(self.story.ports)
        for name in REPLICATED:
            ports[f"{name}-2"] = ports[name] + 100
        return ports

    async def chaos(self, rng: random.Random, done: asyncio.Event) -> list[str]:
        """SIGKILL every service process once, in a random order at random moments, each
        started again after a moment; returns what was killed, in order."""
        victims = list(self.ports)
        rng.shuffle(victims)
        killed = []
        for key in victims:
            await asyncio.sleep(rng.uniform(1.0, 4.0))
            if done.is_set():
                break
            self.launcher.kill(key)
            killed.append(key)
            await asyncio.sleep(rng.uniform(0.1, 1.5))
            self.start(key.removesuffix("-2"), 2 if key.endswith("-2") else 1)
        return killed


@pytest.fixture
async def platform(servers: dict[str, str]) -> AsyncIterator[tuple[Platform, TopicWatcher]]:
    """The platform with second replicas, and a watcher started before any of it."""
    story = Story(port_offset=22000)
    watcher = await TopicWatcher(
        servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"],
        [TELEMETRY_INTERVAL, DISPATCH_CONFIRMED, SETTLEMENT_FILED],
    ).start()
    try:
        async with platform_running(story, ROOT / ".stack/logs/faults") as launcher:
            platform = Platform(story, launcher)
            for name in REPLICATED:  # the first replicas restart with the longer ack timeout
                launcher.stop(name)
                platform.start(name)
                platform.start(name, replica=2)
            await launcher.wait_ready(platform.ports)
            yield platform, watcher
            await launcher.wait_ready(platform.ports, timeout_s=90)
    finally:
        await watcher.stop()


@pytest.mark.parametrize("seed", SEEDS)
async def test_sigkill_anywhere_loses_no_reading_and_publishes_one_content_per_id(
    platform: tuple[Platform, TopicWatcher], servers: dict[str, str], seed: int
) -> None:
    running, watcher = platform
    story, launcher = running.story, running.launcher
    iso = EventProducer(servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"], "faults-iso-adapter")
    await iso.start()
    done = asyncio.Event()
    chaos = asyncio.create_task(running.chaos(random.Random(seed), done))
    try:
        good = story.instruction(f"seed{seed}", 1.0)
        await eventually(story.sim_clock, lambda c: c >= good.issued_at, timeout_s=90)
        await iso.publish(DISPATCH_INSTRUCTION, good, time=good.issued_at)
        mine = {"instruction_id": good.instruction_id}
        answer = (await watcher.wait_for(DISPATCH_CONFIRMED, timeout_s=120, **mine))[0]
        print(f"seed {seed}: {answer.status}, {answer.mw_confirmed} MW ({answer.reason})")
        if answer.status != "rejected":
            await watcher.wait_for(SETTLEMENT_FILED, timeout_s=150, **mine)
        killed = await chaos
        assert sorted(killed) == sorted(running.ports)
        await launcher.wait_ready(running.ports, timeout_s=90)

        # Exactly one historian row per reading on telemetry.interval (the fleet stopped first;
        # readings the normalizer still makes of its last SolarEdge payloads count as they come).
        assert launcher.stop("fleet-sim") == 0

        def published() -> set[tuple[str, datetime, int, tuple[str, ...]]]:
            return {
                (r.asset_id, r.interval_start, r.interval_s, tuple(sorted(r.quality)))
                for r in watcher.payloads(TELEMETRY_INTERVAL)
                if r.asset_id.startswith(f"{story.run}-")
            }

        url = database_url(servers["NEXWATT_POSTGRES_URL"], "nexwatt_telemetry_ingest")
        conn = await asyncpg.connect(url)
        try:
            rows, readings = await eventually(
                lambda: _rows_and_readings(conn, f"{story.run}-%", published),
                lambda found: found[0] == found[1] > 0,
                timeout_s=60,
            )
        finally:
            await conn.close()
        assert rows == readings

        # One content per event id on the topics that carry decisions and money.
        contents: dict[str, set[bytes]] = defaultdict(set)
        for name, record, _ in watcher.events:
            if name in (DISPATCH_CONFIRMED.name, SETTLEMENT_FILED.name):
                contents[json.loads(record.value)["id"]].add(record.value)
        assert f"confirmed:{good.instruction_id}" in contents
        assert {i: len(v) for i, v in contents.items() if len(v) > 1} == {}
    finally:
        done.set()
        if not chaos.done():
            await chaos
        await iso.stop()


async def _rows_and_readings(
    conn: asyncpg.Connection, like: str, published: Callable[[], set[object]]
) -> tuple[int, int]:
    rows = await conn.fetchval("SELECT count(*) FROM readings WHERE asset_id LIKE $1", like)
    return rows, len(published())
