"""The platform running the product's story on the real stack, for the e2e and fault tiers.

`platform_running` starts the five services as processes (each tier on ports of its own, so a
demo left running on 8081-8086 does not collide), registers a small fleet of the run's own
through onboarding's REST API into a resource of its own, and starts the fleet simulator. Asset
and resource ids are new on every run, so earlier runs' events cannot interfere.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from nexwatt_admin.launcher import SERVICES, Launcher
from nexwatt_shared.contracts import DispatchInstruction
from tests.helpers import unique

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Story:
    """One run: its ids, its event-time start and where its processes listen."""

    port_offset: int
    assets: int = 12
    speed: float = 120.0
    run: str = field(default_factory=lambda: unique("RUN").upper().replace("-", ""))
    # Event time starts three whole hours before the wall clock: the fleet runs faster than
    # real time, and services refuse telemetry stamped ahead of the wall clock.
    start: datetime = field(
        default_factory=lambda: (
            datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
        )
    )

    @property
    def resource(self) -> str:
        return f"NXW-PJM-{self.run}"

    @property
    def ports(self) -> dict[str, int]:
        return {name: port + self.port_offset for name, port in SERVICES.items()}

    @property
    def fleet_port(self) -> int:
        return 8086 + self.port_offset

    def service_env(self, name: str, replica: int = 1) -> dict[str, str]:
        port = self.ports[name] + 100 * (replica - 1)  # a further replica: its own HTTP port
        # Offline assets never report: settlement files once the rest has stopped growing; a
        # restatement goes out at once.
        return {
            "NEXWATT_HTTP_PORT": str(port),
            "NEXWATT_SETTLEMENT_STALL_S": "10",
            "NEXWATT_SETTLEMENT_RESTATE_EVERY_S": "0",
        }

    def fleet_env(self) -> dict[str, str]:
        return {
            "NEXWATT_HTTP_PORT": str(self.fleet_port),
            "NEXWATT_SIM_ASSETS": str(self.assets),
            "NEXWATT_SIM_SEED": "7",
            "NEXWATT_SIM_START": self.start.isoformat(),
            "NEXWATT_SIM_SPEED": str(self.speed),
            "NEXWATT_SIM_ASSET_PREFIX": f"{self.run}-",
            "NEXWATT_SIM_RESOURCE_ID": self.resource,
            # The story's event is a March morning: self-consuming home batteries would be at
            # their reserve, so the fleet holds its charge for events.
            "NEXWATT_SIM_HOME_SELF_CONSUMPTION": "false",
            "NEXWATT_SIM_OFFLINE_FRACTION": "0.1",
            "NEXWATT_SIM_UNDER_RESPONSE_FRACTION": "0.2",
            "NEXWATT_SIM_REFUSAL_FRACTION": "0.1",
            "NEXWATT_SIM_UNREACHABLE_FRACTION": "0.1",
            "NEXWATT_SIM_LOST_COMMAND_FRACTION": "0.2",
            "NEXWATT_SIM_ONBOARDING_URL": f"http://127.0.0.1:{self.ports['onboarding']}",
        }

    def instruction(self, suffix: str, mw: float, resource: str | None = None):
        """An instruction for the window 00:15-00:45 of the run, issued at 00:16."""
        return DispatchInstruction(
            instruction_id=f"{self.run}-{suffix}",
            resource_id=resource or self.resource,
            mw=mw,
            window_start=self.start + timedelta(minutes=15),
            window_end=self.start + timedelta(minutes=45),
            issued_at=self.start + timedelta(minutes=16),
        )

    async def truth(self) -> dict:
        """The simulator's own account: its event clock and what it delivered."""
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"http://127.0.0.1:{self.fleet_port}/v1/truth")
        return response.json()

    async def sim_clock(self) -> datetime:
        return datetime.fromisoformat((await self.truth())["clock"])


@asynccontextmanager
async def platform_running(
    story: Story, log_dir: Path, fleet: bool = True
) -> AsyncIterator[Launcher]:
    """The five services and (with `fleet`) the registered fleet and its simulator, all
    running; stopped with SIGTERM after, every one of them required to exit 0."""
    launcher = Launcher(log_dir)
    codes: dict[str, int | None] = {}
    try:
        for name in SERVICES:
            launcher.start(name, env=story.service_env(name))
        await launcher.wait_ready(story.ports)
        if not fleet:
            yield launcher
            return
        key = launcher.api_key(f"story-{story.run.lower()}", ["assets:write"], "story")
        register = [*launcher.command("fleet-sim"), "register"]
        fleet_env = {**os.environ, **story.fleet_env(), "NEXWATT_API_KEY": key}
        await asyncio.to_thread(subprocess.run, register, env=fleet_env, check=True)
        launcher.start("fleet-sim", env=story.fleet_env())
        await launcher.wait_ready({"fleet-sim": story.fleet_port})
        yield launcher
    finally:
        codes = launcher.stop_all()
    assert all(code == 0 for code in codes.values()), f"unclean stops: {codes}"
