"""`nexwatt-fleet-sim register`: enrol the simulated fleet through onboarding's REST API, as an
installer would, with progress and a summary of what was refused."""

from __future__ import annotations

import asyncio
import sys

import httpx

from nexwatt_fleet_sim.config import Settings
from nexwatt_fleet_sim.fleet import build_fleet

CONCURRENCY = 16


async def register(settings: Settings) -> None:
    bodies = build_fleet(settings).registrations
    gate = asyncio.Semaphore(CONCURRENCY)
    refused: list[str] = []
    done = 0

    async def one(client: httpx.AsyncClient, body: dict) -> None:
        nonlocal done
        async with gate:
            response = await client.post("/v1/assets/register", json=body)
        if response.status_code != 200 or response.json().get("status") != "enrolled":
            refused.append(f"{body['asset_id']}: {response.status_code} {response.text[:300]}")
        done += 1
        if done % 50 == 0 or done == len(bodies):
            print(f"    registered {done}/{len(bodies)} assets", flush=True)

    key = settings.api_key
    headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
    async with httpx.AsyncClient(
        base_url=settings.sim_onboarding_url, headers=headers, timeout=30
    ) as client:
        await asyncio.gather(*(one(client, b) for b in bodies))
    if refused:
        print(f"{len(refused)} registrations refused:", *refused[:10], sep="\n  ", file=sys.stderr)
        raise SystemExit(1)
