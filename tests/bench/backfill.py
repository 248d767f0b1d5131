"""Backfill of meter data: readings/s through `nexwatt-ingest import`'s code path
(`importer.import_files`), parsing alone and parsing + publishing to the real Kafka.

Each meter gets a file of 15-minute data from 2025-01-01 (a Download My Data CSV in Los Angeles
time, DST days included, or a Green Button file of daily blocks), imported twice: once with the
records sent nowhere (the parse-only rate) and once to a topic of the bench's own (no service
consumes it; deleted afterwards). One file at a time, so disk use stays that of one meter.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from aiokafka.admin import AIOKafkaAdminClient

from nexwatt_shared.contracts import TelemetryInterval
from nexwatt_shared.kafka.admin import create_topics
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.topics import Topic
from nexwatt_telemetry_ingest.mdms.importer import ImportState, Record, import_files
from tests.helpers import unique

BOOTSTRAP = os.environ.get("NEXWATT_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
LA = ZoneInfo("America/Los_Angeles")
START = datetime(2025, 1, 1, 8, tzinfo=UTC)  # midnight in Los Angeles
QUARTER = timedelta(minutes=15)


class NoSink:
    """Records go nowhere: what is left is parsing and encoding."""

    async def send_raw_many(self, topic: str, records: Sequence[Record]) -> None:
        return None


def kwh(meter: int, k: int) -> float:
    """A meter's energy in quarter hour k [kWh]: 0.00 ... 0.49."""
    return (meter * 7 + k) % 50 / 100


def write_csv(path: Path, meter: int, days: int) -> int:
    """A Download My Data CSV of `days` x 96 quarter hours (local, as the utility writes them)."""
    lines = [f"Name,BENCH METER {meter}\n", "Service,Service 1\n", "\n"]
    lines.append("TYPE,DATE,START TIME,END TIME,USAGE (kWh),COST,NOTES\n")
    n = days * 96
    for k in range(n):
        local = (START + k * QUARTER).astimezone(LA)
        end = local + timedelta(minutes=14)
        lines.append(
            f"Electric usage,{local:%Y-%m-%d},{local:%H:%M},{end:%H:%M},{kwh(meter, k):.2f},,\n"
        )
    path.write_text("".join(lines))
    return n


def write_green_button(path: Path, meter: int, days: int) -> int:
    """A Green Button feed: one ReadingType (Wh, import) and one IntervalBlock per day."""
    t0 = int(START.timestamp())
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        '<entry><content><ReadingType xmlns="http://naesb.org/espi"><flowDirection>1'
        "</flowDirection><powerOfTenMultiplier>0</powerOfTenMultiplier><uom>72</uom>"
        "</ReadingType></content></entry>"
    ]
    for day in range(days):
        parts.append('<entry><content><IntervalBlock xmlns="http://naesb.org/espi">')
        for q in range(96):
            k = day * 96 + q
            parts.append(
                f"<IntervalReading><timePeriod><duration>900</duration><start>{t0 + 900 * k}"
                f"</start></timePeriod><value>{round(kwh(meter, k) * 1000)}</value>"
                "</IntervalReading>"
            )
        parts.append("</IntervalBlock></content></entry>")
    parts.append("</feed>")
    path.write_text("".join(parts))
    return days * 96


async def bench_backfill(meters: int, days: int, fmt: str = "csv") -> dict[str, float | str]:
    """Import `meters` files of `days` days of 15-minute data each (`fmt` csv or greenbutton):
    readings/s parsing alone and parsing + publishing, and the share publishing takes."""
    write = write_csv if fmt == "csv" else write_green_button
    run = unique("bench.backfill")
    topic = Topic(run, TelemetryInterval, "backfill bench", "asset_id", 3)
    await create_topics(BOOTSTRAP, [topic])
    producer = EventProducer(BOOTSTRAP, "bench-backfill")
    await producer.start()
    readings, generate_s, parse_s, publish_s = 0, 0.0, 0.0, 0.0
    try:
        with tempfile.TemporaryDirectory(prefix="backfill-") as tmp:
            path = Path(tmp) / f"meter.{'csv' if fmt == 'csv' else 'xml'}"
            for meter in range(meters):
                t0 = time.perf_counter()
                expected = write(path, meter, days)
                generate_s += time.perf_counter() - t0
                asset = f"{run}-{meter}"
                for sink, timed in ((NoSink(), "parse"), (producer, "publish")):
                    state = ImportState.load(Path(tmp) / f"{timed}.json", restart=True)
                    t0 = time.perf_counter()
                    summary = await import_files(
                        [(path, fmt)], asset, LA, sink, state, topic=topic, progress=False
                    )
                    elapsed = time.perf_counter() - t0
                    assert (summary.published, summary.refused) == (expected, 0), summary.render()
                    if timed == "parse":
                        parse_s += elapsed
                    else:
                        publish_s += elapsed
                readings += expected
    finally:
        await producer.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            await admin.delete_topics([run])
        finally:
            await admin.close()
    return {
        "format": fmt,
        "meters": meters,
        "days": days,
        "readings": readings,
        "generate_s": generate_s,
        "parse_only_s": parse_s,
        "parse_only_readings_per_s": readings / parse_s,
        "publish_s": publish_s,
        "readings_per_s": readings / publish_s,
        "publish_share_pct": 100 * (publish_s - parse_s) / publish_s,
    }
