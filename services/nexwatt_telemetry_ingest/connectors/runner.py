"""Poll vendor clouds and devices at a pace their request budgets allow, and publish what they
send, as sent, on `telemetry.raw` (key: the asset id).

Each (vendor, site, format) has a cursor in PostgreSQL (`connector_cursors`): the end of the last
window the broker acknowledged. A poll asks for [cursor, end) where `end` is the newest boundary
of the vendor's interval grid that the vendor has had time to complete (`align_s`, `delay_s`),
capped to the longest window one request may ask; the first poll of a site starts
`--backfill-hours` back. The cursor moves only after the broker has the record, and the event
id is derived from the window: a crash in between re-sends the same window with the same id.
Each vendor's poll period is planned from its request budget (`PacedConnector.poll_s`) and the
number of its sites; one site's failure is logged and never stops the others.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import structlog
from pydantic import Field, SecretStr

from nexwatt_shared.codec import encode, raw_envelope
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.observability import configure_logging
from nexwatt_shared.postgres import open_pool
from nexwatt_shared.topics import TELEMETRY_RAW
from nexwatt_telemetry_ingest.bootstrap import MIGRATIONS
from nexwatt_telemetry_ingest.config import Settings
from nexwatt_telemetry_ingest.connectors import enphase, generac, sma, solaredge, sunspec_modbus
from nexwatt_telemetry_ingest.connectors.base import Fetched, PacedConnector, Site
from nexwatt_telemetry_ingest.connectors.http import RetryPolicy

log = structlog.get_logger()
SITE_FIELDS = ("asset_id", "vendor", "site_id", "timezone")


class ConnectorSettings(Settings):
    """Vendor endpoints, credentials and limits (NEXWATT_SOLAREDGE_API_KEY, ...)."""

    solaredge_base_url: str = solaredge.BASE_URL
    solaredge_api_key: SecretStr | None = None
    solaredge_daily_limit: int = Field(solaredge.DAILY_LIMIT, gt=0, description="Per site, per key")
    enphase_base_url: str = enphase.BASE_URL
    enphase_api_key: SecretStr | None = None
    enphase_access_token: SecretStr | None = None
    enphase_per_minute: int = Field(10, gt=0, description="The plan's requests a minute")
    enphase_per_month: int = Field(1000, gt=0, description="The plan's requests a month")
    sma_base_url: str = Field(sma.BASE_URL, description="Device URL; {site_id} is filled in")
    sma_verify_tls: bool = Field(False, description="Devices carry self-signed certificates")
    sma_password: SecretStr | None = Field(None, description="WebConnect user password")
    sma_ennexos_username: str = ""
    sma_ennexos_password: SecretStr | None = None
    sma_ennexos_component: str = "Plant:1"
    sma_poll_s: int = Field(300, gt=0, description="Live values are read this often [s]")
    generac_base_url: str | None = Field(None, description="UNOFFICIAL cloud; no public default")
    generac_token: SecretStr | None = None
    generac_daily_limit: int | None = Field(None, gt=0)
    generac_poll_s: int = Field(300, gt=0)
    sunspec_poll_s: int = Field(
        60, gt=0, le=3600, description="Live values are read this often [s]"
    )
    sunspec_timeout_s: float = Field(3.0, gt=0, description="Per Modbus request [s]")
    connector_timeout_s: float = Field(30.0, gt=0, description="Per request [s]")
    connector_attempts: int = Field(5, ge=1, description="Requests per call, retries included")
    connector_budget_reserve: float = Field(
        0.04, ge=0, lt=1, description="Share of each request budget kept for retries"
    )
    connector_concurrency: int = Field(8, gt=0, description="Sites polled at once")
    connector_tick_s: float = Field(30.0, gt=0, description="Pause between rounds [s]")


def _required(value: SecretStr | str | None, name: str) -> SecretStr:
    if not value:
        raise ValueError(f"NEXWATT_{name.upper()} is not set")
    return value if isinstance(value, SecretStr) else SecretStr(value)


def build(vendor: str, s: ConnectorSettings) -> PacedConnector:
    """The connector of `vendor` from the settings; ValueError when a setting is missing."""
    options = {
        "timeout_s": s.connector_timeout_s,
        "retry": RetryPolicy(attempts=s.connector_attempts),
    }
    reserve = s.connector_budget_reserve
    if vendor == "solaredge":
        return solaredge.SolarEdge(
            solaredge.client(s.solaredge_base_url, s.solaredge_daily_limit, **options),
            _required(s.solaredge_api_key, "solaredge_api_key"),
            reserve=reserve,
        )
    if vendor == "enphase":
        return enphase.Enphase(
            enphase.client(
                s.enphase_base_url, s.enphase_per_minute, s.enphase_per_month, **options
            ),
            _required(s.enphase_api_key, "enphase_api_key"),
            _required(s.enphase_access_token, "enphase_access_token"),
            reserve=reserve,
        )
    if vendor == "sma-webconnect":
        return sma.SmaWebConnect(
            sma.client(s.sma_verify_tls, **options),
            _required(s.sma_password, "sma_password"),
            base_url=s.sma_base_url,
            poll_s=s.sma_poll_s,
        )
    if vendor == "sma-ennexos":
        return sma.SmaEnnexos(
            sma.client(s.sma_verify_tls, **options),
            _required(s.sma_ennexos_username, "sma_ennexos_username").get_secret_value(),
            _required(s.sma_ennexos_password, "sma_ennexos_password"),
            base_url=s.sma_base_url,
            component_id=s.sma_ennexos_component,
            poll_s=s.sma_poll_s,
        )
    if vendor == "generac":
        return generac.Generac(
            generac.client(
                _required(s.generac_base_url, "generac_base_url").get_secret_value(),
                s.generac_daily_limit,
                **options,
            ),
            _required(s.generac_token, "generac_token"),
            poll_s=s.generac_poll_s,
        )
    if vendor == "sunspec":
        return sunspec_modbus.SunSpecModbusConnector(
            interval_s=s.sunspec_poll_s, timeout_s=s.sunspec_timeout_s
        )
    raise ValueError(f"no connector for vendor {vendor!r}")


VENDORS = ("solaredge", "enphase", "sma-webconnect", "sma-ennexos", "generac", "sunspec")


def load_sites(path: Path) -> list[Site]:
    """Sites from a JSON list of objects or a CSV file with a header, each with asset_id,
    vendor, site_id and timezone; ValueError naming the entry when one is wrong."""
    text = path.read_text()
    if path.suffix.lower() == ".json":
        rows = json.loads(text)
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a JSON list of sites")
    else:
        rows = list(csv.DictReader(text.splitlines()))
    sites = []
    for i, row in enumerate(rows):
        where = f"{path} entry {i + 1}"
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected an object")
        values = {k: row.get(k) for k in SITE_FIELDS}
        missing = [k for k, v in values.items() if not isinstance(v, str) or not v.strip()]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        site = Site(**{k: v.strip() for k, v in values.items()})  # type: ignore[union-attr]
        if site.vendor not in VENDORS:
            raise ValueError(f"{where}: unknown vendor {site.vendor!r} (one of {VENDORS})")
        try:
            ZoneInfo(site.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{where}: unknown time zone {site.timezone!r}") from exc
        sites.append(site)
    return sites


def align_down(instant: datetime, step_s: int) -> datetime:
    """The latest multiple of `step_s` seconds since the epoch at or before `instant`."""
    seconds = int(instant.timestamp())
    return datetime.fromtimestamp(seconds - seconds % step_s, UTC)


class CursorStore:
    """`connector_cursors`: per (vendor, site, format), the end of the last published window."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def load(self, vendor: str, site_id: str) -> dict[str, datetime]:
        rows = await self.pool.fetch(
            "SELECT format, covered_until FROM connector_cursors"
            " WHERE vendor = $1 AND site_id = $2",
            vendor,
            site_id,
        )
        return {r["format"]: r["covered_until"] for r in rows}

    async def save(self, vendor: str, site_id: str, fmt: str, until: datetime) -> None:
        """Advance the cursor (never backwards: a slower replica cannot undo a faster one)."""
        await self.pool.execute(
            "INSERT INTO connector_cursors (vendor, site_id, format, covered_until)"
            " VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (vendor, site_id, format) DO UPDATE SET"
            " covered_until = GREATEST(connector_cursors.covered_until, EXCLUDED.covered_until),"
            " updated_at = now()",
            vendor,
            site_id,
            fmt,
            until,
        )


