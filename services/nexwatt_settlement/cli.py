"""Settlement reports for analysts: `nexwatt-settlement list | show | export | plot | revenue`.

Everything is read from settlement's own PostgreSQL database, found with the settlement
service's settings (NEXWATT_POSTGRES_URL, and NEXWATT_POSTGRES_DATABASE or its default
`nexwatt_settlement`), over one read-only connection: these commands never create, migrate or
write anything. A report is addressed by its instruction id and version, the latest version
unless one is named. The pure parts (rows, tables, the plot's series, the revenue table) are
plain functions; the database is touched only by `connected` and the `_fetch_*` functions.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from nexwatt_settlement.config import Settings
from nexwatt_settlement.money import (
    CLEARING_PRICES_USD_PER_MW_DAY,
)
from nexwatt_settlement.revenue import RevenueSplit, split_capacity_revenue
from nexwatt_settlement.store import parse_report
from nexwatt_shared.arguments import moment
from nexwatt_shared.contracts import AssetStatus, SettlementFiled
from nexwatt_shared.delivery_year import days_in, delivery_year
from nexwatt_shared.postgres import database_url

# What a failing database raises: refused or lost connections, timeouts, SQL errors (a database
# that does not exist, or a schema older than the queries).
DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
CONNECT_TIMEOUT_S = 10.0
PLOT_HINT = "plot needs matplotlib: pip install 'nexwatt[plot]'"


def describe_database_error(exc: BaseException) -> str:
    """What to print for one of `DATABASE_ERRORS`, with a hint when the schema is behind."""
    if isinstance(exc, asyncpg.UndefinedTableError | asyncpg.UndefinedColumnError):
        return f"{exc!r}: is settlement's database migrated? (nexwatt-settlement migrate)"
    return repr(exc)


class SettlementError(Exception):
    """What the analyst asked for cannot be done; the text says why (exit code 2)."""


@dataclass(frozen=True)
class SettlementAccess:
    """Where settlement's database is, and the market's time zone (the current delivery year)."""

    dsn: str
    market_timezone: str

    @classmethod
    def from_settings(cls, settings: Settings) -> SettlementAccess:
        return cls(
            database_url(settings.postgres_url, settings.database),
            settings.settlement_market_timezone,
        )


# --- pure parts ----------------------------------------------------------------------------

LIST_HEADER = (
    "FILED AT",
    "INSTRUCTION",
    "RESOURCE",
    "VERSION",
    "QUALITY",
    "DELIVERED MW",
    "COVERAGE %",
    "PERFORMANCE %",
)
REVENUE_HEADER = ("COHORT", "ASSETS", "ACCREDITED KW", "SHARE %", "USD")
SUBSCRIBERS_HEADER = ("cohort", "subscriber_id", "assets", "accredited_kw", "cents", "usd")


def list_row(record: Any) -> tuple[str, ...]:
    """The `list` columns of one report version (coverage is "-" for a report filed under
    contract v1, which did not measure it)."""
    coverage = record["coverage_pct"]
    return (
        _iso(record["filed_at"]),
        record["instruction_id"],
        record["resource_id"],
        str(record["version"]),
        record["data_quality"],
        f"{record['delivered_mw']:.3f}",
        "-" if coverage is None else f"{coverage:.1f}",
        f"{record['performance_pct']:.1f}",
    )


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows under `header`, each column as wide as its widest cell."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


@dataclass(frozen=True)
class Slots:
    """A report's 5-minute detail as columns: slot starts (UTC) and MW."""

    starts: list[datetime]
    baseline_mw: list[float]
    metered_mw: list[float]
    delivered_mw: list[float]
    requested_mw: list[float]  # empty for a report filed before requests were per slot


