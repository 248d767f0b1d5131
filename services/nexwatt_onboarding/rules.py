"""The ISO rules registry: data files in `rules/` (one per ISO), loaded into typed models.

Rules are data so that a new delivery year, zone or resource is a reviewed edit of a JSON file,
not a code change. Each file holds one entry per delivery year; the entry in force on a date is
the latest one that started on or before it.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

RULES_DIR = Path(__file__).with_name("rules")
PJM_RULES = RULES_DIR / "pjm.json"


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Zone(_Data):
    default_resource_id: str
    resource_ids: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _default_is_listed(self) -> Zone:
        if self.default_resource_id not in self.resource_ids:
            raise ValueError(f"default {self.default_resource_id} is not in resource_ids")
        return self


class DeliveryYearRules(_Data):
    """What an ISO requires of an asset and a resource during one delivery year."""

    iso: str = Field(min_length=1, description="Copied from the file's top level")
    delivery_year: str
    starts_on: date
    telemetry_intervals_min: list[int] = Field(min_length=1)
    min_aggregation_kw: float = Field(gt=0)
    inverter_vendors: list[str] = Field(min_length=1)
    zones: dict[str, Zone] = Field(min_length=1)
    notes: dict[str, str] = {}

    @property
    def resource_prefix(self) -> str:
        """Every resource id of this ISO starts with it, e.g. NXW-PJM-."""
        return f"NXW-{self.iso}-"

    def zone_of_resource(self, resource_id: str) -> str | None:
        """The zone whose resources list `resource_id`, or None when the rules don't list it."""
        return next((z for z, zone in self.zones.items() if resource_id in zone.resource_ids), None)


class IsoRules(_Data):
    iso: str = Field(min_length=1)
    delivery_years: list[DeliveryYearRules] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _years_know_their_iso(cls, data: Any) -> Any:
        # The file names the ISO once; each year carries it so rule checks need only the year.
        if isinstance(data, dict) and isinstance(data.get("delivery_years"), list):
            years = [
                {"iso": data.get("iso"), **y} if isinstance(y, dict) else y
                for y in data["delivery_years"]
            ]
            data = {**data, "delivery_years": years}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> IsoRules:
        starts = [y.starts_on for y in self.delivery_years]
        if starts != sorted(set(starts)):
            raise ValueError("delivery_years must be in order of starts_on, one per date")
        for year in self.delivery_years:
            owners = [r for zone in year.zones.values() for r in zone.resource_ids]
            if len(owners) != len(set(owners)):
                raise ValueError(f"{year.delivery_year}: a resource id is listed in two zones")
            wrong = [r for r in owners if not r.startswith(year.resource_prefix)]
            if wrong:
                raise ValueError(f"{year.delivery_year}: not {year.resource_prefix}…: {wrong}")
        return self

    def in_force(self, on: date) -> DeliveryYearRules:
        """The rules of the latest delivery year that started on or before `on`."""
        started = [y for y in self.delivery_years if y.starts_on <= on]
        if not started:
            raise NoRulesInForce(f"no {self.iso} rules in force on {on}: add its delivery year")
        return started[-1]


class NoRulesInForce(LookupError):
    """The registry has no delivery year covering the date: nothing can be validated."""


def load_rules(path: Path = PJM_RULES) -> IsoRules:
    return IsoRules.model_validate_json(path.read_text())
