"""The HTTP API's request and response bodies.

The request model refuses what is malformed (wrong types, missing fields, unknown fields, a
number beyond the contracts' bounds, NaN or infinity, a control character in a string);
whether a well-formed asset is acceptable to the ISO is for the rules in `domain.py`, which
answer with named violations instead.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from nexwatt_shared.contracts import (
    MAX_ASSET_KW,
    MAX_ASSET_KWH,
    AssetId,
    AssetRegistered,
    AssetStatus,
    AssetType,
    BatteryRatings,
    GatewayId,
    Name,
    ResourceId,
)
from nexwatt_shared.problems import Problem


class AssetBody(BatteryRatings):
    """One asset to enrol, the asset id optional (`PUT /v1/assets/{asset_id}` takes it from the
    path; one in the body must equal it). Registering is a full replacement of the asset's
    record: a field left out takes its default again. Impossible battery ratings (power above
    10 x the energy, a round trip above 1, a reserve of 100 %) are refused with the field named."""

    # No NaN or infinity in any number, the inherited ratings' included.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)

    asset_id: AssetId | None = None
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

    def for_asset(self, asset_id: str) -> RegistrationRequest:
        """This body as the registration of `asset_id` (the caller checks that an asset id in
        the body is the same)."""
        return RegistrationRequest.model_validate(
            {**self.model_dump(exclude_unset=True), "asset_id": asset_id}
        )


class RegistrationRequest(AssetBody):
    """One asset to enrol, named by its asset id (`POST /v1/assets/register`); as `AssetBody`
    otherwise."""

    asset_id: AssetId


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


class FirstEnrolled(Enrolled):
    """`Enrolled` for an asset the store did not have before (`PUT` answers it with 201)."""


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


_ASSET_ID: TypeAdapter[str] = TypeAdapter(AssetId)


def encode_cursor(asset_id: str) -> str:
    """The cursor of the page after `asset_id`: the id in URL-safe base64, unpadded."""
    return base64.urlsafe_b64encode(asset_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The asset id a cursor is after; ValueError when it is not one `encode_cursor` makes."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return _ASSET_ID.validate_python(
            base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        )
    except (binascii.Error, UnicodeDecodeError, ValidationError):
        raise ValueError("not a cursor this API gave (take `next_cursor` as it is)") from None


class AssetQuery(BaseModel):
    """`GET /v1/assets`: filters (each an exact match; all given must hold) and the page."""

    model_config = ConfigDict(extra="forbid")

    resource_id: ResourceId | None = None
    iso_zone: Annotated[Name, Field(max_length=32)] | None = None
    status: AssetStatus | None = None
    cohort: Annotated[Name, Field(max_length=64)] | None = None
    subscriber_id: Annotated[Name, Field(max_length=64)] | None = None
    limit: int = Field(100, ge=1, le=500, description="Assets per page at most")
    # An asset id is at most 64 bytes: its base64 at most 88 characters.
    cursor: str | None = Field(
        None, max_length=88, description="`next_cursor` of the previous page; none: the first"
    )

    @field_validator("cursor")
    @classmethod
    def _a_cursor(cls, cursor: str | None) -> str | None:
        if cursor is not None:
            decode_cursor(cursor)
        return cursor

    def filters(self) -> dict[str, str]:
        """The filters given, by column."""
        given = self.model_dump(exclude={"limit", "cursor"}, exclude_none=True, mode="json")
        return {column: str(value) for column, value in given.items()}

    def after(self) -> str | None:
        """The asset id the page starts after; None for the first page."""
        return None if self.cursor is None else decode_cursor(self.cursor)


class AssetPage(BaseModel):
    """A page of the tenant's assets in asset id order."""

    items: list[AssetRegistered]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null: this is the last page"
    )
