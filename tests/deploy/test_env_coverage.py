"""Every setting a service reads is set explicitly in docker compose and in the Helm chart.

Each services/nexwatt_<svc>/config.py defines Settings(ServiceSettings); pydantic-settings reads
NEXWATT_ + the field name in upper case. A setting left to its code default in one deployment
and set in another is how environments drift apart, so all of them are spelled out.

The vendor connectors (`nexwatt-ingest connect`, ConnectorSettings) are a tool of
telemetry-ingest, not a service: they inherit its Settings, most of which they never read (HTTP,
consumers, Redis), and their vendor settings (endpoints, plan limits, credentials) matter only
for the vendors a deployment's sites use. So for them the connection settings and the run-wide
NEXWATT_CONNECTOR_* knobs are spelled out; vendor settings are set where needed, and every
NEXWATT_* name given to them must be a setting they read (a misspelled one would be ignored).
"""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest

from tests.deploy.support import (
    CHART,
    COMPONENTS,
    COMPOSE_FILE,
    CONNECTORS,
    PORTS,
    SIMULATORS,
    deployment,
    discover_services,
    helm_template,
    load_yaml,
)

# Per-service constants, not deployment settings: the name is the service's identity (logs,
# metrics, consumer group), and every container binds 0.0.0.0 (the image sets it).
# Kafka security is optional: the chart sets it only with global.kafka.sasl.enabled, which
# test_kafka_sasl_reaches_every_service checks.
KAFKA_SECURITY = {
    "NEXWATT_KAFKA_SECURITY_PROTOCOL",
    "NEXWATT_KAFKA_SASL_MECHANISM",
    "NEXWATT_KAFKA_SASL_USERNAME",
    "NEXWATT_KAFKA_SASL_PASSWORD",
}
EXEMPT = {"NEXWATT_SERVICE_NAME", "NEXWATT_HTTP_HOST", *KAFKA_SECURITY}

SERVICES = discover_services()
CHART_KEY = {service: key for key, service in COMPONENTS.items()}


def test_every_chart_component_and_simulator_has_settings() -> None:
    found = {s.service for s in SERVICES}
    assert set(COMPONENTS.values()) <= found
    assert found <= set(COMPONENTS.values()) | SIMULATORS, "a service the deploy files don't know"


def _required(info: Any) -> set[str]:
    return set(info.env_names()) - EXEMPT


