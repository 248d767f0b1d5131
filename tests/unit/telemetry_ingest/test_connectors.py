"""The HTTP connectors against a local stand-in of each vendor (tests/vendor_servers.py):
authentication, windows and time zones, retries and backoff, request budgets, hostile answers."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from nexwatt_shared.contracts import Channel, Quality, TelemetryInterval
from nexwatt_telemetry_ingest.connectors import enphase, generac, sma, solaredge
from nexwatt_telemetry_ingest.connectors.base import Fetched, Site, window_event_id
from nexwatt_telemetry_ingest.connectors.http import (
    DAY_S,
    MONTH_S,
    BudgetExhausted,
    Quota,
    RequestBudget,
    RetryPolicy,
    VendorClient,
    VendorError,
    VendorHTTPError,
    backoff_s,
    poll_interval_s,
    retry_after_s,
)
from nexwatt_telemetry_ingest.connectors.runner import (
    ConnectorSettings,
    align_down,
    build,
    load_sites,
)
from nexwatt_telemetry_ingest.formats import RawContext
from nexwatt_telemetry_ingest.formats import solaredge as solaredge_formats
from nexwatt_telemetry_ingest.formats.catalog import FORMATS
from tests import vendor_servers as vs

NY = "America/New_York"
SE_SITE = Site("BTM-SE-1", "solaredge", "1234567", NY)
# 2026-07-01 14:00Z is 10:00 in New York (EDT, UTC-4).
T0 = datetime(2026, 7, 1, 14, 0, tzinfo=UTC)


class Sleeps:
    """A stand-in for asyncio.sleep that records the waits instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def vendor() -> Iterator[vs.VendorServer]:
    with vs.VendorServer().running() as server:
        yield server


def options(sleeps: Sleeps, **more: object) -> dict:
    # rand() = 0.5: full jitter then waits exactly half of min(cap, base * 2^attempt).
    return {"sleep": sleeps, "rand": lambda: 0.5, "retry": RetryPolicy(attempts=4), **more}


def solaredge_connector(url: str, sleeps: Sleeps, **more: object) -> solaredge.SolarEdge:
    client = solaredge.client(url, **options(sleeps, **more))
    return solaredge.SolarEdge(client, SecretStr(vs.SOLAREDGE_KEY))


# --- pure rules ------------------------------------------------------------------------------


def test_full_jitter_backoff_doubles_up_to_the_cap() -> None:
    # base 1 s: attempt 0 -> [0, 1), 1 -> [0, 2), 3 -> [0, 8); cap 5 s bounds attempt 3 to 5.
    assert backoff_s(0, 1.0, 60.0, lambda: 0.5) == pytest.approx(0.5, abs=1e-9)
    assert backoff_s(1, 1.0, 60.0, lambda: 0.5) == pytest.approx(1.0, abs=1e-9)
    assert backoff_s(3, 1.0, 5.0, lambda: 0.999) == pytest.approx(4.995, abs=1e-9)
    assert backoff_s(3, 1.0, 5.0, lambda: 0.0) == 0.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 7, 1, 14, 0, 0, tzinfo=UTC)
    assert retry_after_s("7", now) == pytest.approx(7.0, abs=1e-9)
    # Wed, 01 Jul 2026 14:00:30 GMT is 30 s after now.
    assert retry_after_s("Wed, 01 Jul 2026 14:00:30 GMT", now) == pytest.approx(30.0, abs=1e-9)
    assert retry_after_s("Wed, 01 Jul 2026 13:59:00 GMT", now) == 0.0  # in the past: now
    assert retry_after_s("soon", now) is None
    assert retry_after_s(None, now) is None


def test_poll_interval_is_planned_from_every_quota() -> None:
    se = [Quota(300, DAY_S, per_site=True), Quota(300, DAY_S)]
    # One site, 3 endpoints, 4 % kept for retries: 288 / 3 = 96 polls a day -> 86400/96 = 900 s.
    assert poll_interval_s(se, 3, 1, 0.04, 900) == 900
    # Ten sites on one key share the account's 300: 28.8 / 3 = 9.6 polls a day per site
    # -> 86400 / 9.6 = 9000 s (a multiple of 900 already).
    assert poll_interval_s(se, 3, 10, 0.04, 900) == 9000
    # No reserve, one site: 300 / 3 = 100 polls -> 864 s, rounded up to the 900 s grid.
    assert poll_interval_s(se, 3, 1, 0.0, 900) == 900
    # Enphase Watt plan, one system: 1000 a month * 0.96 / 3 = 320 polls in 31 days
    # -> 2 678 400 / 320 = 8370 s -> 9000 s on the 900 s grid; 10 a minute allows far more.
    watt = [Quota(10, 60), Quota(1000, MONTH_S)]
    assert poll_interval_s(watt, 3, 1, 0.04, 900) == 9000
    # No quota at all (a device on the LAN): the grid alone.
    assert poll_interval_s([], 1, 5, 0.04, 300) == 300


