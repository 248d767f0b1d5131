"""Handling the API's commands: each checks the rules, then writes the asset's record and its
outbox row in one transaction. Every command acts for one tenant, and sees only its assets."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import structlog
from prometheus_client import Counter

from nexwatt_onboarding import domain, store
from nexwatt_onboarding.models import (
    AssetPage,
    AssetQuery,
    Enrolled,
    FirstEnrolled,
    RegistrationRequest,
    Rejected,
    ResourceSummary,
    encode_cursor,
)
from nexwatt_onboarding.rules import DeliveryYearRules, IsoRules
from nexwatt_onboarding.store import AssetIdTaken
from nexwatt_shared.contracts import AssetRegistered, AssetStatus
from nexwatt_shared.envelope import utcnow

log = structlog.get_logger()
REGISTRATIONS = Counter(
    "nexwatt_onboarding_registrations_total",
    "Registration requests by outcome: enrolled (new), updated, unchanged, rejected",
    ["outcome"],
)


# A meter held by another tenant's asset is named so, without that asset's id.
ANOTHER_TENANTS_ASSET = "an asset of another tenant"


class Onboarding:
    def __init__(self, pool: asyncpg.Pool, rules: IsoRules, on_change: Callable[[], None]) -> None:
        self.pool = pool
        self.rules = rules
        self.on_change = on_change  # told after every committed change (wakes the relay)

    def rules_now(self) -> DeliveryYearRules:
        return self.rules.in_force(utcnow().date())

    async def register(self, req: RegistrationRequest, tenant_id: str) -> Enrolled | Rejected:
        """`FirstEnrolled` when the asset is new. Raises AssetIdTaken when another tenant has
        the asset id."""
        try:
            return await self._register(req, tenant_id)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != store.METER_IN_USE_INDEX:
                raise
            # A writer that skipped the meter lock took the meter between our check and our
            # write. The index refuses us only once that write has committed, so checking again
            # sees it and answers with the usual violation (or enrols, had the meter been freed).
            log.warning("meter taken outside the meter lock; checking again", asset_id=req.asset_id)
            return await self._register(req, tenant_id)

    async def _register(self, req: RegistrationRequest, tenant_id: str) -> Enrolled | Rejected:
        rules = self.rules_now()
        resource_id = domain.resolve_resource_id(req, rules)
        with structlog.contextvars.bound_contextvars(asset_id=req.asset_id):
            async with self.pool.acquire() as conn, conn.transaction():
                await store.lock_asset(conn, req.asset_id)
                if await store.asset_owner(conn, req.asset_id) not in (None, tenant_id):
                    raise AssetIdTaken(req.asset_id)
                resource_zone = None
                if resource_id is not None and rules.zone_of_resource(resource_id) is None:
                    # A resource the rules don't list belongs to the zone of its assets: lock it
                    # so two zones can't both claim it at once.
                    await store.lock_resource(conn, resource_id)
                    resource_zone = await store.zone_in_use(conn, resource_id, req.asset_id)
                # Held until commit, so two assets can't both find the meter free (on any replica).
                await store.lock_meter(conn, req.meter_id)
                holder = await store.meter_holder(conn, req.meter_id)
                meter_holder = (
                    None
                    if holder is None
                    else holder["asset_id"]
                    if holder["tenant_id"] == tenant_id
                    else ANOTHER_TENANTS_ASSET
                )
                assessment = domain.assess(req, rules, resource_zone, meter_holder)
                if not assessment.iso_compliant:
                    REGISTRATIONS.labels("rejected").inc()
                    rules_broken = [v.rule for v in assessment.violations]
                    log.info("registration rejected", rules=rules_broken)
                    return Rejected(
                        telemetry_validated=assessment.telemetry_validated,
                        asset_id=req.asset_id,
                        violations=assessment.violations,
                    )
                current = await store.get_asset(conn, req.asset_id)
                record, changed = domain.enrolment(req, rules, current, utcnow())
                if changed:
                    await store.save_asset(conn, record, tenant_id)
            if changed:
                self.on_change()
                log.info("asset enrolled", version=record.version, resource_id=record.resource_id)
            outcome = "enrolled" if current is None else "updated" if changed else "unchanged"
            REGISTRATIONS.labels(outcome).inc()
            answer = FirstEnrolled if current is None else Enrolled
            return answer(
                asset_id=record.asset_id, resource_id=record.resource_id, version=record.version
            )

    async def change_status(
        self, asset_id: str, status: AssetStatus, tenant_id: str
    ) -> AssetRegistered | None:
        """The asset's record after the change (unchanged when it already had `status`); None
        when the tenant has no such asset. Raises domain.TransitionNotAllowed."""
        with structlog.contextvars.bound_contextvars(asset_id=asset_id):
            async with self.pool.acquire() as conn, conn.transaction():
                await store.lock_asset(conn, asset_id)
                if await store.asset_owner(conn, asset_id) != tenant_id:
                    return None
                current = await store.get_asset(conn, asset_id)
                assert current is not None  # it has an owner, and is locked
                record, changed = domain.status_change(current, status, utcnow())
                if changed:
                    await store.save_asset(conn, record, tenant_id)
            if changed:
                self.on_change()
                log.info("asset status changed", status=status.value, version=record.version)
            return record

    async def asset(self, asset_id: str, tenant_id: str) -> AssetRegistered | None:
        """The asset's record; None when the tenant has no such asset."""
        if await store.asset_owner(self.pool, asset_id) != tenant_id:
            return None
        return await store.get_asset(self.pool, asset_id)

    async def assets(self, query: AssetQuery, tenant_id: str) -> AssetPage:
        """A page of the tenant's assets matching the query's filters."""
        # One more than the page: whether it exists says if there is a next page.
        found = await store.list_assets(
            self.pool, tenant_id, query.filters(), query.after(), query.limit + 1
        )
        items = found[: query.limit]
        next_cursor = encode_cursor(items[-1].asset_id) if len(found) > query.limit else None
        return AssetPage(items=items, next_cursor=next_cursor)

    async def resource(self, resource_id: str, tenant_id: str) -> ResourceSummary | None:
        """The resource's aggregate over the tenant's assets; None when neither the rules nor
        any of the tenant's assets know it."""
        rules = self.rules_now()
        totals = await store.resource_totals(self.pool, resource_id, tenant_id)
        zone = rules.zone_of_resource(resource_id) or totals["iso_zone"]
        if zone is None:
            return None
        return domain.resource_summary(
            resource_id,
            rules,
            zone,
            totals["assets_enrolled"],
            totals["capacity_kw"],
            totals["storage_kwh"],
        )
