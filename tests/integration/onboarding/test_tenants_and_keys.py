"""Tenants and API keys on the real onboarding service and PostgreSQL: a tenant can neither see
nor change another's assets, a revoked key is refused, and no key is stored in clear."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from nexwatt_shared.postgres import database_url
from nexwatt_shared.problems import PROBLEM_JSON
from tests.helpers import registration, unique
from tests.integration.onboarding.conftest import ALL_SCOPES, Service, admin, create_key

pytestmark = pytest.mark.integration


def seed(asset_id: str, **changes: object) -> dict:
    return registration(asset_id=asset_id, **{"meter_id": f"M-{asset_id}", **changes})


@pytest.fixture
async def other(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """A client of another tenant, with every scope."""
    headers = {"X-API-Key": create_key(service, "tenant-b", *ALL_SCOPES)}
    async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=10) as client:
        yield client


async def _db(service: Service) -> asyncpg.Connection:
    return await asyncpg.connect(database_url(service.server_url, service.database))


async def test_a_tenant_can_neither_see_nor_change_another_tenants_assets(
    api: httpx.AsyncClient, other: httpx.AsyncClient
) -> None:
    asset_id = unique("BTM")
    mine = await api.post("/v1/assets/register", json=seed(asset_id))
    assert mine.status_code == 200, mine.text

    # Unknown to the other tenant (404, not 403: its existence is not told).
    for answer in [
        await other.get(f"/v1/assets/{asset_id}"),
        await other.post(f"/v1/assets/{asset_id}/unenroll"),
        await other.post(f"/v1/assets/{asset_id}/suspend"),
    ]:
        assert answer.status_code == 404, answer.text
        assert answer.headers["content-type"] == PROBLEM_JSON
    # Taking its id is a conflict that doesn't say whose it is.
    taken = await other.post("/v1/assets/register", json=seed(asset_id, capacity_kw=9.0))
    assert taken.status_code == 409
    assert taken.json()["detail"] == "the asset id is not available: choose another"
    # The other tenant's share of the resource holds none of it.
    summary = await other.get(f"/v1/resources/{mine.json()['resource_id']}")
    assert (summary.status_code, summary.json()["assets_enrolled"]) == (200, 0)

    record = (await api.get(f"/v1/assets/{asset_id}")).json()
    assert (record["status"], record["version"], record["capacity_kw"]) == ("enrolled", 1, 7.6)


async def test_a_meter_held_by_another_tenant_is_refused_without_naming_its_asset(
    api: httpx.AsyncClient, other: httpx.AsyncClient
) -> None:
    meter = unique("M")
    assert (
        await api.post("/v1/assets/register", json=seed(unique("BTM"), meter_id=meter))
    ).status_code == 200
    refused = await other.post("/v1/assets/register", json=seed(unique("BTM"), meter_id=meter))
    assert refused.status_code == 422
    (violation,) = refused.json()["violations"]
    assert violation["expected"] == (
        "a meter not enrolled under another asset (an asset of another tenant holds it)"
    )


async def test_no_key_an_unknown_key_and_a_missing_scope_are_refused(
    service: Service, api: httpx.AsyncClient
) -> None:
    asset_id = unique("BTM")
    assert (await api.post("/v1/assets/register", json=seed(asset_id))).status_code == 200
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as anonymous:
        missing = await anonymous.post(f"/v1/assets/{asset_id}/unenroll")
        unknown = await anonymous.get(
            f"/v1/assets/{asset_id}",
            headers={"Authorization": "Bearer nxw_0123456789ab_" + "x" * 43},
        )
        for answer in [missing, unknown]:
            assert answer.status_code == 401
            assert answer.headers["www-authenticate"] == 'Bearer realm="nexwatt"'
            assert answer.headers["content-type"] == PROBLEM_JSON
        assert (await anonymous.get("/healthz")).status_code == 200
        reader = {"X-API-Key": create_key(service, "tenant-a", "assets:read")}
        forbidden = await anonymous.post(f"/v1/assets/{asset_id}/unenroll", headers=reader)
        assert forbidden.status_code == 403
        assert (await anonymous.get(f"/v1/assets/{asset_id}", headers=reader)).status_code == 200
    assert (await api.get(f"/v1/assets/{asset_id}")).json()["status"] == "enrolled"


async def test_a_revoked_key_is_refused_from_the_next_request_on(service: Service) -> None:
    token = create_key(service, "tenant-c", "assets:read")
    key_id = token.split("_")[1]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=10) as client:
        assert (await client.get("/v1/assets/NOT-THERE")).status_code == 404  # accepted
        revoked = admin(service, "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        assert (await client.get("/v1/assets/NOT-THERE")).status_code == 401
    again = admin(service, "revoke", key_id)
    assert (again.returncode, again.stderr.strip()) == (
        2,
        f"nexwatt-admin keys: no active key {key_id!r}",
    )
    (line,) = [x for x in admin(service, "list").stdout.splitlines() if x.startswith(key_id)]
    assert "tenant-c" in line and "revoked" in line


async def test_a_key_is_shown_once_and_only_its_hash_is_stored(service: Service) -> None:
    created = admin(service, "create", "--tenant", "tenant-d", "--scope", "reports:read")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    key_id, secret = token.split("_")[1], token.split("_", 2)[2]
    assert created.stderr.startswith(f"key {key_id} of tenant tenant-d (reports:read)")
    listed = admin(service, "list").stdout
    assert key_id in listed and secret not in listed
    conn = await _db(service)
    try:
        row = await conn.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", key_id)
        everything = await conn.fetchval("SELECT string_agg(t::text, ' ') FROM api_keys t")
    finally:
        await conn.close()
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert (row["tenant_id"], row["scopes"], row["revoked_at"]) == (
        "tenant-d",
        ["reports:read"],
        None,
    )
    assert secret not in everything