def _parses(info: Any, env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's Settings accept these values (types, bounds) exactly as deployed."""
    for name in [n for n in os.environ if n.startswith("NEXWATT_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("NEXWATT_"):
            monkeypatch.setenv(name, str(value))
    settings = info.settings()
    assert settings.http_port == PORTS[info.service]


@pytest.mark.parametrize("info", SERVICES, ids=lambda s: s.service)
def test_compose_sets_every_setting(info, monkeypatch) -> None:
    services = load_yaml(COMPOSE_FILE)["services"]
    assert info.service in services, f"{info.service} is not in docker-compose.yml"
    env = services[info.service]["environment"]
    missing = sorted(_required(info) - set(env))
    assert not missing, f"docker-compose.yml {info.service} does not set {missing}"
    # The port the service would pick by itself is the one compose gives it.
    assert env["NEXWATT_HTTP_PORT"] == str(info.settings.model_fields["http_port"].default)
    assert int(env["NEXWATT_HTTP_PORT"]) == PORTS[info.service]
    _parses(info, env, monkeypatch)


def _chart_env(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """What a container's environment holds: env entries plus envFrom ConfigMaps/Secrets."""
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps[source["configMapRef"]["name"]]["data"])
        if "secretRef" in source:
            data = secrets[source["secretRef"]["name"]]["data"]
            env.update({k: base64.b64decode(v).decode() for k, v in data.items()})
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "<valueFrom>")
    return env


@pytest.mark.parametrize(
    "info", [s for s in SERVICES if s.service in CHART_KEY], ids=lambda s: s.service
)
def test_chart_sets_every_setting(rendered, info, monkeypatch) -> None:
    docs = rendered["default-values.yaml"]
    component = info.service
    (container,) = deployment(docs, component)["spec"]["template"]["spec"]["containers"]
    env = _chart_env(docs, container)
    missing = sorted(_required(info) - set(env))
    assert not missing, f"the chart's {component} Deployment does not set {missing}"
    assert env["NEXWATT_HTTP_PORT"] == str(info.settings.model_fields["http_port"].default)
    service_name = info.settings.model_fields["service_name"].default
    assert env["NEXWATT_POSTGRES_DATABASE"] == f"nexwatt_{service_name.replace('-', '_')}"
    _parses(info, env, monkeypatch)

    # The hook Job migrates with the same settings the Deployment runs with.
    (job,) = [d for d in docs if d["kind"] == "Job"]
    (migrate,) = [
        c
        for c in job["spec"]["template"]["spec"]["initContainers"]
        if c["command"] == [f"nexwatt-{component}", "migrate"]
    ]
    assert _chart_env(docs, migrate) == env


def test_kafka_sasl_reaches_every_service(helm: str, monkeypatch) -> None:
    docs = helm_template(
        helm,
        "-f", str(CHART / "ci" / "default-values.yaml"),
        "--set", "global.kafka.sasl.enabled=true",
        "--set", "global.kafka.sasl.username=svc-nexwatt",
        "--set", "global.kafka.sasl.password=s3cret",
    )  # fmt: skip
    for info in [s for s in SERVICES if s.service in CHART_KEY]:
        (container,) = deployment(docs, info.service)["spec"]["template"]["spec"]["containers"]
        env = _chart_env(docs, container)
        assert set(env) >= KAFKA_SECURITY, info.service
        for name in [n for n in os.environ if n.startswith("NEXWATT_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        security = info.settings().kafka_security()
        assert security["sasl_plain_username"] == "svc-nexwatt"
        assert security["sasl_plain_password"] == "s3cret"
        assert security["security_protocol"] == env["NEXWATT_KAFKA_SECURITY_PROTOCOL"]


# --- the vendor connectors -----------------------------------------------------------------------

# Their cursors live beside telemetry-ingest's data.
CONNECTOR_DATABASE = "nexwatt_telemetry_ingest"


def _connector_fields() -> dict[str, Any]:
    from nexwatt_telemetry_ingest.connectors.runner import ConnectorSettings

    return {
        f"NEXWATT_{name.upper()}": field.default
        for name, field in ConnectorSettings.model_fields.items()
    }


def _connector_required() -> set[str]:
    run_wide = {n for n in _connector_fields() if n.startswith("NEXWATT_CONNECTOR_")}
    assert run_wide, "ConnectorSettings has no NEXWATT_CONNECTOR_* settings any more"
    connection = {
        "NEXWATT_KAFKA_BOOTSTRAP_SERVERS",
        "NEXWATT_POSTGRES_URL",
        "NEXWATT_POSTGRES_DATABASE",
        "NEXWATT_LOG_LEVEL",
    }
    return connection | run_wide


def _check_connector_env(env: dict[str, str], where: str, monkeypatch) -> Any:
    from nexwatt_telemetry_ingest.connectors.runner import ConnectorSettings

    fields = _connector_fields()
    missing = sorted(_connector_required() - set(env))
    assert not missing, f"{where} does not set {missing}"
    unknown = sorted(n for n in env if n.startswith("NEXWATT_") and n not in fields)
    assert not unknown, f"{where} sets {unknown}: not settings the connectors read"
    for name in [n for n in os.environ if n.startswith("NEXWATT_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("NEXWATT_"):
            monkeypatch.setenv(name, str(value))
    settings = ConnectorSettings()
    assert settings.database == CONNECTOR_DATABASE, where
    return settings


def test_compose_connectors_set_their_settings(monkeypatch) -> None:
    env = load_yaml(COMPOSE_FILE)["services"][CONNECTORS]["environment"]
    # Unset credentials (${NEXWATT_...:-}) arrive as empty strings; they still parse.
    env = {k: "" if str(v).startswith("${") else v for k, v in env.items()}
    settings = _check_connector_env(env, f"docker-compose.yml {CONNECTORS}", monkeypatch)
    fields = _connector_fields()
    for name in _connector_required():
        if name.startswith("NEXWATT_CONNECTOR_"):  # spelled out at the code's defaults
            assert float(env[name]) == fields[name], name
    assert settings.kafka_bootstrap_servers == "kafka:9092"


def test_chart_connectors_set_their_settings(helm: str, monkeypatch) -> None:
    docs = helm_template(
        helm,
        "-f", str(CHART / "ci" / "connectors-values.yaml"),
        "--set", "global.kafka.sasl.enabled=true",
        "--set", "global.kafka.sasl.username=svc-nexwatt",
        "--set", "global.kafka.sasl.password=s3cret",
    )  # fmt: skip
    (container,) = deployment(docs, CONNECTORS)["spec"]["template"]["spec"]["containers"]
    env = _chart_env(docs, container)
    settings = _check_connector_env(env, "the chart's connectors Deployment", monkeypatch)
    fields = _connector_fields()
    values = load_yaml(CHART / "values.yaml")[CONNECTORS]["env"]
    for name in _connector_required():
        if name.startswith("NEXWATT_CONNECTOR_"):  # spelled out at the code's defaults
            assert float(values[name]) == fields[name], name
    assert settings.solaredge_api_key.get_secret_value() == "change-me"
    security = settings.kafka_security()
    assert security["sasl_plain_username"] == "svc-nexwatt"
    assert security["sasl_plain_password"] == "s3cret"
