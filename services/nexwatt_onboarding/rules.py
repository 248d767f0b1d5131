"""The ISO rules registry: data files in `rules/` (one per ISO), loaded into typed models.

Rules are data so that a new delivery year, zone, resource or tariff change is a reviewed edit
of a JSON file, not a code change. Each file holds entries dated by `starts_on`; the entry in
force on a date is the latest one that started on or before it.

An entry holds two kinds of value:
- the ISO's published facts about DER aggregations (`participation`, `min_aggregation_kw`,
  `der_min_kw`, `der_max_kw`, `telemetry`, `metering`, `nodes`, `utility_review`). Each fact
  that is stated carries a source in `sources` under its dotted path (title, section, URL,
  date); each fact left null carries a note under the same path saying why. A number is never
  filled in without a source;
- Nexwatt's own settings (`telemetry_intervals_min`, `inverter_vendors`, `zones`), each
  explained by a note.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RULES_DIR = Path(__file__).with_name("rules")
PJM_RULES = RULES_DIR / "pjm.json"

# Nexwatt's settings: not ISO facts, so a note (not a source) must say where each comes from.
NEXWATT_SETTINGS = ("telemetry_intervals_min", "inverter_vendors", "zones")


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Source(_Data):
    """Where a published figure was read."""

    title: str = Field(min_length=1)
    section: str | None = Field(default=None, description="Section, paragraph or page")
    url: str = Field(pattern=r"^https?://")
    date: str | None = Field(
        default=None,
        pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$",
        description="The document's date, to the precision it gives; None for an undated page",
    )


class Zone(_Data):
    default_resource_id: str
    resource_ids: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _default_is_listed(self) -> Zone:
        if self.default_resource_id not in self.resource_ids:
            raise ValueError(f"default {self.default_resource_id} is not in resource_ids")
        return self


class ParticipationModel(_Data):
    """One way an aggregation of DERs can take part in the ISO's markets."""

    name: str = Field(min_length=1, description="The ISO's own name for it")
    order_2222: bool = Field(description="True for the ISO's FERC Order No. 2222 model")
    in_force: bool | None = Field(description="Open to registrations when the entry starts")
    effective_on: date | None = Field(description="When it took or takes effect")


class Telemetry(_Data):
    """Real-time telemetry the ISO requires of an aggregation."""

    required: bool | None = Field(
        description="Required of some or all aggregations; `required_at_or_above_kw` says which"
    )
    interval_s: float | None = Field(gt=0, description="Scan/update interval [s]")
    latency_s: float | None = Field(gt=0, description="Largest delay to the ISO [s]")
    required_at_or_above_kw: float | None = Field(
        gt=0, description="Aggregations below this size [kW] need no real-time telemetry"
    )


class Metering(_Data):
    """Revenue metering the ISO requires for settlement."""

    interval_meter_required: bool | None
    per_der: bool | None = Field(description="Each DER metered, not only the aggregation")
    interval_s: float | None = Field(gt=0, description="Meter data interval [s]")


class Nodes(_Data):
    """How far one aggregation may spread over the network."""

    area: Literal["pricing_node", "transmission_node", "load_zone", "multiple_nodes"] | None = (
        Field(description="The widest area one aggregation may span")
    )
    multi_node_max_kw: float | None = Field(
        gt=0, description="Largest aggregation [kW] allowed to span several nodes"
    )


class UtilityReview(_Data):
    """The distribution utility's review of a registration before the ISO accepts it."""

    days: int | None = Field(gt=0)
    day_kind: Literal["calendar", "business"] | None


