"""Pure rules of onboarding: checking an asset against the ISO's rules, and the records that
registration and status changes produce."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from nexwatt_onboarding.models import RegistrationRequest, ResourceSummary, Violation
from nexwatt_onboarding.rules import DeliveryYearRules
from nexwatt_shared.contracts import AssetRegistered, AssetStatus, AssetType, BatteryRatings

# Rules whose failure means Nexwatt could not collect the asset's telemetry as the ISO needs it.
TELEMETRY_RULES = frozenset({"telemetry_interval", "inverter_vendor"})
COMMERCIAL_FROM_KW = 100.0
STORAGE_TYPES = (AssetType.STORAGE, AssetType.SOLAR_STORAGE)


class TransitionNotAllowed(ValueError):
    """The asset's current status does not allow the change asked for."""


@dataclass(frozen=True)
class Assessment:
    violations: list[Violation]

    @property
    def iso_compliant(self) -> bool:
        return not self.violations

    @property
    def telemetry_validated(self) -> bool:
        return not any(v.rule in TELEMETRY_RULES for v in self.violations)


def vendor_of(inverter: str) -> str:
    """The inverter's make, as the vendor cloud is named: "SolarEdge SE7600" -> "solaredge"."""
    make = inverter.split(maxsplit=1)[0] if inverter.strip() else ""
    return "".join(ch for ch in make.lower() if ch.isalnum())


def default_cohort(capacity_kw: float) -> str:
    return "residential" if capacity_kw < COMMERCIAL_FROM_KW else "commercial"


def resolve_resource_id(req: RegistrationRequest, rules: DeliveryYearRules) -> str | None:
    """The explicit resource id, else the zone's default; None when the zone is unknown."""
    if req.resource_id is not None:
        return req.resource_id
    zone = rules.zones.get(req.iso_zone)
    return zone.default_resource_id if zone else None


def assess(
    req: RegistrationRequest,
    rules: DeliveryYearRules,
    resource_zone: str | None = None,
    meter_holder: str | None = None,
) -> Assessment:
    """Every rule the asset breaks. `resource_zone` is the zone where other assets already use
    the requested resource id, when the rules don't list that id (None: not used yet);
    `meter_holder` is the asset that is not unenrolled and holds the requested meter (None: the
    meter is free)."""
    found: list[Violation] = []
    if req.iso_zone not in rules.zones:
        found.append(_violation("iso_zone", req.iso_zone, f"one of {_list(rules.zones)}"))
    if req.telemetry_interval not in rules.telemetry_intervals_min:
        expected = f"one of {_list(rules.telemetry_intervals_min)} minutes"
        found.append(_violation("telemetry_interval", req.telemetry_interval, expected))
    vendor = vendor_of(req.inverter)
    if vendor not in rules.inverter_vendors:
        expected = f"an inverter made by one of {_list(rules.inverter_vendors)}"
        found.append(_violation("inverter_vendor", vendor, expected))
    if req.capacity_kw <= 0:
        found.append(_violation("capacity_kw", req.capacity_kw, "> 0 kW"))
    if req.type in STORAGE_TYPES and req.storage_kwh <= 0:
        expected = f"> 0 kWh for a {req.type} asset"
        found.append(_violation("storage_kwh", req.storage_kwh, expected))
    if req.type == AssetType.SOLAR and req.storage_kwh > 0:
        expected = "0 kWh for a solar asset (register an asset with a battery as solar_storage)"
        found.append(_violation("storage_kwh", req.storage_kwh, expected))
    if req.resource_id is not None and req.iso_zone in rules.zones:
        expected = _resource_expectation(req.resource_id, req.iso_zone, rules, resource_zone)
        if expected is not None:
            found.append(_violation("resource_id", req.resource_id, expected))
    meter = meter_violation(req, meter_holder)
    if meter is not None:
        found.append(meter)
    return Assessment(found)


def meter_violation(req: RegistrationRequest, meter_holder: str | None) -> Violation | None:
    """The violation when another asset holds the requested meter, else None: settlement and
    telemetry would count a meter enrolled under two assets twice. The asset's own meter is
    fine (re-registering, or coming back after a suspension)."""
    if meter_holder is None or meter_holder == req.asset_id:
        return None
    expected = f"a meter not enrolled under another asset ({meter_holder} holds it)"
    return _violation("meter_id", req.meter_id, expected)


