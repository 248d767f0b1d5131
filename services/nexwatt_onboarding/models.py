"""The HTTP API's request and response bodies.

The request model refuses what is malformed (wrong types, missing fields, negative energy,
unknown fields); whether a well-formed asset is acceptable to the ISO is for the rules in
`domain.py`, which answer with named violations instead.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nexwatt_shared.contracts import AssetId, AssetType, BatteryRatings, GatewayId, ResourceId


class RegistrationRequest(BatteryRatings):
    """One asset to enrol. Registering is a full replacement of the asset's record: a field left
    out takes its default again. Impossible battery ratings (power above 10 x the energy, a
    round trip above 1, a reserve of 100 %) are refused with the field named."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    asset_id: AssetId
    type: AssetType
    inverter: str = Field(min_length=1, max_length=128, examples=["SolarEdge SE7600"])
    capacity_kw: float = Field(
        ge=0,
        allow_inf_nan=False,
        description="AC rating of the inverter the battery discharges through [kW]",
    )
    storage_kwh: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="Usable battery energy [kWh]"
    )
    meter_id: str = Field(min_length=1, max_length=64)
    iso_zone: str = Field(min_length=1, max_length=32, examples=["PJM-PEPCO"])
    telemetry_interval: int = Field(gt=0, description="Telemetry interval [minutes]")
    subscriber_id: str | None = Field(None, min_length=1, max_length=64)
    gateway_id: GatewayId | None = Field(
        None,
        description="The gateway or vendor-cloud connector that commands the asset; default:"
        " a gateway of its own",
    )
    cohort: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="Default: residential below 100 kW of capacity, commercial from 100 kW",
    )
    backup_reserve_pct: float = Field(
        20.0, ge=0, lt=100, description="State of charge kept for the household [%]"
    )
    resource_id: ResourceId | None = Field(
        None,
        description="The ISO resource to aggregate into; default: the zone's default resource. "
        "Allowed: a resource the rules list for the zone, or one they don't list at all that "
        "starts with NXW-<ISO>- and is not already used in another zone.",
    )

    @property
    def has_pv(self) -> bool:
        return self.type is not AssetType.STORAGE


class Violation(BaseModel):
    rule: str
    found: int | float | str | None
    expected: str


class Enrolled(BaseModel):
    status: Literal["enrolled"] = "enrolled"
    telemetry_validated: Literal[True] = True
    iso_compliant: Literal[True] = True
    asset_id: str
    resource_id: str
    version: int


class Rejected(BaseModel):
    status: Literal["rejected"] = "rejected"
    telemetry_validated: bool
    iso_compliant: Literal[False] = False
    asset_id: str
    violations: list[Violation]


class ResourceSummary(BaseModel):
    """The enrolled assets aggregated into one ISO resource (suspended and unenrolled ones are
    not counted)."""

    resource_id: str
    iso: str
    iso_zone: str | None
    assets_enrolled: int
    capacity_kw: float
    storage_kwh: float
    min_aggregation_kw: float
    meets_min_aggregation: bool
