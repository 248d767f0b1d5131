"""The onboarding service as its real process (own port, own database, API keys required), and
keys for it made with `nexwatt-admin keys create`, as an operator would."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from nexwatt_shared.auth import well_formed
from tests.helpers import drop_database, eventually, unique

ROOT = Path(__file__).resolve().parents[3]
ALL_SCOPES = ("assets:write", "assets:read", "reports:read")


@dataclass(frozen=True)
class Service:
    url: str
    database: str
    server_url: str  # PostgreSQL's


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    """`nexwatt-admin keys --database <the service's> ARGS`, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "nexwatt_admin", "keys", "--database", service.database, *args],
        cwd=ROOT,
        env={**os.environ, "NEXWATT_POSTGRES_URL": service.server_url},
        capture_output=True,
        text=True,
        timeout=30,
    )


def create_key(service: Service, tenant: str, *scopes: str) -> str:
    """A new key's token: all that `keys create` prints on stdout (for KEY=$(...) in scripts)."""
    done = admin(service, "create", "--tenant", tenant, *(f"--scope={s}" for s in scopes))
    assert done.returncode == 0, done.stderr
    token = done.stdout.removesuffix("\n")
    assert well_formed(token), done.stdout
    return token


@pytest.fixture(scope="module")
def service(servers: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    port = free_port()
    database = unique("test_onboarding").replace("-", "_")
    log_path = tmp_path_factory.mktemp("onboarding") / "service.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nexwatt_onboarding"],
            cwd=ROOT,
            env={
                **os.environ,
                "NEXWATT_HTTP_HOST": "127.0.0.1",
                "NEXWATT_HTTP_PORT": str(port),
                "NEXWATT_POSTGRES_DATABASE": database,
                "NEXWATT_AUTH_REQUIRED": "true",
            },
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(eventually(lambda: _ready(url, proc), bool, timeout_s=30))
    except AssertionError:
        proc.kill()
        raise AssertionError(f"onboarding did not get ready:\n{log_path.read_text()}") from None
    yield Service(url, database, servers["NEXWATT_POSTGRES_URL"])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0, log_path.read_text()
    asyncio.run(drop_database(servers["NEXWATT_POSTGRES_URL"], database))


async def _ready(url: str, proc: subprocess.Popen) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"onboarding exited with {proc.returncode}")
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{url}/readyz")).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def key(service: Service) -> str:
    """A key of the module's tenant with every scope."""
    return create_key(service, "tenant-a", *ALL_SCOPES)


@pytest.fixture
async def api(service: Service, key: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=10) as client:
        yield client
