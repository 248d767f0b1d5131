"""The registration request: malformed input is refused naming the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nexwatt_onboarding.models import RegistrationRequest
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
        ({"resource_id": "NXW PJM"}, "resource_id"),
        ({"capacity_kwh": 7.6}, "capacity_kwh"),  # unknown field (a typo) is refused
    ],
)
def test_malformed_fields_are_refused_by_name(changes: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RegistrationRequest.model_validate({**SEED, **changes})
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]


def test_a_missing_required_field_is_named() -> None:
    body = {k: v for k, v in SEED.items() if k != "meter_id"}
    with pytest.raises(ValidationError) as caught:
        RegistrationRequest.model_validate(body)
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [(("meter_id",), "missing")]