def test_windows_end_on_the_grid() -> None:
    assert align_down(datetime(2026, 7, 1, 14, 14, 59, tzinfo=UTC), 900) == datetime(
        2026, 7, 1, 14, 0, tzinfo=UTC
    )
    assert align_down(T0, 900) == T0


def test_event_ids_are_derived_from_the_window() -> None:
    a = window_event_id("solaredge", "1", "solaredge.power-details.v1", T0, T0 + timedelta(hours=1))
    again = window_event_id(
        "solaredge", "1", "solaredge.power-details.v1", T0, T0 + timedelta(hours=1)
    )
    other = window_event_id(
        "solaredge", "1", "solaredge.power-details.v1", T0, T0 + timedelta(hours=2)
    )
    assert a == again != other


def test_the_budget_counts_a_sliding_window_per_site_and_per_account() -> None:
    now = [1_000_000.0]
    budget = RequestBudget([Quota(2, 60, per_site=True), Quota(3, 60)], clock=lambda: now[0])
    budget.take("a")
    budget.take("a")
    with pytest.raises(BudgetExhausted, match="site a"):
        budget.take("a")  # site a's 2 a minute are spent
    budget.take("b")  # the account's third
    with pytest.raises(BudgetExhausted, match="account") as refused:
        budget.take("c")
    # The oldest request leaves the window 60 s after it was sent.
    assert refused.value.retry_in_s == pytest.approx(60.0, abs=1e-9)
    now[0] += 60.0
    budget.take("a")  # both windows moved on


# --- authentication and request shape --------------------------------------------------------


async def test_solaredge_sends_its_key_and_local_times(vendor: vs.VendorServer) -> None:
    connector = solaredge_connector(vendor.url, Sleeps())
    until = T0 + timedelta(hours=1)
    try:
        fetched = await connector.fetch_format(SE_SITE, "solaredge.storage-data.v1", T0, until)
    finally:
        await connector.aclose()
    (request,) = vendor.made("/site/1234567/storageData")
    assert request.query == {
        # [14:00Z, 15:00Z) is 10:00-11:00 EDT; battery samples are asked from 10 minutes
        # before the window (09:50); SolarEdge includes both ends, so up to 10:59:59.
        "startTime": "2026-07-01 09:50:00",
        "endTime": "2026-07-01 10:59:59",
        "api_key": vs.SOLAREDGE_KEY,
    }
    assert fetched.fmt == "solaredge.storage-data.v1"
    battery = fetched.data["storageData"]["batteries"][0]
    assert battery["telemetryCount"] == 14  # 09:50, 09:55, 10:00 ... 10:55: the body as served
    # The event id names the window, not the overlap asked for with it.
    assert fetched.event_id == window_event_id(
        "solaredge", "1234567", "solaredge.storage-data.v1", T0, until
    )


async def test_solaredge_local_times_follow_dst(vendor: vs.VendorServer) -> None:
    connector = solaredge_connector(vendor.url, Sleeps())
    winter = datetime(2026, 1, 15, 15, 0, tzinfo=UTC)  # 10:00 EST (UTC-5)
    try:
        await connector.fetch_format(
            SE_SITE, "solaredge.power-details.v1", winter, winter + timedelta(minutes=15)
        )
    finally:
        await connector.aclose()
    (request,) = vendor.made("/powerDetails")
    assert (request.query["startTime"], request.query["endTime"]) == (
        "2026-01-15 10:00:00",
        "2026-01-15 10:14:59",
    )


@pytest.mark.parametrize(
    ("since", "energy_start", "storage_start"),
    [
        # 04:00Z is midnight in New York (EDT): the battery overlap starts the day before.
        (datetime(2026, 7, 2, 4, 0, tzinfo=UTC), "2026-07-02 00:00:00", "2026-07-01 23:50:00"),
        # 15:00Z is 10:00 EST (UTC-5) in winter.
        (datetime(2026, 1, 15, 15, 0, tzinfo=UTC), "2026-01-15 10:00:00", "2026-01-15 09:50:00"),
    ],
)
async def test_solaredge_asks_battery_samples_from_ten_minutes_before_the_window(
    vendor: vs.VendorServer, since: datetime, energy_start: str, storage_start: str
) -> None:
    connector = solaredge_connector(vendor.url, Sleeps())
    until = since + timedelta(minutes=15)
    try:
        fetched = {
            fmt: await connector.fetch_format(SE_SITE, fmt, since, until)
            for fmt in solaredge.POLLED
        }
    finally:
        await connector.aclose()
    (energy,) = vendor.made("/energyDetails")
    (storage,) = vendor.made("/storageData")
    end = energy_start[:-5] + "14:59"  # the window's last second, both included
    assert (energy.query["startTime"], energy.query["endTime"]) == (energy_start, end)
    assert (storage.query["startTime"], storage.query["endTime"]) == (storage_start, end)
    # Both payloads are the window's: the same ids whether or not the request overlaps.
    for fmt, payload in fetched.items():
        assert payload.event_id == window_event_id("solaredge", "1234567", fmt, since, until)
    # One quarter hour of energy; battery samples -10, -5, 0, 5 and 10 minutes from the start.
    energy_body = fetched["solaredge.energy-details.v1"].data["energyDetails"]
    assert len(energy_body["meters"][0]["values"]) == 1
    battery = fetched["solaredge.storage-data.v1"].data["storageData"]["batteries"][0]
    assert battery["telemetries"][0]["timeStamp"] == storage_start
    assert battery["telemetryCount"] == 5


