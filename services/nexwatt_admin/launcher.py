"""Starting the platform's processes on one machine (the demo and the end-to-end tests):
each service as its own process with its log in a file, readiness awaited on /readyz, and a
clean SIGTERM stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import BinaryIO

import httpx

# Service name -> HTTP port; each runs as `nexwatt-<name>`.
SERVICES: dict[str, int] = {
    "onboarding": 8081,
    "telemetry-ingest": 8082,
    "capacity-model": 8083,
    "dispatch": 8084,
    "settlement": 8085,
}


class Launcher:
    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.env = {**os.environ, **(env or {})}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, BinaryIO] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def command(self, name: str) -> list[str]:
        """The console script next to this Python (the virtualenv's), else on PATH."""
        local = Path(sys.executable).with_name(f"nexwatt-{name}")
        return [str(local) if local.exists() else f"nexwatt-{name}"]

    def start(
        self, name: str, *args: str, env: dict[str, str] | None = None, replica: int = 1
    ) -> str:
        """Start `nexwatt-<name>`; returns the key it is known by here: the name, or
        `<name>-<replica>` for a further replica (same group and database, its own log)."""
        key = name if replica == 1 else f"{name}-{replica}"
        log = self.logs[key] = (self.log_dir / f"{key}.log").open("ab")
        self.procs[key] = subprocess.Popen(
            [*self.command(name), *args],
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        return key

    def api_key(self, tenant: str, scopes: list[str], name: str) -> str:
        """A new onboarding API key of `tenant` (`nexwatt-admin keys create`, into the database
        of the onboarding this launcher runs); the token, shown only now."""
        create = [*self.command("admin"), "keys", "create", "--tenant", tenant, "--name", name]
        create += [f"--scope={s}" for s in scopes]
        done = subprocess.run(create, env=self.env, check=True, capture_output=True, text=True)
        return done.stdout.strip()  # `keys create` prints only the token on stdout

    async def wait_ready(self, ports: dict[str, int], timeout_s: float = 60.0) -> None:
        """Poll each /readyz until all answer 200; fail early when a process dies."""
        deadline = time.monotonic() + timeout_s
        pending = dict(ports)
        async with httpx.AsyncClient(timeout=2) as client:
            while pending:
                for name, port in list(pending.items()):
                    self.check_alive(name)
                    try:
                        ok = (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code
                    except httpx.HTTPError:
                        ok = 0
                    if ok == 200:
                        del pending[name]
                if pending and time.monotonic() > deadline:
                    raise RuntimeError(f"not ready after {timeout_s:.0f}s: {sorted(pending)}")
                await asyncio.sleep(0.3)

    def check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise RuntimeError(
                f"{name} exited with {proc.returncode}; last lines of its log:\n{self.tail(name)}"
            )

    def tail(self, name: str, lines: int = 25) -> str:
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self, name: str) -> None:
        """SIGKILL: no batch finished, no offset committed, nothing flushed."""
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait()
        self.logs.pop(name).close()

    def stop(self, name: str, timeout_s: float = 20.0) -> int | None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.logs.pop(name).close()
        return proc.returncode

    def stop_all(self) -> dict[str, int | None]:
        return {name: self.stop(name) for name in list(reversed(self.procs))}
