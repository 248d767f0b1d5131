"""The ISO rules registry: the shipped PJM data and the loader's checks."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from nexwatt_onboarding.rules import IsoRules, load_rules


def year(starts_on: str, **changes: object) -> dict:
    return {
        "delivery_year": starts_on[:4],
        "starts_on": starts_on,
        "telemetry_intervals_min": [5],
        "min_aggregation_kw": 100,
        "inverter_vendors": ["sma"],
        "zones": {"PJM-BGE": {"default_resource_id": "NXW-PJM-1", "resource_ids": ["NXW-PJM-1"]}},
        **changes,
    }


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
    rules = IsoRules.model_validate(
        {
            "iso": "PJM",
            "delivery_years": [
                year("2026-06-01"),
                year("2027-06-01", telemetry_intervals_min=[1]),
            ],
        }
    )
    assert rules.in_force(date(2026, 6, 1)).telemetry_intervals_min == [5]
    assert rules.in_force(date(2027, 5, 31)).telemetry_intervals_min == [5]
    assert rules.in_force(date(2027, 6, 1)).telemetry_intervals_min == [1]
    assert rules.in_force(date(2031, 1, 1)).telemetry_intervals_min == [1]  # carried forward
    with pytest.raises(LookupError, match="no PJM rules in force on 2026-05-31"):
        rules.in_force(date(2026, 5, 31))


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
    ],
)  # fmt: skip
def test_inconsistent_rules_data_is_refused(years: list[dict], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        IsoRules.model_validate({"iso": "PJM", "delivery_years": years})