async def test_no_battery_overlap_across_the_autumn_repeated_hour(vendor: vs.VendorServer) -> None:
    # 06:00Z on 2026-11-01 is 01:00 EST, the repeated hour's second pass; ten minutes earlier,
    # 05:50Z, was 01:50 EDT: a start after the window's end on the site's clock. No overlap.
    connector = solaredge_connector(vendor.url, Sleeps())
    since = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
    try:
        await connector.fetch_format(
            SE_SITE, "solaredge.storage-data.v1", since, since + timedelta(minutes=15)
        )
    finally:
        await connector.aclose()
    (storage,) = vendor.made("/storageData")
    assert (storage.query["startTime"], storage.query["endTime"]) == (
        "2026-11-01 01:00:00",
        "2026-11-01 01:14:59",
    )


def parse_storage(fetched: Fetched) -> list[TelemetryInterval]:
    assert FORMATS[fetched.fmt] in solaredge_formats.FORMATS
    return FORMATS[fetched.fmt].parse(fetched.data, RawContext(SE_SITE.asset_id, ZoneInfo(NY), T0))


@pytest.mark.parametrize("offset_s", [0, 290])  # samples on the 5-minute marks, or 4:50 past
async def test_consecutive_storage_windows_leave_no_battery_interval_out(
    vendor: vs.VendorServer, offset_s: int
) -> None:
    vendor.state.storage_offset_s = offset_s
    connector = solaredge_connector(vendor.url, Sleeps())
    fmt = "solaredge.storage-data.v1"
    edge = T0 + timedelta(hours=1)  # 15:00Z, 11:00 EDT: where one window hands over
    try:
        first = await connector.fetch_format(SE_SITE, fmt, T0, edge)
        second = await connector.fetch_format(SE_SITE, fmt, edge, edge + timedelta(hours=1))
    finally:
        await connector.aclose()
    before, after = parse_storage(first), parse_storage(second)
    step = timedelta(minutes=5)
    offset = timedelta(seconds=offset_s)
    # Samples from 10 minutes before each window start: the first from 09:50 EDT (13:50Z) + the
    # offset to 10:59:59, 14 samples and so 13 intervals; the second likewise from 10:50 EDT.
    assert [r.interval_start for r in before] == [
        T0 - 2 * step + offset + k * step for k in range(13)
    ]
    assert [r.interval_start for r in after] == [
        edge - 2 * step + offset + k * step for k in range(13)
    ]
    # Together: every 5-minute interval from 13:50Z (+ offset) on, none missing at the edge.
    readings = {r.interval_start: r for r in before + after}
    assert sorted(readings) == [T0 - 2 * step + offset + k * step for k in range(25)]
    assert all(r.interval_s == 300 for r in before + after)
    # The interval across the edge: its first sample is the first window's last one (10:55 EDT
    # + offset), its second the first at or after the edge; only the overlap brings it.
    across = edge - step + offset
    assert across < edge <= across + step
    assert across in {r.interval_start for r in after}
    assert across not in {r.interval_start for r in before}
    # The pair inside the overlap comes in both payloads with identical readings: a repeat.
    (repeat,) = [r for r in before if r.interval_start in {a.interval_start for a in after}]
    assert repeat.interval_start == edge - 2 * step + offset
    assert [r for r in after if r.interval_start == repeat.interval_start] == [repeat]
    # Counters climb 100 Wh a sample: charging 100 Wh in 300 s = -1.2 kW; the SoC moves on.
    assert all(r.battery_kw == pytest.approx(-1.2, abs=1e-9) for r in readings.values())
    assert repeat.quality[Channel.BATTERY_KW] is Quality.ACTUAL
    socs = [readings[t].soc_pct for t in sorted(readings)]
    assert len(set(socs)) == len(socs)  # each interval's own SoC, not one value repeated
    # Its SoC is the sample's at its end, the first at or after the edge.
    sample = vs.storage_sample((across + step).astimezone(ZoneInfo(NY)).replace(tzinfo=None))
    assert readings[across].soc_pct == sample["batteryPercentageState"]


