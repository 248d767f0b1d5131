"""The onboarding service, run as its real process, against the real PostgreSQL and Kafka.

One service process (own port, own database, see conftest.py) serves the module, called with a
key of one tenant; every test uses asset ids of its own. The relay publishes outbox rows in
commit order, so "nothing was published for X" is checked by waiting for a later event and
finding none for X before it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from nexwatt_shared.problems import PROBLEM_JSON
from nexwatt_shared.topics import ASSET_REGISTERED
from tests.helpers import eventually, read_all, registration, unique
from tests.integration.onboarding.conftest import Service

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.integration


def seed(asset_id: str, **changes: object) -> dict:
    """The example registration for `asset_id`, on a meter of its own (a meter can be enrolled
    under one asset only)."""
    return registration(asset_id=asset_id, **{"meter_id": f"M-{asset_id}", **changes})


@pytest.fixture
def bootstrap(servers: dict[str, str]) -> str:
    return servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"]


async def events_of(bootstrap: str, asset_id: str) -> list:
    records = await read_all(bootstrap, ASSET_REGISTERED.name)
    return [r for r in records if r.key == asset_id.encode()]


async def wait_for_versions(bootstrap: str, asset_id: str, versions: int) -> list[dict]:
    """The asset's events once `versions` of them are on the topic, as parsed CloudEvents."""
    records = await eventually(
        lambda: events_of(bootstrap, asset_id), lambda rs: len(rs) >= versions, timeout_s=20
    )
    return [json.loads(r.value) for r in records]


async def test_registering_the_seed_asset_enrols_it_and_publishes_its_record(
    api: httpx.AsyncClient, bootstrap: str
) -> None:
    asset_id = unique("BTM")
    answer = await api.post("/v1/assets/register", json=seed(asset_id, subscriber_id="SUB-7"))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "status": "enrolled",
        "telemetry_validated": True,
        "iso_compliant": True,
        "asset_id": asset_id,
        "resource_id": "NXW-PJM-0042",
        "version": 1,
    }

    (event,) = await wait_for_versions(bootstrap, asset_id, 1)
    assert event["type"] == "nexwatt.asset.registered.v1"
    assert event["id"] == f"{asset_id}:v1"
    assert event["source"] == "urn:nexwatt:service:onboarding"
    assert event["subject"] == asset_id
    data = event["data"]
    assert data == {
        "asset_id": asset_id,
        "status": "enrolled",
        "asset_type": "solar_storage",
        "inverter": "SolarEdge SE7600",
        "vendor": "solaredge",
        "capacity_kw": 7.6,
        "storage_kwh": 9.8,
        "backup_reserve_pct": 20.0,
        # Ratings not given: the defaults; those without one (None) are left out of the event.
        "round_trip_efficiency": 0.9,
        "coupling": "dc",
        "pv_mounting": "fixed",
        "meter_id": f"M-{asset_id}",
        "iso": "PJM",
        "iso_zone": "PJM-PEPCO",
        "resource_id": "NXW-PJM-0042",
        "subscriber_id": "SUB-7",
        "cohort": "residential",
        "telemetry_interval_s": 300,
        "version": 1,
        "updated_at": data["updated_at"],
    }
    stored = await api.get(f"/v1/assets/{asset_id}")
    assert stored.status_code == 200
    # The API shows the ratings not given as null; the event leaves them out.
    assert {k: v for k, v in stored.json().items() if v is not None} == data


async def test_same_data_again_publishes_nothing_and_changed_data_publishes_version_2(
    api: httpx.AsyncClient, bootstrap: str
) -> None:
    asset_id = unique("BTM")
    first = await api.post("/v1/assets/register", json=seed(asset_id))
    again = await api.post("/v1/assets/register", json=seed(asset_id))
    assert again.status_code == 200
    assert again.json() == first.json()
    changed = await api.post("/v1/assets/register", json=seed(asset_id, capacity_kw=8.2))
    assert changed.status_code == 200
    assert changed.json()["version"] == 2

    events = await wait_for_versions(bootstrap, asset_id, 2)
    # Had the identical request published, its event would sit between these two.
    assert [(e["id"], e["data"]["version"], e["data"]["capacity_kw"]) for e in events] == [
        (f"{asset_id}:v1", 1, 7.6),
        (f"{asset_id}:v2", 2, 8.2),
    ]
    assert (await api.get(f"/v1/assets/{asset_id}")).json()["version"] == 2


