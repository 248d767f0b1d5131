"""SolarEdge Monitoring API (cloud): power, energy and battery data of a site.

- `GET /site/{id}/powerDetails` (W, 15-minute averages per meter: Production, Consumption,
  SelfConsumption, FeedIn, Purchased), `/energyDetails?timeUnit=QUARTER_OF_AN_HOUR` (Wh per
  quarter hour, same meters) and `/storageData` (per battery: power, SoC, lifetime energy,
  about every 5 minutes). Authentication: the account's or site's key as query parameter
  `api_key`.
- `startTime`/`endTime` are wall-clock times of the site, "YYYY-MM-DD hh:mm:ss", without an
  offset; both ends are included, so a window [since, until) asks up to one second before
  `until` and the quarter starting at `until` comes with the next window.
- We poll `energyDetails` (exact energy per quarter hour, whose average power is what a
  settlement needs) and `storageData`. `powerDetails` carries the same channels for the same
  quarters with slightly different values: polling both would store one and refuse the other as
  a correction every quarter hour, and cost a third of the budget. Gateways may still send it.
- Battery samples are paired across a window's edge: a storageData request starts
  `STORAGE_OVERLAP` before the window, so the last sample of one window and the first of the
  next make their interval; the pairs inside the overlap come again with the same values and
  are dropped downstream as repeats.
- Limits: power and energy details at quarter-hour resolution cover at most one month per
  request, storage data at most one week; we ask one week at most of each, which also keeps a
  payload far below Kafka's 1 MB record limit; 300 requests a day per site
  and 300 per account key, 3 concurrent requests per source IP. Over a limit it answers 429.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from pydantic import SecretStr

from nexwatt_telemetry_ingest.connectors.base import Fetched, Site
from nexwatt_telemetry_ingest.connectors.http import (
    DAY_S,
    HttpConnector,
    Quota,
    RequestBudget,
    VendorClient,
)

BASE_URL = "https://monitoringapi.solaredge.com"
DAILY_LIMIT = 300  # requests a day, per site and per account key
MAX_CONCURRENT = 3  # per source IP
# format -> (endpoint, extra query parameters)
ENDPOINTS: dict[str, tuple[str, dict[str, str]]] = {
    "solaredge.power-details.v1": ("powerDetails", {}),
    "solaredge.energy-details.v1": ("energyDetails", {"timeUnit": "QUARTER_OF_AN_HOUR"}),
    "solaredge.storage-data.v1": ("storageData", {}),
}
_LOCAL = "%Y-%m-%d %H:%M:%S"


def local_time(instant: datetime, timezone: str) -> str:
    """A UTC instant as the site's wall-clock time, the way SolarEdge takes it."""
    return instant.astimezone(ZoneInfo(timezone)).strftime(_LOCAL)


POLLED = ("solaredge.energy-details.v1", "solaredge.storage-data.v1")
STORAGE_OVERLAP = timedelta(minutes=10)  # two battery sample periods


class SolarEdge(HttpConnector):
    vendor = "solaredge"
    formats = POLLED
    align_s = 900  # its quarter hours
    windows = {fmt: timedelta(days=7) for fmt in POLLED}

    def __init__(
        self,
        client: VendorClient,
        api_key: SecretStr,
        *,
        delay_s: int = 900,
        reserve: float = 0.04,
    ) -> None:
        super().__init__(client, reserve)
        self._api_key = api_key
        self.delay_s = delay_s  # the inverter uploads every 15 minutes or so

    async def fetch_format(self, site: Site, fmt: str, since: datetime, until: datetime) -> Fetched:
        endpoint, extra = ENDPOINTS[fmt]
        start = local_time(since, site.timezone)
        if endpoint == "storageData":
            earlier = local_time(since - STORAGE_OVERLAP, site.timezone)
            # Not across the autumn's repeated hour, where the earlier instant reads later on
            # the site's clock (and would ask a start after the end): no overlap then.
            start = min(earlier, start)
        params = {
            "startTime": start,
            "endTime": local_time(until - timedelta(seconds=1), site.timezone),
            **extra,
            "api_key": self._api_key.get_secret_value(),
        }
        body = await self.client.request_json(
            "GET",
            f"/site/{quote(site.site_id, safe='')}/{endpoint}",
            site_id=site.site_id,
            params=params,
        )
        return self.fetched(site, fmt, since, until, body)


def client(
    base_url: str = BASE_URL, daily_limit: int = DAILY_LIMIT, **options: Any
) -> VendorClient:
    """SolarEdge's client: its daily limits per site and per account, 3 requests at a time;
    `options` go to VendorClient (timeout_s, retry, ...)."""
    budget = RequestBudget(
        [Quota(daily_limit, DAY_S, per_site=True), Quota(daily_limit, DAY_S, per_site=False)]
    )
    return VendorClient(
        "solaredge", base_url, budget=budget, max_concurrent=MAX_CONCURRENT, **options
    )
