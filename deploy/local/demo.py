"""`make demo`: the product's story end to end on the real local stack.

A fresh local stack; the five services; an API key for the demo tenant (in `.stack/env` as
NEXWATT_API_KEY); 312 subscriber assets registered with it through the REST API;
the fleet simulator streaming telemetry at 60x real time; the ISO simulator sending a 44.5 MW
instruction for NXW-PJM-0042 at 09:17 (window 09:15-10:15); then the dispatch event log as the
services report it, down to the preliminary settlement report. Before the event, the resource's
accredited capacity (UCAP) and its offer to the next delivery year's auction, sized, approved,
submitted and cleared by the ISO simulator; after it, the cleared capacity's revenue split to
its cohorts. `--keep-running` leaves everything up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from nexwatt_admin.launcher import SERVICES, Launcher
from nexwatt_settlement.baselines import DayKind
from nexwatt_settlement.market_time import day_kind
from nexwatt_shared.delivery_year import next_delivery_year

ROOT = Path(__file__).resolve().parents[2]
MARKET = ZoneInfo("America/New_York")
RESOURCE = "NXW-PJM-0042"
CAPACITY_URL = "http://127.0.0.1:8083"
FLEET_SIM_PORT = 8086
ENV_FILE = ROOT / ".stack/env"
DEMO_TENANT = "demo"


async def run(argv: list[str], env: dict[str, str] | None = None, quiet: bool = False) -> None:
    out = subprocess.DEVNULL if quiet else None
    await asyncio.to_thread(subprocess.run, argv, check=True, env=env, stdout=out)


def story_day(today: date) -> date:
    """The most recent working day before `today` (not a weekend, not a NERC holiday): the
    story replays its morning, recent enough to be settled preliminary (not past the 60-day
    restatement deadline) and a weekday, as the program's events are."""
    day = today - timedelta(days=1)
    while day_kind(day) != DayKind.WEEKDAY:
        day -= timedelta(days=1)
    return day


def story_env(day: date) -> dict[str, str]:
    """The fleet starts at 08:44 and the ISO asks for 09:15-10:15 at 09:17, market time."""

    def at(hour: int, minute: int) -> str:
        return datetime.combine(day, clock_time(hour, minute), MARKET).isoformat()

    return {
        "NEXWATT_SIM_START": at(8, 44),
        # A morning event: self-consuming home batteries would be at their reserve by now, so
        # the demo fleet holds its charge for events (a program's "save for events" mode).
        "NEXWATT_SIM_HOME_SELF_CONSUMPTION": "false",
        # A capability test first (08:55-09:10): dispatch measures what each asset delivers of
        # what it acknowledges, and over-dispatches the event by it.
        "NEXWATT_ISO_TEST_AT": at(8, 55),
        "NEXWATT_ISO_ISSUE_AT": at(9, 17),
        "NEXWATT_ISO_WINDOW_START": at(9, 15),
        "NEXWATT_ISO_WINDOW_END": at(10, 15),
    }


def demo_key(launcher: Launcher, env_file: Path = ENV_FILE) -> str:
    """A new API key of the demo tenant with every scope (`nexwatt-admin keys create`, into the
    database of the onboarding the launcher runs), set as NEXWATT_API_KEY in `env_file` (other
    lines kept) for the fleet simulator and for trying the API by hand."""
    scopes = ["assets:write", "assets:read", "reports:read"]
    token = launcher.api_key(DEMO_TENANT, scopes, "make demo")
    kept = env_file.read_text().splitlines() if env_file.exists() else []
    lines = [line for line in kept if not line.startswith("NEXWATT_API_KEY=")]
    env_file.write_text("".join(f"{line}\n" for line in [*lines, f"NEXWATT_API_KEY={token}"]))
    env_file.chmod(0o600)  # the key has every scope: for this user's eyes only
    return token


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


async def wait_for_enrolment(expected: int, timeout_s: float = 60.0) -> None:
    """Until the capacity model counts every registered asset in the resource."""
    url = f"http://127.0.0.1:{SERVICES['capacity-model']}/v1/resources/{RESOURCE}/capacity"
    deadline, seen = time.monotonic() + timeout_s, -1
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            try:
                response = await client.get(url)
            except httpx.HTTPError:
                response = None
            ok = response is not None and response.status_code == 200
            count = response.json().get("assets_enrolled", 0) if ok else 0
            if count != seen:
                print(f"    capacity model sees {count}/{expected} assets enrolled", flush=True)
                seen = count
            if count >= expected:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {count} of {expected} assets reached the capacity model")
            await asyncio.sleep(0.5)


