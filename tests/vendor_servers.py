"""A local stand-in for the vendors' APIs, for the connector tests: one HTTP server on
127.0.0.1 (a free port) that answers SolarEdge, Enphase v4, SMA WebConnect, SMA ennexOS and
Generac requests with payloads in each vendor's documented shape (written by us), checks their
authentication, records every request, and can be told to fail (`fail`) or to stall (`stall`)
the next requests of a path.

Time series are served as a function of time, never of the request: a SolarEdge battery sample
or an Enphase interval asked for twice (overlapping windows) comes with the same values. SolarEdge
serves battery samples every 5 minutes (`storage_offset_s` past the 5-minute marks) for any range
asked; Enphase answers up to its clock (`now`), its intervals ending in the last 15 minutes
still filling in (fewer devices reporting, less energy), as the real API does.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

SOLAREDGE_KEY = "se-key-5a1f2e9c"
ENPHASE_KEY = "enph-key-77d0b3"
ENPHASE_TOKEN = "enph-token-c4e82a"
SMA_PASSWORD = "sma-pass-9b31"
ENNEXOS_USER = "installer@example.com"
ENNEXOS_PASSWORD = "ennexos-pass-2f6d"
GENERAC_TOKEN = "generac-token-e1b7"
SECRETS = (
    SOLAREDGE_KEY,
    ENPHASE_KEY,
    ENPHASE_TOKEN,
    SMA_PASSWORD,
    ENNEXOS_PASSWORD,
    GENERAC_TOKEN,
)
SMA_DEVICE = "0199-B32A1B44"
_LOCAL = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Fault:
    status: int = 503
    retry_after: str | None = None
    stall_s: float = 0.0  # answer normally, but only after this long


@dataclass
class VendorState:
    requests: list[Recorded] = field(default_factory=list)
    faults: dict[str, list[Fault]] = field(default_factory=dict)  # path suffix -> next faults
    sma_sessions: set[str] = field(default_factory=set)
    ennexos_tokens: set[str] = field(default_factory=set)
    now: float | None = None  # the vendor's clock (epoch s) for Enphase's end_at; None: real
    storage_offset_s: int = 0  # SolarEdge battery samples fall this long past 5-minute marks
    ids: Iterator[int] = field(default_factory=itertools.count)


class VendorServer:
    """The server; `url` is its base URL. Use `running()` to start and stop it."""

    def __init__(self) -> None:
        self.state = VendorState()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms ACK stalls
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(_app(self.state), log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def requests(self) -> list[Recorded]:
        return self.state.requests

    def count(self, path_suffix: str) -> int:
        return sum(1 for r in self.state.requests if r.path.endswith(path_suffix))

    def made(self, path_suffix: str) -> list[Recorded]:
        return [r for r in self.state.requests if r.path.endswith(path_suffix)]

    def fail(self, path_suffix: str, *statuses: int, retry_after: str | None = None) -> None:
        """The next requests of a path ending in `path_suffix` answer these statuses."""
        self.state.faults.setdefault(path_suffix, []).extend(
            Fault(status, retry_after) for status in statuses
        )

    def stall(self, path_suffix: str, seconds: float) -> None:
        """The next request of the path answers only after `seconds` (a client timeout)."""
        self.state.faults.setdefault(path_suffix, []).append(Fault(200, None, seconds))

    def expire_sessions(self) -> None:
        """SMA sessions and tokens time out on the device."""
        self.state.sma_sessions.clear()
        self.state.ennexos_tokens.clear()

    @contextmanager
    def running(self) -> Iterator[VendorServer]:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("vendor server did not start")
            time.sleep(0.01)
        try:
            yield self
        finally:
            self._server.should_exit = True
            self._thread.join(timeout=10)


def _app(state: VendorState) -> FastAPI:
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def answer(path: str, request: Request) -> Response:
        body = await request.body()
        path = "/" + path
        query = dict(request.query_params)
        state.requests.append(Recorded(request.method, path, query, dict(request.headers), body))
        for suffix, faults in state.faults.items():
            if path.endswith(suffix) and faults:
                fault = faults.pop(0)
                if fault.stall_s:
                    await asyncio.sleep(fault.stall_s)
                    break
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return JSONResponse(
                    {"message": f"forced {fault.status}"}, fault.status, headers=headers
                )
        return _route(state, request.method, path, query, dict(request.headers), body)

    return app


def _route(
    state: VendorState,
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes,
) -> Response:
    parts = path.strip("/").split("/")
    if parts[0] == "site" and len(parts) == 3:
        return _solaredge(state, parts[1], parts[2], query)
    if parts[:3] == ["api", "v4", "systems"] and len(parts) == 6:
        return _enphase(state, parts[3], parts[5], query, headers)
    if parts[0] == "dyn":
        return _webconnect(state, parts[1], query, body)
    if parts[:2] == ["api", "v1"]:
        return _ennexos(state, "/".join(parts[2:]), headers, body)
    if parts[0] == "systems" and len(parts) == 3 and parts[2] == "devices":
        return _generac(headers)
    return PlainTextResponse("no such endpoint", 404)


# --- SolarEdge Monitoring API ---------------------------------------------------------------


def _quarters(query: dict[str, str], step_min: int) -> list[str]:
    start = datetime.strptime(query["startTime"], _LOCAL)
    end = datetime.strptime(query["endTime"], _LOCAL)
    start = start - timedelta(minutes=start.minute % step_min, seconds=start.second)
    out = []
    while start <= end:
        out.append(start.strftime(_LOCAL))
        start += timedelta(minutes=step_min)
    return out


STORAGE_STEP_S = 300  # SolarEdge battery samples, about every 5 minutes
STORAGE_EPOCH = datetime(2026, 1, 1)  # site-local wall clock where the served counters start


def storage_sample(at: datetime) -> dict[str, Any]:
    """The battery sample SolarEdge serves at local time `at`, whatever range was asked:
    charging 100 Wh per 5 minutes (lifetime counter, so -1.2 kW), SoC moving by 1 % a sample."""
    n = int((at - STORAGE_EPOCH).total_seconds()) // STORAGE_STEP_S
    return {
        "timeStamp": at.strftime(_LOCAL),
        "power": 1200.0,
        "batteryState": 3,
        "lifeTimeEnergyCharged": 1_250_000.0 + 100.0 * n,
        "lifeTimeEnergyDischarged": 1_100_000.0,
        "fullPackEnergyAvailable": 9800.0,
        "internalTemp": 31.0,
        "ACGridCharging": 0.0,
        "batteryPercentageState": float(20 + n % 60),
    }


def _storage_times(query: dict[str, str], offset_s: int) -> list[datetime]:
    """The sample times in [startTime, endTime] (both included, site-local)."""
    start = datetime.strptime(query["startTime"], _LOCAL)
    end = datetime.strptime(query["endTime"], _LOCAL)
    since_epoch = int((start - STORAGE_EPOCH).total_seconds()) - offset_s
    t = start + timedelta(seconds=-since_epoch % STORAGE_STEP_S)  # the first at or after start
    out = []
    while t <= end:
        out.append(t)
        t += timedelta(seconds=STORAGE_STEP_S)
    return out


def _solaredge(state: VendorState, site_id: str, endpoint: str, query: dict[str, str]) -> Response:
    if query.get("api_key") != SOLAREDGE_KEY:
        return JSONResponse({"String": "Invalid token"}, 403)
    if not site_id.isdigit():
        return JSONResponse({"String": f"Invalid site ID {site_id}"}, 403)
    try:
        if endpoint == "storageData":
            times = _storage_times(query, state.storage_offset_s)
        else:
            dates = _quarters(query, 15)
    except (KeyError, ValueError):
        return JSONResponse({"String": "startTime and endTime are required"}, 400)
    if endpoint in ("powerDetails", "energyDetails"):
        unit, scale = ("W", 1.0) if endpoint == "powerDetails" else ("Wh", 0.25)
        meters = [
            {"type": kind, "values": [{"date": d, "value": watts * scale} for d in dates]}
            for kind, watts in (("Production", 4000.0), ("Consumption", 1500.0))
        ]
        meters.append({"type": "FeedIn", "values": [{"date": d} for d in dates]})  # no data
        return JSONResponse(
            {endpoint: {"timeUnit": "QUARTER_OF_AN_HOUR", "unit": unit, "meters": meters}}
        )
    if endpoint == "storageData":
        telemetries = [storage_sample(t) for t in times]
        battery = {
            "nameplate": 9800.0,
            "serialNumber": "T-0A1B2C3D",
            "modelNumber": "BAT-10K1P",
            "telemetryCount": len(telemetries),
            "telemetries": telemetries,
        }
        return JSONResponse({"storageData": {"batteryCount": 1, "batteries": [battery]}})
    return JSONResponse({"String": "unknown endpoint"}, 404)


# --- Enphase Monitoring API v4 --------------------------------------------------------------

ENPHASE_SETTLE_S = 900  # an interval is complete 15 minutes after it ends


def _enphase(
    state: VendorState, system_id: str, kind: str, query: dict[str, str], headers: dict[str, str]
) -> Response:
    if headers.get("authorization") != f"Bearer {ENPHASE_TOKEN}":
        return JSONResponse({"message": "Not Authorized", "details": "token invalid"}, 401)
    if query.get("key") != ENPHASE_KEY:
        return JSONResponse({"message": "Not Authorized", "details": "API key invalid"}, 401)
    try:
        start = int(query["start_at"])
    except (KeyError, ValueError):
        return JSONResponse({"message": "Bad request", "details": "start_at"}, 422)
    now = state.now if state.now is not None else time.time()
    end = int(min(now, start + 86_400))
    step = 300 if kind == "production_micro" else 900
    ends = range(start - start % step + step, end + 1, step)
    # Intervals ending in the last 15 minutes are still filling in: fewer devices, less energy.
    done = [t <= now - ENPHASE_SETTLE_S for t in ends]
    if kind == "production_micro":
        intervals: list[dict[str, Any]] = [
            {"end_at": t, "devices_reporting": 23, "powr": 3600, "enwh": 300}
            if ok
            else {"end_at": t, "devices_reporting": 17, "powr": 2640, "enwh": 220}
            for t, ok in zip(ends, done, strict=True)
        ]
    elif kind == "battery":
        intervals = [
            {
                "end_at": t,
                "charge": {"enwh": 0, "devices_reporting": 2 if ok else 1},
                "discharge": {"enwh": 250 if ok else 125, "devices_reporting": 2 if ok else 1},
                "soc": {"percent": 80, "devices_reporting": 2 if ok else 1},
            }
            for t, ok in zip(ends, done, strict=True)
        ]
    elif kind == "consumption_meter":
        intervals = [
            {"end_at": t, "devices_reporting": 1, "enwh": 375 if ok else 200}
            for t, ok in zip(ends, done, strict=True)
        ]
    else:
        return JSONResponse({"message": "Not Found"}, 404)
    answer: dict[str, Any] = {
        "system_id": int(system_id) if system_id.isdigit() else system_id,
        "granularity": "day",
        "total_devices": 23 if kind == "production_micro" else 2,
        "start_at": start,
        "end_at": end,
        "items": "intervals",
        "intervals": intervals,
    }
    if kind == "battery":
        answer["last_reported_aggregate_soc"] = "80%"
    return JSONResponse(answer)


# --- SMA WebConnect and ennexOS -------------------------------------------------------------


def _webconnect(state: VendorState, call: str, query: dict[str, str], body: bytes) -> Response:
    if call == "login.json":
        sent = json.loads(body or b"{}")
        if sent.get("right") != "usr" or sent.get("pass") != SMA_PASSWORD:
            return JSONResponse({"err": 401})
        sid = f"sid-{next(state.ids)}"
        state.sma_sessions.add(sid)
        return JSONResponse({"result": {"sid": sid}})
    if call == "logout.json":
        state.sma_sessions.discard(query.get("sid", ""))
        return JSONResponse({"result": {"isLogin": False}})
    if call == "getValues.json":
        if query.get("sid") not in state.sma_sessions:
            return JSONResponse({"err": 401})
        keys = json.loads(body or b"{}").get("keys", [])
        values = {
            "6100_40263F00": 2500,
            "6100_00295A00": 80,
            "6100_00496900": 0,
            "6100_00496A00": 1200,
            "6100_40463600": 1700,
            "6100_40463700": 0,
            "6400_00260100": 12_345_678,
        }
        return JSONResponse(
            {"result": {SMA_DEVICE: {k: {"1": [{"val": values.get(k)}]} for k in keys}}}
        )
    return JSONResponse({"err": 404})


def _ennexos(state: VendorState, call: str, headers: dict[str, str], body: bytes) -> Response:
    if call == "token":
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form != {
            "grant_type": "password",
            "username": ENNEXOS_USER,
            "password": ENNEXOS_PASSWORD,
        }:
            return JSONResponse({"error": "invalid_grant"}, 400)
        token = f"ennexos-{next(state.ids)}"
        state.ennexos_tokens.add(token)
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": 300,
                "refresh_token": f"refresh-{token}",
            }
        )
    if call == "measurements/live":
        if headers.get("authorization", "").removeprefix("Bearer ") not in state.ennexos_tokens:
            return JSONResponse({"error": "unauthorized"}, 401)
        components = json.loads(body or b"[]")
        return JSONResponse(
            [
                {
                    "componentId": c["componentId"],
                    "channelId": channel,
                    "values": [{"time": "2026-07-01T14:00:00.000Z", "value": value}],
                }
                for c in components
                for channel, value in (
                    ("Measurement.GridMs.TotW", 1800.0),
                    ("Measurement.Bat.ChaStt", 76.0),
                )
            ]
        )
    return JSONResponse({"error": "not found"}, 404)


# --- Generac (unofficial cloud shape) ------------------------------------------------------


def _generac(headers: dict[str, str]) -> Response:
    if headers.get("authorization") != f"Bearer {GENERAC_TOKEN}":
        return JSONResponse({"message": "Unauthorized"}, 401)
    return JSONResponse(
        {
            "devices": [
                {
                    "deviceType": "PVL",
                    "deviceStatus": {"powerInWatts": 3100, "lifeTimeEnergyInWh": 8_123_456},
                },
                {"deviceType": "BATTERY", "deviceStatus": {"powerInWatts": -900, "soc": 64}},
                {"deviceType": "INVERTER", "deviceStatus": {"powerInWatts": 2200}},
            ]
        }
    )
