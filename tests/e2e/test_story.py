"""The product's story at small scale, through the five running services on the real stack.

A fleet of 12 assets (some offline, some under-responding, one that refuses, one its gateway
cannot reach, gateways that lose a command the first time) registers through
onboarding's REST API into a resource of its own, streams telemetry at 120x real time (its
SolarEdge sites in SolarEdge's own formats on `telemetry.raw`, normalized by telemetry-ingest),
and gets a 1.0 MW instruction while onboarding, capacity-model and settlement are stopped
(dispatch needs only its topics), then an update of it; settlement then comes back and catches
up. We check the chain
and its arithmetic from the outside, on the topics.
The platform comes from `tests.story`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest

from nexwatt_shared.contracts import (
    AssetCommand,
    AssetCommandAck,
    Channel,
    DataQuality,
    DispatchInstruction,
    DispatchStatus,
    TelemetryInterval,
)
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.topics import (
    ASSET_COMMAND,
    ASSET_COMMAND_ACK,
    ASSET_REGISTERED,
    DEAD_LETTER,
    DISPATCH_CONFIRMED,
    DISPATCH_INSTRUCTION,
    SETTLEMENT_FILED,
    TELEMETRY_INTERVAL,
)
from tests.helpers import TopicWatcher, eventually
from tests.story import ROOT, Story, platform_running

pytestmark = pytest.mark.e2e
MW = 1.0


@pytest.fixture(scope="module")
async def story(servers: dict[str, str]) -> AsyncIterator[dict]:
    story = Story(port_offset=10000)  # clear of a demo left running on 8081-8086
    bootstrap = servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"]
    watcher = await TopicWatcher(
        bootstrap,
        [ASSET_REGISTERED, TELEMETRY_INTERVAL, DISPATCH_CONFIRMED, SETTLEMENT_FILED,
         ASSET_COMMAND, ASSET_COMMAND_ACK, DEAD_LETTER],
    ).start()  # fmt: skip
    producer = EventProducer(bootstrap, "e2e-iso-adapter")
    await producer.start()
    try:
        async with platform_running(story, ROOT / ".stack/logs/e2e") as launcher:
            yield {
                "story": story,
                "run": story.run,
                "resource": story.resource,
                "start": story.start,
                "watcher": watcher,
                "producer": producer,
                "launcher": launcher,
            }
    finally:
        await producer.stop()
        await watcher.stop()


def instruction(story: dict, resource: str, suffix: str) -> DispatchInstruction:
    return story["story"].instruction(suffix, MW, resource)


async def test_the_story_from_instruction_to_settlement(story: dict) -> None:
    watcher, producer = story["watcher"], story["producer"]
    good = instruction(story, story["resource"], "main")
    unknown = instruction(story, f"NXW-PJM-NOPE{story['run']}", "unknown")
    # Dispatch must answer on its own: everything else is down while it does.
    for name in ("onboarding", "capacity-model", "settlement"):
        assert story["launcher"].stop(name) == 0
    await eventually(story["story"].sim_clock, lambda c: c >= good.issued_at, timeout_s=60)

    # A malformed instruction first: it must be dead-lettered, and must not block what follows.
    await producer.send_raw(DISPATCH_INSTRUCTION.name, story["resource"], b'{"mw": "lots"')
    await producer.publish(DISPATCH_INSTRUCTION, unknown, time=unknown.issued_at)
    await producer.publish(DISPATCH_INSTRUCTION, good, time=good.issued_at)

    # Unknown resource: an explicit rejection, so the ISO adapter is never left waiting.
    [rejection] = await watcher.wait_for(DISPATCH_CONFIRMED, instruction_id=unknown.instruction_id)
    assert rejection.status == DispatchStatus.REJECTED
    assert "unknown resource" in rejection.reason and rejection.mw_confirmed == 0

    letters = [
        json.loads(record.value)["data"]
        for name, record, _ in watcher.events
        if name == DEAD_LETTER.name
        and dict(record.headers).get("nexwatt.original.topic") == DISPATCH_INSTRUCTION.name.encode()
        and dict(record.headers).get("nexwatt.consumer.group") == b"nexwatt.dispatch"
    ]
    assert any(
        letter["value_text"] == '{"mw": "lots"' and letter["error"].startswith("not JSON")
        for letter in letters
    ), letters

    [confirmed] = await watcher.wait_for(DISPATCH_CONFIRMED, instruction_id=good.instruction_id)
    commands: list[AssetCommand] = watcher.payloads(
        ASSET_COMMAND, instruction_id=good.instruction_id
    )
    acks: list[AssetCommandAck] = watcher.payloads(
        ASSET_COMMAND_ACK, instruction_id=good.instruction_id
    )
    # Commands go per gateway (vendor clouds and a commercial site's own): one message per
    # gateway and round (`<instruction>:r1:<gateway>:<round>-<part>`), the same id when a
    # message no gateway answered is sent again.
    messages: dict[tuple[str, str], set[str]] = {}
    for c in commands:
        round_ = c.command_id.rsplit(":", 1)[1].split("-")[0]
        messages.setdefault((round_, c.gateway_id), set()).add(c.command_id)
    assert messages and all(len(ids) == 1 for ids in messages.values()), messages
    # Each asset's newest setpoint and answer (a second round raises some setpoints).
    setpoints = {sp.asset_id: sp.setpoint_kw for c in commands for sp in c.setpoints}
    answers = {a.asset_id: a for ack in acks for a in ack.acks}
    assert confirmed.status in (DispatchStatus.CONFIRMED, DispatchStatus.PARTIAL)
    assert 0 < confirmed.mw_confirmed <= confirmed.mw_requested == MW
    # No history of delivery yet (performance ratios of 1): confirmed = the acknowledged
    # setpoints (a refusal acknowledges 0).
    assert confirmed.mw_confirmed == pytest.approx(
        sum(a.setpoint_kw for a in answers.values()) / 1000, abs=1e-6
    )
    assert confirmed.mw_acknowledged == pytest.approx(confirmed.mw_confirmed, abs=1e-6)
    assert confirmed.assets_commanded == len(setpoints)
    assert confirmed.assets_dispatched == sum(1 for a in answers.values() if a.accepted)
    assert any(not a.accepted for a in answers.values()), "the fleet has an owner who refuses"
    # An asset that reports but that its gateway cannot reach never answers: it is replaced,
    # its kW going to the others' headroom in a second round of commands.
    silent = setpoints.keys() - answers.keys()
    assert silent and confirmed.assets_replaced == len(silent)
    assert any(c.command_id.endswith(":1-0") for c in commands)

    # Mid-event the ISO halves its request: revision 2 moves the setpoints, and is answered.
    halved = good.model_copy(
        update={"revision": 2, "mw": MW / 2, "issued_at": good.issued_at + timedelta(minutes=2)}
    )
    await producer.publish(DISPATCH_INSTRUCTION, halved, time=halved.issued_at)
    [updated] = await watcher.wait_for(
        DISPATCH_CONFIRMED, instruction_id=good.instruction_id, revision=2
    )
    assert updated.status in (DispatchStatus.CONFIRMED, DispatchStatus.PARTIAL)
    assert 0 < updated.mw_confirmed <= MW / 2 + 1e-6
    revised = {
        sp.asset_id: sp.setpoint_kw
        for c in watcher.payloads(ASSET_COMMAND, instruction_id=good.instruction_id, revision=2)
        for sp in c.setpoints
    }
    assert revised and sum(revised.values()) < sum(setpoints.values())

    # No asset was commanded beyond its limits, judged from what it registered and reported.
    registered = {
        r.asset_id: r
        for r in watcher.payloads(ASSET_REGISTERED)
        if r.resource_id == story["resource"]
    }
    # Per asset and channel, the newest value reported before the instruction: SolarEdge sites
    # report PV every 15 minutes and their battery every 5, in separate readings.
    reported: dict[tuple[str, Channel], TelemetryInterval] = {}
    for reading in watcher.payloads(TELEMETRY_INTERVAL):
        if reading.asset_id not in registered or reading.interval_end > good.issued_at:
            continue
        for channel in reading.channels:
            seen = reported.get((reading.asset_id, channel), reading)
            reported[reading.asset_id, channel] = max(reading, seen, key=lambda r: r.interval_end)
    hours = (good.window_end - commands[0].window_start).total_seconds() / 3600
    assert len(registered) == story["story"].assets
    assert len(setpoints) < story["story"].assets, (
        "offline assets (no telemetry) must not be commanded"
    )
    for asset_id, setpoint_kw in setpoints.items():
        asset = registered[asset_id]
        # A commanded asset's PV and SoC were known (never dispatched on a missing value).
        pv_kw = reported[asset_id, Channel.PV_KW].pv_kw
        soc_pct = reported[asset_id, Channel.SOC_PCT].soc_pct
        assert pv_kw is not None and soc_pct is not None, asset_id
        usable_kwh = (soc_pct - asset.backup_reserve_pct) / 100 * asset.storage_kwh
        assert setpoint_kw <= asset.capacity_kw - pv_kw + 1e-3, asset_id
        assert setpoint_kw * hours <= usable_kwh + 1e-3, asset_id

    # The SolarEdge sites reported in SolarEdge's own formats: telemetry-ingest normalized them
    # (PV per quarter hour, battery per 5 minutes) and its historian answers their coverage.
    solaredge = {a for a, r in registered.items() if r.vendor == "solaredge"}
    normalized = [  # live data only: the simulator's hourly history is meter-style backfill
        r
        for r in watcher.payloads(TELEMETRY_INTERVAL)
        if r.asset_id in solaredge and r.interval_start >= story["start"]
    ]
    assert normalized and all(r.source and r.source.vendor == "solaredge" for r in normalized)
    assert {r.interval_s for r in normalized if Channel.PV_KW in r.quality} == {900}
    assert {r.interval_s for r in normalized if Channel.BATTERY_KW in r.quality} == {300}
    site = next(a for a in setpoints if a in solaredge)
    quarter = story["start"] + timedelta(minutes=15)  # before the instruction, in every channel
    window = {"start": story["start"].isoformat(), "end": quarter.isoformat()}
    url = f"http://127.0.0.1:{story['story'].ports['telemetry-ingest']}/v1/assets/{site}/coverage"

    async def coverage() -> dict[str, dict]:
        async with httpx.AsyncClient(timeout=5) as client:
            found = (await client.get(url, params=window)).json()["channels"]
        return {c["channel"]: c for c in found}

    # The run's first quarter hour: one PV quarter and three 5-minute battery intervals, whole.
    channels = await eventually(
        coverage, lambda c: c["pv_kw"]["readings"] == 1 and c["battery_kw"]["readings"] == 3
    )
    assert (channels["pv_kw"]["resolution_s"], channels["battery_kw"]["resolution_s"]) == (900, 300)
    for name in ("pv_kw", "load_kw", "net_kw", "battery_kw", "soc_pct"):
        assert channels[name]["coverage_pct"] == pytest.approx(100.0, abs=1e-9), channels[name]
        assert channels[name]["longest_gap_s"] == 0.0

    # Settlement comes back, catches up from its committed offsets and files the window
    # preliminary once its data is in (or, should some stop short, once it stalls: 10 s here),
    # in agreement with what the simulator actually delivered: its batteries idle in their
    # history, so each High X of Y baseline is zero and the only differences are telemetry
    # rounding (4 decimals of a kW).
    story["launcher"].start("settlement", env=story["story"].service_env("settlement"))
    [report, *_] = await watcher.wait_for(
        SETTLEMENT_FILED, timeout_s=90, instruction_id=good.instruction_id
    )
    delivered_mwh = (await story["story"].truth())["delivered_mwh"].get(good.instruction_id, 0)
    assert delivered_mwh > 0
    assert report.status == "filed"
    assert (report.version, report.data_quality) == (1, DataQuality.PRELIMINARY)
    # The fleet was registered (wall clock) after its window (event time): an asset counts as
    # of the window when it has data in it, so the offline ones are not waited for at all.
    assert report.coverage_pct >= 50.0
    assert 0 < report.assets_metered <= report.assets_enrolled < story["story"].assets
    assert report.baseline_methods.get("pjm-high-x-of-y-adjusted", 0) >= report.assets_metered
    assert report.delivered_mwh == pytest.approx(delivered_mwh, rel=0.01)
    assert report.delivered_mw == pytest.approx(delivered_mwh / 0.5, rel=0.01)  # 30-min window
    # What the window asked: nothing until revision 1's commands started (its issue time plus
    # the gateways' lead time), MW until revision 2's, MW / 2 to the end; averaged over the 30
    # minutes. Percentages are filed to 3 decimals.
    window_s = (good.window_end - good.window_start).total_seconds()
    at_mw_s = (updated.commands_start - confirmed.commands_start).total_seconds()
    at_half_s = (good.window_end - updated.commands_start).total_seconds()
    assert report.revision == 2
    assert report.mw_requested == pytest.approx((MW * at_mw_s + MW / 2 * at_half_s) / window_s,
                                                abs=1e-6)  # fmt: skip
    assert report.performance_pct == pytest.approx(
        100 * report.delivered_mw / report.mw_requested, abs=1e-3
    )
    # Under-responders acknowledged more than they delivered.
    assert report.delivered_mw < confirmed.mw_confirmed
    # Each figure is filed to the Wh (6 decimals of a MWh): the cohorts' sum may differ from
    # the total by half a Wh per cohort.
    assert sum(c.delivered_mwh for c in report.cohorts) == pytest.approx(
        report.delivered_mwh, abs=0.5e-6 * len(report.cohorts) + 1e-12
    )
    assert sum(c.performance_cents for c in report.cohorts) == report.performance.net_cents
    assert report.iso_report and report.iso_report_csv.startswith("registration_id,")

    # Late data after the preliminary filing: an offline asset's meter data arrives at last,
    # idle in the hour before the window (0 kW: its Hour Before baseline), discharging 2.0 kW
    # for the window's first 30 minutes. Version 2 restates the window with exactly its
    # energy: 2.0 kW * 0.5 h = 1.0 kWh = +1000 Wh, all in its cohort.
    reporting = {r.asset_id for r in watcher.payloads(TELEMETRY_INTERVAL)}
    late_asset = next(a for a in sorted(registered) if a not in reporting)

    def five_minutes(first: datetime, kw: float, count: int) -> list[TelemetryInterval]:
        return [
            TelemetryInterval(
                asset_id=late_asset,
                interval_start=first + timedelta(minutes=5 * k),
                interval_s=300,
                battery_kw=kw,
            )
            for k in range(count)
        ]

    late = [
        *five_minutes(good.window_start - timedelta(hours=1), 0.0, 12),
        *five_minutes(good.window_start, 2.0, 6),
    ]
    await producer.publish_many(TELEMETRY_INTERVAL, late)
    [restated] = await watcher.wait_for(
        SETTLEMENT_FILED, timeout_s=60, instruction_id=good.instruction_id, version=2
    )
    assert restated.data_quality == DataQuality.RESTATED
    assert restated.supersedes == report.report_id
    assert restated.baseline_methods.get("hour-before") == 1
    assert restated.diff is not None
    assert restated.diff.delivered_wh == 1000
    assert restated.diff.cohorts_wh == {registered[late_asset].cohort: 1000}
    assert restated.delivered_mwh == pytest.approx(report.delivered_mwh + 0.001, abs=2e-6)

    # Each version filed exactly once, even though every consumer is at-least-once.
    await asyncio.sleep(2)
    versions = [
        r.version for r in watcher.payloads(SETTLEMENT_FILED, instruction_id=good.instruction_id)
    ]
    assert versions == list(range(1, len(versions) + 1))