def _resource_expectation(
    resource_id: str, zone: str, rules: DeliveryYearRules, resource_zone: str | None
) -> str | None:
    """What a valid resource id would be, or None when `resource_id` is fine for `zone`."""
    listed_zone = rules.zone_of_resource(resource_id)
    if listed_zone == zone:
        return None
    own = f"one of {_list(rules.zones[zone].resource_ids)}"
    new = f"a new id starting with {rules.resource_prefix}"
    if not resource_id.startswith(rules.resource_prefix):
        return f"{own}, or {new}"
    if listed_zone is not None:
        return f"{own}, or {new} ({resource_id} is a resource of {listed_zone})"
    if resource_zone is not None and resource_zone != zone:
        return f"{own}, or {new} ({resource_id} already aggregates assets in {resource_zone})"
    return None


def enrolment(
    req: RegistrationRequest,
    rules: DeliveryYearRules,
    current: AssetRegistered | None,
    now: datetime,
) -> tuple[AssetRegistered, bool]:
    """The asset's record after a request that passed `assess`, and whether it changed: a
    request that says what the current record says changes nothing (idempotent)."""
    resource_id = resolve_resource_id(req, rules)
    if resource_id is None:
        raise ValueError(f"zone {req.iso_zone!r} is not in the rules; assess the request first")
    record = AssetRegistered(
        asset_id=req.asset_id,
        status=AssetStatus.ENROLLED,
        asset_type=req.type,
        inverter=req.inverter,
        vendor=vendor_of(req.inverter),
        capacity_kw=req.capacity_kw,
        storage_kwh=req.storage_kwh,
        backup_reserve_pct=req.backup_reserve_pct,
        meter_id=req.meter_id,
        iso=rules.iso,
        iso_zone=req.iso_zone,
        resource_id=resource_id,
        subscriber_id=req.subscriber_id,
        gateway_id=req.gateway_id,
        cohort=req.cohort or default_cohort(req.capacity_kw),
        telemetry_interval_s=req.telemetry_interval * 60,
        **req.model_dump(include=set(BatteryRatings.model_fields)),
        version=current.version + 1 if current else 1,
        updated_at=now,
    )
    if current is not None and _content(current) == _content(record):
        return current, False
    return record, True


def status_change(
    current: AssetRegistered, status: AssetStatus, now: datetime
) -> tuple[AssetRegistered, bool]:
    """The asset's record after moving it to `status`, and whether it changed."""
    if current.status == status:
        return current, False
    if status == AssetStatus.ENROLLED:
        raise TransitionNotAllowed("an asset is enrolled by registering it, which checks the rules")
    if current.status == AssetStatus.UNENROLLED:
        raise TransitionNotAllowed(
            f"asset {current.asset_id} is unenrolled; register it again to enrol it"
        )
    changed = current.model_copy(
        update={"status": status, "version": current.version + 1, "updated_at": now}
    )
    return changed, True


def meets_min_aggregation(capacity_kw: float, rules: DeliveryYearRules) -> bool:
    return capacity_kw >= rules.min_aggregation_kw


def resource_summary(
    resource_id: str,
    rules: DeliveryYearRules,
    zone: str | None,
    assets_enrolled: int,
    capacity_kw: float,
    storage_kwh: float,
) -> ResourceSummary:
    capacity_kw = round(capacity_kw, 3)  # sums of floats: 99.99999999 must not miss 100 kW
    return ResourceSummary(
        resource_id=resource_id,
        iso=rules.iso,
        iso_zone=zone,
        assets_enrolled=assets_enrolled,
        capacity_kw=capacity_kw,
        storage_kwh=round(storage_kwh, 3),
        min_aggregation_kw=rules.min_aggregation_kw,
        meets_min_aggregation=meets_min_aggregation(capacity_kw, rules),
    )


def _content(record: AssetRegistered) -> dict[str, object]:
    return record.model_dump(exclude={"version", "updated_at"})


def _violation(rule: str, found: int | float | str, expected: str) -> Violation:
    return Violation(rule=rule, found=found, expected=expected)


def _list(items: Iterable[object]) -> str:
    return "[" + ", ".join(str(i) for i in items) + "]"
