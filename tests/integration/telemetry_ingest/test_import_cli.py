"""`nexwatt-ingest import` against the real Kafka: what it publishes on telemetry.interval, that a
re-import publishes the same events, and that an interrupted import resumes.

Each test has an asset of its own and reads back, from the end offsets captured before it
ran, only that asset's records.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from nexwatt_shared.codec import decode
from nexwatt_shared.topics import TELEMETRY_INTERVAL
from nexwatt_telemetry_ingest.mdms import importer
from tests.helpers import end_offsets, unique

pytestmark = pytest.mark.integration

HEADER = "Name,JANE DOE\nService,Service 1\n\nTYPE,DATE,START TIME,END TIME,USAGE (kWh),NOTES\n"
# 2026-07-01 00:00-01:45 PDT (07:00Z-08:45Z), 0.25 kWh per quarter hour = 1.0 kW imported.
CSV = HEADER + "".join(
    f"Electric usage,2026-07-01,{h:02d}:{m:02d},{h:02d}:{m + 14:02d},0.25,\n"
    for h in (0, 1)
    for m in (0, 15, 30, 45)
)
# 2026-07-02T00:00Z and 00:15Z: 500 Wh per quarter hour = 2.0 kW imported.
GREEN_BUTTON = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><entry><content>
<ReadingType xmlns="http://naesb.org/espi"><flowDirection>1</flowDirection>
<powerOfTenMultiplier>0</powerOfTenMultiplier><uom>72</uom></ReadingType></content></entry>
<entry><content><IntervalBlock xmlns="http://naesb.org/espi">
<IntervalReading><timePeriod><duration>900</duration><start>1782950400</start></timePeriod>
<value>500</value></IntervalReading>
<IntervalReading><timePeriod><duration>900</duration><start>1782951300</start></timePeriod>
<value>500</value></IntervalReading>
</IntervalBlock></content></entry></feed>
"""
CSV_IDS = [f"20260701T0{h}{m:02d}00Z" for h in (7, 8) for m in (0, 15, 30, 45)]


@pytest.fixture
def bootstrap(servers: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(
        "NEXWATT_KAFKA_BOOTSTRAP_SERVERS", servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"]
    )
    return servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"]


async def run_import(*argv: str | Path) -> int:
    parser = argparse.ArgumentParser()
    importer.add_arguments(parser)
    return await importer.run(parser.parse_args([str(a) for a in argv]))


async def published(bootstrap: str, since: dict[TopicPartition, int], asset: str) -> list:
    """The asset's records on telemetry.interval between `since` and the end offsets now."""
    until = await end_offsets(bootstrap, [TELEMETRY_INTERVAL])
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(until))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        records = []
        deadline = time.monotonic() + 30
        while True:  # at least one fetch: stopping a consumer right after assign() fails
            for tp, batch in (await consumer.getmany(timeout_ms=200)).items():
                records.extend(r for r in batch if r.offset < until[tp] and r.key == asset.encode())
            if not [tp for tp, end in until.items() if await consumer.position(tp) < end]:
                break
            assert time.monotonic() < deadline, "the topic could not be read to its end"
        return sorted(
            records, key=lambda r: decode(TELEMETRY_INTERVAL, r.value).data.interval_start
        )
    finally:
        await consumer.stop()


