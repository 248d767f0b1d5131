"""`nexwatt-settlement ...` against a real PostgreSQL: a database of its own, migrated
like settlement's, with report versions, payouts and asset versions inserted directly.

The commands run in-process (parsed by nexwatt-settlement's own parser) for their output; a few run
as the `nexwatt-settlement` process for the exit codes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from nexwatt_settlement import cli
from nexwatt_settlement.bootstrap import MIGRATIONS
from nexwatt_settlement.config import Settings
from nexwatt_shared.contracts import (
    CohortSettlement,
    DataQuality,
    HourlyDelivery,
    PerformanceMoney,
    SettlementFiled,
    SettlementFiledV1,
)
from nexwatt_shared.postgres import open_pool
from tests.helpers import drop_database, unique

pytestmark = pytest.mark.integration
WINDOW_START = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)  # 06:00 EDT: hour ending 7
WINDOW_END = WINDOW_START + timedelta(minutes=15)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Data:
    database: str
    access: cli.SettlementAccess
    resource: str
    other_resource: str
    instruction: str  # versions 1 (preliminary) and 2 (restated)
    old_instruction: str  # one version, kept under contract v1
    other_instruction: str  # another resource's
    reports: dict[tuple[str, int], SettlementFiled]


def intervals_csv(delivered_mw: list[float]) -> str:
    rows = ["interval_start,baseline_mw,metered_mw,delivered_mw,coverage_pct"]
    for i, d in enumerate(delivered_mw):
        start = (WINDOW_START + timedelta(minutes=5 * i)).isoformat().replace("+00:00", "Z")
        rows.append(f"{start},0.0100,{0.01 - d:.4f},{d:.4f},100.0")
    return "\n".join(rows) + "\n"


def report(
    resource: str, instruction: str, version: int, quality: DataQuality, filed_at: datetime
) -> SettlementFiled:
    delivered = [0.006, 0.008, 0.010] if version == 1 else [0.007, 0.009, 0.011]
    mwh = sum(delivered) / 12  # 5-minute slots: MW x 1/12 h
    hourly = HourlyDelivery(
        registration_id=resource,
        date="2026-03-14",
        hour_ending=7,
        baseline_kwh=2.5,
        metered_kwh=round(2.5 - mwh * 1000, 3),
        reduction_kwh=round(mwh * 1000, 3),
    )
    return SettlementFiled(
        window_start=WINDOW_START,
        window_end=WINDOW_END,
        report_id=f"SR-{instruction}-v{version}",
        instruction_id=instruction,
        resource_id=resource,
        version=version,
        supersedes=f"SR-{instruction}-v{version - 1}" if version > 1 else None,
        data_quality=quality,
        participation_model="der-aggregator",
        baseline_method="high-x-of-y",
        baseline_methods={"high-x-of-y": 3},
        baseline_accuracy=[],
        mw_requested=0.012,
        mw_confirmed=0.012,
        delivered_mw=round(sum(delivered) / 3, 6),
        delivered_mwh=round(mwh, 6),
        performance_pct=round(sum(delivered) / 3 / 0.012 * 100, 2),
        assets_enrolled=3,
        assets_metered=3,
        coverage_pct=98.5 if version == 1 else 100.0,
        coverage_threshold_pct=98.0,
        intervals_csv=intervals_csv(delivered),
        iso_report=[hourly],
        iso_report_csv=(
            "registration_id,date,hour_ending,baseline_kwh,metered_kwh,reduction_kwh\n"
            f"{resource},2026-03-14,7,2.500,{hourly.metered_kwh:.3f},{hourly.reduction_kwh:.3f}\n"
        ),
        performance=PerformanceMoney(
            delivery_year="2025/26",
            expected_mw=0.012,
            shortfall_mw=0.003,
            intervals=3,
            charge_rate_usd_per_mw_interval=25.35,
            bonus_rate_usd_per_mw_interval=25.35,
            charge_cents=23,
            bonus_cents=0,
            net_cents=-23,
        ),
        cohorts=[CohortSettlement(cohort="A", assets=3, delivered_mwh=mwh, share_pct=100.0)],
        filed_at=filed_at,
    )


def report_v1(resource: str, instruction: str, filed_at: datetime) -> SettlementFiledV1:
    return SettlementFiledV1(
        window_start=WINDOW_START - timedelta(days=1),
        window_end=WINDOW_END - timedelta(days=1),
        report_id=f"SR-{instruction}",
        instruction_id=instruction,
        resource_id=resource,
        baseline_method="hour-before",
        mw_requested=0.01,
        mw_confirmed=0.01,
        delivered_mw=0.005,
        delivered_mwh=0.00125,
        performance_pct=50.0,
        assets_metered=2,
        intervals_csv=intervals_csv([0.005, 0.005, 0.005]),
        cohorts=[],
        filed_at=filed_at,
    )


async def insert_report(conn: asyncpg.Connection, r: SettlementFiled | SettlementFiledV1) -> None:
    await conn.execute(
        "INSERT INTO reports (instruction_id, version, report_id, resource_id, filed_at,"
        " delivered_mw, data_quality, report) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        r.instruction_id,
        getattr(r, "version", 1),
        r.report_id,
        r.resource_id,
        r.filed_at,
        r.delivered_mw,
        r.data_quality.value if isinstance(r, SettlementFiled) else "final",
        r.model_dump_json(),
    )


ASSET_VERSIONS = [
    # asset, version, resource ("R" / "other"), cohort, subscriber, kW, status
    ("a1", 1, "R", "A", "s1", 1.5, "enrolled"),
    ("a2", 1, "R", "A", "s2", 1.5, "enrolled"),
    ("b1", 1, "R", "B", "s3", 4.0, "enrolled"),
    ("b1", 2, "R", "B", "s3", 5.0, "enrolled"),  # re-rated: the newest version counts
    ("c1", 1, "R", "C", None, 2.0, "enrolled"),  # no subscriber: paid as itself
    ("gone", 1, "R", "A", "s1", 9.0, "enrolled"),
    ("gone", 2, "R", "A", "s1", 9.0, "unenrolled"),  # left: not counted
    ("moved", 1, "R", "B", "s4", 9.0, "enrolled"),
    ("moved", 2, "other", "B", "s4", 9.0, "enrolled"),  # now in another resource
]


@pytest.fixture(scope="module")
async def data(servers: dict[str, str]) -> AsyncIterator[Data]:
    server = servers["NEXWATT_POSTGRES_URL"]
    database = unique("test_settlement_cli").replace("-", "_")
    resource, other = unique("NXW-PJM-CLI"), unique("NXW-PJM-OTHER")
    instruction, old, elsewhere = unique("I-cli"), unique("I-cli-old"), unique("I-cli-other")
    filed = WINDOW_END + timedelta(minutes=5)
    reports = {
        (instruction, 1): report(resource, instruction, 1, DataQuality.PRELIMINARY, filed),
        (instruction, 2): report(
            resource, instruction, 2, DataQuality.RESTATED, filed + timedelta(hours=2)
        ),
        (elsewhere, 1): report(other, elsewhere, 1, DataQuality.FINAL, filed + timedelta(hours=1)),
    }
    pool = await open_pool(server, database, MIGRATIONS)
    try:
        async with pool.acquire() as conn:
            for r in reports.values():
                await insert_report(conn, r)
            await insert_report(conn, report_v1(resource, old, filed - timedelta(days=1)))
            await conn.executemany(
                "INSERT INTO payouts (instruction_id, version, cohort, subscriber_id, assets,"
                " delivered_wh, cents) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                [
                    (instruction, 1, "A", "s1", 1, 1000, -12),
                    (instruction, 1, "A", "s2", 1, 1000, -11),
                    (instruction, 2, "A", "s1", 1, 1200, -12),
                    (instruction, 2, "A", "s2", 1, 1100, -11),
                ],
            )
            await conn.executemany(
                "INSERT INTO asset_versions (asset_id, version, resource_id, cohort,"
                " subscriber_id, capacity_kw, status, updated_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                [
                    (
                        f"{resource}-{a}",
                        v,
                        resource if r == "R" else other,
                        c,
                        s,
                        kw,
                        status,
                        WINDOW_START - timedelta(days=10 - v),
                    )
                    for a, v, r, c, s, kw, status in ASSET_VERSIONS
                ],
            )
    finally:
        await pool.close()
    settings = Settings(postgres_url=server, postgres_database=database)
    try:
        yield Data(
            database,
            cli.SettlementAccess.from_settings(settings),
            resource,
            other,
            instruction,
            old,
            elsewhere,
            reports,
        )
    finally:
        await drop_database(server, database)


async def analyst(data: Data, *argv: str) -> None:
    """Run `nexwatt-settlement <argv>` in this process, on the test's database."""
    await cli.run(cli.build_parser().parse_args(argv), data.access)


