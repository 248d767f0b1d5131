"""Shared pieces of the deploy tests: where things are, the external tools, rendering."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "nexwatt"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE_VERSION = "1.30.0"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"

# Chart components: values key -> service name (= compose service, console script suffix).
COMPONENTS = {
    "onboarding": "onboarding",
    "telemetryIngest": "telemetry-ingest",
    "capacityModel": "capacity-model",
    "dispatch": "dispatch",
    "settlement": "settlement",
}
# Compose-only processes (the `demo` profile); the chart does not deploy them.
SIMULATORS = {"fleet-sim", "iso-sim"}
# The vendor connectors (`nexwatt-ingest connect`): optional in both, no HTTP server. The name is
# the compose service, the chart's values key and its component label.
CONNECTORS = "connectors"
SITES_FILE = "/etc/nexwatt/sites.json"  # where both mount the sites file
# Contract ports (NEXWATT_HTTP_PORT).
PORTS = {
    "onboarding": 8081,
    "telemetry-ingest": 8082,
    "capacity-model": 8083,
    "dispatch": 8084,
    "settlement": 8085,
    "fleet-sim": 8086,
    "iso-sim": 8087,
}


def find_tool(name: str, *candidates: Path) -> str:
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    on_path = shutil.which(name)
    if on_path:
        return on_path
    reason = f"{name} not found (looked in {', '.join(map(str, candidates))} and PATH)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; `make setup` installs it", pytrace=False)
    pytest.skip(reason)


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


def helm_template(helm: str, *args: str) -> list[dict[str, Any]]:
    command = [helm, "template", "nexwatt", str(CHART), "--namespace", "nexwatt"]
    result = run([*command, "--kube-version", KUBE_VERSION, *args])
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@dataclass(frozen=True)
class ServiceSettingsInfo:
    package: str  # nexwatt_telemetry_ingest
    service: str  # telemetry-ingest
    settings: type  # its Settings class

    def env_names(self) -> dict[str, Any]:
        """NEXWATT_<FIELD> for every settings field, with the field's default."""
        return {
            f"NEXWATT_{name.upper()}": field.default
            for name, field in self.settings.model_fields.items()
        }


def discover_services() -> list[ServiceSettingsInfo]:
    """Every services/nexwatt_*/config.py that defines Settings(ServiceSettings)."""
    from nexwatt_shared.settings import ServiceSettings

    found = []
    for config in sorted((ROOT / "services").glob("nexwatt_*/config.py")):
        package = config.parent.name
        module = importlib.import_module(f"{package}.config")
        settings = module.Settings
        assert issubclass(settings, ServiceSettings), f"{package}.config.Settings"
        service = package.removeprefix("nexwatt_").replace("_", "-")
        found.append(ServiceSettingsInfo(package, service, settings))
    return found


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def deployment(docs: list[dict], component: str) -> dict:
    """The one Deployment of `component` among rendered manifests."""
    (found,) = [
        d
        for d in docs
        if d["kind"] == "Deployment"
        and d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


# Compose interpolation: $$ (a literal $), ${VAR}, ${VAR:-default}, ${VAR-default},
# ${VAR:?error}, ${VAR?error}, ${VAR:+replacement}, ${VAR+replacement}, $VAR.
INTERPOLATION = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?[-?+])([^}]*))?\}|(\w+))")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """`value` (a parsed compose file or any part of it) with its variables resolved from `env`,
    as `docker compose` does; a missing required variable raises KeyError with its message."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def resolve(match: re.Match[str]) -> str:
        dollar, name, operator, argument, bare = match.groups()
        if dollar:
            return "$"
        if bare:
            return env.get(bare, "")
        found = env.get(name)
        # The colon forms treat an empty value like an unset one.
        present = found is not None and (found != "" or not (operator or "").startswith(":"))
        match operator:
            case None:
                return found or ""
            case ":-" | "-":
                return found if present else argument
            case ":?" | "?":
                if not present:
                    raise KeyError(f"{name}: {argument}")
                return found
            case _:  # ":+" | "+"
                return argument if present else ""

    return INTERPOLATION.sub(resolve, value)


def compose_variables(text: str) -> set[str]:
    """The names of every variable a compose file's text refers to ($$ is an escaped $)."""
    return {m.group(2) or m.group(5) for m in INTERPOLATION.finditer(text) if not m.group(1)}


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines of a .env file (comments and blank lines skipped)."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, value = line.split("=", 1)
            pairs[name.strip()] = value
    return pairs
