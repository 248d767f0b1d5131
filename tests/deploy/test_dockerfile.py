"""deploy/docker/Dockerfile: hadolint-clean, and built the way the deploy needs (one image,
dependency layer before the source, non-root, slim runtime). The wheel it installs is built here
too, to check that every service's migrations ship inside it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.deploy.support import DOCKERFILE, ROOT, run


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_hadolint_has_no_warnings(hadolint: str) -> None:
    result = run([hadolint, "--failure-threshold", "warning", "--no-color", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_with_a_slim_runtime() -> None:
    steps = _instructions()
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1] for k, rest in steps if k == "ARG"}
    froms = [rest for k, rest in steps if k == "FROM"]
    assert len(froms) == 2
    assert froms[0].endswith("AS builder")
    final_base = froms[-1].split()[0]
    assert final_base.replace("${PYTHON_IMAGE}", args["PYTHON_IMAGE"]) == "python:3.11-slim"


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    steps = _instructions()
    runtime_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    builder = steps[:runtime_from]
    copies = [(i, rest) for i, (k, rest) in enumerate(builder) if k == "COPY"]
    runs = [(i, rest) for i, (k, rest) in enumerate(builder) if k == "RUN"]
    first_copy = copies[0]
    assert first_copy[1].split()[0] == "pyproject.toml"
    deps = next(i for i, rest in runs if "--requirement" in rest)
    source = [i for i, rest in copies if rest.split()[0] in {"shared/", "services/"}]
    assert len(source) == 2 and first_copy[0] < deps < min(source)
    wheel = next(i for i, rest in runs if "pip wheel" in rest)
    assert wheel > max(source)
    assert "[dev]" not in DOCKERFILE.read_text()


def test_runtime_stage_is_non_root_with_healthcheck_and_command() -> None:
    steps = _instructions()
    final = steps[max(i for i, (k, _) in enumerate(steps) if k == "FROM") :]
    keywords = [k for k, _ in final]
    user = [rest for k, rest in final if k == "USER"]
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    assert "RUN" not in keywords or not any(
        re.search(r"apt-get install|gcc|build-essential", rest) for k, rest in final if k == "RUN"
    )
    (healthcheck,) = [rest for k, rest in final if k == "HEALTHCHECK"]
    for needle in ("urllib", "/healthz", "NEXWATT_HTTP_PORT"):
        assert needle in healthcheck
    assert "EXPOSE" in keywords
    assert ("ENTRYPOINT", "[]") in final
    (cmd,) = [rest for k, rest in final if k == "CMD"]
    assert cmd == '["nexwatt-admin", "--help"]'
    assert any(k == "COPY" and "--from=builder" in rest for k, rest in final)


def test_dockerignore_keeps_what_the_build_copies() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # allow-list: nothing by default
    for needed in ("pyproject.toml", "README.md", "shared/", "services/"):
        assert f"!{needed}" in lines, needed
        assert (ROOT / needed).exists()


def test_wheel_ships_every_service_and_its_migrations(tmp_path: Path) -> None:
    # Same build as the image's `pip wheel --no-deps .` (hatchling, from pyproject.toml).
    result = run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), "."],
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("nexwatt-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected_sql = {
        str(p.relative_to(ROOT / "services"))
        for p in (ROOT / "services").glob("nexwatt_*/migrations/*.sql")
    }
    assert expected_sql, "no migrations found under services/"
    assert expected_sql <= names, sorted(expected_sql - names)
    for package in (ROOT / "services").glob("nexwatt_*/__init__.py"):
        assert f"{package.parent.name}/__init__.py" in names
    assert "nexwatt_shared/__init__.py" in names


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_healthcheck_probes_the_service_port(health_server: int) -> None:
    """Run the HEALTHCHECK's own command against a local /healthz."""
    (healthcheck,) = [rest for k, rest in _instructions() if k == "HEALTHCHECK"]
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]

    def probe(port: int) -> int:
        env = {**os.environ, "NEXWATT_HTTP_PORT": str(port)}
        argv = [sys.executable, *command[1:]]
        return subprocess.run(argv, env=env, timeout=30, capture_output=True).returncode

    assert probe(health_server) == 0
    server = HTTPServer(("127.0.0.1", 0), _Health)  # a port nobody listens on once closed
    closed = server.server_address[1]
    server.server_close()
    assert probe(closed) == 1
