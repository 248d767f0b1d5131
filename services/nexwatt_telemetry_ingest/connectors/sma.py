"""SMA inverters and data managers on the site's network: live values, no history.

WebConnect (Sunny Boy, Sunny Tripower, Sunny Island with a WebConnect interface):
- `POST /dyn/login.json` with `{"right": "usr", "pass": ...}` answers `{"result": {"sid": ...}}`;
  `POST /dyn/getValues.json?sid=...` with `{"destDev": [], "keys": [...]}` answers
  `{"result": {"<device id>": {"<key>": {"1": [{"val": ...}]}}}}`. An expired session answers
  `{"err": 401}` (HTTP 200): we log in again once. A device keeps only a few sessions, so the
  session is kept between polls and closed by `aclose`.
- Keys we ask for by default: 6100_40263F00 AC power (W), 6100_00295A00 battery SoC (%),
  6100_00496900 / 6100_00496A00 battery charge / discharge (W), 6100_40463600 / 6100_40463700
  grid feed-in / draw (W), 6400_00260100 total yield (Wh). `null` is normal at night.

ennexOS (Data Manager M, Sunny Tripower X, ...):
- `POST /api/v1/token` (form: grant_type=password, username, password) answers an OAuth token
  `{"access_token", "expires_in", ...}`; `POST /api/v1/measurements/live` with
  `[{"componentId": "Plant:1"}]` and the bearer token answers
  `[{"componentId", "channelId": "Measurement.GridMs.TotW", "values": [{"time", "value"}]}]`.
  A 401 means the token expired: we log in again once.

Both carry no interval, so the payload published is our envelope
`{"polled_at": <epoch s>, "interval_s": <poll period s>, "response": <body as received>}`.
The device's address is the site id: its base URL is `base_url` with `{site_id}` filled in
(default `https://{site_id}`; devices carry self-signed certificates).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from nexwatt_telemetry_ingest.connectors.base import Fetched, Site
from nexwatt_telemetry_ingest.connectors.http import (
    HttpConnector,
    VendorClient,
    VendorError,
    VendorHTTPError,
)

BASE_URL = "https://{site_id}"
WEBCONNECT_KEYS = (
    "6100_40263F00",
    "6100_00295A00",
    "6100_00496900",
    "6100_00496A00",
    "6100_40463600",
    "6100_40463700",
    "6400_00260100",
)
SESSION_EXPIRED = 401  # WebConnect's `err` for an unknown or expired sid


class _LiveSma(HttpConnector):
    """What both SMA APIs share: one base URL per device, polled every `poll_s` seconds."""

    def __init__(
        self,
        client: VendorClient,
        base_url: str,
        poll_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(client, clock=clock)
        self.base_url = base_url
        self.align_s = poll_s

    def url(self, site_id: str, path: str) -> str:
        return self.base_url.format(site_id=site_id).rstrip("/") + path


class SmaWebConnect(_LiveSma):
    vendor = "sma-webconnect"
    formats = ("sma.webconnect-values.v1",)

    def __init__(
        self,
        client: VendorClient,
        password: SecretStr,
        *,
        base_url: str = BASE_URL,
        keys: Sequence[str] = WEBCONNECT_KEYS,
        poll_s: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(client, base_url, poll_s, clock)
        self._password = password
        self._keys = list(keys)
        self._sids: dict[str, str] = {}  # site id -> session id

    async def fetch_format(self, site: Site, fmt: str, since: datetime, until: datetime) -> Fetched:
        body = await self._values(site)
        if isinstance(body, dict) and body.get("err") == SESSION_EXPIRED:
            self._sids.pop(site.site_id, None)
            body = await self._values(site)
        if isinstance(body, dict) and "err" in body:
            raise VendorError(f"sma getValues on {site.site_id}: device error {body['err']!r:.40}")
        return self.fetched_live(site, fmt, since, until, body)

    async def _values(self, site: Site) -> Any:
        return await self.client.request_json(
            "POST",
            self.url(site.site_id, "/dyn/getValues.json"),
            site_id=site.site_id,
            params={"sid": await self._session(site)},
            json={"destDev": [], "keys": self._keys},
        )

    async def _session(self, site: Site) -> str:
        sid = self._sids.get(site.site_id)
        if sid is None:
            body = await self.client.request_json(
                "POST",
                self.url(site.site_id, "/dyn/login.json"),
                site_id=site.site_id,
                json={"right": "usr", "pass": self._password.get_secret_value()},
            )
            result = body.get("result") if isinstance(body, dict) else None
            sid = result.get("sid") if isinstance(result, dict) else None
            if not isinstance(sid, str) or not sid:
                err = body.get("err") if isinstance(body, dict) else None
                raise VendorError(f"sma login on {site.site_id} refused (err {err!r:.40})")
            self._sids[site.site_id] = sid
        return sid

    async def aclose(self) -> None:
        """Close the device sessions (a device keeps only a few), then the client."""
        for site_id, sid in list(self._sids.items()):
            with contextlib.suppress(VendorError):  # the session times out on the device anyway
                await self.client.request_json(
                    "POST",
                    self.url(site_id, "/dyn/logout.json"),
                    site_id=site_id,
                    params={"sid": sid},
                    json={},
                )
        self._sids.clear()
        await super().aclose()


class SmaEnnexos(_LiveSma):
    vendor = "sma-ennexos"
    formats = ("sma.ennexos-live.v1",)

    def __init__(
        self,
        client: VendorClient,
        username: str,
        password: SecretStr,
        *,
        base_url: str = BASE_URL,
        component_id: str = "Plant:1",
        poll_s: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(client, base_url, poll_s, clock)
        self._username = username
        self._password = password
        self._component_id = component_id
        self._tokens: dict[str, tuple[str, float]] = {}  # site id -> (token, expires at)

    async def fetch_format(self, site: Site, fmt: str, since: datetime, until: datetime) -> Fetched:
        try:
            body = await self._live(site)
        except VendorHTTPError as exc:
            if exc.status != 401:
                raise
            self._tokens.pop(site.site_id, None)
            body = await self._live(site)
        return self.fetched_live(site, fmt, since, until, body)

    async def _live(self, site: Site) -> Any:
        return await self.client.request_json(
            "POST",
            self.url(site.site_id, "/api/v1/measurements/live"),
            site_id=site.site_id,
            json=[{"componentId": self._component_id}],
            headers={"Authorization": f"Bearer {await self._token(site)}"},
        )

    async def _token(self, site: Site) -> str:
        held = self._tokens.get(site.site_id)
        if held is not None and held[1] > self.clock():
            return held[0]
        body = await self.client.request_json(
            "POST",
            self.url(site.site_id, "/api/v1/token"),
            site_id=site.site_id,
            data={
                "grant_type": "password",
                "username": self._username,
                "password": self._password.get_secret_value(),
            },
        )
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise VendorError(f"sma ennexos login on {site.site_id}: no access_token in answer")
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 300.0
        # Renew a minute early, so a token never expires between check and use.
        self._tokens[site.site_id] = (token, self.clock() + max(0.0, lifetime - 60))
        return token


def client(verify_tls: bool = False, **options: Any) -> VendorClient:
    """A client for devices on the site's network: no cloud budget; URLs are absolute
    (one device per site)."""
    return VendorClient("sma", "", verify_tls=verify_tls, **options)