class DeliveryYearRules(_Data):
    """What an ISO requires of an asset and a resource from `starts_on` until the next entry."""

    iso: str = Field(min_length=1, description="Copied from the file's top level")
    delivery_year: str = Field(min_length=1, description="A label: delivery year or change")
    starts_on: date
    participation: dict[str, ParticipationModel] = Field(min_length=1)
    min_aggregation_kw: float = Field(gt=0, description="Smallest aggregation [kW]")
    der_min_kw: float | None = Field(gt=0, description="Smallest DER in an aggregation [kW]")
    der_max_kw: float | None = Field(gt=0, description="Largest DER in an aggregation [kW]")
    telemetry: Telemetry
    metering: Metering
    nodes: Nodes
    utility_review: UtilityReview
    telemetry_intervals_min: list[int] = Field(min_length=1)
    inverter_vendors: list[str] = Field(min_length=1)
    zones: dict[str, Zone] = Field(description="Empty where Nexwatt has no resource registered")
    sources: dict[str, Source] = {}
    notes: dict[str, str] = {}

    @model_validator(mode="after")
    def _every_fact_is_sourced_or_explained(self) -> DeliveryYearRules:
        facts = self.facts()
        stray = sorted(s for s in self.sources if not _covered(s, facts))
        if stray:
            raise ValueError(f"{self.delivery_year}: sources for unknown facts: {stray}")
        known = {"delivery_year", *NEXWATT_SETTINGS}
        stray = sorted(n for n in self.notes if n not in known and not _covered(n, facts))
        if stray:
            raise ValueError(f"{self.delivery_year}: notes for unknown facts: {stray}")
        unsourced = sorted(
            p for p, v in facts.items() if v is not None and self.source_of(p) is None
        )
        if unsourced:
            raise ValueError(f"{self.delivery_year}: facts without a source: {unsourced}")
        unexplained = sorted(
            [p for p, v in facts.items() if v is None and p not in self.notes]
            + [s for s in NEXWATT_SETTINGS if s not in self.notes]
        )
        if unexplained:
            raise ValueError(f"{self.delivery_year}: no note for: {unexplained}")
        return self

    def facts(self) -> dict[str, object]:
        """The ISO's published facts by dotted path, e.g. `telemetry.interval_s`; None = unknown."""
        found: dict[str, object] = {
            "min_aggregation_kw": self.min_aggregation_kw,
            "der_min_kw": self.der_min_kw,
            "der_max_kw": self.der_max_kw,
        }
        groups = {"telemetry": self.telemetry, "metering": self.metering, "nodes": self.nodes}
        groups |= {"utility_review": self.utility_review}
        groups |= {f"participation.{key}": m for key, m in self.participation.items()}
        for prefix, group in groups.items():
            for name, value in group:
                found[f"{prefix}.{name}"] = value
        return found

    def source_of(self, path: str) -> Source | None:
        """The source of a fact: its own, else that of the nearest group holding it.

        A source under `participation.x` covers all of that model (name, dates) unless one of
        its fields has a source of its own, e.g. a later document setting the effective date.
        """
        parts = path.split(".")
        for end in range(len(parts), 0, -1):
            found = self.sources.get(".".join(parts[:end]))
            if found is not None:
                return found
        return None

    @property
    def resource_prefix(self) -> str:
        """Every resource id of this ISO starts with it, e.g. NXW-PJM-."""
        return f"NXW-{self.iso}-"

    def zone_of_resource(self, resource_id: str) -> str | None:
        """The zone whose resources list `resource_id`, or None when the rules don't list it."""
        return next((z for z, zone in self.zones.items() if resource_id in zone.resource_ids), None)


class IsoRules(_Data):
    iso: str = Field(pattern=r"^[A-Z]+$", description="Upper-case letters: it names resource ids")
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
        """The rules of the latest entry that started on or before `on`."""
        started = [y for y in self.delivery_years if y.starts_on <= on]
        if not started:
            raise NoRulesInForce(f"no {self.iso} rules in force on {on}: add its delivery year")
        return started[-1]


def _covered(source_path: str, facts: dict[str, object]) -> bool:
    """True when `source_path` names a fact or a group of facts."""
    return any(p == source_path or p.startswith(f"{source_path}.") for p in facts)


class NoRulesInForce(LookupError):
    """The registry has no delivery year covering the date: nothing can be validated."""


def load_rules(path: Path = PJM_RULES) -> IsoRules:
    return IsoRules.model_validate_json(path.read_text())


def load_registry(directory: Path = RULES_DIR) -> dict[str, IsoRules]:
    """Every ISO's rules by ISO code; each file is named after its ISO (`pjm.json` -> PJM)."""
    registry = {}
    for path in sorted(directory.glob("*.json")):
        rules = load_rules(path)
        if rules.iso.lower() != path.stem:
            raise ValueError(f"{path.name} holds the rules of {rules.iso}")
        registry[rules.iso] = rules
    return registry