def parse_intervals(text: str) -> Slots:
    """Read `intervals_csv` (interval_start,baseline_mw,metered_mw,delivered_mw,coverage_pct,
    requested_mw; the last column only in reports filed since instruction revisions)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    return Slots(
        starts=[datetime.fromisoformat(r["interval_start"]) for r in rows],
        baseline_mw=[float(r["baseline_mw"]) for r in rows],
        metered_mw=[float(r["metered_mw"]) for r in rows],
        delivered_mw=[float(r["delivered_mw"]) for r in rows],
        requested_mw=[float(r["requested_mw"]) for r in rows if r.get("requested_mw")],
    )


def payout_line(instruction_id: str, version: int, record: Any) -> str:
    """One payout as a JSON line."""
    return json.dumps(
        {
            "instruction_id": instruction_id,
            "version": version,
            "subscriber_id": record["subscriber_id"],
            "cohort": record["cohort"],
            "assets": record["assets"],
            "delivered_wh": record["delivered_wh"],
            "cents": record["cents"],
        }
    )


def usd(cents: int, thousands: str = ",") -> str:
    """Cents as dollars: 24029410 -> "240,294.10" (with thousands="": "240294.10")."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(int(cents)), 100)
    return f"{sign}{whole:,}.{part:02d}".replace(",", thousands)


@dataclass(frozen=True)
class Revenue:
    """What `revenue` was asked and what it found."""

    resource_id: str
    delivery_year: str
    price_usd_per_mw_day: float
    ucap_mw: float
    days: int
    split: RevenueSplit


def revenue_table(revenue: Revenue) -> str:
    """The revenue's formula, then a row per cohort and the total."""
    s = revenue.split
    head = (
        f"{revenue.resource_id}, delivery year {revenue.delivery_year}: "
        f"{revenue.price_usd_per_mw_day:g} $/MW-day x {revenue.ucap_mw:g} MW x "
        f"{revenue.days} days = ${usd(s.total_cents)}"
    )
    rows = [
        (name, str(assets), f"{kw:.3f}", f"{share:.2f}", usd(cents))
        for name, assets, kw, share, cents in zip(
            s.cohorts, s.cohort_assets, s.cohort_kw, s.cohort_share_pct, s.cohort_cents, strict=True
        )
    ]
    total = ("TOTAL", str(s.cohort_assets.sum()), f"{s.cohort_kw.sum():.3f}", "100.00")
    return head + "\n" + format_table(REVENUE_HEADER, [*rows, (*total, usd(s.total_cents))])


def subscriber_rows(split: RevenueSplit) -> list[tuple[str, ...]]:
    """One row per subscriber of a cohort, under `SUBSCRIBERS_HEADER`."""
    return [
        (cohort, subscriber, str(assets), f"{kw:.3f}", str(cents), usd(cents, thousands=""))
        for cohort, subscriber, assets, kw, cents in zip(
            split.subscriber_cohorts,
            split.subscribers,
            split.subscriber_assets,
            split.subscriber_kw,
            split.subscriber_cents,
            strict=True,
        )
    ]


def revenue_json(revenue: Revenue) -> str:
    s = revenue.split
    return json.dumps(
        {
            "resource_id": revenue.resource_id,
            "delivery_year": revenue.delivery_year,
            "price_usd_per_mw_day": revenue.price_usd_per_mw_day,
            "ucap_mw": revenue.ucap_mw,
            "days": revenue.days,
            "total_cents": s.total_cents,
            "cohorts": [
                {
                    "cohort": name,
                    "assets": int(assets),
                    "accredited_kw": float(kw),
                    "share_pct": round(float(share), 4),
                    "cents": int(cents),
                }
                for name, assets, kw, share, cents in zip(
                    s.cohorts,
                    s.cohort_assets,
                    s.cohort_kw,
                    s.cohort_share_pct,
                    s.cohort_cents,
                    strict=True,
                )
            ],
            "subscribers": [
                {
                    "cohort": cohort,
                    "subscriber_id": subscriber,
                    "assets": int(assets),
                    "accredited_kw": float(kw),
                    "cents": int(cents),
                }
                for cohort, subscriber, assets, kw, cents in zip(
                    s.subscriber_cohorts,
                    s.subscribers,
                    s.subscriber_assets,
                    s.subscriber_kw,
                    s.subscriber_cents,
                    strict=True,
                )
            ],
        },
        indent=2,
    )


