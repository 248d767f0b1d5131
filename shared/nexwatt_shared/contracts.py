"""Payloads of every topic (the `data` of the CloudEvent), as frozen pydantic models.

Conventions, the same for every field:
- units are in the name: `_kw`, `_kwh`, `_mw`, `_mwh`, `_pct`, `_s`, `_usd`;
- power sign: positive = delivered to the grid (generation, battery discharge, load reduction),
  negative = absorbed (charging, consumption);
- datetimes are timezone-aware and normalized to UTC; an interval is labelled by its start plus
  its length in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


PerAsset = TypeVar("PerAsset", "AssetRegistered", "TelemetryInterval")
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
AssetId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
ResourceId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


class Contract(BaseModel):
    """Base of every payload: immutable (events are facts), strict about unknown fields, and
    refusing NaN/Infinity (Python's json accepts them; one NaN reading would poison a sum)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Window(Contract):
    """A closed-open time window [start, end)."""

    window_start: UtcDatetime
    window_end: UtcDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        return self


# --- asset.registered -----------------------------------------------------------------------


class AssetStatus(StrEnum):
    ENROLLED = "enrolled"
    SUSPENDED = "suspended"
    UNENROLLED = "unenrolled"


class AssetType(StrEnum):
    SOLAR = "solar"
    STORAGE = "storage"
    SOLAR_STORAGE = "solar_storage"


class AssetRegistered(Contract):
    """An asset's latest record. Keyed by asset id on a compacted topic: the newest wins."""

    asset_id: AssetId
    status: AssetStatus
    asset_type: AssetType
    inverter: str = Field(description="Inverter make and model, e.g. 'SolarEdge SE7600'")
    vendor: str = Field(description="Inverter cloud the gateway speaks: solaredge, sma, ...")
    capacity_kw: float = Field(gt=0, description="Inverter AC rating [kW]")
    storage_kwh: float = Field(0.0, ge=0, description="Usable battery energy [kWh]")
    backup_reserve_pct: float = Field(
        20.0, ge=0, le=100, description="State of charge kept for the household [%]"
    )
    meter_id: str
    iso: str = Field(description="ISO/RTO, e.g. PJM")
    iso_zone: str = Field(description="ISO zone, e.g. PJM-PEPCO")
    resource_id: ResourceId = Field(description="The ISO resource the asset is aggregated into")
    subscriber_id: str | None = Field(None, description="The program subscriber who owns it")
    cohort: str = Field(description="Subscriber cohort capacity payments are attributed to")
    telemetry_interval_s: int = Field(gt=0, description="Telemetry interval length [s]")
    version: int = Field(ge=1, description="Increases with every change of this asset's record")
    updated_at: UtcDatetime


# --- telemetry.interval ---------------------------------------------------------------------


class TelemetryInterval(Contract):
    """One asset's average powers over one interval, as metered at the site."""

    asset_id: AssetId
    interval_start: UtcDatetime
    interval_s: int = Field(gt=0, le=3600, description="Interval length [s]")
    pv_kw: float = Field(ge=0, description="Average PV generation [kW]")
    load_kw: float = Field(ge=0, description="Average household consumption [kW], a magnitude")
    battery_kw: float = Field(description="Average battery power [kW]; + discharge, - charge")
    net_kw: float = Field(description="Average power at the site meter [kW]; + export, - import")
    soc_pct: float | None = Field(None, ge=0, le=100, description="Battery SoC at interval end [%]")

    @property
    def interval_end(self) -> datetime:
        return self.interval_start + timedelta(seconds=self.interval_s)


# --- dispatch.instruction / dispatch.confirmed ----------------------------------------------


class DispatchInstruction(Window):
    """The ISO asks a resource to deliver `mw` over the window."""

    instruction_id: str = Field(min_length=1, max_length=128)
    resource_id: ResourceId
    mw: float = Field(gt=0, description="Requested delivery [MW]")
    issued_at: UtcDatetime


class DispatchStatus(StrEnum):
    CONFIRMED = "confirmed"  # the whole request is covered
    PARTIAL = "partial"  # some MW confirmed, less than requested
    REJECTED = "rejected"  # nothing confirmed; `reason` says why


class DispatchConfirmed(Window):
    """The platform's answer to one instruction."""

    instruction_id: str
    resource_id: ResourceId
    status: DispatchStatus
    reason: str | None = Field(None, description="Why not everything was confirmed")
    mw_requested: float = Field(ge=0, description="[MW]")
    mw_confirmed: float = Field(ge=0, description="Sum of acknowledged setpoints [MW]")
    assets_commanded: int = Field(ge=0)
    assets_dispatched: int = Field(ge=0, description="Assets that acknowledged their setpoint")
    instruction_received_at: UtcDatetime = Field(description="Event time of the instruction")
    confirmed_at: UtcDatetime = Field(description="Event time of this answer")
    processing_ms: float = Field(ge=0, description="Wall time from instruction to answer [ms]")


# --- asset.command / asset.command-ack (dispatch <-> inverter gateways) ---------------------


class AssetCommand(Window):
    """Dispatch asks one asset to add `setpoint_kw` of export over the window."""

    command_id: str
    instruction_id: str
    asset_id: AssetId
    resource_id: ResourceId
    setpoint_kw: float = Field(ge=0, description="Battery discharge setpoint [kW]")
    issued_at: UtcDatetime


class AssetCommandAck(Contract):
    """The gateway's answer to one command."""

    command_id: str
    instruction_id: str
    asset_id: AssetId
    accepted: bool
    setpoint_kw: float = Field(ge=0, description="Setpoint the asset will hold [kW]")
    reason: str | None = None
    acked_at: UtcDatetime


# --- capacity.snapshot ----------------------------------------------------------------------


class CapacitySnapshot(Contract):
    """A resource's capacity as the capacity model sees it now. Compacted by resource id."""

    resource_id: ResourceId
    as_of: UtcDatetime = Field(description="Event time of the newest input")
    assets_enrolled: int = Field(ge=0)
    assets_reporting: int = Field(ge=0, description="Enrolled assets with fresh telemetry")
    nameplate_mw: float = Field(ge=0, description="Sum of inverter ratings [MW]")
    storage_mwh: float = Field(ge=0, description="Sum of usable battery energy [MWh]")
    available_mw: float = Field(ge=0, description="Dischargeable now for one hour [MW]")


# --- settlement.filed -----------------------------------------------------------------------


class CohortSettlement(Contract):
    cohort: str
    assets: int = Field(ge=0)
    delivered_mwh: float = Field(description="Energy delivered above baseline [MWh]")
    share_pct: float = Field(description="Share of the resource's delivered energy [%]")


class SettlementFiled(Window):
    """What a resource delivered over one dispatch window, measured against a baseline."""

    report_id: str
    instruction_id: str
    resource_id: ResourceId
    status: Literal["filed"] = "filed"
    baseline_method: str = Field(description="Name of the baseline method used")
    mw_requested: float = Field(ge=0, description="[MW]")
    mw_confirmed: float = Field(ge=0, description="[MW]")
    delivered_mw: float = Field(description="Average delivery above baseline over the window [MW]")
    delivered_mwh: float = Field(description="Energy delivered above baseline [MWh]")
    performance_pct: float = Field(description="delivered_mw / mw_requested [%]")
    assets_metered: int = Field(ge=0)
    intervals_csv: str = Field(
        description="Per-interval table: start, baseline, metered, delivered"
    )
    cohorts: list[CohortSettlement]
    filed_at: UtcDatetime = Field(description="Event time the report was filed")


# --- dead.letter ----------------------------------------------------------------------------


class DeadLetter(Contract):
    """A message a consumer could not decode or validate, kept whole with the reason."""

    original_topic: str
    original_partition: int
    original_offset: int
    consumer_group: str
    error: str = Field(description="Why the message was refused")
    key: str | None = Field(None, description="Original key, UTF-8 with replacement")
    value_text: str = Field(description="Original value, UTF-8 with replacement (truncated)")
    value_base64: str = Field(description="Original value, byte for byte (empty if truncated)")
    value_bytes: int = Field(ge=0, description="Size of the original value [bytes]")
    truncated: bool = Field(
        False, description="The value was too large to carry whole; replay it from its origin"
    )
    failed_at: UtcDatetime


# --- reducing a batch ----------------------------------------------------------------------


def newest_versions(records: Iterable[AssetRegistered]) -> list[AssetRegistered]:
    """The highest version of each asset's record (ties: the later one)."""
    return _newest_per_asset(records, lambda r: r.version)


def newest_readings(readings: Iterable[TelemetryInterval]) -> list[TelemetryInterval]:
    """The reading with the latest interval start of each asset (ties: the later one)."""
    return _newest_per_asset(readings, lambda r: r.interval_start)


def _newest_per_asset(
    items: Iterable[PerAsset], order: Callable[[PerAsset], Any]
) -> list[PerAsset]:
    newest: dict[str, PerAsset] = {}
    for item in items:
        seen = newest.get(item.asset_id)
        if seen is None or order(item) >= order(seen):
            newest[item.asset_id] = item
    return list(newest.values())
