"""Onboarding's HTTP surface in-process (httpx's ASGI transport) over a fake `Onboarding`:
every error is a problem, and the OpenAPI document declares each route's answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import pytest

from nexwatt_onboarding.api import MAX_BODY_BYTES, create_app
from nexwatt_onboarding.domain import TransitionNotAllowed
from nexwatt_onboarding.handlers import Onboarding
from nexwatt_onboarding.models import (
    AssetPage,
    AssetQuery,
    Enrolled,
    FirstEnrolled,
    RegistrationRequest,
    Rejected,
    Violation,
    encode_cursor,
)
from nexwatt_onboarding.rules import NoRulesInForce
from nexwatt_shared.auth import Authenticator
from nexwatt_shared.contracts import AssetStatus
from nexwatt_shared.problems import PROBLEM_JSON
from tests.helpers import SEED_REGISTRATION


@dataclass
class FakeOnboarding:
    """Answers as the real one would; `outcome` is what `register` gives (or raises)."""

    outcome: Enrolled | Rejected | Exception = field(
        default_factory=lambda: Enrolled(
            asset_id="BTM-00291", resource_id="NXW-PJM-0042", version=1
        )
    )
    registered: list[RegistrationRequest] = field(default_factory=list)
    tenants: list[str] = field(default_factory=list)  # each call's tenant
    queries: list[AssetQuery] = field(default_factory=list)

    async def register(self, req: RegistrationRequest, tenant_id: str) -> Enrolled | Rejected:
        self.registered.append(req)
        self.tenants.append(tenant_id)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    async def change_status(self, asset_id: str, status: AssetStatus, tenant_id: str) -> None:
        raise TransitionNotAllowed(f"{asset_id} is unenrolled: register it again")

    async def asset(self, asset_id: str, tenant_id: str) -> None:
        self.tenants.append(tenant_id)

    async def assets(self, query: AssetQuery, tenant_id: str) -> AssetPage:
        self.queries.append(query)
        self.tenants.append(tenant_id)
        return AssetPage(items=[], next_cursor=None)

    async def resource(self, resource_id: str, tenant_id: str) -> None:
        raise NoRulesInForce("no delivery year covers 2031-06-01")


async def no_keys(token: str) -> None:
    return None


# Keys not required: requests without one act for the default tenant (tests/unit/onboarding/
# test_api_keys.py checks the keys themselves).
OPEN = Authenticator(no_keys, required=False)


@pytest.fixture
def fake() -> FakeOnboarding:
    return FakeOnboarding()


@pytest.fixture
async def api(fake: FakeOnboarding) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(cast(Onboarding, fake), OPEN)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_a_rule_violation_is_a_problem_listing_the_violations(
    api: httpx.AsyncClient, fake: FakeOnboarding
) -> None:
    fake.outcome = Rejected(
        telemetry_validated=False,
        asset_id="BTM-00291",
        violations=[
            Violation(rule="telemetry_interval", found=15, expected="one of [1, 5] minutes")
        ],
    )
    answer = await api.post("/v1/assets/register", json=SEED_REGISTRATION)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.json() == {
        "type": "urn:nexwatt:problem:iso-rules-broken",
        "title": "The asset breaks the ISO's rules",
        "status": 422,
        "detail": "telemetry_interval: one of [1, 5] minutes",
        "instance": "/v1/assets/register",
        "asset_id": "BTM-00291",
        "telemetry_validated": False,
        "iso_compliant": False,
        "violations": [
            {"rule": "telemetry_interval", "found": 15, "expected": "one of [1, 5] minutes"}
        ],
    }


async def test_no_rules_in_force_is_a_503_and_a_refused_transition_a_409(
    api: httpx.AsyncClient,
) -> None:
    no_rules = await api.get("/v1/resources/NXW-PJM-0042")
    assert (no_rules.status_code, no_rules.headers["content-type"]) == (503, PROBLEM_JSON)
    assert no_rules.json()["detail"] == "no delivery year covers 2031-06-01"
    refused = await api.post("/v1/assets/BTM-1/suspend")
    assert refused.status_code == 409
    assert refused.json() == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "BTM-1 is unenrolled: register it again",
        "instance": "/v1/assets/BTM-1/suspend",
    }


async def test_a_malformed_id_in_the_path_is_a_422_naming_it(api: httpx.AsyncClient) -> None:
    # A NUL would reach PostgreSQL, which can't store it in text.
    for answer in [
        await api.get("/v1/assets/BTM%0001"),
        await api.post("/v1/assets/BTM%0001/unenroll"),
        await api.get("/v1/resources/" + "R" * 65),
    ]:
        assert answer.status_code == 422
        (error,) = answer.json()["errors"]
        assert error["field"] in {"path.asset_id", "path.resource_id"}


async def test_the_body_limit_is_a_mebibyte_by_default(
    api: httpx.AsyncClient, fake: FakeOnboarding
) -> None:
    assert MAX_BODY_BYTES == 1_048_576
    # Leading blanks are stripped: the padded request is the seed's, just longer.
    padded = {**SEED_REGISTRATION, "inverter": " " * (MAX_BODY_BYTES - 300) + "SolarEdge SE7600"}
    assert (await api.post("/v1/assets/register", json=padded)).status_code == 200
    over = {**SEED_REGISTRATION, "inverter": " " * MAX_BODY_BYTES + "SolarEdge SE7600"}
    assert (await api.post("/v1/assets/register", json=over)).status_code == 413
    assert len(fake.registered) == 1


def _operations(app_spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": operation
        for path, operations in app_spec["paths"].items()
        for method, operation in operations.items()
    }


def test_every_route_has_an_operation_id_tags_and_its_problems_declared() -> None:
    spec = create_app(cast(Onboarding, FakeOnboarding()), OPEN).openapi()
    declared = {
        name: (op["operationId"], op["tags"], sorted(op["responses"]))
        for name, op in _operations(spec).items()
    }
    assert declared == {
        "POST /v1/assets/register": (
            "registerAsset",
            ["assets"],
            ["200", "400", "401", "403", "409", "413", "415", "422", "500", "503"],
        ),
        "PUT /v1/assets/{asset_id}": (
            "putAsset",
            ["assets"],
            ["200", "201", "400", "401", "403", "409", "413", "415", "422", "500", "503"],
        ),
        "GET /v1/assets": ("listAssets", ["assets"], ["200", "401", "403", "422", "500", "503"]),
        "GET /v1/assets/{asset_id}": (
            "getAsset",
            ["assets"],
            ["200", "401", "403", "404", "422", "500", "503"],
        ),
        "POST /v1/assets/{asset_id}/unenroll": (
            "unenrollAsset",
            ["assets"],
            ["200", "401", "403", "404", "413", "422", "500", "503"],
        ),
        "POST /v1/assets/{asset_id}/suspend": (
            "suspendAsset",
            ["assets"],
            ["200", "401", "403", "404", "409", "413", "422", "500", "503"],
        ),
        "GET /v1/resources/{resource_id}": (
            "getResource",
            ["resources"],
            ["200", "401", "403", "404", "422", "500", "503"],
        ),
    }
    for name, operation in _operations(spec).items():
        for status, response in operation["responses"].items():
            media_types = set(response["content"])
            expected = {"application/json"} if status in ("200", "201") else {PROBLEM_JSON}
            assert media_types == expected, (name, status)
    register_422 = spec["paths"]["/v1/assets/register"]["post"]["responses"]["422"]
    assert register_422["content"][PROBLEM_JSON]["schema"]["anyOf"] == [
        {"$ref": "#/components/schemas/InvalidRequest"},
        {"$ref": "#/components/schemas/RulesBroken"},
    ]
    put = spec["paths"]["/v1/assets/{asset_id}"]["put"]["responses"]
    assert (
        put["422"]["content"][PROBLEM_JSON]["schema"]["anyOf"]
        == (register_422["content"][PROBLEM_JSON]["schema"]["anyOf"])
    )
    assert set(put["201"]["headers"]) == {"Location"}
    # FastAPI's own 422 body (which echoes the input) is nowhere in the document.
    assert "HTTPValidationError" not in spec["components"]["schemas"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"inverter": "\xff"}',  # not UTF-8
        b'{"telemetry_interval": 1' + b"0" * 5000 + b"}",  # beyond Python's int parsing limit
        b"[" * 100_000 + b"]" * 100_000,  # nested deeper than the parser's recursion
    ],
)
async def test_an_unparseable_body_is_a_400_problem(api: httpx.AsyncClient, body: bytes) -> None:
    answer = await api.post(
        "/v1/assets/register", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.json()["detail"] == "There was an error parsing the body"


SEED_WITHOUT_ID = {k: v for k, v in SEED_REGISTRATION.items() if k != "asset_id"}


@pytest.mark.parametrize(
    ("outcome", "status", "location"),
    [
        (FirstEnrolled(asset_id="BTM-7", resource_id="NXW-PJM-0042", version=1), 201, True),
        (Enrolled(asset_id="BTM-7", resource_id="NXW-PJM-0042", version=2), 200, False),
    ],
)
async def test_put_registers_the_paths_asset_201_with_location_only_when_new(
    api: httpx.AsyncClient, fake: FakeOnboarding, outcome: Enrolled, status: int, location: bool
) -> None:
    fake.outcome = outcome
    answer = await api.put("/v1/assets/BTM-7", json=SEED_WITHOUT_ID)
    assert answer.status_code == status, answer.text
    assert answer.json() == {
        "status": "enrolled",
        "telemetry_validated": True,
        "iso_compliant": True,
        "asset_id": "BTM-7",
        "resource_id": "NXW-PJM-0042",
        "version": outcome.version,
    }
    assert answer.headers.get("location") == ("/v1/assets/BTM-7" if location else None)
    # The handler got the registration the POST route would have built, id from the path.
    assert fake.registered == [
        RegistrationRequest.model_validate({**SEED_WITHOUT_ID, "asset_id": "BTM-7"})
    ]


async def test_put_takes_the_paths_id_in_the_body_and_refuses_another(
    api: httpx.AsyncClient, fake: FakeOnboarding
) -> None:
    same = await api.put("/v1/assets/BTM-7", json={**SEED_WITHOUT_ID, "asset_id": "BTM-7"})
    assert same.status_code == 200, same.text
    other = await api.put("/v1/assets/BTM-7", json={**SEED_WITHOUT_ID, "asset_id": "BTM-8"})
    assert other.status_code == 422
    assert other.headers["content-type"] == PROBLEM_JSON
    assert [e["field"] for e in other.json()["errors"]] == ["body.asset_id"]
    assert [r.asset_id for r in fake.registered] == ["BTM-7"]  # the refused one never got there


async def test_put_answers_a_rule_violation_as_register_does(
    api: httpx.AsyncClient, fake: FakeOnboarding
) -> None:
    fake.outcome = Rejected(
        telemetry_validated=False,
        asset_id="BTM-7",
        violations=[Violation(rule="telemetry_interval", found=15, expected="<= 5 min")],
    )
    answer = await api.put("/v1/assets/BTM-7", json=SEED_WITHOUT_ID)
    assert answer.status_code == 422
    assert answer.json()["instance"] == "/v1/assets/BTM-7"
    assert [v["rule"] for v in answer.json()["violations"]] == ["telemetry_interval"]


async def test_the_list_passes_filters_and_page_and_refuses_a_bad_one(
    api: httpx.AsyncClient, fake: FakeOnboarding
) -> None:
    cursor = encode_cursor("BTM-0100")
    answer = await api.get(
        "/v1/assets", params={"iso_zone": "PJM-PEPCO", "status": "suspended", "cursor": cursor}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"items": [], "next_cursor": None}
    [query] = fake.queries
    assert query.filters() == {"iso_zone": "PJM-PEPCO", "status": "suspended"}
    assert (query.after(), query.limit) == ("BTM-0100", 100)
    for bad, field_name in [
        ({"cursor": "not base64!"}, "query.cursor"),
        ({"cursor": encode_cursor("no spaces in ids")}, "query.cursor"),
        ({"limit": "0"}, "query.limit"),
        ({"limit": "501"}, "query.limit"),
        ({"status": "gone"}, "query.status"),
        ({"cohort": "res\x00idential"}, "query.cohort"),
        ({"zone": "PJM-PEPCO"}, "query.zone"),  # a misspelt filter is not silently ignored
    ]:
        refused = await api.get("/v1/assets", params=bad)
        assert refused.status_code == 422, bad
        assert refused.headers["content-type"] == PROBLEM_JSON
        assert [e["field"] for e in refused.json()["errors"]] == [field_name], bad
    assert len(fake.queries) == 1