async def test_solaredge_fetch_caps_each_format_to_its_longest_window(
    vendor: vs.VendorServer,
) -> None:
    connector = solaredge_connector(vendor.url, Sleeps())
    try:
        fetched = await connector.fetch(SE_SITE, T0, T0 + timedelta(days=30))
    finally:
        await connector.aclose()
    # Energy details and battery data only: powerDetails is not polled.
    assert [f.fmt for f in fetched] == ["solaredge.energy-details.v1", "solaredge.storage-data.v1"]
    assert fetched[0].data["energyDetails"]["unit"] == "Wh"
    assert vendor.count("/powerDetails") == 0
    # 30 days asked, one week sent: up to 2026-07-08 10:00 EDT less one second.
    assert [(r.path, r.query) for r in vendor.requests] == [
        (
            "/site/1234567/energyDetails",
            {
                "startTime": "2026-07-01 10:00:00",
                "endTime": "2026-07-08 09:59:59",
                "timeUnit": "QUARTER_OF_AN_HOUR",
                "api_key": vs.SOLAREDGE_KEY,
            },
        ),
        (
            "/site/1234567/storageData",
            {
                "startTime": "2026-07-01 09:50:00",  # 10 minutes before the window
                "endTime": "2026-07-08 09:59:59",
                "api_key": vs.SOLAREDGE_KEY,
            },
        ),
    ]
    # A week of quarter hours: 7 * 96 = 672; of 5-minute samples from 09:50: 2 + 7 * 288 = 2018.
    assert len(fetched[0].data["energyDetails"]["meters"][0]["values"]) == 672
    assert fetched[1].data["storageData"]["batteries"][0]["telemetryCount"] == 2018
    week = T0 + timedelta(days=7)
    assert [f.event_id for f in fetched] == [
        window_event_id("solaredge", "1234567", f, T0, week) for f in solaredge.POLLED
    ]


def test_solaredge_plans_its_polls_for_the_two_endpoints_it_polls() -> None:
    connector = solaredge.SolarEdge(solaredge.client("http://vendor"), SecretStr("k"))
    assert connector.formats == solaredge.POLLED
    assert {f: connector.max_window(f) for f in solaredge.POLLED} == dict.fromkeys(
        solaredge.POLLED, timedelta(days=7)
    )
    # One site: 300 a day less 4 % = 288 requests / 2 endpoints = 144 polls -> 600 s, rounded up
    # to the 900 s grid. Ten sites on one key: 28.8 / 2 = 14.4 polls a day -> 6000 s -> 6300 s
    # (with the three endpoints of old it was 9000 s).
    assert connector.poll_s(1) == 900
    assert connector.poll_s(10) == 6300


async def test_enphase_sends_bearer_token_key_and_start(vendor: vs.VendorServer) -> None:
    vendor.state.now = (T0 + timedelta(hours=1)).timestamp()
    client = enphase.client(vendor.url, **options(Sleeps()))
    connector = enphase.Enphase(client, SecretStr(vs.ENPHASE_KEY), SecretStr(vs.ENPHASE_TOKEN))
    site = Site("BTM-EN-1", "enphase", "4242", NY)
    try:
        fetched = await connector.fetch(site, T0, T0 + timedelta(hours=1))
    finally:
        await connector.aclose()
    assert [f.fmt for f in fetched] == list(enphase.ENDPOINTS)
    for request, kind in zip(vendor.requests, enphase.ENDPOINTS.values(), strict=True):
        assert request.path == f"/api/v4/systems/4242/telemetry/{kind}"
        assert request.headers["authorization"] == f"Bearer {vs.ENPHASE_TOKEN}"
        assert request.query == {
            "start_at": str(int(T0.timestamp())),
            "granularity": "day",
            "key": vs.ENPHASE_KEY,
        }
    # One hour of 5-minute microinverter intervals: 12, labelled by their ends.
    assert len(fetched[0].data["intervals"]) == 12
    assert fetched[1].data["last_reported_aggregate_soc"] == "80%"


