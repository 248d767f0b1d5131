"""Generac PWRcell through its cloud: UNOFFICIAL. Generac publishes no API for PWRcell.

What we know comes from a community integration that reads the mobile app's cloud: a system's
devices, each with a `deviceType` (PVL = PV link, BATTERY, INVERTER, ...) and a
`deviceStatus{powerInWatts, soc, lifeTimeEnergyInWh}`; battery power > 0 means discharging
there. The request below is OUR DOCUMENTED GUESS of that shape, not a published contract:

    GET <base_url>/systems/{system_id}/devices     Authorization: Bearer <token>

`base_url` has no default (there is no public endpoint to name); the token is taken from the
app's login by the operator. If Generac changes the cloud, only this module and its format
change. Locally, a PWRcell's Beacon speaks SunSpec Modbus (model 802): prefer that connector.

The values are live (no interval), so the payload published is our envelope
`{"polled_at": <epoch s>, "interval_s": <poll period s>, "response": <body as received>}`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from nexwatt_telemetry_ingest.connectors.base import Fetched, Site
from nexwatt_telemetry_ingest.connectors.http import (
    DAY_S,
    HttpConnector,
    Quota,
    RequestBudget,
    VendorClient,
)


class Generac(HttpConnector):
    vendor = "generac"
    formats = ("generac.pwrcell-devices.v1",)

    def __init__(
        self,
        client: VendorClient,
        token: SecretStr,
        *,
        poll_s: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(client, clock=clock)
        self._token = token
        self.align_s = poll_s

    async def fetch_format(self, site: Site, fmt: str, since: datetime, until: datetime) -> Fetched:
        body = await self.client.request_json(
            "GET",
            f"/systems/{quote(site.site_id, safe='')}/devices",
            site_id=site.site_id,
            headers={"Authorization": f"Bearer {self._token.get_secret_value()}"},
        )
        return self.fetched_live(site, fmt, since, until, body)


def client(base_url: str, daily_limit: int | None = None, **options: Any) -> VendorClient:
    """Generac's client; its limits are unknown, so a daily budget is optional (per account)."""
    budget = RequestBudget([Quota(daily_limit, DAY_S)]) if daily_limit else None
    return VendorClient("generac", base_url, budget=budget, **options)
