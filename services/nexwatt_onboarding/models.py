"""The HTTP API's request and response bodies.

The request model refuses what is malformed (wrong types, missing fields, unknown fields, a
number beyond the contracts' bounds, NaN or infinity, a control character in a string);
whether a well-formed asset is acceptable to the ISO is for the rules in `domain.py`, which
answer with named violations instead.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from nexwatt_shared.contracts import (
    MAX_ASSET_KW,
    MAX_ASSET_KWH,
    AssetId,
    AssetType,
    BatteryRatings,
    GatewayId,
    Name,
    ResourceId,
)
from nexwatt_shared.problems import Problem


class RegistrationRequest(BatteryRatings):
    """One asset to enrol. Registering is a full replacement of the asset's record: a field left
    out takes its default again. Impossible battery ratings (power above 10 x the energy, a
    round trip above 1, a reserve of 100 %) are refused with the field named."""

    # No NaN or infinity in any number, the inherited ratings' included.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)

    asset_id: AssetId
    type: AssetType
    # `Name`: no control characters (PostgreSQL's text can't hold a NUL), limited further here.
    inverter: Annotated[Name, Field(max_length=128, examples=["SolarEdge SE7600"])]
    capacity_kw: float = Field(
        ge=0,
        le=MAX_ASSET_KW,
        description="AC rating of the inverter the battery discharges through [kW]",
    )
    storage_kwh: float = Field(
        0.0, ge=0, le=MAX_ASSET_KWH, description="Usable battery energy [kWh]"
    )
    meter_id: Annotated[Name, Field(max_length=64)]
    iso_zone: Annotated[Name, Field(max_length=32, examples=["PJM-PEPCO"])]
    telemetry_interval: int = Field(
        gt=0, le=1440, description="Telemetry interval [minutes], at most a day"
    )
    subscriber_id: Annotated[Name, Field(max_length=64)] | None = None
    gateway_id: GatewayId | None = Field(
        None,
        description="The gateway or vendor-cloud connector that commands the asset; default:"
        " a gateway of its own",
    )
    cohort: Annotated[Name, Field(max_length=64)] | None = Field(
        None,
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


class RulesBroken(Problem):
    """A `Rejected` registration as a problem (type `urn:nexwatt:problem:iso-rules-broken`):
    the asset breaks the ISO's rules, or its meter is another asset's; `violations` lists each."""

    asset_id: str
    telemetry_validated: bool
    iso_compliant: Literal[False] = False
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