async def test_unenrolling_publishes_the_status_change(
    api: httpx.AsyncClient, bootstrap: str
) -> None:
    asset_id = unique("BTM")
    await api.post("/v1/assets/register", json=seed(asset_id))
    answer = await api.post(f"/v1/assets/{asset_id}/unenroll")
    assert answer.status_code == 200
    assert answer.json()["status"] == "unenrolled"
    assert answer.json()["version"] == 2
    again = await api.post(f"/v1/assets/{asset_id}/unenroll")
    assert again.json()["version"] == 2  # already unenrolled: nothing new
    refused = await api.post(f"/v1/assets/{asset_id}/suspend")
    assert refused.status_code == 409
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert "register it again" in refused.json()["detail"]
    back = await api.post("/v1/assets/register", json=seed(asset_id))
    assert back.json()["version"] == 3

    events = await wait_for_versions(bootstrap, asset_id, 3)
    assert [(e["data"]["version"], e["data"]["status"]) for e in events] == [
        (1, "enrolled"),
        (2, "unenrolled"),
        (3, "enrolled"),
    ]


async def test_unknown_assets_and_resources_are_404(api: httpx.AsyncClient) -> None:
    missing = unique("BTM")
    for answer in [
        await api.get(f"/v1/assets/{missing}"),
        await api.post(f"/v1/assets/{missing}/unenroll"),
        await api.post(f"/v1/assets/{missing}/suspend"),
    ]:
        assert answer.status_code == 404
        assert answer.headers["content-type"] == PROBLEM_JSON
        assert answer.json() == {
            "type": "about:blank",
            "title": "Not Found",
            "status": 404,
            "detail": f"asset {missing!r} is not registered",
            "instance": answer.request.url.path,
        }
    unknown = await api.get("/v1/resources/NXW-PJM-never-used")
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "resource 'NXW-PJM-never-used' is unknown"


async def test_malformed_requests_are_422_naming_each_field(api: httpx.AsyncClient) -> None:
    asset_id = unique("BTM")
    body = seed(asset_id, capacity_kw="lots")
    del body["meter_id"]
    answer = await api.post("/v1/assets/register", json=body)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM_JSON
    problem = answer.json()
    assert problem["type"] == "urn:nexwatt:problem:invalid-request"
    assert sorted(problem["errors"], key=lambda e: e["field"]) == [
        {
            "field": "body.capacity_kw",
            "reason": "Input should be a valid number, unable to parse string as a number",
        },
        {"field": "body.meter_id", "reason": "Field required"},
    ]
    assert (await api.get(f"/v1/assets/{asset_id}")).status_code == 404


async def test_rule_violations_are_422_and_nothing_is_stored_or_published(
    api: httpx.AsyncClient, bootstrap: str
) -> None:
    rejected_id = unique("BTM")
    answer = await api.post("/v1/assets/register", json=seed(rejected_id, telemetry_interval=15))
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.json() == {
        "type": "urn:nexwatt:problem:iso-rules-broken",
        "title": "The asset breaks the ISO's rules",
        "status": 422,
        "detail": "telemetry_interval: one of [1, 5] minutes",
        "instance": "/v1/assets/register",
        "telemetry_validated": False,
        "iso_compliant": False,
        "asset_id": rejected_id,
        "violations": [
            {"rule": "telemetry_interval", "found": 15, "expected": "one of [1, 5] minutes"}
        ],
    }
    assert (await api.get(f"/v1/assets/{rejected_id}")).status_code == 404

    # An asset registered after the rejection is published after anything the rejection
    # could have published.
    marker_id = unique("BTM")
    assert (await api.post("/v1/assets/register", json=seed(marker_id))).status_code == 200
    await wait_for_versions(bootstrap, marker_id, 1)
    assert await events_of(bootstrap, rejected_id) == []