def render_plot(report: SettlementFiled, path: Path) -> None:
    """Baseline, metered and delivered MW per 5-minute slot against the MW requested in each,
    as a PNG at `path` (matplotlib's Agg canvas: no display, no pyplot state)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.dates import DateFormatter
        from matplotlib.figure import Figure
    except ImportError:
        raise SettlementError(PLOT_HINT) from None
    slots = parse_intervals(report.intervals_csv)
    if not slots.starts:
        raise SettlementError(f"{report.report_id} has no 5-minute detail to plot")
    # Each slot's value holds until the next slot starts; the last one until the window ends.
    edges = [*slots.starts, report.window_end]
    figure = Figure(figsize=(10, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, values in (
        ("baseline", slots.baseline_mw),
        ("metered", slots.metered_mw),
        ("delivered", slots.delivered_mw),
    ):
        axes.step(edges, [*values, values[-1]], where="post", label=label)
    requested = slots.requested_mw or [report.mw_requested] * len(slots.starts)
    axes.step(
        edges,
        [*requested, requested[-1]],
        where="post",
        color="black",
        linestyle="--",
        label=f"requested (mean {report.mw_requested:g} MW)",
    )
    axes.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=UTC))
    axes.set_xlabel(f"{report.window_start:%Y-%m-%d} (UTC)")
    axes.set_ylabel("MW")
    axes.set_title(
        f"{report.instruction_id}  version {report.version}  {report.data_quality.value}"
    )
    axes.grid(alpha=0.3)
    axes.legend()
    try:
        figure.savefig(path, format="png")
    except OSError as exc:
        raise SettlementError(f"cannot write {path}: {exc}") from None


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise SettlementError(f"cannot write {path}: {exc}") from None


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- the database --------------------------------------------------------------------------


@asynccontextmanager
async def connected(access: SettlementAccess) -> AsyncIterator[asyncpg.Connection]:
    """One read-only connection to settlement's database, closed on exit."""
    conn = await asyncpg.connect(
        access.dsn,
        timeout=CONNECT_TIMEOUT_S,
        server_settings={
            "default_transaction_read_only": "on",
            "application_name": "nexwatt-settlement-cli",
        },
    )
    try:
        yield conn
    finally:
        await conn.close()


