"""The one interface every connector implements, and what the runner needs to pace it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

# Event ids of connector payloads live in their own UUID namespace (uuid5 of the window).
_EVENT_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:nexwatt:telemetry-raw:connector")


@dataclass(frozen=True)
class Site:
    """One monitored site as a connector sees it."""

    asset_id: str  # the Nexwatt asset its telemetry belongs to (the record key)
    vendor: str  # solaredge, enphase, sma-webconnect, sma-ennexos, generac, sunspec
    site_id: str  # the vendor's id: site, system or device id; host:port/unit for Modbus
    timezone: str  # the site's IANA time zone, for vendors that send local times


@dataclass(frozen=True)
class Fetched:
    """One vendor payload, as received, ready for `telemetry.raw`."""

    fmt: str  # its format on telemetry.raw, e.g. "solaredge.storage-data.v1"
    data: dict[str, Any] | list[Any]
    event_id: str  # derived from site, format and window: a re-fetch re-sends the same id


def window_event_id(vendor: str, site_id: str, fmt: str, since: datetime, until: datetime) -> str:
    """The event id of the payload of `fmt` for [since, until): the same window fetched again
    (after a crash before the cursor advanced) is published with the same id, which consumers
    deduplicate on."""
    key = f"{vendor}|{site_id}|{fmt}|{since.timestamp():.0f}|{until.timestamp():.0f}"
    return str(uuid.uuid5(_EVENT_IDS, key))


class Connector(Protocol):
    vendor: str

    async def fetch(self, site: Site, since: datetime, until: datetime) -> list[Fetched]:
        """The site's payloads covering [since, until) (a vendor may cap the window: the
        caller advances its cursor to what was covered). Raises on errors the caller retries."""
        ...


@runtime_checkable
class PacedConnector(Connector, Protocol):
    """A connector that fetches each of its formats on its own, so the runner keeps one cursor
    per format and one failing endpoint does not hold back the others; it also says how often
    it may poll (from the vendor's request budget) and how its windows are cut."""

    formats: tuple[str, ...]
    align_s: int  # window ends fall on multiples of this (the vendor's interval) [s]
    delay_s: int  # how long after an interval ends the vendor has it complete [s]

    def max_window(self, fmt: str) -> timedelta | None:
        """The longest window one request of `fmt` may ask for (None: no limit)."""
        ...

    def poll_s(self, sites: int) -> int:
        """Seconds between two polls of one site's formats when `sites` sites share the
        vendor's account, so the planned requests stay within its budget."""
        ...

    async def fetch_format(
        self, site: Site, fmt: str, since: datetime, until: datetime
    ) -> Fetched: ...

    async def aclose(self) -> None: ...


def live_payload(until: datetime, interval_s: int, body: object) -> dict[str, Any]:
    """Live values (no time of their own) in our polling envelope, labelled on the runner's
    grid: the reading covers [until - interval_s, until), so consecutive polls, a slow one, or
    the first after a restart never overlap (the cursor already moved past earlier ones)."""
    return {"polled_at": int(until.timestamp()), "interval_s": interval_s, "response": body}
