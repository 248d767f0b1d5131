"""docker-compose.yml opens nothing to the network by default: every published port is bound to
127.0.0.1, and the passwords of PostgreSQL, Redis and Grafana come from the environment
(.env.example lists every variable the file reads), never from a default in the file."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy.support import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    compose_variables,
    interpolate,
    load_yaml,
    read_env_file,
)

# The variables without which compose must refuse to start, and where each one goes.
REQUIRED = {
    "NEXWATT_POSTGRES_PASSWORD",
    "NEXWATT_REDIS_PASSWORD",
    "NEXWATT_GRAFANA_ADMIN_PASSWORD",
}
# Environment names that hold a credential.
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|API_KEY|REDISCLI_AUTH")
# What a user puts in .env: the example's values plus the passwords it leaves empty.
PASSWORDS = {
    "NEXWATT_POSTGRES_PASSWORD": "pg0secret",
    "NEXWATT_REDIS_PASSWORD": "redis0secret",
    "NEXWATT_GRAFANA_ADMIN_PASSWORD": "grafana0secret",
}


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def deployed(raw) -> dict[str, Any]:
    """The compose file as `docker compose` sees it with .env.example filled in."""
    return interpolate(raw, {**read_env_file(ENV_EXAMPLE), **PASSWORDS})


def _published(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host_ip, published port) of each port entry, short ("ip:host:container") or long."""
    out = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            out.append((entry.get("host_ip", ""), str(entry.get("published", ""))))
            continue
        parts = str(entry).rsplit(":", 2)
        host_ip = parts[0] if len(parts) == 3 else ""
        published = parts[-2] if len(parts) >= 2 else ""
        out.append((host_ip, published))
    return out


def test_every_published_port_is_bound_to_the_loopback(deployed) -> None:
    published = {name: _published(s) for name, s in deployed["services"].items()}
    bound = {name: ports for name, ports in published.items() if ports}
    # Kafka, PostgreSQL, Redis, monitoring and every HTTP API are reachable from the host...
    expected = {"kafka", "postgres", "redis", "prometheus", "grafana", "fleet-sim"}
    expected |= {"onboarding", "telemetry-ingest", "capacity-model", "dispatch", "settlement"}
    assert set(bound) == expected
    # ... but only from the host itself.
    for name, ports in bound.items():
        for host_ip, port in ports:
            assert host_ip == "127.0.0.1", f"{name} publishes {port} on {host_ip or 'all'}"
    assert ("127.0.0.1", "25432") in bound["postgres"]


def test_the_port_parser_sees_an_unbound_port() -> None:
    """Guard: a port without an address (every interface) is not mistaken for a bound one."""
    assert _published({"ports": ["8081:8081"]}) == [("", "8081")]
    assert _published({"ports": [{"target": 80, "published": 8080}]}) == [("", "8080")]
    assert _published({"ports": ["127.0.0.1:3000:3000"]}) == [("127.0.0.1", "3000")]


def test_no_credential_has_a_value_in_the_file(raw) -> None:
    offenders = []
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if not SECRET_NAME.search(key):
                continue
            # Only a reference to a variable: `${VAR:?...}` (required) or `${VAR:-}` (empty).
            text = str(value)
            required = re.fullmatch(r"\$\{(\w+):\?[^}]*\}", text)
            empty = re.fullmatch(r"\$\{(\w+):-\}", text)
            if not (required or empty):
                offenders.append(f"{name}.{key}={text}")
    assert not offenders, offenders
    assert "admin/admin" not in COMPOSE_FILE.read_text()


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_compose_refuses_to_start_without_each_password(raw, missing) -> None:
    env = {**read_env_file(ENV_EXAMPLE), **PASSWORDS}
    del env[missing]
    with pytest.raises(KeyError, match=missing):
        interpolate(raw, env)
    # Empty counts as missing: a copied .env.example fails until the passwords are set.
    with pytest.raises(KeyError, match=missing):
        interpolate(raw, {**env, missing: ""})


def test_the_passwords_reach_the_servers_and_every_client(deployed) -> None:
    services = deployed["services"]
    postgres = services["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD"] == PASSWORDS["NEXWATT_POSTGRES_PASSWORD"]
    grafana = services["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_USER"] == "admin"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == PASSWORDS["NEXWATT_GRAFANA_ADMIN_PASSWORD"]

    # Redis reads its password from stdin (requirepass), its healthcheck from REDISCLI_AUTH.
    redis = services["redis"]
    assert redis["environment"]["REDISCLI_AUTH"] == PASSWORDS["NEXWATT_REDIS_PASSWORD"]
    script = redis["command"][2]
    assert "requirepass $REDISCLI_AUTH" in script.splitlines()
    assert script.splitlines()[-1] == "EOF"
    assert "grep -q PONG" in redis["healthcheck"]["test"][1]

    # Every process with NEXWATT_* settings connects with those passwords, by service name.
    clients = [s for s in services.values() if "NEXWATT_REDIS_URL" in s.get("environment", {})]
    assert len(clients) >= 9  # init, the five services, connectors, the three simulators
    for service in clients:
        env = service["environment"]
        redis_url = urlsplit(env["NEXWATT_REDIS_URL"])
        assert (redis_url.hostname, redis_url.port) == ("redis", 6379)
        assert redis_url.password == PASSWORDS["NEXWATT_REDIS_PASSWORD"]
        postgres_url = urlsplit(env["NEXWATT_POSTGRES_URL"])
        assert (postgres_url.hostname, postgres_url.port) == ("postgres", 5432)
        assert postgres_url.password == PASSWORDS["NEXWATT_POSTGRES_PASSWORD"]
        assert env["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_env_example_lists_every_variable_of_the_compose_file() -> None:
    example = read_env_file(ENV_EXAMPLE)
    used = compose_variables(COMPOSE_FILE.read_text())
    assert used >= REQUIRED
    assert sorted(used - example.keys()) == [], "missing from .env.example"
    assert sorted(example.keys() - used) == [], "in .env.example but not used by compose"
    # The example holds no password: the required ones stay empty until the user sets them.
    for name in example:
        if SECRET_NAME.search(name):
            assert example[name] == "", f"{name} has a value in .env.example"
    # Each variable has a comment above it (or above its group).
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            above = [lines[i] for i in range(index - 1, -1, -1) if "=" not in lines[i]]
            assert above and above[0].startswith("#"), f"{line} has no comment"


def test_interpolation_matches_compose() -> None:
    """Guard the helper itself on the forms the file uses."""
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("$${SET}", env) == "${SET}"
    assert interpolate("${SET:?need}", env) == "v"
    assert interpolate("${EMPTY:-d}/${UNSET:-d}/${EMPTY-d}", env) == "d/d/"
    with pytest.raises(KeyError, match="EMPTY: need"):
        interpolate("${EMPTY:?need}", env)
