"""The SunSpec Modbus TCP connector against a real Modbus server (pymodbus, on localhost) that
serves a register map built here; its payload is then read by the `sunspec` format.

No Kafka, PostgreSQL or Redis: the server is started by each test on a free local port
(`modbus_server`, which the runner's `connect` round in test_connectors.py polls too)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from nexwatt_shared.contracts import Channel, Quality
from nexwatt_telemetry_ingest.connectors.base import Site, window_event_id
from nexwatt_telemetry_ingest.connectors.sunspec_modbus import (
    SunSpecError,
    SunSpecModbusConnector,
)
from nexwatt_telemetry_ingest.formats import RawContext
from nexwatt_telemetry_ingest.formats.sunspec import FORMATS

POLLED_AT = int(datetime(2026, 7, 1, 14, 0, tzinfo=UTC).timestamp())  # the end of the window
UNIT = 1


def u16(value: int) -> int:
    """A signed value as its register (two's complement)."""
    return value & 0xFFFF


def text(value: str, registers: int) -> list[int]:
    raw = value.encode().ljust(registers * 2, b"\0")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def model(model_id: int, length: int, points: dict[int, int | list[int]]) -> list[int]:
    """ID, L and L registers; `points` by offset from the ID register."""
    block = [model_id, length] + [0] * length
    for offset, value in points.items():
        values = value if isinstance(value, list) else [value]
        block[offset : offset + len(values)] = values
    return block


def sunspec_map() -> list[int]:
    """SunS, common model 1, a model we do not map (120), inverter 103, battery 802, end."""
    return [
        0x5375, 0x6E53,
        *model(1, 66, {2: text("SMA", 16), 18: text("SBS3.7-10", 16), 50: text("3012345678", 16)}),
        *model(120, 26, {2: 4}),
        *model(103, 50, {14: 420, 15: u16(1)}),  # W 420 x 10^1 = 4200 W
        *model(802, 62, {11: 5520, 56: u16(-2), 47: u16(-1500), 63: 0}),  # SoC, SoC_SF, W, W_SF
        0xFFFF, 0,
    ]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Serve = Callable[[int, list[int]], Awaitable[str]]


@contextlib.asynccontextmanager
async def modbus_server(base: int, registers: list[int]) -> AsyncIterator[str]:
    """A Modbus TCP server on a free local port holding `registers` from `base`; yields its
    site id."""
    port = free_port()
    device = SimDevice(
        id=UNIT, simdata=[SimData(base, values=registers, datatype=DataType.REGISTERS)]
    )
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    try:
        yield f"127.0.0.1:{port}/{UNIT}"
    finally:
        await server.shutdown()


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a `modbus_server` (stopped after the test); returns its site id."""
    async with contextlib.AsyncExitStack() as servers:

        async def start(base: int, registers: list[int]) -> str:
            return await servers.enter_async_context(modbus_server(base, registers))

        yield start


def site(site_id: str) -> Site:
    return Site(asset_id="asset-1", vendor="sunspec", site_id=site_id, timezone="UTC")


def connector(**kwargs: object) -> SunSpecModbusConnector:
    return SunSpecModbusConnector(interval_s=300, **kwargs)


NOW = datetime(2026, 7, 1, 14, 0, tzinfo=UTC)


async def test_the_connector_reads_a_device_and_the_format_normalizes_it(serve: Serve) -> None:
    site_id = await serve(40000, sunspec_map())
    fetched = await connector().fetch(site(site_id), NOW, NOW)

    assert len(fetched) == 1
    payload = fetched[0]
    assert payload.fmt == "sunspec.modbus-models.v1"
    assert payload.event_id == window_event_id("sunspec", site_id, payload.fmt, NOW, NOW)
    assert payload.data == {
        "polled_at": POLLED_AT,
        "interval_s": 300,
        "response": {
            "models": {
                "1": {"Mn": "SMA", "Md": "SBS3.7-10", "SN": "3012345678"},
                "103": {"W": 420, "W_SF": 1},  # decoded by type, not scaled
                "802": {"SoC": 5520, "W": -1500, "SoC_SF": -2, "W_SF": 0},
            }
        },
    }

    (r,) = FORMATS[0].parse(payload.data, RawContext("asset-1", None, NOW))
    # polled 14:00:00Z every 300 s: the reading covers 13:55:00Z + 300 s
    assert r.interval_start == datetime(2026, 7, 1, 13, 55, tzinfo=UTC)
    assert r.interval_s == 300
    # AC 420 x 10^1 W = 4.2 kW while charging 1.5 kW: a hybrid's PV is 4.2 + 1.5 = 5.7 kW.
    assert r.pv_kw == pytest.approx(5.7, abs=1e-9)
    assert r.battery_kw == pytest.approx(-1.5, abs=1e-9)  # -1500 W: charging, kept negative
    assert r.soc_pct == pytest.approx(55.2, abs=1e-9)  # 5520 x 10^-2 %
    assert r.quality == {
        Channel.PV_KW: Quality.ESTIMATED,
        Channel.BATTERY_KW: Quality.ESTIMATED,
        Channel.SOC_PCT: Quality.ESTIMATED,
    }


async def test_consecutive_polls_stand_for_adjacent_poll_periods(serve: Serve) -> None:
    """Each poll is labelled as the poll period ending at its window's end, whenever the device
    answered: consecutive windows give adjacent readings, and the first poll after an outage
    (a long window) covers only its last period, never one already stored."""
    site_id = await serve(40000, sunspec_map())
    minutes = [timedelta(minutes=m) for m in (-5, 0, 5, 60)]
    # [13:55Z, 14:00Z), [14:00Z, 14:05Z), then nothing polled until [14:05Z, 15:00Z).
    windows = list(pairwise(minutes))
    reader = connector()
    polls = [
        await reader.fetch_format(site(site_id), FORMATS[0].name, NOW + a, NOW + b)
        for a, b in windows
    ]
    assert [p.data["polled_at"] for p in polls] == [POLLED_AT, POLLED_AT + 300, POLLED_AT + 3600]
    assert [p.event_id for p in polls] == [
        window_event_id("sunspec", site_id, FORMATS[0].name, NOW + a, NOW + b) for a, b in windows
    ]
    ctx = RawContext("asset-1", None, NOW)
    readings = [r for p in polls for r in FORMATS[0].parse(p.data, ctx)]
    assert [(r.interval_start, r.interval_s) for r in readings] == [
        (datetime(2026, 7, 1, 13, 55, tzinfo=UTC), 300),
        (datetime(2026, 7, 1, 14, 0, tzinfo=UTC), 300),
        (datetime(2026, 7, 1, 14, 55, tzinfo=UTC), 300),  # the outage stays a gap
    ]


async def test_the_map_is_found_at_the_other_bases(serve: Serve) -> None:
    # Nothing at 40000 or 0 (the server answers "illegal address"): found at 50000.
    site_id = await serve(50000, sunspec_map())
    (payload,) = await connector().fetch(site(site_id), NOW, NOW)
    assert payload.data["response"]["models"]["103"] == {"W": 420, "W_SF": 1}


async def test_a_device_without_the_marker_is_refused_clearly(serve: Serve) -> None:
    site_id = await serve(40000, [0x1234, 0x5678, 1, 0])
    with pytest.raises(SunSpecError, match="no 'SunS' marker at 40000, 0, 50000"):
        await connector().fetch(site(site_id), NOW, NOW)


async def test_a_model_list_without_its_end_is_refused(serve: Serve) -> None:
    site_id = await serve(40000, [0x5375, 0x6E53, *model(103, 50, {})])  # no 0xFFFF after 103
    with pytest.raises(SunSpecError, match="breaks off at register 40054"):
        await connector().fetch(site(site_id), NOW, NOW)


async def test_an_unreachable_device_is_retried_a_bounded_number_of_times() -> None:
    attempts = 0
    slow = connector(attempts=3, backoff_s=0.01, timeout_s=0.5)
    original = slow._poll

    async def counting(target):
        nonlocal attempts
        attempts += 1
        return await original(target)

    slow._poll = counting  # type: ignore[method-assign]
    with pytest.raises(OSError, match="cannot connect"):
        await slow.fetch(site(f"127.0.0.1:{free_port()}/1"), NOW, NOW)
    assert attempts == 3
