"""The ISO rules registry: the shipped PJM data and the loader's checks."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from nexwatt_onboarding.rules import IsoRules, load_registry, load_rules

SOURCE = {"title": "A FERC order", "section": "P 1", "url": "https://ferc.gov/x", "date": "2024-04"}
UNKNOWN = {  # every fact a minimal entry leaves null, each needing a note
    "participation.dr.effective_on",
    "der_min_kw",
    "der_max_kw",
    "telemetry.required",
    "telemetry.interval_s",
    "telemetry.latency_s",
    "telemetry.required_at_or_above_kw",
    "metering.interval_meter_required",
    "metering.per_der",
    "metering.interval_s",
    "nodes.area",
    "nodes.multi_node_max_kw",
    "utility_review.days",
    "utility_review.day_kind",
}
SETTINGS = {"telemetry_intervals_min", "inverter_vendors", "zones"}


def year(starts_on: str, **changes: object) -> dict:
    """A minimal valid entry: one sourced fact (the aggregation minimum), the rest unknown."""
    return {
        "delivery_year": starts_on[:4],
        "starts_on": starts_on,
        "participation": {
            "dr": {"name": "Demand response", "order_2222": False, "in_force": True,
                   "effective_on": None},
        },
        "min_aggregation_kw": 100,
        "der_min_kw": None,
        "der_max_kw": None,
        "telemetry": {"required": None, "interval_s": None, "latency_s": None,
                      "required_at_or_above_kw": None},
        "metering": {"interval_meter_required": None, "per_der": None, "interval_s": None},
        "nodes": {"area": None, "multi_node_max_kw": None},
        "utility_review": {"days": None, "day_kind": None},
        "telemetry_intervals_min": [5],
        "inverter_vendors": ["sma"],
        "zones": {"PJM-BGE": {"default_resource_id": "NXW-PJM-1", "resource_ids": ["NXW-PJM-1"]}},
        "sources": {"participation.dr": SOURCE, "min_aggregation_kw": SOURCE},
        "notes": {path: "not found" for path in UNKNOWN | SETTINGS},
        **changes,
    }  # fmt: skip


def pjm(*years: dict) -> IsoRules:
    return IsoRules.model_validate({"iso": "PJM", "delivery_years": list(years)})


def test_the_shipped_pjm_rules_say_what_the_program_relies_on() -> None:
    rules = load_rules().in_force(date(2026, 11, 27))
    assert rules.iso == "PJM"
    assert rules.delivery_year == "2026/2027"
    assert rules.telemetry_intervals_min == [1, 5]
    assert rules.min_aggregation_kw == 100
    assert sorted(rules.inverter_vendors) == ["enphase", "generac", "sma", "solaredge"]
    assert rules.zones["PJM-PEPCO"].default_resource_id == "NXW-PJM-0042"
    assert {"PJM-PEPCO", "PJM-BGE", "PJM-DOM", "PJM-PECO", "PJM-COMED"} <= set(rules.zones)
    assert "not found in a primary source" in rules.notes["telemetry_intervals_min"]
    assert "Order No. 2222" in rules.notes["min_aggregation_kw"]
    assert rules.resource_prefix == "NXW-PJM-"
    assert rules.zone_of_resource("NXW-PJM-0042") == "PJM-PEPCO"
    assert rules.zone_of_resource("NXW-PJM-0043") == "PJM-BGE"
    assert rules.zone_of_resource("NXW-PJM-new") is None


def test_the_latest_delivery_year_started_is_in_force() -> None:
    rules = pjm(year("2026-06-01"), year("2027-06-01", telemetry_intervals_min=[1]))
    assert rules.in_force(date(2026, 6, 1)).telemetry_intervals_min == [5]
    assert rules.in_force(date(2027, 5, 31)).telemetry_intervals_min == [5]
    assert rules.in_force(date(2027, 6, 1)).telemetry_intervals_min == [1]
    assert rules.in_force(date(2031, 1, 1)).telemetry_intervals_min == [1]  # carried forward
    with pytest.raises(LookupError, match="no PJM rules in force on 2026-05-31"):
        rules.in_force(date(2026, 5, 31))


def test_a_group_source_covers_its_facts_unless_one_has_its_own() -> None:
    later = {**SOURCE, "title": "A later filing"}
    entry = pjm(
        year(
            "2026-06-01",
            participation={"dr": {"name": "Demand response", "order_2222": False,
                                  "in_force": True, "effective_on": "2028-02-02"}},
            sources={"participation.dr": SOURCE, "participation.dr.effective_on": later,
                     "min_aggregation_kw": SOURCE},
        )
    ).in_force(date(2026, 6, 1))  # fmt: skip
    assert entry.source_of("participation.dr.in_force") == entry.sources["participation.dr"]
    assert entry.source_of("participation.dr.effective_on").title == "A later filing"
    assert entry.source_of("der_max_kw") is None
    assert entry.facts()["participation.dr.effective_on"] == date(2028, 2, 2)


def notes_without(*paths: str) -> dict[str, str]:
    return {p: "not found" for p in (UNKNOWN | SETTINGS) - set(paths)}


@pytest.mark.parametrize(
    ("years", "message"),
    [
        (
            [year("2026-06-01", zones={"PJM-BGE": {"default_resource_id": "NXW-PJM-2",
                                                    "resource_ids": ["NXW-PJM-1"]}})],
            "default NXW-PJM-2 is not in resource_ids",
        ),
        (
            [year("2026-06-01", zones={
                "PJM-BGE": {"default_resource_id": "NXW-PJM-1", "resource_ids": ["NXW-PJM-1"]},
                "PJM-DOM": {"default_resource_id": "NXW-PJM-1", "resource_ids": ["NXW-PJM-1"]},
            })],
            "a resource id is listed in two zones",
        ),
        (
            [year("2026-06-01", zones={"PJM-BGE": {"default_resource_id": "NXW-MISO-1",
                                                    "resource_ids": ["NXW-MISO-1"]}})],
            "not NXW-PJM-",
        ),
        ([year("2027-06-01"), year("2026-06-01")], "in order of starts_on"),
        ([year("2026-06-01", telemetry_intervals_min=[])], "telemetry_intervals_min"),
        ([year("2026-06-01", der_max_kw=1000)], r"facts without a source: \['der_max_kw'\]"),
        (
            [year("2026-06-01", nodes={"area": "load_zone", "multi_node_max_kw": None})],
            r"facts without a source: \['nodes.area'\]",
        ),
        (
            [year("2026-06-01", notes=notes_without("telemetry.interval_s"))],
            r"no note for: \['telemetry.interval_s'\]",
        ),
        ([year("2026-06-01", notes=notes_without("zones"))], r"no note for: \['zones'\]"),
        (
            [year("2026-06-01", sources={"participation.dr": SOURCE, "min_aggregation_kw": SOURCE,
                                         "telemetry.interval_min": SOURCE})],
            r"sources for unknown facts: \['telemetry.interval_min'\]",
        ),
        (
            [year("2026-06-01", notes={**notes_without(), "der_max_kW": "typo"})],
            r"notes for unknown facts: \['der_max_kW'\]",
        ),
        (
            [year("2026-06-01", sources={"participation.dr": {**SOURCE, "url": "ferc.gov/x"},
                                         "min_aggregation_kw": SOURCE})],
            "url",
        ),
        (
            [year("2026-06-01", sources={"participation.dr": {**SOURCE, "date": "April 2024"},
                                         "min_aggregation_kw": SOURCE})],
            "date",
        ),
        ([year("2026-06-01", telemetry={"required": True, "interval_s": 0, "latency_s": None,
                                        "required_at_or_above_kw": None})], "interval_s"),
    ],
)  # fmt: skip
def test_inconsistent_rules_data_is_refused(years: list[dict], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        pjm(*years)


def test_the_registry_loads_each_file_under_its_iso(tmp_path: Path) -> None:
    data = json.dumps({"iso": "PJM", "delivery_years": [year("2026-06-01")]})
    (tmp_path / "pjm.json").write_text(data)
    assert list(load_registry(tmp_path)) == ["PJM"]
    (tmp_path / "miso.json").write_text(data)
    with pytest.raises(ValueError, match=r"miso\.json holds the rules of PJM"):
        load_registry(tmp_path)