def nexwatt_settlement(
    data: Data, *argv: str, url: str | None = None
) -> subprocess.CompletedProcess:
    """Run the `nexwatt-settlement` process on the test's database."""
    env = {**os.environ, "NEXWATT_POSTGRES_DATABASE": data.database}
    if url is not None:
        env["NEXWATT_POSTGRES_URL"] = url
    return subprocess.run(
        [str(Path(sys.executable).with_name("nexwatt-settlement")), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_list_newest_first_with_filters(data: Data, capsys: pytest.CaptureFixture) -> None:
    await analyst(data, "list", "--resource", data.resource)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "FILED",
        "AT",
        "INSTRUCTION",
        "RESOURCE",
        "VERSION",
        "QUALITY",
        "DELIVERED",
        "MW",
        "COVERAGE",
        "%",
        "PERFORMANCE",
        "%",
    ]
    rows = [line.split() for line in lines[1:]]
    # Version 2 was filed 2 h after version 1, the v1-contract report a day before.
    assert [(r[1], r[3], r[4]) for r in rows] == [
        (data.instruction, "2", "restated"),
        (data.instruction, "1", "preliminary"),
        (data.old_instruction, "1", "final"),
    ]
    v2 = data.reports[(data.instruction, 2)]
    assert rows[0] == [
        "2026-03-14T12:20:00Z",
        data.instruction,
        data.resource,
        "2",
        "restated",
        f"{v2.delivered_mw:.3f}",
        "100.0",
        f"{v2.performance_pct:.1f}",
    ]
    assert rows[2][-2:] == ["-", "50.0"]  # contract v1 did not measure coverage

    await analyst(data, "list", "--since", "2026-03-14")  # a date: from its start, UTC
    listed = [line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]]
    assert data.old_instruction not in listed
    assert data.other_instruction in listed
    assert listed.count(data.instruction) == 2


