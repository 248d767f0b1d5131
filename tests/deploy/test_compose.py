"""docker-compose.yml: valid against the Compose Specification schema (vendored, see
compose-spec.LICENSE.md), and wired the way the platform needs: one image, healthchecks,
start order, topics and migrations first, Prometheus and Grafana provisioned from files."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from tests.deploy.support import (
    COMPONENTS,
    COMPOSE_FILE,
    CONNECTORS,
    PORTS,
    ROOT,
    SIMULATORS,
    SITES_FILE,
    interpolate,
    load_yaml,
)

SCHEMA = Path(__file__).with_name("compose-spec.json")
INFRA = {"kafka", "postgres", "redis", "prometheus", "grafana"}
ONE_SHOTS = {"init", "fleet-register", "iso-sim"}
SERVICES = set(COMPONENTS.values())
USES_REDIS = {"dispatch"}  # the snapshot of its in-memory view
SECRETS = {"NEXWATT_POSTGRES_PASSWORD": "pg0secret"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    # PyYAML resolves the anchors and `<<` merge keys as Compose does.
    return load_yaml(COMPOSE_FILE)


def _env(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return env


def test_compose_file_validates_against_the_compose_spec(compose) -> None:
    schema = json.loads(SCHEMA.read_text())
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:20])


def test_the_schema_rejects_what_compose_rejects() -> None:
    """Guard against a vendored schema that accepts anything."""
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    bad = {"services": {"a": {"image": "x", "depends_on": {"b": {"condition": "whenever"}}}}}
    assert list(validator.iter_errors(bad))
    assert list(validator.iter_errors({"services": {"a": {"imgae": "x"}}}))


def test_every_process_is_there(compose) -> None:
    assert set(compose["services"]) == INFRA | SERVICES | SIMULATORS | ONE_SHOTS | {CONNECTORS}
    assert "x-nexwatt-env" in compose
    assert compose["services"]["kafka"]["image"] == "apache/kafka:4.1.2"
    assert compose["services"]["postgres"]["image"] == "postgres:15"
    assert compose["services"]["redis"]["image"] == "redis:7"
    assert compose["services"]["prometheus"]["image"].startswith("prom/prometheus")
    assert compose["services"]["grafana"]["image"].startswith("grafana/grafana")


def test_kafka_is_a_single_kraft_node_without_auto_create(compose) -> None:
    env = _env(compose["services"]["kafka"])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert "kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    nexwatt_env = compose["x-nexwatt-env"]
    assert nexwatt_env["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    url = urlsplit(interpolate(nexwatt_env["NEXWATT_POSTGRES_URL"], SECRETS))
    assert (url.hostname, url.port, url.username) == ("postgres", 5432, "nexwatt")
    assert _env(compose["services"]["postgres"])["POSTGRES_USER"] == "nexwatt"


def test_nexwatt_containers_share_one_image_built_from_the_dockerfile(compose) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    images = set()
    for name in SERVICES | SIMULATORS | ONE_SHOTS | {CONNECTORS}:
        service = compose["services"][name]
        images.add(service["image"])
        assert service["build"] == {"context": ".", "dockerfile": "deploy/docker/Dockerfile"}
        program = service["command"][0]
        if program != "sh":
            assert program in scripts, f"{name}: {program} is not a console script"
    assert len(images) == 1
    assert (ROOT / "deploy" / "docker" / "Dockerfile").is_file()


def test_services_run_their_console_script_on_their_port(compose) -> None:
    for name in SERVICES:
        service = compose["services"][name]
        assert service["command"] == [f"nexwatt-{name}", "run"]
        assert _env(service)["NEXWATT_HTTP_PORT"] == str(PORTS[name])
        database = _env(service)["NEXWATT_POSTGRES_DATABASE"]
        assert database == f"nexwatt_{name.replace('-', '_')}"
    assert compose["services"]["fleet-sim"]["command"] == ["nexwatt-fleet-sim", "run"]
    assert compose["services"]["fleet-register"]["command"] == ["nexwatt-fleet-sim", "register"]


def test_simulators_only_in_the_demo_profile(compose) -> None:
    for name, service in compose["services"].items():
        expected = ["demo"] if name in SIMULATORS | {"fleet-register"} else None
        if name == CONNECTORS:
            expected = ["connectors"]
        assert service.get("profiles") == expected, name


def test_init_creates_topics_then_migrates_every_service(compose) -> None:
    init = compose["services"]["init"]
    script = init["command"][-1]
    lines = [line.strip() for line in script.strip().splitlines()]
    assert lines[0].startswith("nexwatt-admin create-topics")
    assert lines[1:] == [f"nexwatt-{s} migrate" for s in COMPONENTS.values()]
    assert init["command"][:2] == ["sh", "-ec"]  # stop at the first failure
    assert init["restart"] == "no"
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_healthchecks_and_start_order(compose) -> None:
    services = compose["services"]
    for name, service in services.items():
        check = service.get("healthcheck", {})
        if name in ONE_SHOTS:
            continue
        if name == CONNECTORS:
            # No HTTP server to probe: a fatal error exits it and `restart` brings it back.
            assert check == {"disable": True} and service["restart"] == "unless-stopped"
            continue
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = rule["condition"]
            if dependency in ONE_SHOTS:
                assert condition == "service_completed_successfully", (name, dependency)
            else:
                assert condition == "service_healthy", (name, dependency)
    for name in SERVICES:
        depends = services[name]["depends_on"]
        assert depends["init"]["condition"] == "service_completed_successfully"
        assert {"kafka", "postgres"} <= depends.keys()
        assert ("redis" in depends) == (name in USES_REDIS), name
        test = " ".join(services[name]["healthcheck"]["test"])
        assert "/healthz" in test and "urllib" in test


def test_prometheus_scrapes_every_service(compose) -> None:
    prometheus = compose["services"]["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"] if v.startswith(".")}
    config_path = ROOT / mounts["/etc/prometheus/prometheus.yml"]
    assert config_path == ROOT / "deploy" / "prometheus" / "prometheus.yml"
    config = load_yaml(config_path)
    targets = {
        target
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job["static_configs"]
        for target in static["targets"]
    }
    for name in SERVICES | {"fleet-sim"}:
        assert f"{name}:{_env(compose['services'][name])['NEXWATT_HTTP_PORT']}" in targets, name


def test_grafana_is_provisioned_from_files(compose) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {
        v.split(":")[1]: ROOT / v.split(":")[0] for v in grafana["volumes"] if v.startswith(".")
    }
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == ROOT / "deploy" / "grafana" / "provisioning"
    (datasource,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = load_yaml(provisioning / "dashboards" / "nexwatt.yml")["providers"]
    dashboards_in_container = provider["options"]["path"]
    assert mounts[dashboards_in_container] == ROOT / "deploy" / "grafana" / "dashboards"
    assert (mounts[dashboards_in_container] / "nexwatt.json").is_file()
    home = _env(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_in_container}/nexwatt.json"


def test_redis_keeps_an_append_only_file(compose) -> None:
    redis = compose["services"]["redis"]
    assert redis["command"][:2] == ["sh", "-ec"]
    assert "redis-server - --appendonly yes --appendfsync everysec" in redis["command"][2]
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_connectors_poll_the_mounted_sites_with_secrets_from_the_host(compose) -> None:
    from nexwatt_telemetry_ingest.connectors.runner import ConnectorSettings, load_sites

    service = compose["services"][CONNECTORS]
    assert service["command"] == ["nexwatt-ingest", "connect", "--sites", SITES_FILE]
    # Started with `init` (topics, telemetry-ingest's migrations), Kafka and PostgreSQL.
    assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert {"kafka", "postgres"} <= service["depends_on"].keys()
    assert "ports" not in service
    (mount,) = service["volumes"]
    source, target, mode = mount.rsplit(":", 2)
    assert (target, mode) == (SITES_FILE, "ro")
    # Overridable, defaulting to the example: ${NEXWATT_SITES_FILE:-./deploy/connectors/...}
    match = re.fullmatch(r"\$\{NEXWATT_SITES_FILE:-(.+)\}", source)
    assert match, source
    example = ROOT / match.group(1)
    assert example == ROOT / "deploy" / "connectors" / "sites.example.json"
    sites = load_sites(example)
    assert len(sites) == 2
    env = _env(service)
    assert env["NEXWATT_POSTGRES_DATABASE"] == "nexwatt_telemetry_ingest"  # its cursors
    fields = {f"NEXWATT_{name.upper()}" for name in ConnectorSettings.model_fields}
    unknown = sorted(n for n in env if n.startswith("NEXWATT_") and n not in fields)
    assert not unknown, f"not connector settings: {unknown}"
    # Every credential the sites' vendors could need comes from the host, under its own name.
    secrets = {
        f"NEXWATT_{name.upper()}"
        for name, field in ConnectorSettings.model_fields.items()
        if "SecretStr" in str(field.annotation)
    }
    secrets -= {"NEXWATT_KAFKA_SASL_PASSWORD"}
    assert secrets
    for name in secrets:
        assert env[name] == f"${{{name}:-}}", name
