"""API keys (`nexwatt_shared.auth`) and their check on onboarding's routes, in-process over the
fake `Onboarding` of test_api.py: 401 without a valid key, 403 without the scope, the key's tenant
passed on to every command."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import cast

import httpx
import pytest

from nexwatt_onboarding.api import create_app
from nexwatt_onboarding.handlers import Onboarding
from nexwatt_shared.auth import ApiKey, Authenticator, Scope, new_token, token_hash, well_formed
from nexwatt_shared.problems import PROBLEM_JSON
from nexwatt_shared.service import health_app
from tests.helpers import SEED_REGISTRATION
from tests.unit.onboarding.test_api import FakeOnboarding


def test_the_stored_hash_is_the_hex_sha256_of_the_whole_token() -> None:
    # FIPS 180-2, appendix B.1: SHA-256("abc").
    assert token_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_a_new_token_names_its_key_and_carries_32_random_bytes() -> None:
    key_id, token = new_token()
    other_id, other = new_token()
    assert token.startswith(f"nxw_{key_id}_")
    # "nxw_" + 12 hex digits + "_" + 32 bytes in unpadded base64url (43 characters)
    assert len(token) == 4 + 12 + 1 + 43
    assert well_formed(token)
    assert (other_id, other) != (key_id, token)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "Bearer",
        "nxw_0123456789ab_" + "a" * 42,  # one character short
        "nxw_0123456789AB_" + "a" * 43,  # the id is lower-case hex
        "xyz_0123456789ab_" + "a" * 43,
        "nxw_0123456789ab_" + "a" * 42 + "\x00",
    ],
)
def test_a_token_of_another_shape_is_not_well_formed(token: str) -> None:
    assert not well_formed(token)


def _key(key_id: str, tenant_id: str, *scopes: Scope) -> ApiKey:
    created = datetime(2026, 11, 28, tzinfo=UTC)
    return ApiKey(key_id, tenant_id, frozenset(scopes), "test", created, None)


class Keys:
    """An in-memory key store: token -> active key; `looked_up` counts lookups."""

    def __init__(self) -> None:
        self.active: dict[str, ApiKey] = {}
        self.looked_up = 0
        self.away = False  # the store does not answer

    def add(self, tenant_id: str, *scopes: Scope) -> str:
        key_id, token = new_token()
        self.active[token] = _key(key_id, tenant_id, *scopes)
        return token

    async def lookup(self, token: str) -> ApiKey | None:
        self.looked_up += 1
        if self.away:
            raise ConnectionRefusedError("PostgreSQL is not answering")
        return self.active.get(token)


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def fake() -> FakeOnboarding:
    return FakeOnboarding()


async def _client(
    fake: FakeOnboarding, keys: Keys, required: bool
) -> AsyncIterator[httpx.AsyncClient]:
    app = health_app(
        "onboarding", {}, create_app(cast(Onboarding, fake), Authenticator(keys.lookup, required))
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def api(fake: FakeOnboarding, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(fake, keys, required=True):
        yield client


@pytest.fixture
async def open_api(fake: FakeOnboarding, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(fake, keys, required=False):
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_without_a_valid_key_every_route_is_a_401_problem_with_a_challenge(
    api: httpx.AsyncClient, fake: FakeOnboarding, keys: Keys
) -> None:
    revoked = "nxw_0123456789ab_" + "a" * 43  # well formed, in no store
    for headers in [{}, _bearer(revoked), {"X-API-Key": revoked}, _bearer("not-a-key")]:
        for answer in [
            await api.post("/v1/assets/register", json=SEED_REGISTRATION, headers=headers),
            await api.get("/v1/assets/BTM-00291", headers=headers),
            await api.post("/v1/assets/BTM-00291/unenroll", headers=headers),
            await api.post("/v1/assets/BTM-00291/suspend", headers=headers),
            await api.get("/v1/resources/NXW-PJM-0042", headers=headers),
        ]:
            assert answer.status_code == 401, (headers, answer.request.url)
            assert answer.headers["content-type"] == PROBLEM_JSON
            assert answer.headers["www-authenticate"] == 'Bearer realm="nexwatt"'
    assert fake.registered == [] and fake.tenants == []
    assert keys.looked_up == 10  # the two well-formed tokens, five routes each; never "not-a-key"


async def test_health_and_metrics_stay_open(api: httpx.AsyncClient) -> None:
    for path in ["/healthz", "/readyz", "/metrics"]:
        assert (await api.get(path)).status_code == 200, path


async def test_a_key_without_the_scope_is_a_403_and_nothing_is_done(
    api: httpx.AsyncClient, fake: FakeOnboarding, keys: Keys
) -> None:
    reader = _bearer(keys.add("acme", Scope.ASSETS_READ))
    reporter = _bearer(keys.add("acme", Scope.REPORTS_READ))
    answers = [
        await api.post("/v1/assets/register", json=SEED_REGISTRATION, headers=reader),
        await api.post("/v1/assets/BTM-00291/unenroll", headers=reader),
        await api.post("/v1/assets/BTM-00291/suspend", headers=reader),
        await api.get("/v1/assets/BTM-00291", headers=reporter),
    ]
    assert [a.status_code for a in answers] == [403, 403, 403, 403]
    assert answers[0].json()["detail"].endswith("lacks the scope assets:write")
    assert answers[0].headers["content-type"] == PROBLEM_JSON
    assert fake.registered == []


async def test_the_keys_tenant_is_passed_on_with_either_header(
    api: httpx.AsyncClient, fake: FakeOnboarding, keys: Keys
) -> None:
    writer = keys.add("acme", Scope.ASSETS_WRITE, Scope.ASSETS_READ)
    other = keys.add("globex", Scope.ASSETS_WRITE)
    reg = await api.post("/v1/assets/register", json=SEED_REGISTRATION, headers=_bearer(writer))
    assert reg.status_code == 200
    assert (await api.get("/v1/assets/X-1", headers={"X-API-Key": writer})).status_code == 404
    reg = await api.post(
        "/v1/assets/register", json=SEED_REGISTRATION, headers={"X-API-Key": other}
    )
    assert reg.status_code == 200
    assert fake.tenants == ["acme", "acme", "globex"]


async def test_the_resource_summary_takes_reports_read_or_assets_read(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    # The fake's summary raises NoRulesInForce (503): the request got past the key check.
    for scope in [Scope.REPORTS_READ, Scope.ASSETS_READ]:
        answer = await api.get("/v1/resources/NXW-PJM-0042", headers=_bearer(keys.add("a", scope)))
        assert answer.status_code == 503, scope
    writer = _bearer(keys.add("a", Scope.ASSETS_WRITE))
    assert (await api.get("/v1/resources/NXW-PJM-0042", headers=writer)).status_code == 403


async def test_when_keys_are_not_required_no_key_is_the_default_tenant_but_a_bad_key_is_refused(
    open_api: httpx.AsyncClient, fake: FakeOnboarding
) -> None:
    assert (await open_api.post("/v1/assets/register", json=SEED_REGISTRATION)).status_code == 200
    assert fake.tenants == ["default"]
    bad = await open_api.get("/v1/assets/X-1", headers=_bearer("nxw_0123456789ab_" + "a" * 43))
    assert bad.status_code == 401


def test_the_openapi_document_declares_both_ways_to_send_a_key() -> None:
    app = create_app(cast(Onboarding, FakeOnboarding()), Authenticator(Keys().lookup, True))
    spec = app.openapi()
    assert spec["components"]["securitySchemes"] == {
        "HTTPBearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer <API key>`",
        },
        "APIKeyHeader": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "The API key, as an alternative to Bearer",
        },
    }
    assert spec["paths"]["/v1/assets/{asset_id}"]["get"]["security"] == [
        {"HTTPBearer": []},
        {"APIKeyHeader": []},
    ]


async def test_a_key_store_that_is_away_is_a_503_to_try_again_not_a_500(
    api: httpx.AsyncClient, keys: Keys
) -> None:
    token = keys.add("tenant-a", Scope.ASSETS_READ)
    keys.away = True
    answer = await api.get("/v1/assets/BTM-1", headers=_bearer(token))
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert answer.json()["detail"] == "the key store is unavailable"