async def test_show_latest_or_a_version_and_v1_reports_upgraded(
    data: Data, capsys: pytest.CaptureFixture
) -> None:
    await analyst(data, "show", "--instruction", data.instruction)
    shown = SettlementFiled.model_validate_json(capsys.readouterr().out)
    assert shown == data.reports[(data.instruction, 2)]

    await analyst(data, "show", "--instruction", data.instruction, "--version", "1")
    assert json.loads(capsys.readouterr().out)["data_quality"] == "preliminary"

    await analyst(data, "show", "--instruction", data.old_instruction)
    old = json.loads(capsys.readouterr().out)
    assert (old["version"], old["data_quality"], old["iso_report_csv"]) == (1, "final", "")

    with pytest.raises(cli.SettlementError, match="no report for instruction"):
        await analyst(data, "show", "--instruction", "I-nobody")
    with pytest.raises(cli.SettlementError, match="no report version 3; kept: 1, 2"):
        await analyst(data, "show", "--instruction", data.instruction, "--version", "3")


async def test_export_csv_hourly_and_payouts(
    data: Data, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    v2 = data.reports[(data.instruction, 2)]
    await analyst(data, "export", "--instruction", data.instruction, "--csv")
    out = capsys.readouterr().out
    assert out == v2.intervals_csv
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["delivered_mw"] for r in rows] == ["0.0070", "0.0090", "0.0110"]

    await analyst(data, "export", "--instruction", data.instruction, "--hourly")
    assert capsys.readouterr().out == v2.iso_report_csv

    target = tmp_path / "v1.csv"
    await analyst(
        data,
        "export",
        "--instruction",
        data.instruction,
        "--version",
        "1",
        "--csv",
        "-o",
        str(target),
    )
    assert capsys.readouterr().out == ""
    assert target.read_text() == data.reports[(data.instruction, 1)].intervals_csv

    await analyst(data, "export", "--instruction", data.instruction)
    payouts = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(p["subscriber_id"], p["delivered_wh"], p["cents"]) for p in payouts] == [
        ("s1", 1200, -12),
        ("s2", 1100, -11),
    ]
    assert payouts[0] == {
        "instruction_id": data.instruction,
        "version": 2,
        "subscriber_id": "s1",
        "cohort": "A",
        "assets": 1,
        "delivered_wh": 1200,
        "cents": -12,
    }

    with pytest.raises(cli.SettlementError, match="no hourly report"):
        await analyst(data, "export", "--instruction", data.old_instruction, "--hourly")