def play_story(launcher: Launcher) -> dict[str, float]:
    """Run the ISO simulator in the foreground, echo its event log, return its numbers."""
    iso = subprocess.Popen(
        launcher.command("iso-sim"), env=launcher.env, stdout=subprocess.PIPE, text=True
    )
    numbers: dict[str, float] = {}
    assert iso.stdout is not None
    for line in iso.stdout:
        print(line, end="", flush=True)
        for key, value in re.findall(r"(\w+): \"?(-?[0-9.]+)", line):
            numbers[key] = float(value)
    if iso.wait() != 0:
        raise RuntimeError(f"the ISO simulator exited with {iso.returncode}")
    return numbers


async def auction(launcher: Launcher, delivery_year: str) -> float | None:
    """The resource's UCAP, the commitment recommendation, and the offer through approval and
    submission to the ISO simulator's clearing; returns the cleared MW (None: not cleared)."""
    async with httpx.AsyncClient(base_url=CAPACITY_URL, timeout=30) as client:
        for _ in range(120):  # the snapshot follows the 312 records
            snap = (await client.get(f"/v1/resources/{RESOURCE}/capacity")).json()
            if snap.get("assets_enrolled") == 312:
                break
            await asyncio.sleep(0.5)
        ucap = ", ".join(f"{y} {mw:.3f} MW" for y, mw in snap.get("ucap_mw", {}).items())
        print(f"    ICAP {snap.get('icap_mw', 0):.3f} MW; UCAP {ucap}", flush=True)
        for cohort in snap.get("cohorts", []):
            print(
                f"      {cohort['cohort']:<12} {cohort['assets_enrolled']:>4} assets,"
                f" UCAP {delivery_year} {cohort['ucap_mw'].get(delivery_year, 0):.3f} MW",
                flush=True,
            )
        sized = await client.post(
            f"/v1/resources/{RESOURCE}/offers", json={"delivery_year": delivery_year}
        )
        if sized.status_code != 201:
            print(f"    no offer for {delivery_year}: {sized.text}", flush=True)
            return None
        offer = sized.json()
        sizing = offer["sizing"]
        print(
            f"    recommended offer {offer['offered_ucap_mw']:.3f} MW UCAP at"
            f" ${offer['price_usd_per_mw_day']:.2f}/MW-day: the {sizing['quantile']:.1%} quantile"
            f" of deliverable UCAP; expected revenue ${sizing['expected_revenue_usd']:,.0f},"
            f" expected penalty ${sizing['expected_penalty_usd']:,.0f}",
            flush=True,
        )
        offer_url = f"/v1/offers/{offer['offer_id']}"
        (
            await client.post(f"{offer_url}/approve", json={"approved_by": "demo-operator"})
        ).raise_for_status()
        print("    approved by demo-operator", flush=True)
        iso = await asyncio.create_subprocess_exec(
            *launcher.command("iso-sim"), "auction", "--offers", "1",
            env=launcher.env, stdout=subprocess.PIPE,
        )  # fmt: skip
        (await client.post(f"{offer_url}/submit")).raise_for_status()
        print("    submitted; the ISO simulator answers:", flush=True)
        out, _ = await asyncio.wait_for(iso.communicate(), timeout=120)
        for line in out.decode().splitlines():
            if "OFFER_" in line:
                print(f"      {line}", flush=True)
        for _ in range(120):  # the clearing comes back on capacity.clearing
            state = (await client.get(offer_url)).json()
            if state["state"] != "submitted":
                break
            await asyncio.sleep(0.5)
        print(
            f"    offer {state['state']}: {state.get('cleared_mw') or 0:.3f} MW at"
            f" ${state.get('clearing_price_usd_per_mw_day') or 0:.2f}/MW-day",
            flush=True,
        )
        return state.get("cleared_mw") if state["state"] == "cleared" else None


