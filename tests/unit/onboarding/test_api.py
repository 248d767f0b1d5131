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
from nexwatt_onboarding.models import Enrolled, RegistrationRequest, Rejected, Violation
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
        "GET /v1/assets/{asset_id}": (
            "getAsset",
            ["assets"],
            ["200", "401", "403", "404", "422", "500"],
        ),
        "POST /v1/assets/{asset_id}/unenroll": (
            "unenrollAsset",
            ["assets"],
            ["200", "401", "403", "404", "413", "422", "500"],
        ),
        "POST /v1/assets/{asset_id}/suspend": (
            "suspendAsset",
            ["assets"],
            ["200", "401", "403", "404", "409", "413", "422", "500"],
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
            expected = {"application/json"} if status == "200" else {PROBLEM_JSON}
            assert media_types == expected, (name, status)
    register_422 = spec["paths"]["/v1/assets/register"]["post"]["responses"]["422"]
    assert register_422["content"][PROBLEM_JSON]["schema"]["anyOf"] == [
        {"$ref": "#/components/schemas/InvalidRequest"},
        {"$ref": "#/components/schemas/RulesBroken"},
    ]
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
