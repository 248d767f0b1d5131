"""Wires the fleet simulator: the simulation loop, the command consumer, a truth endpoint."""

from __future__ import annotations

from fastapi import FastAPI

from nexwatt_fleet_sim.config import Settings
from nexwatt_fleet_sim.fleet import build_fleet
from nexwatt_fleet_sim.simulator import Simulator
from nexwatt_shared.service import ServiceProcess
from nexwatt_shared.topics import ASSET_COMMAND
from nexwatt_shared.wiring import open_resources


async def bootstrap(settings: Settings) -> ServiceProcess:
    res = await open_resources(settings)
    sim = Simulator(settings, build_fleet(settings), res.producer)
    commands = res.consumer([ASSET_COMMAND], sim.handle_commands)
    app = FastAPI(title="Nexwatt fleet simulator")

    @app.get("/v1/truth")
    async def truth() -> dict[str, object]:
        """What the fleet's batteries really delivered per instruction over its window, and
        the simulation's event clock. Outside events home batteries run self-consumption, so
        a baseline-based settlement measures this less what they would have given anyway."""
        return {
            "clock": sim.clock.isoformat(),
            "delivered_mwh": {k: v / 1000.0 for k, v in sim.delivered_kwh.items()},
        }

    return res.process([sim.run, commands.run], app)
