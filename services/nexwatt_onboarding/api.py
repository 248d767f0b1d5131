"""The HTTP API (OpenAPI at /openapi.json, Swagger UI at /docs)."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from nexwatt_onboarding.domain import TransitionNotAllowed
from nexwatt_onboarding.handlers import Onboarding
from nexwatt_onboarding.models import Enrolled, RegistrationRequest, Rejected, ResourceSummary
from nexwatt_onboarding.rules import NoRulesInForce
from nexwatt_shared.contracts import AssetRegistered, AssetStatus

_NOT_FOUND = {404: {"description": "Unknown asset"}}


def create_app(onboarding: Onboarding) -> FastAPI:
    app = FastAPI(
        title="Nexwatt onboarding",
        description="Registers subscribers' solar and battery assets, checks them against the "
        "ISO's rules and publishes each asset's record to `asset.registered`.",
        version="1",
    )

    @app.exception_handler(NoRulesInForce)
    async def no_rules(_request: Request, exc: NoRulesInForce) -> JSONResponse:
        # The operator's registry is out of date: not the caller's fault, and retryable.
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.post(
        "/v1/assets/register",
        response_model=Enrolled,
        responses={
            422: {
                "model": Rejected,
                "description": "The asset breaks ISO rules or its meter is another asset's "
                "(`violations`), or the request is malformed (FastAPI's `detail` list, naming "
                "each field)",
            }
        },
    )
    async def register(request: RegistrationRequest) -> Enrolled | JSONResponse:
        """Enrol an asset, or update its record. Registering the same data again changes
        nothing; different data makes a new version. Nothing is stored when a rule fails.
        A meter is enrolled under one asset at a time: a `meter_id` held by another asset that
        is not unenrolled (a suspended one keeps its meter) is a `meter_id` violation."""
        outcome = await onboarding.register(request)
        if isinstance(outcome, Rejected):
            return JSONResponse(outcome.model_dump(mode="json"), status_code=422)
        return outcome

    @app.get("/v1/assets/{asset_id}", responses=_NOT_FOUND)
    async def get_asset(asset_id: str) -> AssetRegistered:
        record = await onboarding.asset(asset_id)
        if record is None:
            raise HTTPException(404, f"asset {asset_id!r} is not registered")
        return record

    async def change_status(asset_id: str, status: AssetStatus) -> AssetRegistered:
        try:
            record = await onboarding.change_status(asset_id, status)
        except TransitionNotAllowed as exc:
            raise HTTPException(409, str(exc)) from exc
        if record is None:
            raise HTTPException(404, f"asset {asset_id!r} is not registered")
        return record

    @app.post("/v1/assets/{asset_id}/unenroll", responses=_NOT_FOUND)
    async def unenroll(asset_id: str) -> AssetRegistered:
        """Take the asset out of its resource for good (register it again to come back)."""
        return await change_status(asset_id, AssetStatus.UNENROLLED)

    @app.post(
        "/v1/assets/{asset_id}/suspend",
        responses={**_NOT_FOUND, 409: {"description": "The asset is unenrolled"}},
    )
    async def suspend(asset_id: str) -> AssetRegistered:
        """Keep the asset out of dispatch for now (register it again to resume)."""
        return await change_status(asset_id, AssetStatus.SUSPENDED)

    @app.get("/v1/resources/{resource_id}", responses={404: {"description": "Unknown resource"}})
    async def get_resource(resource_id: str) -> ResourceSummary:
        """The resource's enrolled assets in total, and whether they reach the ISO's minimum
        aggregation size."""
        summary = await onboarding.resource(resource_id)
        if summary is None:
            raise HTTPException(404, f"resource {resource_id!r} is unknown")
        return summary

    return app
