"""The demo's API key (deploy/local/demo.py `demo_key`), made against the real onboarding that
requires keys, and the fleet simulator's registration with it, and without it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from nexwatt_admin.launcher import Launcher
from tests.integration.onboarding.conftest import ROOT, Service

pytestmark = pytest.mark.integration


def _demo() -> ModuleType:
    # deploy/local is scripts, not a package.
    spec = importlib.util.spec_from_file_location("demo", ROOT / "deploy/local/demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_key_is_written_to_the_env_file_and_registers_the_fleet(
    service: Service, tmp_path: Path
) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("NEXWATT_REDIS_URL=redis://x\nNEXWATT_API_KEY=an-old-one\n")
    launcher = Launcher(
        tmp_path / "logs",
        env={
            "NEXWATT_POSTGRES_URL": service.server_url,
            "NEXWATT_POSTGRES_DATABASE": service.database,
        },
    )
    token = _demo().demo_key(launcher, env_file)
    assert env_file.read_text() == f"NEXWATT_REDIS_URL=redis://x\nNEXWATT_API_KEY={token}\n"

    fleet = {
        **os.environ,
        "NEXWATT_SIM_ONBOARDING_URL": service.url,
        "NEXWATT_SIM_ASSETS": "12",
        "NEXWATT_SIM_SEED": "7",
    }
    register = [*launcher.command("fleet-sim"), "register"]
    refused = subprocess.run(register, env=fleet, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "12 registrations refused" in refused.stderr and " 401 " in refused.stderr
    done = subprocess.run(
        register,
        env={**fleet, "NEXWATT_API_KEY": token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "registered 12/12 assets" in done.stdout

    key = {"Authorization": f"Bearer {token}"}
    summary = httpx.get(f"{service.url}/v1/resources/NXW-PJM-0042", headers=key).json()
    assert summary["assets_enrolled"] == 12  # the demo tenant's own, in this module's database
