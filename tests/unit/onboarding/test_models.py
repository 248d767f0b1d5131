"""The registration request: malformed input is refused naming the field."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from nexwatt_onboarding.domain import enrolment
from nexwatt_onboarding.models import AssetBody, RegistrationRequest, decode_cursor, encode_cursor
from nexwatt_onboarding.rules import load_rules
from nexwatt_shared.contracts import AssetRegistered
from nexwatt_shared.power_model import deliverable_kw
from tests.helpers import SEED_REGISTRATION

SEED = SEED_REGISTRATION


def test_the_seed_example_is_a_valid_request_with_defaults() -> None:
    req = RegistrationRequest.model_validate(SEED)
    assert req.telemetry_interval == 5
    assert req.backup_reserve_pct == 20.0
    assert req.cohort is None and req.subscriber_id is None and req.resource_id is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"asset_id": "BTM 00291"}, "asset_id"),  # space: not a valid id
        ({"type": "wind"}, "type"),
        ({"inverter": "   "}, "inverter"),  # blank after stripping
        ({"capacity_kw": "lots"}, "capacity_kw"),
        ({"capacity_kw": -1}, "capacity_kw"),
        ({"capacity_kw": float("nan")}, "capacity_kw"),
        ({"storage_kwh": -0.5}, "storage_kwh"),
        ({"telemetry_interval": 0}, "telemetry_interval"),
        ({"telemetry_interval": 2.5}, "telemetry_interval"),
        ({"backup_reserve_pct": 101}, "backup_reserve_pct"),
        ({"backup_reserve_pct": 100}, "backup_reserve_pct"),  # nothing left to discharge
        ({"round_trip_efficiency": 1.01}, "round_trip_efficiency"),
        ({"round_trip_efficiency": 0}, "round_trip_efficiency"),
        ({"coupling": "both"}, "coupling"),
        ({"pv_dc_kw": -3}, "pv_dc_kw"),
        ({"pv_mounting": "roof"}, "pv_mounting"),
        ({"resource_id": "NXW PJM"}, "resource_id"),
        ({"capacity_kwh": 7.6}, "capacity_kwh"),  # unknown field (a typo) is refused
    ],
)
def test_malformed_fields_are_refused_by_name(changes: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RegistrationRequest.model_validate({**SEED, **changes})
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]


NUMBERS = [
    "capacity_kw",
    "storage_kwh",
    "telemetry_interval",
    "backup_reserve_pct",
    "battery_continuous_kw",
    "battery_peak_kw",
    "round_trip_efficiency",
    "pv_dc_kw",
]


@pytest.mark.parametrize("field", NUMBERS)
def test_every_number_is_bounded_and_finite(field: str) -> None:
    """1e308 kW was enrolled and overflowed the resource's sum to infinity (a 500 later)."""
    for value in [1e308, float("nan"), float("inf")]:
        with pytest.raises(ValidationError) as caught:
            RegistrationRequest.model_validate({**SEED, field: value})
        assert [e["loc"] for e in caught.value.errors()] == [(field,)], value


@pytest.mark.parametrize(
    ("field", "largest"),
    [("capacity_kw", 100_000.0), ("storage_kwh", 1_000_000.0), ("telemetry_interval", 1440)],
)
def test_the_bounds_are_the_contracts(field: str, largest: float) -> None:
    # The record published for the asset takes these; a larger request could not be published.
    at_bound = RegistrationRequest.model_validate({**SEED, field: largest})
    assert getattr(at_bound, field) == largest
    with pytest.raises(ValidationError):
        RegistrationRequest.model_validate({**SEED, field: largest + 1})


STRINGS = ["asset_id", "inverter", "meter_id", "iso_zone", "subscriber_id", "cohort",
           "gateway_id", "resource_id"]  # fmt: skip


@pytest.mark.parametrize("field", STRINGS)
@pytest.mark.parametrize("control", ["\x00", "\x1b", "\x7f", "\ud800", "\n"])
def test_a_control_character_in_any_string_is_refused_by_name(field: str, control: str) -> None:
    """A NUL can't be stored in PostgreSQL's text (it was a 500)."""
    with pytest.raises(ValidationError) as caught:
        RegistrationRequest.model_validate({**SEED, field: f"NXW-PJM{control}1"})
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]


@pytest.mark.parametrize(
    ("field", "longest"),
    [("inverter", 128), ("meter_id", 64), ("iso_zone", 32), ("subscriber_id", 64), ("cohort", 64)],
)
def test_strings_keep_their_own_length_limits(field: str, longest: int) -> None:
    assert len(getattr(RegistrationRequest.model_validate({**SEED, field: "x" * longest}), field))
    with pytest.raises(ValidationError) as caught:
        RegistrationRequest.model_validate({**SEED, field: "x" * (longest + 1)})
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]