async def test_a_resource_aggregates_its_enrolled_assets_against_the_100_kw_minimum(
    api: httpx.AsyncClient, bootstrap: str
) -> None:
    resource_id = unique("NXW-PJM-T")
    big, small = unique("C-BIG"), unique("C-SMALL")

    async def summary() -> dict:
        answer = await api.get(f"/v1/resources/{resource_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    first = await api.post(
        "/v1/assets/register",
        json=seed(big, capacity_kw=60, storage_kwh=120, resource_id=resource_id),
    )
    assert first.json()["resource_id"] == resource_id
    assert await summary() == {
        "resource_id": resource_id,
        "iso": "PJM",
        "iso_zone": "PJM-PEPCO",
        "assets_enrolled": 1,
        "capacity_kw": 60.0,
        "storage_kwh": 120.0,
        "min_aggregation_kw": 100.0,
        "meets_min_aggregation": False,
    }
    await api.post(
        "/v1/assets/register",
        json=seed(small, capacity_kw=40, storage_kwh=80, resource_id=resource_id),
    )
    after = await summary()
    assert (after["assets_enrolled"], after["capacity_kw"], after["storage_kwh"]) == (2, 100, 200)
    assert after["meets_min_aggregation"] is True

    await api.post(f"/v1/assets/{big}/suspend")
    suspended = await summary()
    assert (suspended["assets_enrolled"], suspended["capacity_kw"]) == (1, 40)
    assert suspended["meets_min_aggregation"] is False

    # The new resource now belongs to PJM-PEPCO: an asset in another zone can't join it.
    other_zone = await api.post(
        "/v1/assets/register",
        json=seed(unique("BTM"), iso_zone="PJM-BGE", resource_id=resource_id),
    )
    assert other_zone.status_code == 422
    (violation,) = other_zone.json()["violations"]
    assert violation["rule"] == "resource_id"
    assert "already aggregates assets in PJM-PEPCO" in violation["expected"]

    (event,) = await wait_for_versions(bootstrap, small, 1)
    assert event["data"]["resource_id"] == resource_id
    assert event["data"]["cohort"] == "residential"  # 40 kW < 100 kW


async def test_the_api_is_documented(api: httpx.AsyncClient) -> None:
    assert (await api.get("/docs")).status_code == 200
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert {
        "/v1/assets/register",
        "/v1/assets/{asset_id}",
        "/v1/assets/{asset_id}/unenroll",
        "/v1/assets/{asset_id}/suspend",
        "/v1/resources/{resource_id}",
    } <= set(paths)


async def test_a_meter_is_enrolled_under_one_asset_at_a_time(api: httpx.AsyncClient) -> None:
    a, b, meter, new_meter = unique("BTM"), unique("BTM"), unique("M"), unique("M")

    async def register(asset_id: str, meter_id: str = meter) -> httpx.Response:
        return await api.post("/v1/assets/register", json=seed(asset_id, meter_id=meter_id))

    assert (await register(a)).status_code == 200
    taken = await register(b)
    assert taken.status_code == 422
    problem = taken.json()
    assert (problem["type"], problem["asset_id"], problem["telemetry_validated"]) == (
        "urn:nexwatt:problem:iso-rules-broken",
        b,
        True,
    )
    assert problem["violations"] == [
        {
            "rule": "meter_id",
            "found": meter,
            "expected": f"a meter not enrolled under another asset ({a} holds it)",
        }
    ]
    assert (await api.get(f"/v1/assets/{b}")).status_code == 404

    # A suspended asset keeps its meter, and may come back with it.
    assert (await api.post(f"/v1/assets/{a}/suspend")).status_code == 200
    assert (await register(b)).status_code == 422
    assert (await register(a)).json()["version"] == 3

    # Unenrolling frees the meter; then it is B's, and A must move to a meter that is free.
    assert (await api.post(f"/v1/assets/{a}/unenroll")).status_code == 200
    assert (await register(b)).status_code == 200
    (back_on_old,) = (await register(a)).json()["violations"]
    assert back_on_old["expected"].endswith(f"({b} holds it)")
    moved = await register(a, new_meter)
    assert moved.status_code == 200, moved.text
    assert (await api.get(f"/v1/assets/{a}")).json()["meter_id"] == new_meter
    assert (await register(b, new_meter)).status_code == 422  # B may not follow it there


