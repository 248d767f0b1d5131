"""telemetry-ingest keeps every reading while Kafka or PostgreSQL goes away mid-stream.

A gateway-like producer streams 3,000 distinct readings in chunks: a third before a server of
the local stack is stopped and started under the running service, a third while that happens,
and a third once the server is back. The ingest must end with exactly one row per reading (a
chunk re-sent after a failed send must not add rows), never exit, commit its group up to the
topic's end, and stop cleanly on SIGTERM.

The service runs as a real process (`nexwatt-telemetry-ingest`) with
- NEXWATT_POSTGRES_DATABASE: a database of its own;
- NEXWATT_SERVICE_NAME: a name of its own, because the consumer group is derived from it
  (`nexwatt.<service name>`) and no setting names the group directly. Besides the group, the
  name only labels the logs and the producer's client id (the database is set explicitly).
  Sharing `nexwatt.telemetry-ingest` would instead move the offsets of a demo's ingest.
The group starts at the topic's current end, and rows are counted for the test's own asset
ids, so readings someone else streams meanwhile change nothing.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka.errors import KafkaError

from nexwatt_admin.launcher import SERVICES, Launcher
from nexwatt_shared.contracts import TelemetryInterval
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.postgres import database_url
from nexwatt_shared.topics import TELEMETRY_INTERVAL
from tests.helpers import commit_offsets, committed_total, end_offsets, eventually, reading, unique

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "deploy/local/stack.py"
SERVICE = "telemetry-ingest"
PORT = SERVICES[SERVICE] + 20000  # clear of a demo (8081-8086) and the e2e tier (18081-18086)
ASSETS, MINUTES, CHUNK = 20, 150, 100  # 3,000 readings in 30 chunks
N = ASSETS * MINUTES
PACE_S = 0.25  # between chunks: a third of the stream lasts longer than stack.py takes to stop
SEND_TIMEOUT_S = 10.0  # a chunk not acknowledged by then is sent again

Stack = Callable[[str, str], Awaitable[None]]


async def run_stack(command: str, server: str) -> None:
    # A subprocess: stack.py runs its own event loop, and a test's loop is already running.
    proc = await asyncio.create_subprocess_exec(sys.executable, str(STACK), command, server)
    assert await proc.wait() == 0, f"stack.py {command} {server} failed"


@pytest.fixture(autouse=True)
def local_stack_only(servers: dict[str, str]) -> None:
    env_file = ROOT / ".stack/env"
    text = env_file.read_text() if env_file.exists() else ""
    own = dict(line.split("=", 1) for line in text.splitlines() if line)
    if any(own.get(k) != v for k, v in servers.items()):
        pytest.skip("the servers are not the local stack's, and only its own can be restarted")


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    """`await stack(command, server)` runs `stack.py start|stop|restart` on one server; each
    server touched is started again afterwards (before the service is stopped: tests take
    `ingest` first), so later tests find the stack whole even when a test failed midway."""
    touched: set[str] = set()

    async def control(command: str, server: str) -> None:
        touched.add(server)
        await run_stack(command, server)

    try:
        yield control
    finally:
        for server in touched:
            await run_stack("start", server)


@dataclass
class Ingest:
    launcher: Launcher
    bootstrap: str
    group: str
    db_url: str
    assets: list[str]

    async def rows(self) -> int:
        """The test's rows in the service's database; fails at once if the service died."""
        self.launcher.check_alive(SERVICE)
        conn = await asyncpg.connect(self.db_url)
        try:
            return await conn.fetchval(
                "SELECT count(*) FROM readings WHERE asset_id = ANY($1)", self.assets
            )
        finally:
            await conn.close()

    async def handler_retries(self) -> float:
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(f"http://127.0.0.1:{PORT}/metrics")).text
        prefix = f'nexwatt_handler_retries_total{{group="{self.group}"}} '
        return sum(
            float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)
        )


@pytest.fixture
async def ingest(servers: dict[str, str]) -> AsyncIterator[Ingest]:
    tag = unique("faults")
    name = f"{SERVICE}-{tag}"
    database = f"nexwatt_ingest_{tag}".replace("-", "_")
    bootstrap = servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"]
    group = f"nexwatt.{name}"  # ServiceSettings.consumer_group
    await commit_offsets(bootstrap, group, await end_offsets(bootstrap, [TELEMETRY_INTERVAL]))
    launcher = Launcher(ROOT / ".stack/logs/faults")
    launcher.start(
        SERVICE,
        env={
            "NEXWATT_SERVICE_NAME": name,
            "NEXWATT_POSTGRES_DATABASE": database,
            "NEXWATT_HTTP_PORT": str(PORT),
        },
    )
    try:
        await launcher.wait_ready({SERVICE: PORT})
        yield Ingest(
            launcher=launcher,
            bootstrap=bootstrap,
            group=group,
            db_url=database_url(servers["NEXWATT_POSTGRES_URL"], database),
            assets=[f"{tag}-{i:02d}" for i in range(ASSETS)],
        )
    finally:
        if launcher.procs:  # the test failed before its own clean stop
            launcher.stop_all()


def reading_id(r: TelemetryInterval) -> str:
    return f"{r.asset_id}@{r.interval_start:%Y%m%dT%H%M}"


async def stream(producer: EventProducer, readings: list[TelemetryInterval]) -> int:
    """Send `readings` in paced chunks, each sent again until the broker has all of it (so a
    retry may send some twice). Returns how many sends were retried."""
    retries = 0
    for i in range(0, len(readings), CHUNK):
        chunk = readings[i : i + CHUNK]
        while True:
            try:
                await asyncio.wait_for(
                    producer.publish_many(TELEMETRY_INTERVAL, chunk, event_id=reading_id),
                    SEND_TIMEOUT_S,
                )
                break
            except (KafkaError, TimeoutError):
                retries += 1
                await asyncio.sleep(0.5)
        await asyncio.sleep(PACE_S)
    return retries


async def stream_through(ingest: Ingest, outage: Callable[[], Awaitable[None]]) -> int:
    """Stream a third of the readings before `outage`, a third while it runs and a third after;
    wait until the ingest has stored each reading once and committed up to the topic's end.
    Returns the send retries."""
    readings = [reading(asset, m) for m in range(MINUTES) for asset in ingest.assets]
    third = N // 3
    before, during, after = readings[:third], readings[third : 2 * third], readings[2 * third :]
    producer = EventProducer(ingest.bootstrap, "faults-gateway")
    await producer.start()
    try:
        retries = await stream(producer, before)
        # Once the service has stored some, the outage hits it mid-stream.
        await eventually(ingest.rows, lambda n: n > 0)
        async with asyncio.TaskGroup() as group:
            group.create_task(outage())
            sending = group.create_task(stream(producer, during))
        retries += sending.result() + await stream(producer, after)
    finally:
        await producer.stop()
    await eventually(ingest.rows, lambda n: n == N, timeout_s=60)
    ends = sum((await end_offsets(ingest.bootstrap, [TELEMETRY_INTERVAL])).values())
    await eventually(
        lambda: committed_total(ingest.bootstrap, ingest.group, TELEMETRY_INTERVAL.name),
        lambda committed: committed >= ends,
    )
    assert await ingest.rows() == N  # a replay after the commit would show here
    return retries


async def test_a_kafka_restart_mid_stream_loses_and_doubles_nothing(
    ingest: Ingest, stack: Stack
) -> None:
    t0 = time.monotonic()
    retries = await stream_through(ingest, lambda: stack("restart", "kafka"))
    assert ingest.launcher.stop(SERVICE) == 0
    print(f"kafka restart: {N} rows in {time.monotonic() - t0:.1f}s, {retries} sends retried")


async def test_a_postgres_outage_mid_stream_loses_and_doubles_nothing(
    ingest: Ingest, stack: Stack
) -> None:
    async def outage() -> None:
        # A bare restart takes ~0.3 s, which a batch can fall between; down for a few seconds,
        # batches keep arriving and the handler must fail and retry.
        await stack("stop", "postgres")
        await asyncio.sleep(3)
        await stack("start", "postgres")

    t0 = time.monotonic()
    await stream_through(ingest, outage)
    retries = await ingest.handler_retries()
    assert retries > 0, "no batch was retried: the outage missed the stream"
    assert ingest.launcher.stop(SERVICE) == 0
    print(f"postgres outage: {N} rows in {time.monotonic() - t0:.1f}s, {retries:.0f} retries")