async def test_plot_writes_a_png(
    data: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "window.png"
    await analyst(data, "plot", "--instruction", data.instruction, "-o", str(target))
    assert target.read_bytes()[:8] == PNG_MAGIC

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the extra were not installed
    with pytest.raises(cli.SettlementError, match=r"pip install 'nexwatt\[plot\]'"):
        await analyst(data, "plot", "--instruction", data.instruction, "-o", str(target))


async def test_revenue_split_over_the_currently_enrolled_assets(
    data: Data, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    # Enrolled now: A = a1 1.5 + a2 1.5 kW, B = b1 5 kW (its newest version), C = c1 2 kW;
    # "gone" left, "moved" is in another resource. 329.17 x 2.0 MW x 365 = $240,294.10:
    # A 3/10 = 7,208,823 (a1 3,604,412 with the tied cent, a2 3,604,411), B 5/10 = 12,014,705,
    # C 2/10 = 4,805,882 (test_revenue works the same numbers by hand).
    subscribers = tmp_path / "subscribers.csv"
    await analyst(
        data,
        "revenue",
        "--resource",
        data.resource,
        "--ucap-mw",
        "2.0",
        "--delivery-year",
        "2026/27",
        "--subscribers",
        str(subscribers),
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"{data.resource}, delivery year 2026/27: 329.17 $/MW-day x 2 MW x 365 days = $240,294.10"
    )
    assert [line.split() for line in out[2:]] == [
        ["A", "2", "3.000", "30.00", "72,088.23"],
        ["B", "1", "5.000", "50.00", "120,147.05"],
        ["C", "1", "2.000", "20.00", "48,058.82"],
        ["TOTAL", "4", "10.000", "100.00", "240,294.10"],
    ]
    rows = list(csv.DictReader(io.StringIO(subscribers.read_text())))
    assert [(r["cohort"], r["subscriber_id"], r["cents"], r["usd"]) for r in rows] == [
        ("A", "s1", "3604412", "36044.12"),
        ("A", "s2", "3604411", "36044.11"),
        ("B", "s3", "12014705", "120147.05"),
        ("C", f"{data.resource}-c1", "4805882", "48058.82"),
    ]

    await analyst(
        data, "revenue", "--resource", data.resource, "--ucap-mw", "2", "--days", "30", "--json"
    )
    result = json.loads(capsys.readouterr().out)
    # 30 days of the current delivery year's price, whichever year the test runs in.
    assert result["days"] == 30
    total = round(result["price_usd_per_mw_day"] * 2 * 30 * 100)
    assert result["total_cents"] == total
    assert sum(c["cents"] for c in result["cohorts"]) == total
    assert sum(s["cents"] for s in result["subscribers"]) == total

    with pytest.raises(cli.SettlementError, match="has no enrolled assets"):
        await analyst(data, "revenue", "--resource", "NXW-NOBODY", "--ucap-mw", "1")
    with pytest.raises(cli.SettlementError, match="has 365 days, not 366"):
        await analyst(
            data, "revenue", "--resource", data.resource, "--ucap-mw", "1", "--delivery-year",
            "2026/27", "--days", "366",
        )  # fmt: skip
    with pytest.raises(cli.SettlementError, match="no clearing price"):
        await analyst(
            data, "revenue", "--resource", data.resource, "--ucap-mw", "1", "--delivery-year",
            "2031/32",
        )  # fmt: skip


def test_exit_codes_of_the_process(data: Data) -> None:
    shown = nexwatt_settlement(data, "show", "--instruction", data.instruction)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["version"] == 2

    missing = nexwatt_settlement(data, "show", "--instruction", "I-nobody")
    assert missing.returncode == 2
    assert "no report for instruction 'I-nobody'" in missing.stderr

    usage = nexwatt_settlement(data, "revenue", "--resource", data.resource, "--ucap-mw", "-1")
    assert usage.returncode == 2
    assert "not a positive number of MW" in usage.stderr

    # Nothing listens on port 1: the database cannot be reached.
    down = nexwatt_settlement(data, "list", url="postgresql://nexwatt:nexwatt@127.0.0.1:1")
    assert down.returncode == 1
    assert "database" in down.stderr