async def test_assets_racing_for_a_new_meter_get_it_once(api: httpx.AsyncClient) -> None:
    # Several meters at once, each wanted by two assets, so that the requests truly overlap.
    racers = {unique("M"): (unique("BTM"), unique("BTM")) for _ in range(5)}

    async def race(meter: str, pair: tuple[str, str]) -> list[httpx.Response]:
        return await asyncio.gather(
            *(api.post("/v1/assets/register", json=seed(a, meter_id=meter)) for a in pair)
        )

    results = await asyncio.gather(*(race(meter, pair) for meter, pair in racers.items()))
    for (meter, pair), answers in zip(racers.items(), results, strict=True):
        by_status = {answer.status_code: answer for answer in answers}
        assert sorted(by_status) == [200, 422], [answer.text for answer in answers]
        winner = by_status[200].json()["asset_id"]
        assert winner in pair
        (violation,) = by_status[422].json()["violations"]
        assert violation == {
            "rule": "meter_id",
            "found": meter,
            "expected": f"a meter not enrolled under another asset ({winner} holds it)",
        }


async def test_numbers_beyond_bounds_nan_and_control_characters_are_422_naming_the_field(
    api: httpx.AsyncClient,
) -> None:
    """Each of these was enrolled or answered 500 before."""
    asset_id = unique("BTM")

    async def refused_field(body: str | dict) -> str:
        # As JSON text with \u escapes: httpx refuses to send NaN or a lone surrogate.
        text = body if isinstance(body, str) else json.dumps(body)
        answer = await api.post(
            "/v1/assets/register", content=text, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == PROBLEM_JSON
        (error,) = answer.json()["errors"]
        return error["field"]

    assert await refused_field(seed(asset_id, capacity_kw=1e308)) == "body.capacity_kw"
    assert await refused_field(seed(asset_id, storage_kwh=1e7)) == "body.storage_kwh"
    valid = json.dumps(seed(asset_id))
    for literal in ["NaN", "Infinity", "-Infinity"]:
        nan_body = valid.replace('"capacity_kw": 7.6', f'"capacity_kw": {literal}')
        assert await refused_field(nan_body) == "body.capacity_kw"
    for field in ["inverter", "meter_id", "iso_zone", "subscriber_id", "cohort"]:
        assert await refused_field(seed(asset_id, **{field: "A\u0000B"})) == f"body.{field}"
    assert await refused_field(seed(asset_id, subscriber_id="\ud800")) == "body.subscriber_id"
    nul_in_path = await api.get("/v1/assets/BTM%00")
    assert nul_in_path.status_code == 422
    assert nul_in_path.json()["errors"][0]["field"] == "path.asset_id"
    assert (await api.get(f"/v1/assets/{asset_id}")).status_code == 404


async def test_a_422_does_not_echo_the_body(api: httpx.AsyncClient) -> None:
    big = seed(unique("BTM"), capacity_kw="9" * 900_000)  # just under the 1 MiB limit
    answer = await api.post("/v1/assets/register", json=big)
    assert answer.status_code == 422
    assert len(answer.content) < 1000


async def _raw_request(port: int, head: str, body_parts: list[bytes]) -> tuple[int, dict]:
    """Send a request's head and `body_parts` over a socket, never finishing the body, and read
    the answer: a server that waited for the whole body would never answer (timeout)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode())
        for part in body_parts:
            writer.write(part)
            await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers["content-length"]))
        assert headers["content-type"] == PROBLEM_JSON
        return int(status_line.split()[1]), json.loads(body)
    finally:
        writer.close()


async def test_a_body_over_the_limit_is_413_without_being_read_whole(service: Service) -> None:
    port = int(service.url.rsplit(":", 1)[1])
    declared = (
        "POST /v1/assets/register HTTP/1.1\r\nHost: test\r\n"
        "Content-Type: application/json\r\nContent-Length: 31457280\r\n\r\n"
    )
    status, problem = await _raw_request(port, declared, [b'{"asset_id": "'])
    assert (status, problem["status"]) == (413, 413)
    assert problem["detail"] == "the request body is limited to 1048576 bytes"

    chunked = (
        "POST /v1/assets/register HTTP/1.1\r\nHost: test\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"  # 64 KiB
    status, problem = await _raw_request(port, chunked, [chunk] * 17)  # 1.06 MiB, no end
    assert status == 413
