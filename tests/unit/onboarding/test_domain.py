"""The onboarding rules, on the shipped PJM data, with hand-checked expectations."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from nexwatt_onboarding.domain import (
    TransitionNotAllowed,
    assess,
    default_cohort,
    enrolment,
    meets_min_aggregation,
    meter_violation,
    resolve_resource_id,
    resource_summary,
    status_change,
    vendor_of,
)
from nexwatt_onboarding.models import RegistrationRequest, Violation
from nexwatt_onboarding.rules import load_rules
from nexwatt_shared.contracts import AssetStatus
from tests.helpers import SEED_REGISTRATION

RULES = load_rules().in_force(date(2026, 11, 27))
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SEED = SEED_REGISTRATION


def request(**changes: object) -> RegistrationRequest:
    return RegistrationRequest.model_validate({**SEED, **changes})


def rules_broken(req: RegistrationRequest, resource_zone: str | None = None) -> list[str]:
    return [v.rule for v in assess(req, RULES, resource_zone).violations]


def test_the_seed_asset_passes_every_rule() -> None:
    result = assess(request(), RULES)
    assert result.violations == []
    assert result.iso_compliant and result.telemetry_validated


@pytest.mark.parametrize("minutes", [1, 5])
def test_one_and_five_minute_telemetry_is_accepted(minutes: int) -> None:
    assert rules_broken(request(telemetry_interval=minutes)) == []


@pytest.mark.parametrize("minutes", [2, 15, 60])
def test_other_telemetry_intervals_are_refused_naming_what_is_accepted(minutes: int) -> None:
    result = assess(request(telemetry_interval=minutes), RULES)
    assert result.violations == [
        Violation(rule="telemetry_interval", found=minutes, expected="one of [1, 5] minutes")
    ]
    assert not result.iso_compliant and not result.telemetry_validated


def test_an_unknown_zone_is_refused_and_no_resource_is_chosen() -> None:
    req = request(iso_zone="PJM-NOWHERE")
    (violation,) = assess(req, RULES).violations
    assert violation.rule == "iso_zone" and violation.found == "PJM-NOWHERE"
    assert violation.expected.startswith("one of [PJM-PEPCO, PJM-BGE, ")
    assert resolve_resource_id(req, RULES) is None
    assert assess(req, RULES).telemetry_validated  # the zone is not a telemetry matter


@pytest.mark.parametrize(
    ("inverter", "vendor"),
    [
        ("SolarEdge SE7600", "solaredge"),
        ("SMA Sunny Boy 7.7", "sma"),
        ("Enphase IQ8+", "enphase"),
        ("Generac PWRcell", "generac"),
        ("  solaredge   SE3800H ", "solaredge"),
        ("Tesla Powerwall 3", "tesla"),
        ("Fronius-Primo", "froniusprimo"),
    ],
)
def test_the_vendor_is_the_inverters_make(inverter: str, vendor: str) -> None:
    assert vendor_of(inverter) == vendor


def test_an_inverter_whose_cloud_we_cannot_read_fails_telemetry_validation() -> None:
    result = assess(request(inverter="Tesla Powerwall 3"), RULES)
    assert result.violations == [
        Violation(
            rule="inverter_vendor",
            found="tesla",
            expected="an inverter made by one of [solaredge, sma, enphase, generac]",
        )
    ]
    assert not result.telemetry_validated


def test_storage_is_required_for_solar_storage_and_storage_assets_only() -> None:
    assert assess(request(storage_kwh=0), RULES).violations == [
        Violation(rule="storage_kwh", found=0.0, expected="> 0 kWh for a solar_storage asset")
    ]
    assert rules_broken(request(type="storage", storage_kwh=0)) == ["storage_kwh"]
    assert rules_broken(request(type="storage")) == []
    assert rules_broken(request(type="solar", storage_kwh=0)) == []
    assert rules_broken(request(type="solar")) == ["storage_kwh"]  # 9.8 kWh on a solar asset


def test_zero_capacity_is_refused() -> None:
    assert assess(request(capacity_kw=0), RULES).violations == [
        Violation(rule="capacity_kw", found=0.0, expected="> 0 kW")
    ]


def test_every_broken_rule_is_reported_at_once() -> None:
    req = request(telemetry_interval=15, inverter="Tesla PW", capacity_kw=0, storage_kwh=0)
    assert rules_broken(req) == ["telemetry_interval", "inverter_vendor", "capacity_kw",
                                 "storage_kwh"]  # fmt: skip


def test_the_zone_default_resource_is_used_unless_one_is_given() -> None:
    assert resolve_resource_id(request(), RULES) == "NXW-PJM-0042"
    assert resolve_resource_id(request(iso_zone="PJM-BGE"), RULES) == "NXW-PJM-0043"
    assert resolve_resource_id(request(resource_id="NXW-PJM-0142"), RULES) == "NXW-PJM-0142"


def test_explicit_resource_ids() -> None:
    assert rules_broken(request(resource_id="NXW-PJM-0142")) == []  # listed for PJM-PEPCO
    assert rules_broken(request(resource_id="NXW-PJM-T-1")) == []  # new: takes the asset's zone
    assert rules_broken(request(resource_id="NXW-PJM-T-1"), resource_zone="PJM-PEPCO") == []
    (listed_elsewhere,) = assess(request(resource_id="NXW-PJM-0043"), RULES).violations
    assert listed_elsewhere == Violation(
        rule="resource_id",
        found="NXW-PJM-0043",
        expected="one of [NXW-PJM-0042, NXW-PJM-0142], or a new id starting with NXW-PJM- "
        "(NXW-PJM-0043 is a resource of PJM-BGE)",
    )
    (used_elsewhere,) = assess(request(resource_id="NXW-PJM-T-1"), RULES, "PJM-BGE").violations
    assert used_elsewhere.expected.endswith("(NXW-PJM-T-1 already aggregates assets in PJM-BGE)")
    (foreign,) = assess(request(resource_id="NXW-MISO-7"), RULES).violations
    assert foreign.rule == "resource_id"
    assert foreign.expected.endswith("or a new id starting with NXW-PJM-")


def test_a_meter_another_asset_holds_is_refused_naming_that_asset() -> None:
    # The store names the holder only when its status is not unenrolled.
    assert meter_violation(request(), "BTM-00777") == Violation(
        rule="meter_id",
        found="MD-78421-C",
        expected="a meter not enrolled under another asset (BTM-00777 holds it)",
    )
    result = assess(request(), RULES, meter_holder="BTM-00777")
    assert [v.rule for v in result.violations] == ["meter_id"]
    assert not result.iso_compliant
    assert result.telemetry_validated  # the meter's telemetry can be read: it is counted twice


def test_a_free_meter_or_the_assets_own_is_fine() -> None:
    assert meter_violation(request(), None) is None
    assert meter_violation(request(), "BTM-00291") is None  # re-registered, or was suspended
    assert assess(request(), RULES, meter_holder="BTM-00291").violations == []


def test_a_meter_held_elsewhere_is_reported_with_the_other_broken_rules() -> None:
    req = request(telemetry_interval=15, resource_id="NXW-PJM-0043")
    result = assess(req, RULES, meter_holder="BTM-00777")
    assert [v.rule for v in result.violations] == ["telemetry_interval", "resource_id", "meter_id"]


def test_the_default_cohort_depends_on_capacity() -> None:
    assert default_cohort(7.6) == "residential"
    assert default_cohort(99.99) == "residential"
    assert default_cohort(100) == "commercial"


def test_enrolment_builds_the_contract_record() -> None:
    record, changed = enrolment(request(subscriber_id="SUB-1"), RULES, None, NOW)
    assert changed
    assert record.model_dump(mode="json") == {
        "asset_id": "BTM-00291",
        "status": "enrolled",
        "asset_type": "solar_storage",
        "inverter": "SolarEdge SE7600",
        "vendor": "solaredge",
        "capacity_kw": 7.6,
        "storage_kwh": 9.8,
        "backup_reserve_pct": 20.0,
        # Ratings left out keep their defaults (power_ratings fills them in).
        "battery_continuous_kw": None,
        "battery_peak_kw": None,
        "round_trip_efficiency": 0.9,
        "coupling": "dc",
        "pv_dc_kw": None,
        "pv_mounting": "fixed",
        "meter_id": "MD-78421-C",
        "iso": "PJM",
        "iso_zone": "PJM-PEPCO",
        "resource_id": "NXW-PJM-0042",
        "subscriber_id": "SUB-1",
        "gateway_id": None,
        "cohort": "residential",
        "telemetry_interval_s": 300,
        "version": 1,
        "updated_at": "2026-11-27T12:00:00Z",
    }


def test_registering_the_same_data_again_changes_nothing_and_new_data_makes_a_version() -> None:
    first, _ = enrolment(request(), RULES, None, NOW)
    later = datetime(2026, 11, 28, tzinfo=UTC)
    again, changed = enrolment(request(), RULES, first, later)
    assert not changed and again == first  # same version, same updated_at
    bigger, changed = enrolment(request(capacity_kw=8.0), RULES, first, later)
    assert changed and bigger.version == 2 and bigger.capacity_kw == 8.0
    assert bigger.updated_at == later
    unenrolled, _ = status_change(first, AssetStatus.UNENROLLED, NOW)
    back, changed = enrolment(request(), RULES, unenrolled, later)
    assert changed and back.status == "enrolled" and back.version == 3


def test_status_changes() -> None:
    enrolled, _ = enrolment(request(), RULES, None, NOW)
    suspended, changed = status_change(enrolled, AssetStatus.SUSPENDED, NOW)
    assert changed and suspended.status == "suspended" and suspended.version == 2
    same, changed = status_change(suspended, AssetStatus.SUSPENDED, NOW)
    assert not changed and same is suspended
    unenrolled, changed = status_change(suspended, AssetStatus.UNENROLLED, NOW)
    assert changed and unenrolled.version == 3
    with pytest.raises(TransitionNotAllowed, match="register it again"):
        status_change(unenrolled, AssetStatus.SUSPENDED, NOW)
    with pytest.raises(TransitionNotAllowed, match="by registering it"):
        status_change(suspended, AssetStatus.ENROLLED, NOW)


def test_min_aggregation_size_is_100_kw() -> None:
    assert not meets_min_aggregation(99.9, RULES)
    assert meets_min_aggregation(100.0, RULES)
    assert meets_min_aggregation(250.0, RULES)


def test_a_resource_summed_from_many_small_assets_reaches_100_kw() -> None:
    capacity_kw = sum([0.1] * 1000)  # 99.9999999999986 in floating point
    assert capacity_kw < 100
    summary = resource_summary("NXW-PJM-0042", RULES, "PJM-PEPCO", 1000, capacity_kw, 0.0)
    assert summary.capacity_kw == 100.0
    assert summary.meets_min_aggregation
    assert summary.min_aggregation_kw == 100