async def main(keep_running: bool) -> None:
    started = time.monotonic()
    step("A fresh local stack (the story starts from a clean slate)")
    await run([sys.executable, str(ROOT / "deploy/local/stack.py"), "reset"])
    day = story_day(datetime.now(MARKET).date())
    launcher = Launcher(ROOT / ".stack/logs/demo", env=story_env(day))
    await run([*launcher.command("admin"), "create-topics"], launcher.env, quiet=True)  # fmt: skip
    try:
        step("Starting onboarding, telemetry-ingest, capacity-model, dispatch, settlement")
        for name in SERVICES:
            # The demo fleet has offline assets that never report: settle without them once
            # the others' data has stopped arriving for 20 s (15 minutes by default).
            env = {"NEXWATT_SETTLEMENT_STALL_S": "20"} if name == "settlement" else None
            launcher.start(name, env=env)
        await launcher.wait_ready(SERVICES)
        print("    all five ready (/readyz)", flush=True)

        step(f"An API key for the tenant {DEMO_TENANT!r} (nexwatt-admin keys create)")
        launcher.env["NEXWATT_API_KEY"] = await asyncio.to_thread(demo_key, launcher)
        print(f"    written to {ENV_FILE.relative_to(ROOT)} as NEXWATT_API_KEY", flush=True)

        step("Registering the demo fleet through POST /v1/assets/register")
        await run([*launcher.command("fleet-sim"), "register"], launcher.env)
        await wait_for_enrolment(expected=312)

        delivery_year = next_delivery_year(day)
        step(f"{RESOURCE}: accredited capacity, and its offer to the {delivery_year} auction")
        cleared_mw = await auction(launcher, delivery_year)

        step(
            f"Fleet simulator streaming {day:%a %Y-%m-%d} (60x real time, after 14 days of"
            " hourly history); ISO simulator waiting for 09:17"
        )
        launcher.start("fleet-sim")
        await launcher.wait_ready({"fleet-sim": FLEET_SIM_PORT})
        print("\nDispatch event log (event time, America/New_York):", flush=True)
        numbers = await asyncio.to_thread(play_story, launcher)

        async with httpx.AsyncClient(timeout=5) as client:
            truth = (await client.get(f"http://127.0.0.1:{FLEET_SIM_PORT}/v1/truth")).json()
        delivered_mwh = sum(
            mwh for instruction, mwh in truth["delivered_mwh"].items()
            if not instruction.endswith("-TEST")
        )  # fmt: skip
        confirmed_mwh = numbers.get("mw_confirmed", 0.0) * numbers.get("confirmed_hours", 0.0)
        print(
            f"\nInstruction -> dispatch.confirmed: {numbers.get('latency_ms', float('nan')):.0f} ms"
            f" wall. The simulator's own account: {delivered_mwh:.2f} MWh delivered of the"
            f" {confirmed_mwh:.2f} MWh confirmed"
            f" ({100 * delivered_mwh / confirmed_mwh if confirmed_mwh else float('nan'):.1f} %;"
            f" settlement measured {numbers.get('delivered_mw', float('nan')):.2f} MW over the"
            f" hour). Demo wall time: {time.monotonic() - started:.0f} s.",
            flush=True,
        )
        if cleared_mw is not None:
            step(
                f"Capacity revenue of {RESOURCE} for {delivery_year}: the {cleared_mw:.3f} MW it"
                " cleared, split by cohort (nexwatt-settlement revenue)"
            )
            await run(
                [*launcher.command("settlement"), "revenue", "--resource", RESOURCE,
                 "--ucap-mw", str(cleared_mw), "--delivery-year", delivery_year],
                launcher.env,
            )  # fmt: skip
        if keep_running:
            print(
                "\nEverything keeps running. Onboarding API: http://127.0.0.1:8081/docs · "
                "metrics: http://127.0.0.1:<8081-8086>/metrics · logs: .stack/logs/demo/. "
                "Ctrl-C stops it.",
                flush=True,
            )
            await asyncio.Event().wait()
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"\nDemo failed: {exc}", file=sys.stderr)
        for name in launcher.procs:
            print(f"---- {name} ----\n{launcher.tail(name, 15)}", file=sys.stderr)
        raise SystemExit(1) from exc
    finally:
        await asyncio.to_thread(launcher.stop_all)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-running", action="store_true", help="leave everything up")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args().keep_running))