async def test_an_import_publishes_net_readings_with_their_natural_ids(
    bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asset = unique("MDMS")
    csv_path, xml_path = tmp_path / "meter.csv", tmp_path / "meter.xml"
    csv_path.write_text(CSV + "Electric usage,2026-07-01,02:00,02:14,oops,\n")
    xml_path.write_text(GREEN_BUTTON)
    since = await end_offsets(bootstrap, [TELEMETRY_INTERVAL])
    code = await run_import(
        csv_path, xml_path, "--asset", asset, "--timezone", "America/Los_Angeles",
        "--state", tmp_path / "state.json",
    )  # fmt: skip
    assert code == 1  # one row refused
    out = capsys.readouterr().out
    assert "readings published: 10" in out
    assert "meter.csv: line 13.USAGE (kWh): not a number of kWh: 'oops'" in out
    events = [decode(TELEMETRY_INTERVAL, r.value) for r in await published(bootstrap, since, asset)]
    assert [e.id for e in events] == [
        *(f"mdms:{asset}:{t}:900" for t in CSV_IDS),
        f"mdms:{asset}:20260702T000000Z:900",
        f"mdms:{asset}:20260702T001500Z:900",
    ]
    # 0.25 kWh / 0.25 h = 1.0 kW imported (CSV); 500 Wh / 0.25 h = 2.0 kW imported (XML).
    assert [e.data.net_kw for e in events] == [pytest.approx(-1.0, abs=1e-9)] * 8 + [
        pytest.approx(-2.0, abs=1e-9)
    ] * 2
    assert [e.data.source.vendor for e in events] == ["utility-csv"] * 8 + ["espi"] * 2
    assert all(e.time == e.data.interval_end for e in events)  # the bytes depend on the data
    assert {e.type for e in events} == {"nexwatt.telemetry.interval.v2"}


async def test_a_reimport_publishes_nothing_new_and_a_restart_the_same_events(
    bootstrap: str, tmp_path: Path
) -> None:
    asset = unique("MDMS")
    path, state = tmp_path / "meter.csv", tmp_path / "state.json"
    path.write_text(CSV)
    args = (path, "--asset", asset, "--timezone", "America/Los_Angeles", "--state", state)
    since = await end_offsets(bootstrap, [TELEMETRY_INTERVAL])
    assert await run_import(*args) == 0
    first = await published(bootstrap, since, asset)
    assert len(first) == 8

    since = await end_offsets(bootstrap, [TELEMETRY_INTERVAL])
    assert await run_import(*args) == 0  # the state says all 8 are done
    assert await published(bootstrap, since, asset) == []

    since = await end_offsets(bootstrap, [TELEMETRY_INTERVAL])
    assert await run_import(*args, "--restart") == 0
    again = await published(bootstrap, since, asset)
    assert [r.value for r in again] == [r.value for r in first]  # same ids, byte for byte


async def test_an_interrupted_import_resumes_after_what_was_acknowledged(
    bootstrap: str, tmp_path: Path
) -> None:
    asset = unique("MDMS")
    path, state_path = tmp_path / "meter.csv", tmp_path / "state.json"
    path.write_text(CSV)
    la = ZoneInfo("America/Los_Angeles")
    state = importer.ImportState.load(state_path)
    state.record(importer.file_key(path, asset, "csv", la), path, 5)  # as if stopped after 5
    since = await end_offsets(bootstrap, [TELEMETRY_INTERVAL])
    code = await run_import(
        path, "--asset", asset, "--timezone", "America/Los_Angeles", "--state", state_path
    )
    assert code == 0
    events = [decode(TELEMETRY_INTERVAL, r.value) for r in await published(bootstrap, since, asset)]
    assert [e.id for e in events] == [f"mdms:{asset}:{t}:900" for t in CSV_IDS[5:]]
    assert (
        importer.ImportState.load(state_path).done(importer.file_key(path, asset, "csv", la)) == 8
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--asset", "A-1"], "CSV times are local: give the site's --timezone"),
        (["--asset", "A-1", "--timezone", "Mars/Olympus"], "is not an IANA time zone"),
        (["--asset", "A-1", "--timezone", "../../etc/passwd"], "is not an IANA time zone"),
        (["--asset", "A-1", "--timezone", "America"], "is not an IANA time zone"),
        (["--asset", "not an id!", "--timezone", "UTC"], "--asset 'not an id!'"),
    ],
)
async def test_usage_errors_exit_2_before_anything_is_published(
    bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list, message: str
) -> None:
    path = tmp_path / "meter.csv"
    path.write_text(CSV)
    assert await run_import(path, *argv, "--state", tmp_path / "state.json") == 2
    assert message in capsys.readouterr().err
    for wrong in (tmp_path / "absent.csv", tmp_path):
        assert await run_import(wrong, "--asset", "A-1", "--timezone", "UTC") == 2
