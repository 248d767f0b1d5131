"""Whatever arrives on a topic, every running service refuses it clearly and serves the next.

The five services run as processes (their real consumer groups). Every record of
`tests.poison` goes to every topic a service consumes: malformed JSON, 5,000 nested brackets,
dates whose UTC conversion overflows, NUL and lone surrogates, 1e308 kW, integers beyond
PostgreSQL's, a clock 70 years ahead, tombstones, a wrong event type. Then valid records in
forms other producers send: with fields we don't know, and compressed with lz4, zstd and snappy.
Within 60 s every group must have committed up to the end of its partitions, each poison record
must be dead-lettered exactly once per group that consumes its topic (with a reason), no process
may have exited, every /readyz must answer 200, and the valid records must have been served.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from nexwatt_shared.topics import (
    ASSET_COMMAND_ACK,
    ASSET_REGISTERED,
    DEAD_LETTER,
    DISPATCH_CONFIRMED,
    DISPATCH_INSTRUCTION,
    TELEMETRY_INTERVAL,
    TELEMETRY_RAW,
    Topic,
)
from tests.helpers import (
    TopicWatcher,
    committed_offsets,
    end_offsets,
    eventually,
    read_all,
    unique,
)
from tests.poison import CONSUMED, event_bytes, poison, tolerated
from tests.story import ROOT, Story, platform_running

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]
# Which consumer groups read each topic (each service's bootstrap).
INGEST, CAPACITY, SETTLEMENT = (
    "nexwatt.telemetry-ingest",
    "nexwatt.capacity-model",
    "nexwatt.settlement",
)
DISPATCH, DISPATCH_STATE = "nexwatt.dispatch", "nexwatt.dispatch.state"
GROUPS: dict[str, tuple[str, ...]] = {
    ASSET_REGISTERED.name: (CAPACITY, DISPATCH_STATE, SETTLEMENT),
    TELEMETRY_RAW.name: (f"{INGEST}.raw",),
    TELEMETRY_INTERVAL.name: (INGEST, CAPACITY, DISPATCH_STATE, SETTLEMENT),
    DISPATCH_INSTRUCTION.name: (DISPATCH, SETTLEMENT),
    DISPATCH_CONFIRMED.name: (SETTLEMENT,),
    ASSET_COMMAND_ACK.name: (DISPATCH_STATE,),
}
CAUGHT_UP_WITHIN_S = 60.0


@pytest.fixture
async def platform(servers: dict[str, str]) -> AsyncIterator[tuple[Story, str]]:
    story = Story(port_offset=21000)  # clear of a demo, the e2e tier and the restart tests
    async with platform_running(story, ROOT / ".stack/logs/faults", fleet=False) as launcher:
        yield story, servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"]
        for name in story.ports:
            launcher.check_alive(name)


async def send(bootstrap: str, topic: Topic, key: str, values, compression: str | None = None):
    """Send raw values, as any producer could; returns (partition, offset) of each."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=compression)
    await producer.start()
    try:
        sent = [await producer.send_and_wait(topic.name, v, key=key.encode()) for v in values]
        return [(m.partition, m.offset) for m in sent]
    finally:
        await producer.stop()


async def test_poison_on_every_consumed_topic_is_dead_lettered_and_the_next_message_served(
    platform: tuple[Story, str],
) -> None:
    story, bootstrap = platform
    now = datetime.now(UTC)
    when = now - timedelta(hours=2)
    run = story.run
    letters_before = len(await read_all(bootstrap, DEAD_LETTER.name))
    sent: dict[tuple[str, int, int], str] = {}  # (topic, partition, offset) -> poison name
    for topic in CONSUMED:
        records = poison(topic, f"P-{run}", now)
        where = await send(bootstrap, topic, f"P-{run}", [v for _, v in records])
        sent |= {(topic.name, p, o): name for (p, o), (name, _) in zip(where, records, strict=True)}

    # Then valid records: with fields we don't know, compressed with every codec.
    confirmations = await TopicWatcher(bootstrap, [DISPATCH_CONFIRMED]).start()
    assets = [f"V-{run}-{i}" for i in range(4)]
    for asset, codec in zip(assets, (None, "lz4", "zstd", "snappy"), strict=True):
        value = tolerated(TELEMETRY_INTERVAL, asset, when, unique("evt"))
        await send(bootstrap, TELEMETRY_INTERVAL, asset, [value], compression=codec)
    # A vendor payload, normalized and stored like any standard reading.
    site = f"S-{run}"
    await send(bootstrap, TELEMETRY_RAW, site, [tolerated(TELEMETRY_RAW, site, when, unique("e"))])
    registered = f"R-{run}"
    value = tolerated(ASSET_REGISTERED, registered, when, unique("evt"))
    await send(bootstrap, ASSET_REGISTERED, registered, [value])
    unknown = story.instruction("unknown", 1.0, resource=f"NXW-PJM-NONE{run}")
    value = event_bytes(DISPATCH_INSTRUCTION, unknown.model_dump(mode="json"), unique("evt"))
    await send(bootstrap, DISPATCH_INSTRUCTION, unknown.resource_id, [value])

    # Every group commits to the end of every partition it reads, within the time allowed.
    ends = await end_offsets(bootstrap, [t for t in CONSUMED])

    async def behind() -> dict[str, int]:
        lag: dict[str, int] = {}
        for topic_name, groups in GROUPS.items():
            for group in groups:
                done = await committed_offsets(bootstrap, group)
                for tp, end in ends.items():
                    if tp.topic == topic_name and done.get(tp, 0) < end:
                        lag[group] = lag.get(group, 0) + end - done.get(tp, 0)
        return lag

    await eventually(behind, lambda lag: not lag, timeout_s=CAUGHT_UP_WITHIN_S)

    # Each poison record: exactly one letter per group that reads its topic, with a reason.
    letters = (await read_all(bootstrap, DEAD_LETTER.name))[letters_before:]
    got = Counter()
    for record in letters:
        data = json.loads(record.value)["data"]
        origin = (data["original_topic"], data["original_partition"], data["original_offset"])
        if origin in sent:
            assert data["error"], data
            got[(origin, data["consumer_group"])] += 1
    expected = Counter({(o, g): 1 for o in sent for g in GROUPS[o[0]]})
    missing = {f"{sent[o]} on {o[0]} for {g}" for (o, g) in expected - got}
    doubled = {f"{sent[o]} on {o[0]} for {g}" for (o, g), n in got.items() if n > 1}
    assert not missing and not doubled, {"missing": missing, "doubled": doubled}

    # The valid records were served: stored by ingest, modelled, answered.
    base = {name: f"http://127.0.0.1:{port}" for name, port in story.ports.items()}
    async with httpx.AsyncClient(timeout=5) as client:
        for asset in [*assets, site]:
            response = await eventually(
                lambda asset=asset: client.get(
                    f"{base['telemetry-ingest']}/v1/assets/{asset}/telemetry/latest"
                ),
                lambda r: r.status_code == 200,
                timeout_s=10,
            )
            assert response.status_code == 200, (asset, response.text)
        capacity = await client.get(
            f"{base['capacity-model']}/v1/resources/NXW-PJM-{registered}/capacity"
        )
        assert capacity.status_code == 200 and capacity.json()["assets_enrolled"] == 1
        for name, url in base.items():
            ready = await client.get(f"{url}/readyz")
            assert ready.status_code == 200, (name, ready.text)
    [answer] = await confirmations.wait_for(
        DISPATCH_CONFIRMED, instruction_id=unknown.instruction_id
    )
    assert answer.status == "rejected" and "unknown resource" in answer.reason
    await confirmations.stop()