async def test_enphase_publishes_only_the_intervals_ending_by_the_window_end(
    vendor: vs.VendorServer,
) -> None:
    """Enphase answers up to its clock: the intervals ending after the window are still filling
    in (the stand-in sends fewer devices and less energy for the last 15 minutes) and are left
    for the next window; those ending at or before the window's end are published."""
    client = enphase.client(vendor.url, **options(Sleeps()))
    connector = enphase.Enphase(client, SecretStr(vs.ENPHASE_KEY), SecretStr(vs.ENPHASE_TOKEN))
    site = Site("BTM-EN-1", "enphase", "4242", NY)
    edge, end = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    try:
        vendor.state.now = (edge + timedelta(minutes=20)).timestamp()  # polled at 15:20Z
        first = await connector.fetch(site, T0, edge)
        vendor.state.now = (end + timedelta(minutes=20)).timestamp()  # and again at 16:20Z
        second = await connector.fetch(site, edge, end)
    finally:
        await connector.aclose()
    t0 = int(T0.timestamp())
    minutes = [(i["end_at"] - t0) // 60 for i in first[0].data["intervals"]]
    # Micro: the vendor sent 5-minute intervals ending 14:05Z ... 15:20Z (16); 15:05Z and later
    # end after the window: out. 15:00Z, the window's end, is in.
    assert minutes == list(range(5, 61, 5))
    assert first[0].data["end_at"] == t0 + 80 * 60  # the vendor's answer did run to 15:20Z
    assert [i["devices_reporting"] for i in first[0].data["intervals"]] == [23] * 12
    # Battery and meter: quarter hours ending 14:15Z ... 15:15Z (5), the last one out.
    for payload in first[1:]:
        assert [(i["end_at"] - t0) // 60 for i in payload.data["intervals"]] == [15, 30, 45, 60]
    assert [i["discharge"]["enwh"] for i in first[1].data["intervals"]] == [250] * 4
    assert [i["enwh"] for i in first[2].data["intervals"]] == [375] * 4
    assert first[1].data["last_reported_aggregate_soc"] == "80%"  # the rest of the body kept
    # The next window starts where the first ended: 15:05Z comes now, complete.
    assert [(i["end_at"] - t0) // 60 for i in second[0].data["intervals"]] == list(
        range(65, 121, 5)
    )
    assert {i["enwh"] for i in second[0].data["intervals"]} == {300}
    # Parsed, the two windows' readings tile [14:00Z, 16:00Z): no gap, no interval twice.
    ctx = RawContext(site.asset_id, ZoneInfo(NY), T0)
    for k, interval_s in enumerate((300, 900, 900)):
        fmt = FORMATS[first[k].fmt]
        starts = [r.interval_start for f in (first[k], second[k]) for r in fmt.parse(f.data, ctx)]
        assert starts == [T0 + timedelta(seconds=interval_s * n) for n in range(7200 // interval_s)]


async def test_sma_webconnect_logs_in_once_and_again_when_the_session_expires(
    vendor: vs.VendorServer,
) -> None:
    site = Site("BTM-SMA-1", "sma-webconnect", "inverter-1", "Europe/Berlin")
    connector = sma.SmaWebConnect(
        sma.client(**options(Sleeps())),
        SecretStr(vs.SMA_PASSWORD),
        base_url=vendor.url,
        poll_s=60,
        clock=lambda: 1_782_914_400.0,
    )
    fmt = "sma.webconnect-values.v1"
    try:
        first = await connector.fetch_format(site, fmt, T0, T0 + timedelta(minutes=1))
        await connector.fetch_format(site, fmt, T0, T0 + timedelta(minutes=2))
        assert vendor.count("/dyn/login.json") == 1  # the session is kept between polls
        vendor.expire_sessions()
        third = await connector.fetch_format(site, fmt, T0, T0 + timedelta(minutes=3))
    finally:
        await connector.aclose()
    assert vendor.count("/dyn/login.json") == 2
    assert vendor.count("/dyn/logout.json") == 1  # aclose frees the device's session
    login = json.loads(vendor.made("/dyn/login.json")[0].body)
    assert login == {"right": "usr", "pass": vs.SMA_PASSWORD}
    values = vendor.made("/dyn/getValues.json")
    assert json.loads(values[0].body) == {"destDev": [], "keys": list(sma.WEBCONNECT_KEYS)}
    assert values[0].query["sid"] != values[-1].query["sid"]
    # Our envelope around the body as received: the poll period it stands for, on the grid
    # (it ends where the window ends, whenever the device answered).
    assert first.data["polled_at"] == int((T0 + timedelta(minutes=1)).timestamp())
    assert first.data["interval_s"] == 60
    assert first.data["response"]["result"][vs.SMA_DEVICE]["6100_00295A00"] == {"1": [{"val": 80}]}
    assert third.data["response"] == first.data["response"]


async def test_sma_webconnect_wrong_password_is_a_clear_error(vendor: vs.VendorServer) -> None:
    site = Site("BTM-SMA-1", "sma-webconnect", "inverter-1", "Europe/Berlin")
    connector = sma.SmaWebConnect(
        sma.client(**options(Sleeps())), SecretStr("wrong"), base_url=vendor.url
    )
    try:
        with pytest.raises(VendorError, match="login on inverter-1 refused"):
            await connector.fetch_format(site, "sma.webconnect-values.v1", T0, T0)
    finally:
        await connector.aclose()
    assert vendor.count("/dyn/getValues.json") == 0


async def test_sma_ennexos_takes_a_token_by_password_and_renews_it(
    vendor: vs.VendorServer,
) -> None:
    site = Site("BTM-SMA-2", "sma-ennexos", "datamanager-1", "Europe/Berlin")
    connector = sma.SmaEnnexos(
        sma.client(**options(Sleeps())),
        vs.ENNEXOS_USER,
        SecretStr(vs.ENNEXOS_PASSWORD),
        base_url=vendor.url,
    )
    fmt = "sma.ennexos-live.v1"
    try:
        first = await connector.fetch_format(site, fmt, T0, T0)
        vendor.expire_sessions()  # the token is refused: log in again, once
        await connector.fetch_format(site, fmt, T0, T0)
    finally:
        await connector.aclose()
    tokens = vendor.made("/api/v1/token")
    assert len(tokens) == 2
    assert tokens[0].headers["content-type"] == "application/x-www-form-urlencoded"
    assert b"grant_type=password" in tokens[0].body
    live = vendor.made("/api/v1/measurements/live")
    assert json.loads(live[0].body) == [{"componentId": "Plant:1"}]
    assert live[0].headers["authorization"].startswith("Bearer ennexos-")
    assert len(live) == 3  # ok; refused (401); ok after the new token
    assert first.data["interval_s"] == 300
    assert first.data["response"][0]["channelId"] == "Measurement.GridMs.TotW"


async def test_generac_sends_its_bearer_token(vendor: vs.VendorServer) -> None:
    client = generac.client(vendor.url, **options(Sleeps()))
    connector = generac.Generac(client, SecretStr(vs.GENERAC_TOKEN), clock=lambda: 1_782_914_400)
    site = Site("BTM-GN-1", "generac", "sys-77", "America/Chicago")
    try:
        fetched = await connector.fetch_format(site, "generac.pwrcell-devices.v1", T0, T0)
    finally:
        await connector.aclose()
    (request,) = vendor.requests
    assert request.path == "/systems/sys-77/devices"
    assert request.headers["authorization"] == f"Bearer {vs.GENERAC_TOKEN}"
    assert fetched.data["response"]["devices"][1]["deviceStatus"]["soc"] == 64


def live_connector(
    vendor: str, url: str, clock: Callable[[], float]
) -> generac.Generac | sma.SmaWebConnect:
    if vendor == "generac":
        client = generac.client(url, **options(Sleeps()))
        return generac.Generac(client, SecretStr(vs.GENERAC_TOKEN), poll_s=300, clock=clock)
    return sma.SmaWebConnect(
        sma.client(**options(Sleeps())),
        SecretStr(vs.SMA_PASSWORD),
        base_url=url,
        poll_s=300,
        clock=clock,
    )


@pytest.mark.parametrize(
    ("vendor_name", "site_id", "fmt"),
    [
        ("generac", "sys-77", "generac.pwrcell-devices.v1"),
        ("sma-webconnect", "inverter-1", "sma.webconnect-values.v1"),
    ],
)
async def test_consecutive_live_polls_are_adjacent_whatever_the_wall_clock(
    vendor: vs.VendorServer, vendor_name: str, site_id: str, fmt: str
) -> None:
    # The runner's windows [13:55Z, 14:00Z) and [14:00Z, 14:05Z), 300 s apart; the first read
    # late (14:04:50 by the wall clock), the second early (14:05:01): read by their wall clock,
    # they would overlap by 289 s. On the grid they tile.
    wall = [0.0]
    connector = live_connector(vendor_name, vendor.url, lambda: wall[0])
    site = Site("BTM-LIVE-1", vendor_name, site_id, "America/Chicago")
    windows = [(T0 - timedelta(minutes=5), T0), (T0, T0 + timedelta(minutes=5))]
    polls = []
    try:
        for (since, until), read_at in zip(windows, (290, 301), strict=True):
            wall[0] = T0.timestamp() + read_at
            polls.append(await connector.fetch_format(site, fmt, since, until))
    finally:
        await connector.aclose()
    assert [p.data["polled_at"] for p in polls] == [
        int(T0.timestamp()),
        int(T0.timestamp()) + 300,
    ]
    assert [p.data["interval_s"] for p in polls] == [300, 300]
    assert [p.event_id for p in polls] == [
        window_event_id(connector.vendor, site_id, fmt, a, b) for a, b in windows
    ]
    ctx = RawContext(site.asset_id, ZoneInfo(site.timezone), T0)
    (first,) = FORMATS[fmt].parse(polls[0].data, ctx)
    (second,) = FORMATS[fmt].parse(polls[1].data, ctx)
    # [until - 300 s, until) each: [13:55Z, 14:00Z) then [14:00Z, 14:05Z).
    assert (first.interval_start, first.interval_s) == (T0 - timedelta(minutes=5), 300)
    assert (second.interval_start, second.interval_s) == (T0, 300)
    assert first.interval_start + timedelta(seconds=first.interval_s) == second.interval_start


async def test_wrong_credentials_are_not_retried_and_say_what_the_vendor_said(
    vendor: vs.VendorServer,
) -> None:
    sleeps = Sleeps()
    client = solaredge.client(vendor.url, **options(sleeps))
    connector = solaredge.SolarEdge(client, SecretStr("not-the-key"))
    try:
        with pytest.raises(VendorHTTPError) as refused:
            await connector.fetch_format(SE_SITE, "solaredge.power-details.v1", T0, T0)
    finally:
        await connector.aclose()
    assert refused.value.status == 403
    assert str(refused.value) == (
        "solaredge GET /site/1234567/powerDetails: HTTP 403: Invalid token"
    )
    assert vendor.count("/powerDetails") == 1
    assert sleeps.calls == []


# --- retries -------------------------------------------------------------------------------


async def test_429_and_5xx_are_retried_with_backoff_then_succeed(vendor: vs.VendorServer) -> None:
    sleeps = Sleeps()
    connector = solaredge_connector(vendor.url, sleeps)
    vendor.fail("/powerDetails", 429, retry_after="2")
    vendor.fail("/powerDetails", 503, 502)
    try:
        fetched = await connector.fetch_format(
            SE_SITE, "solaredge.power-details.v1", T0, T0 + timedelta(minutes=15)
        )
    finally:
        await connector.aclose()
    assert vendor.count("/powerDetails") == 4
    # 429: its Retry-After, 2 s. Then backoff, base 1 s, rand 0.5: attempt 1 -> 0.5 * 2 = 1 s,
    # attempt 2 -> 0.5 * 4 = 2 s.
    assert sleeps.calls == pytest.approx([2.0, 1.0, 2.0], abs=1e-9)
    assert fetched.data["powerDetails"]["unit"] == "W"


async def test_5xx_until_the_last_attempt_is_an_error_with_the_status(
    vendor: vs.VendorServer,
) -> None:
    sleeps = Sleeps()
    connector = solaredge_connector(vendor.url, sleeps)
    vendor.fail("/powerDetails", 503, 503, 503, 503)
    try:
        with pytest.raises(VendorHTTPError, match="HTTP 503: forced 503"):
            await connector.fetch_format(SE_SITE, "solaredge.power-details.v1", T0, T0)
    finally:
        await connector.aclose()
    assert vendor.count("/powerDetails") == 4  # attempts=4, no more
    # Waits between them: 0.5 * 1, 0.5 * 2, 0.5 * 4.
    assert sleeps.calls == pytest.approx([0.5, 1.0, 2.0], abs=1e-9)


async def test_a_retry_after_beyond_the_longest_wait_fails_at_once(
    vendor: vs.VendorServer,
) -> None:
    sleeps = Sleeps()
    connector = solaredge_connector(vendor.url, sleeps)
    vendor.fail("/powerDetails", 429, retry_after="3600")  # e.g. the day's quota is spent
    try:
        with pytest.raises(VendorHTTPError, match=r"HTTP 429: .*retry after 3600 s"):
            await connector.fetch_format(SE_SITE, "solaredge.power-details.v1", T0, T0)
    finally:
        await connector.aclose()
    assert vendor.count("/powerDetails") == 1
    assert sleeps.calls == []


async def test_a_timeout_is_retried(vendor: vs.VendorServer) -> None:
    sleeps = Sleeps()
    connector = solaredge_connector(vendor.url, sleeps, timeout_s=0.3)
    vendor.stall("/powerDetails", 0.8)
    try:
        fetched = await connector.fetch_format(
            SE_SITE, "solaredge.power-details.v1", T0, T0 + timedelta(minutes=15)
        )
    finally:
        await connector.aclose()
    assert vendor.count("/powerDetails") == 2
    assert sleeps.calls == pytest.approx([0.5], abs=1e-9)
    assert "powerDetails" in fetched.data


async def test_connection_refused_is_retried_then_reported_without_the_url() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = Sleeps()
    connector = solaredge_connector(f"http://127.0.0.1:{port}", sleeps)
    try:
        with pytest.raises(VendorError) as failed:
            await connector.fetch_format(SE_SITE, "solaredge.power-details.v1", T0, T0)
    finally:
        await connector.aclose()
    assert str(failed.value) == (
        "solaredge GET /site/1234567/powerDetails: ConnectError after 4 attempts"
    )
    assert sleeps.calls == pytest.approx([0.5, 1.0, 2.0], abs=1e-9)


# --- budget ---------------------------------------------------------------------------------


async def test_the_budget_refuses_the_301st_request_of_the_day_without_sending_it(
    vendor: vs.VendorServer,
) -> None:
    connector = solaredge_connector(vendor.url, Sleeps())
    fmt = "solaredge.storage-data.v1"
    end = T0 + timedelta(minutes=5)
    try:
        for _ in range(300):
            await connector.fetch_format(SE_SITE, fmt, T0, end)
        with pytest.raises(BudgetExhausted, match=r"site 1234567 spent \(300 per 86400 s\)"):
            await connector.fetch_format(SE_SITE, fmt, T0, end)
    finally:
        await connector.aclose()
    assert vendor.count("/storageData") == 300


async def test_a_budget_that_frees_up_soon_is_waited_for(vendor: vs.VendorServer) -> None:
    now = [1_000_000.0]
    sleeps = Sleeps()

    async def sleep(seconds: float) -> None:
        await sleeps(seconds)
        now[0] += seconds

    budget = RequestBudget([Quota(2, 60)], clock=lambda: now[0])
    client = VendorClient("generac", vendor.url, budget=budget, sleep=sleep)
    connector = generac.Generac(client, SecretStr(vs.GENERAC_TOKEN))
    site = Site("BTM-GN-1", "generac", "sys-77", "UTC")
    try:
        for _ in range(3):
            await connector.fetch_format(site, "generac.pwrcell-devices.v1", T0, T0)
    finally:
        await connector.aclose()
    # 2 a minute: the third waits until the first leaves the window, 60 s later.
    assert sleeps.calls == pytest.approx([60.0], abs=1e-9)
    assert vendor.count("/devices") == 3


# --- hostile answers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("<html>maintenance</html>", "not JSON"),
        ("[" * 100_000, "not JSON"),  # nested too deeply for the parser
        ("42", "expected a JSON object or array"),
        ("null", "expected a JSON object or array"),
    ],
)
async def test_a_body_that_is_no_payload_is_a_vendor_error(
    vendor: vs.VendorServer, body: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.responses import PlainTextResponse

    monkeypatch.setattr(vs, "_generac", lambda headers: PlainTextResponse(body))
    client = generac.client(vendor.url, **options(Sleeps()))
    connector = generac.Generac(client, SecretStr(vs.GENERAC_TOKEN))
    site = Site("BTM-GN-1", "generac", "sys-77", "UTC")
    try:
        if reason == "not JSON":
            with pytest.raises(VendorError, match=reason):
                await connector.fetch_format(site, "generac.pwrcell-devices.v1", T0, T0)
        else:  # a live body is wrapped in our envelope: any JSON value is carried
            fetched = await connector.fetch_format(site, "generac.pwrcell-devices.v1", T0, T0)
            assert fetched.data["response"] == json.loads(body)
    finally:
        await connector.aclose()


async def test_a_json_scalar_from_an_interval_api_is_a_vendor_error(
    vendor: vs.VendorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.responses import PlainTextResponse

    monkeypatch.setattr(vs, "_solaredge", lambda *args: PlainTextResponse("1e999"))
    connector = solaredge_connector(vendor.url, Sleeps())
    try:
        with pytest.raises(VendorError, match="expected a JSON object or array"):
            await connector.fetch_format(SE_SITE, "solaredge.power-details.v1", T0, T0)
    finally:
        await connector.aclose()


# --- settings, secrets, sites ----------------------------------------------------------------


def test_secrets_stay_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXWATT_SOLAREDGE_API_KEY", vs.SOLAREDGE_KEY)
    monkeypatch.setenv("NEXWATT_ENPHASE_API_KEY", vs.ENPHASE_KEY)
    monkeypatch.setenv("NEXWATT_ENPHASE_ACCESS_TOKEN", vs.ENPHASE_TOKEN)
    settings = ConnectorSettings()
    connector = build("enphase", settings)
    shown = repr(settings) + str(settings) + repr(vars(connector)) + repr(settings.model_dump())
    for secret in vs.SECRETS:
        assert secret not in shown
    assert settings.solaredge_api_key is not None
    assert settings.solaredge_api_key.get_secret_value() == vs.SOLAREDGE_KEY


def test_a_vendor_without_its_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEXWATT_SOLAREDGE_API_KEY", raising=False)
    with pytest.raises(ValueError, match="NEXWATT_SOLAREDGE_API_KEY is not set"):
        build("solaredge", ConnectorSettings())
    with pytest.raises(ValueError, match="NEXWATT_GENERAC_BASE_URL is not set"):
        build("generac", ConnectorSettings(generac_token=SecretStr("t")))


def test_sites_load_from_json_and_csv(tmp_path: Path) -> None:
    rows = [
        {"asset_id": "BTM-1", "vendor": "solaredge", "site_id": "1234567", "timezone": NY},
        {"asset_id": "BTM-2", "vendor": "sma-webconnect", "site_id": "10.0.0.7",
         "timezone": "Europe/Berlin", "note": "ignored"},
    ]  # fmt: skip
    as_json = tmp_path / "sites.json"
    as_json.write_text(json.dumps(rows))
    as_csv = tmp_path / "sites.csv"
    as_csv.write_text(
        "asset_id,vendor,site_id,timezone\n"
        "BTM-1,solaredge,1234567,America/New_York\n"
        "BTM-2,sma-webconnect,10.0.0.7,Europe/Berlin\n"
    )
    expected = [
        Site("BTM-1", "solaredge", "1234567", NY),
        Site("BTM-2", "sma-webconnect", "10.0.0.7", "Europe/Berlin"),
    ]
    assert load_sites(as_json) == expected
    assert load_sites(as_csv) == expected


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"asset_id": "BTM-1"}', "expected a JSON list"),
        ('["BTM-1"]', "entry 1: expected an object"),
        ('[{"asset_id": "BTM-1", "vendor": "solaredge", "site_id": 7, "timezone": "UTC"}]',
         "entry 1: missing site_id"),
        ('[{"asset_id": "BTM-1", "vendor": "tesla", "site_id": "7", "timezone": "UTC"}]',
         "unknown vendor 'tesla'"),
        ('[{"asset_id": "BTM-1", "vendor": "enphase", "site_id": "7", "timezone": "Mars/Base"}]',
         "unknown time zone 'Mars/Base'"),
        ('[{"asset_id": "BTM-1", "vendor": "enphase", "site_id": "7", "timezone": "../etc"}]',
         "unknown time zone"),
    ],
)  # fmt: skip
def test_a_wrong_site_is_refused_with_its_entry(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "sites.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=reason):
        load_sites(path)