async def _fetch_list(
    conn: asyncpg.Connection, since: datetime | None, resource: str | None
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT filed_at, instruction_id, resource_id, version, data_quality, delivered_mw,
               (report->>'coverage_pct')::float8 AS coverage_pct,
               (report->>'performance_pct')::float8 AS performance_pct
        FROM reports
        WHERE ($1::timestamptz IS NULL OR filed_at >= $1)
          AND ($2::text IS NULL OR resource_id = $2)
        ORDER BY filed_at DESC, instruction_id, version DESC
        """,
        since,
        resource,
    )


async def _fetch_report(
    conn: asyncpg.Connection, instruction_id: str, version: int | None
) -> SettlementFiled:
    """The report version asked for (the latest by default); SettlementError if not kept."""
    text = await conn.fetchval(
        "SELECT report::text FROM reports WHERE instruction_id = $1"
        " AND ($2::int IS NULL OR version = $2) ORDER BY version DESC LIMIT 1",
        instruction_id,
        version,
    )
    if text is not None:
        return parse_report(text)
    kept = await conn.fetch(
        "SELECT version FROM reports WHERE instruction_id = $1 ORDER BY version", instruction_id
    )
    if not kept:
        raise SettlementError(f"no report for instruction {instruction_id!r}")
    raise SettlementError(
        f"instruction {instruction_id!r} has no report version {version}; "
        f"kept: {', '.join(str(r['version']) for r in kept)}"
    )


async def _fetch_payouts(
    conn: asyncpg.Connection, instruction_id: str, version: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT cohort, subscriber_id, assets, delivered_wh, cents FROM payouts"
        " WHERE instruction_id = $1 AND version = $2 ORDER BY cohort, subscriber_id",
        instruction_id,
        version,
    )


async def _fetch_enrolled(conn: asyncpg.Connection, resource_id: str) -> list[asyncpg.Record]:
    """The resource's assets enrolled now: each asset's newest version, if it is enrolled in
    this resource (an asset that moved away or left is not counted)."""
    return await conn.fetch(
        """
        SELECT asset_id, cohort, coalesce(subscriber_id, asset_id) AS subscriber_id,
               capacity_kw
        FROM (
            SELECT DISTINCT ON (asset_id) asset_id, resource_id, cohort, subscriber_id,
                   capacity_kw, status
            FROM asset_versions
            WHERE asset_id IN (SELECT asset_id FROM asset_versions WHERE resource_id = $1)
            ORDER BY asset_id, version DESC
        ) newest
        WHERE resource_id = $1 AND status = $2
        ORDER BY asset_id
        """,
        resource_id,
        AssetStatus.ENROLLED.value,
    )


# --- the commands --------------------------------------------------------------------------


async def list_reports(
    access: SettlementAccess, since: datetime | None = None, resource: str | None = None
) -> int:
    """Print one line per report version, newest first; return how many were listed."""
    async with connected(access) as conn:
        rows = [list_row(r) for r in await _fetch_list(conn, since, resource)]
    if not rows:
        print("no settlement reports", file=sys.stderr)
        return 0
    print(format_table(LIST_HEADER, rows))
    print(f"{len(rows)} report version{'s' if len(rows) != 1 else ''}", file=sys.stderr)
    return len(rows)


async def show_report(
    access: SettlementAccess, instruction_id: str, version: int | None = None
) -> SettlementFiled:
    """Print one report version as JSON and return it."""
    async with connected(access) as conn:
        report = await _fetch_report(conn, instruction_id, version)
    print(report.model_dump_json(indent=2))
    return report


async def export_report(
    access: SettlementAccess,
    instruction_id: str,
    version: int | None = None,
    *,
    table: str | None = None,
    output: Path | None = None,
) -> str:
    """Print (or write to `output`) the report's 5-minute CSV (`table="intervals"`), its hourly
    ISO-format CSV (`table="hourly"`), or by default its payouts as JSON lines; return the
    text."""
    async with connected(access) as conn:
        report = await _fetch_report(conn, instruction_id, version)
        payouts = None if table else await _fetch_payouts(conn, instruction_id, report.version)
    ref = f"{instruction_id} version {report.version}"
    if table == "hourly":
        text = report.iso_report_csv
        if not text:
            raise SettlementError(f"{ref} has no hourly report (filed under contract v1)")
    elif table == "intervals":
        text = report.intervals_csv
    else:
        assert payouts is not None
        text = "".join(payout_line(instruction_id, report.version, p) + "\n" for p in payouts)
        if not payouts:
            print(f"no payouts kept for {ref}", file=sys.stderr)
    if output is None:
        sys.stdout.write(text)
    else:
        _write(output, text)
        print(f"wrote {output}", file=sys.stderr)
    return text


async def plot_report(
    access: SettlementAccess,
    instruction_id: str,
    version: int | None = None,
    output: Path | None = None,
) -> Path:
    """Write the report's PNG (see `render_plot`) and return its path."""
    try:
        import matplotlib  # noqa: F401  (only to fail before reading the database)
    except ImportError:
        raise SettlementError(PLOT_HINT) from None
    async with connected(access) as conn:
        report = await _fetch_report(conn, instruction_id, version)
    path = output or Path(f"{instruction_id}-v{report.version}.png")
    render_plot(report, path)
    print(f"wrote {path}", file=sys.stderr)
    return path


async def compute_revenue(
    access: SettlementAccess,
    resource_id: str,
    ucap_mw: float,
    year: str | None = None,
    days: int | None = None,
) -> Revenue:
    """The resource's capacity revenue over `days` of delivery year `year` (defaults: the
    whole current one), split over its currently enrolled assets by accredited kW."""
    if year is None:
        year = delivery_year(datetime.now(ZoneInfo(access.market_timezone)).date())
    try:
        year_days = days_in(year)  # checks the "YYYY/YY" form
        price = CLEARING_PRICES_USD_PER_MW_DAY.for_year(year)
    except ValueError as exc:
        known = ", ".join(CLEARING_PRICES_USD_PER_MW_DAY.by_delivery_year)
        raise SettlementError(f"{exc} (prices known for {known})") from None
    if days is not None and days > year_days:
        raise SettlementError(f"delivery year {year} has {year_days} days, not {days}")
    days = days or year_days
    async with connected(access) as conn:
        assets = await _fetch_enrolled(conn, resource_id)
    if not assets:
        raise SettlementError(f"resource {resource_id!r} has no enrolled assets")
    try:
        split = split_capacity_revenue(
            price,
            ucap_mw,
            days,
            [a["cohort"] for a in assets],
            [a["subscriber_id"] for a in assets],
            [a["capacity_kw"] for a in assets],
        )
    except ValueError as exc:
        raise SettlementError(f"resource {resource_id!r}: {exc}") from None
    return Revenue(resource_id, year, price, ucap_mw, days, split)


COMMANDS = ("list", "show", "export", "plot", "revenue")


def _version(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a report version (1, 2, ...): {text!r}")
    return int(text)


def _days(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}")
    return int(text)


def _mw(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"not a positive number of MW: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nexwatt-settlement",
        description="Settlement reports for analysts (`run` and `migrate` start the service).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="one line per report version, newest first")
    listing.add_argument(
        "--since",
        type=moment,
        help="only versions filed from then on (ISO 8601; UTC if no offset is given)",
    )
    listing.add_argument("--resource", help="only this resource's reports")
    show = commands.add_parser("show", help="one report version as JSON")
    export = commands.add_parser(
        "export", help="a report's 5-minute or hourly CSV, or its payouts as JSON lines"
    )
    plot = commands.add_parser("plot", help="a PNG of a report's MW per 5-minute slot")
    for command in (show, export, plot):
        command.add_argument("--instruction", required=True, help="the dispatch instruction id")
        command.add_argument(
            "--version", type=_version, help="the report version (default: the latest)"
        )
    export.add_argument(
        "--csv", action="store_true", help="the 5-minute detail as CSV (default: payouts)"
    )
    export.add_argument(
        "--hourly", action="store_true", help="the ISO-format hourly CSV instead (implies --csv)"
    )
    export.add_argument("-o", "--output", type=Path, help="write to this file, not stdout")
    plot.add_argument(
        "-o", "--output", type=Path, help="the PNG to write (default: <instruction>-v<N>.png)"
    )
    revenue = commands.add_parser(
        "revenue", help="a resource's capacity revenue split to cohorts and subscribers"
    )
    revenue.add_argument("--resource", required=True, help="the ISO resource id")
    revenue.add_argument(
        "--ucap-mw", type=_mw, required=True, help="the cleared unforced capacity [MW]"
    )
    revenue.add_argument(
        "--delivery-year", help="YYYY/YY, June 1 to May 31 (default: the current one)"
    )
    revenue.add_argument(
        "--days", type=_days, help="days of revenue (default: the whole delivery year)"
    )
    revenue.add_argument(
        "--subscribers", type=Path, metavar="FILE.csv", help="also write one row per subscriber"
    )
    revenue.add_argument("--json", action="store_true", help="one JSON object, not a table")
    return parser


async def run(args: argparse.Namespace, access: SettlementAccess) -> None:
    """Carry out a parsed analyst command."""
    command = args.command
    if command == "list":
        await list_reports(access, args.since, args.resource)
    elif command == "show":
        await show_report(access, args.instruction, args.version)
    elif command == "export":
        table = "hourly" if args.hourly else "intervals" if args.csv else None
        await export_report(access, args.instruction, args.version, table=table, output=args.output)
    elif command == "plot":
        await plot_report(access, args.instruction, args.version, args.output)
    else:
        revenue = await compute_revenue(
            access, args.resource, args.ucap_mw, args.delivery_year, args.days
        )
        print(revenue_json(revenue) if args.json else revenue_table(revenue))
        if args.subscribers is not None:
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerows([SUBSCRIBERS_HEADER, *subscriber_rows(revenue.split)])
            _write(args.subscribers, out.getvalue())
            print(f"wrote {args.subscribers}", file=sys.stderr)


def main(argv: Sequence[str]) -> int:
    """Run one analyst command; the exit code: 0 done, 1 the database failed, 2 usage error or
    nothing found."""
    args = build_parser().parse_args(argv)
    try:
        asyncio.run(run(args, SettlementAccess.from_settings(Settings())))
    except SettlementError as exc:
        print(f"nexwatt-settlement: {exc}", file=sys.stderr)
        return 2
    except DATABASE_ERRORS as exc:
        print(f"nexwatt-settlement: database: {describe_database_error(exc)}", file=sys.stderr)
        return 1
    return 0
