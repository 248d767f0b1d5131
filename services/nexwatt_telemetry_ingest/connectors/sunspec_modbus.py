"""SunSpec over Modbus TCP: poll a local inverter or battery for its live values.

A SunSpec device marks its register map with "SunS" (0x5375 0x6E53) in two holding registers
at a base address: 40000 by convention, else 0 or 50000. Models follow, each an ID register,
a length register (L, registers after it) and L registers, until an ID of 0xFFFF. We walk the
list, read the models the `sunspec` format maps (1, 101-103, 124, 713, 802; only the points in
its `POINTS`) and send them, decoded by type but not scaled, as one `sunspec.modbus-models.v1`
payload in our polling envelope: `{"polled_at", "interval_s", "response": {"models": ...}}`.
`interval_s` is this connector's poll period: the values are a sample, not a history, so a
fetch always reads "now", whatever window it is asked for; the window only names the event
id (`window_event_id`). Paced by the runner: windows end on the poll grid with no delay, are
never capped (a window, even the first from the backfill start, is read as now; a cap would
leave the cursor a backfill behind for good) and each site is polled once a period (a device
on the site's network has no request budget shared with others).

A site's id is `host:port/unit` (e.g. `192.0.2.10:502/1`, `[2001:db8::1]:502/1`). Every
Modbus request times out; a poll that fails on the network or the device's transport is
retried a few times with jittered, growing pauses, then raised (the caller retries later).
A device without the marker, or with a broken model list, raises SunSpecError at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from nexwatt_telemetry_ingest.connectors.base import Fetched, Site, live_payload, window_event_id
from nexwatt_telemetry_ingest.formats.sunspec import FORMAT, POINTS, Point

MARKER = [0x5375, 0x6E53]  # "SunS"
BASES = (40000, 0, 50000)
END = 0xFFFF
MAX_READ = 125  # registers in one Modbus read (the protocol's limit)
MAX_MODELS = 200  # a model list longer than this is broken, not big

Read = Callable[[int, int], Awaitable[list[int] | None]]


class SunSpecError(RuntimeError):
    """The device answers, but not as a SunSpec device (no marker, a broken model list)."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    unit: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}/{self.unit}"


def endpoint(site_id: str) -> Endpoint:
    """`host:port/unit` -> its parts; ValueError when it is not one."""
    address, _, unit = site_id.rpartition("/")
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # an IPv6 literal
    if not (host and port.isdigit() and unit.isdigit()):
        raise ValueError(f"a SunSpec site id is host:port/unit, not {site_id!r}")
    if not (0 < int(port) < 65536 and 0 <= int(unit) <= 247):
        raise ValueError(f"port 1..65535 and unit 0..247 expected in {site_id!r}")
    return Endpoint(host, int(port), int(unit))


class SunSpecModbusConnector:
    """Implements `connectors.base.PacedConnector` for SunSpec devices on Modbus TCP."""

    vendor = "sunspec"
    formats: tuple[str, ...] = (FORMAT,)
    delay_s = 0

    def __init__(
        self,
        *,
        interval_s: int = 300,
        timeout_s: float = 3.0,
        attempts: int = 3,
        backoff_s: float = 1.0,
    ) -> None:
        if not 0 < interval_s <= 3600:
            raise ValueError("interval_s (the poll period) must lie in 1..3600 s")
        self.align_s = interval_s
        self.timeout_s = timeout_s
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s

    def max_window(self, fmt: str) -> timedelta | None:
        return None  # any window is read as now

    def poll_s(self, sites: int) -> int:
        return self.align_s  # each device is its own: no budget shared between sites

    async def fetch(self, site: Site, since: datetime, until: datetime) -> list[Fetched]:
        return [await self.fetch_format(site, FORMAT, since, until)]

    async def fetch_format(self, site: Site, fmt: str, since: datetime, until: datetime) -> Fetched:
        """The device's values now, labelled as the poll period ending `until`."""
        models = await self._poll_with_retries(endpoint(site.site_id))
        data = live_payload(until, self.align_s, {"models": models})
        return Fetched(fmt, data, window_event_id(self.vendor, site.site_id, fmt, since, until))

    async def aclose(self) -> None:
        """Nothing to close: each poll opens and closes its own connection."""

    async def _poll_with_retries(self, target: Endpoint) -> dict[str, dict[str, Any]]:
        for attempt in range(self.attempts - 1):
            try:
                return await self._poll(target)
            except (ModbusException, OSError, TimeoutError):
                # Growing pauses, jittered so that many connectors do not retry in step.
                await asyncio.sleep(self.backoff_s * 2**attempt * random.uniform(0.5, 1.5))
        return await self._poll(target)  # the last attempt raises what it meets

    async def _poll(self, target: Endpoint) -> dict[str, dict[str, Any]]:
        client = AsyncModbusTcpClient(
            target.host, port=target.port, timeout=self.timeout_s, retries=0, reconnect_delay=0
        )
        try:
            if not await client.connect():
                raise ConnectionError(f"cannot connect to {target}")

            async def read(address: int, count: int) -> list[int] | None:
                return await _read(client, target.unit, address, count)

            return await read_models(read, str(target))
        finally:
            client.close()