def test_a_missing_required_field_is_named() -> None:
    body = {k: v for k, v in SEED.items() if k != "meter_id"}
    with pytest.raises(ValidationError) as caught:
        RegistrationRequest.model_validate(body)
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [(("meter_id",), "missing")]


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        # 99 kW from 9.8 kWh is 10.1 C: kW and kWh confused.
        ({"battery_continuous_kw": 99}, "battery_continuous_kw must not exceed 10 x usable_kwh"),
        (
            {"battery_continuous_kw": 5, "battery_peak_kw": 4},
            "battery_peak_kw must not be below battery_continuous_kw",
        ),
        # No battery, yet a battery power: refused the same way.
        (
            {"storage_kwh": 0, "battery_continuous_kw": 5},
            "battery_continuous_kw must not exceed 10 x usable_kwh",
        ),
    ],
)
def test_impossible_battery_ratings_are_refused_naming_the_field(changes: dict, named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RegistrationRequest.model_validate({**SEED, **changes})
    assert [named in e["msg"] for e in caught.value.errors()] == [True]


def test_left_out_ratings_reproduce_the_old_assumptions() -> None:
    """Without ratings, the battery gives the inverter's rating and PV fills the inverter."""
    ratings = RegistrationRequest.model_validate(SEED).power_ratings()
    assert float(ratings.battery_continuous_kw) == SEED["capacity_kw"]
    assert float(ratings.battery_peak_kw) == SEED["capacity_kw"]
    assert float(ratings.pv_dc_kw) == SEED["capacity_kw"]
    assert float(ratings.usable_kwh) == SEED["storage_kwh"]
    assert str(ratings.coupling) == "dc"
    # A tiny battery is not credited the inverter: 10 C of 0.5 kWh is 5 kW.
    small = RegistrationRequest.model_validate({**SEED, "storage_kwh": 0.5}).power_ratings()
    assert float(small.battery_continuous_kw) == pytest.approx(5.0, abs=1e-12)
    storage_only = RegistrationRequest.model_validate({**SEED, "type": "storage"})
    assert float(storage_only.power_ratings().pv_dc_kw) == 0.0
    # Only a peak given (7.0 kW, below the 7.6 kW inverter): continuous is not above it.
    peak_only = RegistrationRequest.model_validate({**SEED, "battery_peak_kw": 7.0})
    assert float(peak_only.power_ratings().battery_continuous_kw) == 7.0


def test_a_record_kept_for_backup_only_is_read_and_credits_nothing() -> None:
    """Onboarding no longer enrols a 100 % reserve, but records from before carry it: they
    are read (not dead-lettered) and the battery adds nothing."""
    rules = load_rules().in_force(date(2026, 11, 27))
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    record, _ = enrolment(RegistrationRequest.model_validate(SEED), rules, None, now)
    old = AssetRegistered.model_validate({**record.model_dump(), "backup_reserve_pct": 100.0})
    assert float(deliverable_kw(old.power_ratings(), 0.0, 100.0, 1.0)) == 0.0


def test_a_cursor_is_the_last_ids_url_safe_base64_and_only_such_a_cursor_is_read() -> None:
    # "BTM-1" = 42 54 4d 2d 31: base64 "QlRNLTE=", sent unpadded.
    assert encode_cursor("BTM-1") == "QlRNLTE"
    assert decode_cursor("QlRNLTE") == decode_cursor("QlRNLTE=") == "BTM-1"
    longest = "x" * 64
    assert decode_cursor(encode_cursor(longest)) == longest
    assert len(encode_cursor(longest)) <= 88  # AssetQuery's bound on `cursor`
    for bad in ["QlRNLTE!", "Q", "IA", encode_cursor("x" * 65), "_w"]:  # " ", too long, not UTF-8
        with pytest.raises(ValueError, match="not a cursor"):
            decode_cursor(bad)


def test_a_put_body_becomes_the_registration_of_the_paths_asset() -> None:
    body = AssetBody.model_validate({k: v for k, v in SEED.items() if k != "asset_id"})
    assert body.asset_id is None
    assert body.for_asset("BTM-7") == RegistrationRequest.model_validate(
        {**SEED, "asset_id": "BTM-7"}
    )
    with pytest.raises(ValidationError):  # the path's id is checked as the body's would be
        body.for_asset("BTM 7")
