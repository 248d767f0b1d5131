"""Enphase Monitoring API v4 (cloud): microinverter production, battery and consumption meter.

- `GET /api/v4/systems/{system_id}/telemetry/production_micro` (5-minute intervals: `powr` W,
  `enwh` Wh, `devices_reporting`), `/telemetry/battery` (15-minute: charge and discharge Wh,
  SoC) and `/telemetry/consumption_meter` (15-minute). Intervals are labelled by their end
  (`end_at`, epoch seconds).
- Query: `start_at` (epoch s) and `granularity=day`: the answer runs from `start_at` to the
  earlier of the request time and one day later. There is no end parameter, so a body may hold
  intervals past our window's end; they come again with the next window, and readings are
  idempotent by asset and interval downstream.
- Authentication: an OAuth 2.0 access token (`Authorization: Bearer ...`) plus the
  application's API key as query parameter `key`. Tokens expire: a 401 is reported, not
  retried (refreshing the token is the operator's job for now).
- Limits depend on the plan, per application: e.g. Watt 10 requests a minute and 1000 a month.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from nexwatt_telemetry_ingest.connectors.base import Fetched, Site
from nexwatt_telemetry_ingest.connectors.http import (
    MONTH_S,
    HttpConnector,
    Quota,
    RequestBudget,
    VendorClient,
)

BASE_URL = "https://api.enphaseenergy.com"
ENDPOINTS: dict[str, str] = {
    "enphase.production-micro.v1": "production_micro",
    "enphase.battery.v1": "battery",
    "enphase.consumption-meter.v1": "consumption_meter",
}


class Enphase(HttpConnector):
    vendor = "enphase"
    formats = tuple(ENDPOINTS)
    align_s = 900  # battery and meter intervals are quarter hours (micro: 5 minutes)
    windows = {fmt: timedelta(days=1) for fmt in ENDPOINTS}  # granularity=day

    def __init__(
        self,
        client: VendorClient,
        api_key: SecretStr,
        access_token: SecretStr,
        *,
        delay_s: int = 900,
        reserve: float = 0.04,
    ) -> None:
        super().__init__(client, reserve)
        self._api_key = api_key
        self._access_token = access_token
        self.delay_s = delay_s  # gateways report every 15 minutes

    async def fetch_format(self, site: Site, fmt: str, since: datetime, until: datetime) -> Fetched:
        body = await self.client.request_json(
            "GET",
            f"/api/v4/systems/{quote(site.site_id, safe='')}/telemetry/{ENDPOINTS[fmt]}",
            site_id=site.site_id,
            params={
                "start_at": str(int(since.timestamp())),
                "granularity": "day",
                "key": self._api_key.get_secret_value(),
            },
            headers={"Authorization": f"Bearer {self._access_token.get_secret_value()}"},
        )
        return self.fetched(site, fmt, since, until, _ending_by(body, until))


def client(
    base_url: str = BASE_URL, per_minute: int = 10, per_month: int = 1000, **options: Any
) -> VendorClient:
    """Enphase's client with the plan's limits (the application's, shared by every system);
    `options` go to VendorClient."""
    budget = RequestBudget([Quota(per_minute, 60), Quota(per_month, MONTH_S)])
    return VendorClient("enphase", base_url, budget=budget, **options)


def _ending_by(body: object, until: datetime) -> object:
    """The body without the intervals ending after `until`: the API has no end parameter and
    answers up to now, where the newest intervals are still filling in (fewer devices
    reporting, less energy). Published now, they would be stored and their complete values,
    fetched with the next window, refused as corrections."""
    if not isinstance(body, dict) or not isinstance(body.get("intervals"), list):
        return body  # not ours to judge: the format refuses it with the reason
    limit = until.timestamp()
    kept = [
        i for i in body["intervals"]
        if not (isinstance(i, dict) and isinstance(i.get("end_at"), int | float)
                and i["end_at"] > limit)
    ]  # fmt: skip
    return {**body, "intervals": kept}
