"""Onboarding's real process against inputs generated from its own OpenAPI document
(schemathesis): whatever a client sends within or outside the schema, no answer is a 5xx and
every answer is one the document declares, with the declared content type and schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.onboarding.conftest import Service

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
SCHEMA = schemathesis.openapi.from_path(ROOT / "schemas/openapi.json")
# Inputs that fit the schema and inputs that break it (a wrong type, a missing field, ...).
SCHEMA.config.generation.update(modes=list(GenerationMode))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@SCHEMA.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_no_undeclared_answer(case, service: Service, key: str) -> None:
    case.call_and_validate(
        base_url=service.url, headers={"Authorization": f"Bearer {key}"}, checks=CHECKS
    )