async def _read(
    client: AsyncModbusTcpClient, unit: int, address: int, count: int
) -> list[int] | None:
    """`count` holding registers from `address`, in reads of at most MAX_READ; None when the
    device answers with a Modbus exception (e.g. illegal address)."""
    registers: list[int] = []
    while len(registers) < count:
        start = address + len(registers)
        size = min(MAX_READ, count - len(registers))
        response = await client.read_holding_registers(start, count=size, device_id=unit)
        if response.isError() or len(response.registers) != size:
            return None
        registers.extend(response.registers)
    return registers


async def read_models(read: Read, where: str) -> dict[str, dict[str, Any]]:
    """The mapped models of the SunSpec device `read` reads, by model id: each point decoded
    by its type (the `sunspec` format's `POINTS`)."""
    base = await _find_base(read, where)
    models: dict[str, dict[str, Any]] = {}
    for model_id, address, length in await _model_list(read, base + 2, where):
        points = POINTS.get(model_id)
        if points is None or str(model_id) in models:
            continue  # a model we do not map, or the same model again: the first is kept
        # Only as far as the last point we map, and never past the model's end.
        block = await read(address, min(length + 2, max(p.offset + p.size for p in points)))
        if block is None:
            raise SunSpecError(f"{where}: model {model_id} at {address} cannot be read")
        models[str(model_id)] = {p.name: _decode(block, p) for p in points if _fits(p, block)}
    return models


async def _find_base(read: Read, where: str) -> int:
    for base in BASES:
        if await read(base, 2) == MARKER:
            return base
    raise SunSpecError(
        f"{where}: not a SunSpec device: no 'SunS' marker at {', '.join(map(str, BASES))}"
    )


async def _model_list(read: Read, address: int, where: str) -> list[tuple[int, int, int]]:
    """(model id, address of its ID register, length L) of each model until the end marker."""
    found: list[tuple[int, int, int]] = []
    while len(found) < MAX_MODELS:
        header = await read(address, 2) if address + 2 <= 0x10000 else None
        if header is None:
            raise SunSpecError(f"{where}: the model list breaks off at register {address}")
        model_id, length = header
        if model_id == END:
            return found
        found.append((model_id, address, length))
        address += 2 + length
    raise SunSpecError(f"{where}: more than {MAX_MODELS} models: no end marker")


def _fits(point: Point, block: list[int]) -> bool:
    """The point lies inside the model (a shorter model than the format's lacks it)."""
    return point.offset + point.size <= len(block)


def _decode(block: list[int], point: Point) -> int | str:
    registers = block[point.offset : point.offset + point.size]
    if point.type == "string":
        raw = b"".join(r.to_bytes(2, "big") for r in registers)
        return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()
    value = registers[0]
    signed = point.type in ("int16", "sunssf")
    return value - 0x10000 if signed and value >= 0x8000 else value
