"""`PUT /v1/assets/{asset_id}` and `GET /v1/assets` on the real service (keys required): PUT
registers as register does, 201 + Location only for a new asset; the list pages through a
tenant's own assets by cursor, every asset once, and filters by exact match."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from nexwatt_shared.problems import PROBLEM_JSON
from tests.helpers import registration, unique
from tests.integration.onboarding.conftest import ALL_SCOPES, Service, create_key

pytestmark = pytest.mark.integration


def body(asset_id: str, **changes: object) -> dict:
    """The example registration without its asset id, on a meter of the asset's own."""
    fields = registration(**{"meter_id": f"M-{asset_id}", **changes})
    del fields["asset_id"]
    return fields


async def client_of(service: Service, tenant: str) -> httpx.AsyncClient:
    headers = {"X-API-Key": create_key(service, tenant, *ALL_SCOPES)}
    return httpx.AsyncClient(base_url=service.url, headers=headers, timeout=10)


@pytest.fixture
async def other(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """A client of another tenant (with every scope)."""
    async with await client_of(service, "tenant-b") as client:
        yield client


async def list_all(client: httpx.AsyncClient, **params: object) -> list[list[dict]]:
    """Every page of the listing, following `next_cursor` to the end."""
    pages: list[list[dict]] = []
    cursor = None
    while True:
        page_params = params if cursor is None else {**params, "cursor": cursor}
        answer = await client.get("/v1/assets", params=page_params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 10, "the cursor does not advance"


async def test_put_creates_with_201_and_location_then_is_idempotent_then_versions(
    api: httpx.AsyncClient,
) -> None:
    asset_id = unique("PUT")
    created = await api.put(f"/v1/assets/{asset_id}", json=body(asset_id))
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/v1/assets/{asset_id}"
    assert (created.json()["asset_id"], created.json()["version"]) == (asset_id, 1)
    record = (await api.get(created.headers["location"])).json()
    assert (record["version"], record["capacity_kw"]) == (1, 7.6)

    # The same body again (here with the path's id in it, which is allowed): nothing changes.
    again = await api.put(f"/v1/assets/{asset_id}", json={**body(asset_id), "asset_id": asset_id})
    assert (again.status_code, again.json()["version"]) == (200, 1)
    assert "location" not in again.headers
    assert (await api.get(f"/v1/assets/{asset_id}")).json() == record

    changed = await api.put(f"/v1/assets/{asset_id}", json=body(asset_id, capacity_kw=9.0))
    assert (changed.status_code, changed.json()["version"]) == (200, 2)
    record = (await api.get(f"/v1/assets/{asset_id}")).json()
    assert (record["version"], record["capacity_kw"]) == (2, 9.0)


async def test_put_applies_registers_checks(
    service: Service, api: httpx.AsyncClient, other: httpx.AsyncClient
) -> None:
    asset_id = unique("PUT")
    mismatch = await api.put(f"/v1/assets/{asset_id}", json={**body(asset_id), "asset_id": "X-1"})
    assert mismatch.status_code == 422
    assert mismatch.headers["content-type"] == PROBLEM_JSON
    assert [e["field"] for e in mismatch.json()["errors"]] == ["body.asset_id"]

    broken = await api.put(f"/v1/assets/{asset_id}", json=body(asset_id, telemetry_interval=15))
    assert broken.status_code == 422
    assert "telemetry_interval" in [v["rule"] for v in broken.json()["violations"]]
    assert (await api.get(f"/v1/assets/{asset_id}")).status_code == 404  # nothing stored

    assert (await api.put(f"/v1/assets/{asset_id}", json=body(asset_id))).status_code == 201
    # Another tenant can neither take the id nor see the asset.
    taken = await other.put(f"/v1/assets/{asset_id}", json=body(asset_id, capacity_kw=9.0))
    assert taken.status_code == 409
    assert (await other.get(f"/v1/assets/{asset_id}")).status_code == 404
    # A key without assets:write may not PUT; one without assets:read may not list.
    for scope, method, path in [
        ("assets:read", "PUT", f"/v1/assets/{asset_id}"),
        ("assets:write", "GET", "/v1/assets"),
    ]:
        token = create_key(service, "tenant-a", scope)
        headers = {"Authorization": f"Bearer {token}"}
        refused = await api.request(method, path, json=body(asset_id), headers=headers)
        assert refused.status_code == 403, (scope, refused.text)


async def test_paging_through_250_assets_gives_100_100_50_every_id_once(
    service: Service,
) -> None:
    async with await client_of(service, unique("tenant-paging")) as client:
        ids = [f"PAGE-{i:04d}" for i in range(250)]
        for asset_id in ids:
            answer = await client.put(f"/v1/assets/{asset_id}", json=body(unique(asset_id)))
            assert answer.status_code == 201, answer.text
        pages = await list_all(client, limit=100)
        assert [len(page) for page in pages] == [100, 100, 50]
        assert [a["asset_id"] for page in pages for a in page] == ids  # in id order, once each
        # The default page is 100 assets; 500 takes them all at once.
        first = (await client.get("/v1/assets")).json()
        assert [a["asset_id"] for a in first["items"]] == ids[:100]
        everything = (await client.get("/v1/assets", params={"limit": 500})).json()
        assert (len(everything["items"]), everything["next_cursor"]) == (250, None)


async def test_the_list_holds_the_tenants_own_assets_filtered_by_exact_match(
    service: Service,
) -> None:
    tenant = unique("tenant-list")
    async with (
        await client_of(service, tenant) as mine,
        await client_of(service, unique("tenant-other")) as theirs,
    ):
        assets = {
            "L-1": {"cohort": "alpha", "subscriber_id": "SUB-1"},
            "L-2": {"cohort": "alpha", "subscriber_id": "SUB-2"},
            "L-3": {"cohort": "beta", "subscriber_id": "SUB-1", "iso_zone": "PJM-BGE"},
            "L-4": {"cohort": "alpha", "resource_id": "NXW-PJM-0142"},
        }
        for asset_id, fields in assets.items():
            answer = await mine.put(f"/v1/assets/{asset_id}", json=body(unique(asset_id), **fields))
            assert answer.status_code == 201, answer.text
        assert (await mine.post("/v1/assets/L-2/suspend")).status_code == 200
        # The other tenant's assets, matching every filter below, are never listed.
        for asset_id in ["L-0", "L-5"]:
            answer = await theirs.put(
                f"/v1/assets/{unique(asset_id)}",
                json=body(unique(asset_id), cohort="alpha", subscriber_id="SUB-1"),
            )
            assert answer.status_code == 201, answer.text

        async def listed(**params: object) -> list[str]:
            return [a["asset_id"] for page in await list_all(mine, **params) for a in page]

        assert await listed() == ["L-1", "L-2", "L-3", "L-4"]
        assert await listed(cohort="alpha") == ["L-1", "L-2", "L-4"]
        assert await listed(subscriber_id="SUB-1") == ["L-1", "L-3"]
        assert await listed(cohort="alpha", subscriber_id="SUB-1") == ["L-1"]
        assert await listed(status="suspended") == ["L-2"]
        assert await listed(status="enrolled", cohort="alpha") == ["L-1", "L-4"]
        assert await listed(iso_zone="PJM-BGE") == ["L-3"]
        assert await listed(resource_id="NXW-PJM-0142") == ["L-4"]
        assert await listed(cohort="alph") == []  # exact, not a prefix
        assert await listed(limit=1) == ["L-1", "L-2", "L-3", "L-4"]  # one per page

        their_ids = [a["asset_id"] for page in await list_all(theirs) for a in page]
        assert len(their_ids) == 2 and not set(their_ids) & set(assets)

        bad = await mine.get("/v1/assets", params={"cursor": "not-a-cursor"})
        assert bad.status_code == 422
        assert bad.headers["content-type"] == PROBLEM_JSON
        assert [e["field"] for e in bad.json()["errors"]] == ["query.cursor"]
