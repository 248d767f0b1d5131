"""The HTTP API (OpenAPI at /openapi.json, Swagger UI at /docs).

Every error is an RFC 9457 problem (`application/problem+json`, see `nexwatt_shared.problems`);
a registration that breaks the ISO's rules is one too, listing its `violations`.

Every route takes an API key (`Authorization: Bearer <key>` or `X-API-Key`, see
`nexwatt_shared.auth`) and acts for the key's tenant: registering, unenrolling and suspending
need `assets:write`, reading or listing assets `assets:read`, the resource summary `reports:read` or
`assets:read` (it adds up the tenant's own assets, which such a key may read one by one anyway).
Another tenant's asset is answered as unknown (404), never as forbidden, so that ids don't leak;
registering an asset id another tenant has is a 409 that doesn't say whose it is.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError

from nexwatt_onboarding.domain import TransitionNotAllowed
from nexwatt_onboarding.handlers import Onboarding
from nexwatt_onboarding.models import (
    AssetBody,
    AssetPage,
    AssetQuery,
    Enrolled,
    FirstEnrolled,
    RegistrationRequest,
    Rejected,
    ResourceSummary,
    RulesBroken,
)
from nexwatt_onboarding.rules import NoRulesInForce
from nexwatt_onboarding.store import AssetIdTaken
from nexwatt_shared.auth import Authenticator, Caller, Requires, Scope
from nexwatt_shared.contracts import AssetId, AssetRegistered, AssetStatus, ResourceId
from nexwatt_shared.problems import (
    InvalidRequest,
    ProblemResponse,
    install_problems,
    problem,
    problem_response,
    problem_responses,
    require_json,
)

MAX_BODY_BYTES = 1024 * 1024  # a registration is < 2 kB; bulk enrolment will get its own limit
RULES_BROKEN = "urn:nexwatt:problem:iso-rules-broken"

_UNKNOWN_ASSET = {404: "Unknown asset", 422: "The asset id is malformed"}
_TOO_LARGE = {413: "The request body is over the limit"}
_NO_RULES = {503: "No ISO rules are in force today (the operator's registry is out of date)"}
_KEY = {
    401: "No API key, or an unknown or revoked one",
    403: "The API key lacks the scope the operation needs",
    503: "The key store is unavailable: try again (Retry-After)",
}
# Registering: by `POST /v1/assets/register` or `PUT /v1/assets/{asset_id}`.
_REGISTRATION_PROBLEMS = {
    **problem_responses(
        {
            400: "The body can't be parsed (not UTF-8, nested too deep)",
            **_KEY,
            409: "The asset id is not available",
            **_TOO_LARGE,
            415: "The body is not JSON",
            **_NO_RULES,
        }
    ),
    422: {
        "model": InvalidRequest | RulesBroken,
        "description": "The request is malformed (`errors`, naming each field), or the "
        "asset breaks ISO rules or its meter is another asset's (`violations`)",
    },
}
Writer = Annotated[Caller, Depends(Requires(Scope.ASSETS_WRITE))]
Reader = Annotated[Caller, Depends(Requires(Scope.ASSETS_READ))]
Reporter = Annotated[Caller, Depends(Requires(Scope.REPORTS_READ, Scope.ASSETS_READ))]


def create_app(
    onboarding: Onboarding, auth: Authenticator, max_body_bytes: int = MAX_BODY_BYTES
) -> FastAPI:

    app = FastAPI(
        title="Nexwatt onboarding",
        description="Registers subscribers' solar and battery assets, checks them against the "
        "ISO's rules and publishes each asset's record to `asset.registered`. Errors are RFC 9457 "
        "problems (`application/problem+json`).",
        version="1",
    )
    install_problems(app, max_body_bytes)
    app.state.authenticator = auth

    @app.exception_handler(NoRulesInForce)
    async def no_rules(request: Request, exc: NoRulesInForce) -> ProblemResponse:
        # The operator's registry is out of date: not the caller's fault, and retryable.
        return problem(request, 503, str(exc))

    @app.exception_handler(AssetIdTaken)
    async def asset_id_taken(request: Request, exc: AssetIdTaken) -> ProblemResponse:
        return problem(request, 409, "the asset id is not available: choose another")

    @app.post(
        "/v1/assets/register",
        operation_id="registerAsset",
        tags=["assets"],
        response_model=Enrolled,
        dependencies=[Depends(require_json)],
        responses=_REGISTRATION_PROBLEMS,
    )
    async def register(
        request: RegistrationRequest, http_request: Request, caller: Writer
    ) -> Enrolled | ProblemResponse:
        """Enrol an asset, or update its record. Registering the same data again changes
        nothing; different data makes a new version. Nothing is stored when a rule fails.
        A meter is enrolled under one asset at a time: a `meter_id` held by another asset that
        is not unenrolled (a suspended one keeps its meter) is a `meter_id` violation."""
        outcome = await onboarding.register(request, caller.tenant_id)
        if isinstance(outcome, Rejected):
            return problem_response(rules_broken(outcome, http_request.url.path))
        return outcome

    @app.put(
        "/v1/assets/{asset_id}",
        operation_id="putAsset",
        tags=["assets"],
        response_model=Enrolled,
        dependencies=[Depends(require_json)],
        responses={
            200: {"description": "The asset's record is updated, or was already this"},
            201: {
                "model": Enrolled,
                "description": "The asset is new: enrolled",
                "headers": {
                    "Location": {
                        "description": "The asset's URL: `/v1/assets/{asset_id}`",
                        "schema": {"type": "string"},
                    }
                },
            },
            **_REGISTRATION_PROBLEMS,
        },
    )
    async def put_asset(
        asset_id: AssetId,
        body: AssetBody,
        http_request: Request,
        response: Response,
        caller: Writer,
    ) -> Enrolled | ProblemResponse:
        """Register the asset at this URL, as `POST /v1/assets/register` does (the same checks
        and outcomes): the same data again changes nothing (200), different data makes a new
        version (200), a new asset is enrolled (201 with `Location`). An `asset_id` in the body
        must be the path's."""
        if body.asset_id not in (None, asset_id):
            raise RequestValidationError(
                [
                    {
                        "loc": ("body", "asset_id"),
                        "msg": f"must be the path's asset id {asset_id!r} (or left out)",
                        "type": "value_error",
                    }
                ]
            )
        outcome = await onboarding.register(body.for_asset(asset_id), caller.tenant_id)
        if isinstance(outcome, Rejected):
            return problem_response(rules_broken(outcome, http_request.url.path))
        if isinstance(outcome, FirstEnrolled):
            response.status_code = 201
            response.headers["Location"] = f"/v1/assets/{asset_id}"  # ids need no escaping
        return outcome

    @app.get(
        "/v1/assets",
        operation_id="listAssets",
        tags=["assets"],
        responses=problem_responses(
            {422: "A filter, the limit or the cursor is malformed", **_KEY}
        ),
    )
    async def list_assets(query: Annotated[AssetQuery, Query()], caller: Reader) -> AssetPage:
        """The tenant's assets in asset id order, a page at a time: those matching every filter
        given (each an exact match). The next page is asked for with `cursor=<next_cursor>`."""
        return await onboarding.assets(query, caller.tenant_id)

    @app.get(
        "/v1/assets/{asset_id}",
        operation_id="getAsset",
        tags=["assets"],
        responses=problem_responses({**_UNKNOWN_ASSET, **_KEY}),
    )
    async def get_asset(asset_id: AssetId, caller: Reader) -> AssetRegistered:
        record = await onboarding.asset(asset_id, caller.tenant_id)
        if record is None:
            raise HTTPException(404, f"asset {asset_id!r} is not registered")
        return record

    async def change_status(asset_id: str, status: AssetStatus, caller: Caller) -> AssetRegistered:
        try:
            record = await onboarding.change_status(asset_id, status, caller.tenant_id)
        except TransitionNotAllowed as exc:
            raise HTTPException(409, str(exc)) from exc
        if record is None:
            raise HTTPException(404, f"asset {asset_id!r} is not registered")
        return record

    @app.post(
        "/v1/assets/{asset_id}/unenroll",
        operation_id="unenrollAsset",
        tags=["assets"],
        responses=problem_responses({**_UNKNOWN_ASSET, **_KEY, **_TOO_LARGE}),
    )
    async def unenroll(asset_id: AssetId, caller: Writer) -> AssetRegistered:
        """Take the asset out of its resource for good (register it again to come back)."""
        return await change_status(asset_id, AssetStatus.UNENROLLED, caller)

    @app.post(
        "/v1/assets/{asset_id}/suspend",
        operation_id="suspendAsset",
        tags=["assets"],
        responses=problem_responses(
            {**_UNKNOWN_ASSET, **_KEY, **_TOO_LARGE, 409: "The asset is unenrolled"}
        ),
    )
    async def suspend(asset_id: AssetId, caller: Writer) -> AssetRegistered:
        """Keep the asset out of dispatch for now (register it again to resume)."""
        return await change_status(asset_id, AssetStatus.SUSPENDED, caller)

    @app.get(
        "/v1/resources/{resource_id}",
        operation_id="getResource",
        tags=["resources"],
        responses=problem_responses(
            {404: "Unknown resource", 422: "The resource id is malformed", **_KEY, **_NO_RULES}
        ),
    )
    async def get_resource(resource_id: ResourceId, caller: Reporter) -> ResourceSummary:
        """The tenant's enrolled assets in the resource in total, and whether they reach the
        ISO's minimum aggregation size."""
        summary = await onboarding.resource(resource_id, caller.tenant_id)
        if summary is None:
            raise HTTPException(404, f"resource {resource_id!r} is unknown")
        return summary

    return app


def rules_broken(outcome: Rejected, path: str) -> RulesBroken:
    return RulesBroken(
        type=RULES_BROKEN,
        title="The asset breaks the ISO's rules",
        status=422,
        detail="; ".join(f"{v.rule}: {v.expected}" for v in outcome.violations),
        instance=path,
        asset_id=outcome.asset_id,
        telemetry_validated=outcome.telemetry_validated,
        violations=outcome.violations,
    )
