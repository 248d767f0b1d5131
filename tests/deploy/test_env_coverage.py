"""Every setting a service reads is set explicitly in docker compose and in the Helm chart.

Each services/nexwatt_<svc>/config.py defines Settings(ServiceSettings); pydantic-settings reads
NEXWATT_ + the field name in upper case. A setting left to its code default in one deployment
and set in another is how environments drift apart, so all of them are spelled out.
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
    PORTS,
    SIMULATORS,
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
    (deployment,) = [
        d
        for d in docs
        if d["kind"] == "Deployment"
        and d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
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
        (deployment,) = [
            d
            for d in docs
            if d["kind"] == "Deployment"
            and d["metadata"]["labels"]["app.kubernetes.io/component"] == info.service
        ]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
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