class ConnectorRunner:
    """One round polls every site's formats that are due; `round()` returns the failures."""

    def __init__(
        self,
        connectors: Mapping[str, PacedConnector],
        sites: Sequence[Site],
        cursors: CursorStore,
        producer: EventProducer,
        *,
        topic: str = TELEMETRY_RAW.name,
        backfill: timedelta = timedelta(hours=24),
        concurrency: int = 8,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.connectors = connectors
        self.sites = list(sites)
        self.cursors = cursors
        self.producer = producer
        self.topic = topic
        self.backfill = backfill
        self.clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._polled: dict[tuple[str, str, str], datetime] = {}  # last attempt, this process
        self.poll_s = {
            vendor: c.poll_s(sum(1 for s in self.sites if s.vendor == vendor))
            for vendor, c in connectors.items()
        }
        for vendor, period in self.poll_s.items():
            log.info("connector planned", vendor=vendor, poll_s=period)

    async def round(self) -> int:
        failures = await asyncio.gather(*(self._site(site) for site in self.sites))
        return sum(failures)

    async def _site(self, site: Site) -> int:
        connector = self.connectors[site.vendor]
        failures = 0
        async with self._slots:
            with structlog.contextvars.bound_contextvars(vendor=site.vendor, site_id=site.site_id):
                try:
                    cursors = await self.cursors.load(site.vendor, site.site_id)
                except Exception:
                    log.exception("connector cursors unreadable")
                    return len(connector.formats)
                for fmt in connector.formats:
                    try:
                        await self._poll(site, connector, fmt, cursors.get(fmt))
                    except Exception as exc:
                        failures += 1
                        error = f"{type(exc).__name__}: {exc}"
                        log.warning("connector poll failed", format=fmt, error=error)
        return failures

    async def _poll(
        self, site: Site, connector: PacedConnector, fmt: str, cursor: datetime | None
    ) -> None:
        now = self.clock()
        key = (site.vendor, site.site_id, fmt)
        last = self._polled.get(key)
        if last is not None and now < last + timedelta(seconds=self.poll_s[site.vendor]):
            return
        since = cursor or align_down(now - self.backfill, connector.align_s)
        until = align_down(now - timedelta(seconds=connector.delay_s), connector.align_s)
        cap = connector.max_window(fmt)
        if cap is not None:
            until = min(until, since + cap)
        if until <= since:
            return  # the vendor has nothing newer than what was published
        self._polled[key] = now
        fetched = await connector.fetch_format(site, fmt, since, until)
        await self._publish(site, connector.vendor, fetched)
        await self.cursors.save(site.vendor, site.site_id, fmt, until)
        log.info(
            "connector published",
            format=fmt,
            window_start=since.isoformat(),
            window_end=until.isoformat(),
            event_id=fetched.event_id,
        )

    async def _publish(self, site: Site, vendor: str, fetched: Fetched) -> None:
        """Send and wait until the broker has the record (all in-sync replicas)."""
        event = raw_envelope(
            fetched.fmt,
            site.asset_id,
            fetched.data,
            site_timezone=site.timezone,
            source=f"connector-{vendor}",
            event_id=fetched.event_id,
        )
        await self.producer.send_raw_many(self.topic, [(site.asset_id, encode(event), ())])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sites",
        type=Path,
        required=True,
        help="JSON list or CSV (with header) of sites: asset_id, vendor, site_id, timezone",
    )
    parser.add_argument("--once", action="store_true", help="run one round, then exit")
    parser.add_argument(
        "--backfill-hours",
        type=float,
        default=24.0,
        help="how far back a site's first poll starts (default 24)",
    )
    parser.add_argument(
        "--topic", default=TELEMETRY_RAW.name, help="topic to publish on (default telemetry.raw)"
    )


async def run(args: argparse.Namespace) -> int:
    """Poll until stopped (or one round with --once: exit status 1 when a poll failed)."""
    settings = ConnectorSettings()
    configure_logging(settings.service_name, settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines print URLs with keys
    try:
        sites = load_sites(args.sites)
        connectors = {v: build(v, settings) for v in sorted({s.vendor for s in sites})}
    except (OSError, ValueError) as exc:
        log.error("connector setup refused", error=str(exc))
        return 2
    pool = await open_pool(settings.postgres_url, settings.database, MIGRATIONS)
    producer = EventProducer(
        settings.kafka_bootstrap_servers, settings.service_name, settings.kafka_security()
    )
    await producer.start()
    try:
        runner = ConnectorRunner(
            connectors,
            sites,
            CursorStore(pool),
            producer,
            topic=args.topic,
            backfill=timedelta(hours=args.backfill_hours),
            concurrency=settings.connector_concurrency,
        )
        while True:
            failures = await runner.round()
            if args.once:
                log.info("connector round done", sites=len(sites), failures=failures)
                return 1 if failures else 0
            await asyncio.sleep(settings.connector_tick_s)
    finally:
        for connector in connectors.values():
            await connector.aclose()
        await producer.stop()
        await pool.close()
