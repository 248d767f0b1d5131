"""Payloads of every topic (the `data` of the CloudEvent), as frozen pydantic models.

Conventions, the same for every field:
- units are in the name: `_kw`, `_kwh`, `_mw`, `_mwh`, `_pct`, `_s`, `_usd`;
- power sign: positive = delivered to the grid (generation, battery discharge, load reduction),
  negative = absorbed (charging, consumption);
- datetimes are timezone-aware and normalized to UTC; an interval is labelled by its start plus
  its length in seconds.

Every input is bounded, so nothing a producer sends can break a store or a sum downstream:
- datetimes lie in [2000-01-01, 2100-01-01) UTC (an interval's end included);
- power of one asset within +-100 MW (`MAX_ASSET_KW`), its battery within 1 GWh, a resource's
  request within 10 GW (`MAX_RESOURCE_MW`); no NaN or infinity; a window lasts at most 24 h;
- strings carry no control characters (free text may hold tab and newlines) and no lone UTF-16
  surrogates, and have a maximum length; integers fit PostgreSQL's `integer`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    model_validator,
)

from nexwatt_shared.power_model import (
    MAX_C_RATE,
    AssetRatings,
    Coupling,
    default_battery_kw,
    power_rules,
)

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_ASSET_KW = 100_000.0  # [kW] beyond any behind-the-meter site (the largest are a few MW)
MAX_ASSET_KWH = 1_000_000.0  # [kWh]
MAX_RESOURCE_MW = 10_000.0  # [MW] beyond any single ISO capacity resource
MAX_INT = 2**31 - 1  # PostgreSQL `integer`
MAX_COUNT = 10_000_000  # assets, commands: far beyond any fleet
MAX_WINDOW = timedelta(hours=24)  # a dispatch window; ISO events last hours, not days

# C0 controls and DEL; free text may keep tab, newline and carriage return. Lone surrogates
# (JSON "\ud800") cannot be encoded as UTF-8, so no store or log could hold them.
_CONTROL_IN_NAME = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def _refusing(pattern: re.Pattern[str]) -> Callable[[str], str]:
    def check(value: str) -> str:
        found = pattern.search(value)
        if found is not None:
            raise ValueError(
                f"control character {found.group()!r} at position {found.start()} is not allowed"
            )
        return value

    return check


def _to_utc(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:30-05:00 is in year 10000 in UTC
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError(f"must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} UTC")
    return utc


PerAsset = TypeVar("PerAsset", bound="AssetRegistered")
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
Name = Annotated[
    str, Field(min_length=1, max_length=256), AfterValidator(_refusing(_CONTROL_IN_NAME))
]
# Ids that others are built from (a command id is `<instruction id>:<asset id>`) stay short.
InstructionId = Annotated[
    str, Field(min_length=1, max_length=64), AfterValidator(_refusing(_CONTROL_IN_NAME))
]
Text = Annotated[str, Field(max_length=4000), AfterValidator(_refusing(_CONTROL_IN_TEXT))]
AssetId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
ResourceId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
GatewayId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
AssetKw = Annotated[float, Field(ge=-MAX_ASSET_KW, le=MAX_ASSET_KW)]
ResourceMw = Annotated[float, Field(ge=0, le=MAX_RESOURCE_MW)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]


class Contract(BaseModel):
    """Base of every payload: immutable (events are facts), strict about unknown fields in what
    we build (decoding ignores them: `codec.decode` is the tolerant reader), and refusing
    NaN/Infinity (Python's json accepts them; one NaN reading would poison a sum)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @property
    def event_time(self) -> datetime:
        """When the fact happened, in event time: what consumers bound against the wall clock."""
        raise NotImplementedError(type(self).__name__)


class Window(Contract):
    """A closed-open time window [start, end)."""

    window_start: UtcDatetime
    window_end: UtcDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        if self.window_end - self.window_start > MAX_WINDOW:
            raise ValueError(f"a window lasts at most {MAX_WINDOW.total_seconds() / 3600:.0f} h")
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


class PvMounting(StrEnum):
    """How a PV array is mounted: its ELCC class (fixed or tracking solar)."""

    FIXED = "fixed"
    TRACKING = "tracking"


class BatteryRatings(BaseModel):
    """Ratings beyond the inverter and the energy, shared by the registration request and the
    asset record; `nexwatt_shared.power_model` says what each means. Each may be left out: an
    asset registered before they existed (or without them) gets the defaults `power_ratings`
    documents, which reproduce what the platform assumed before."""

    model_config = ConfigDict(allow_inf_nan=False)

    battery_continuous_kw: float | None = Field(
        None,
        ge=0,
        le=MAX_ASSET_KW,
        description="Power the battery holds indefinitely [kW]; default: the inverter's rating,"
        f" at most {MAX_C_RATE:g} x storage_kwh",
    )
    battery_peak_kw: float | None = Field(
        None,
        ge=0,
        le=MAX_ASSET_KW,
        description="Short-burst power (seconds) [kW], >= continuous; stored, not credited;"
        " default: the continuous rating",
    )
    round_trip_efficiency: float = Field(
        0.9, gt=0, le=1, description="Battery AC-in to AC-out efficiency [-], in (0, 1]"
    )
    coupling: Coupling = Field(
        Coupling.DC,
        description="dc: battery and PV share one hybrid inverter (capacity_kw is its rating);"
        " ac: the battery has its own inverter (capacity_kw is the battery inverter's rating)",
    )
    pv_dc_kw: float | None = Field(
        None,
        ge=0,
        le=MAX_ASSET_KW,
        description="PV array nameplate [kW DC]; default: the inverter's rating (0 without PV)",
    )
    pv_mounting: PvMounting = Field(PvMounting.FIXED, description="PV mounting: fixed, tracking")

    @model_validator(mode="after")
    def _possible(self) -> BatteryRatings:
        # Each field's own bounds are its Field's; the rules between them are the power
        # model's, taken on numbers (building AssetRatings per record would cost 50 us).
        continuous_kw, peak_kw, _ = self.rated_kw()
        for field, ok, must in power_rules(continuous_kw, peak_kw, self.storage_kwh):
            if not ok:
                raise ValueError(f"{field} {must}")
        return self

    if TYPE_CHECKING:  # fields of the models that carry these ratings, with their bounds
        capacity_kw: float
        storage_kwh: float
        backup_reserve_pct: float

    @property
    def has_pv(self) -> bool:
        raise NotImplementedError(type(self).__name__)

    def rated_kw(self) -> tuple[float, float, float]:
        """Battery continuous and peak power and PV nameplate [kW], the defaults filled in
        (see power_ratings): numbers, for code that handles one record at a time."""
        continuous = self.battery_continuous_kw
        if continuous is None:
            continuous = float(default_battery_kw(self.capacity_kw, self.storage_kwh))
            if self.battery_peak_kw is not None:
                continuous = min(continuous, self.battery_peak_kw)
        peak = continuous if self.battery_peak_kw is None else self.battery_peak_kw
        pv_dc = self.pv_dc_kw
        if pv_dc is None:
            pv_dc = self.capacity_kw if self.has_pv else 0.0
        return continuous, peak, pv_dc

    def power_ratings(self) -> AssetRatings:
        """The ratings the power model uses, with the defaults filled in.

        Defaults: continuous power = `power_model.default_battery_kw` (the inverter's rating,
        what the platform assumed before batteries had ratings, within MAX_C_RATE x
        `storage_kwh`), and not above a peak that is given; peak = continuous; PV nameplate =
        `capacity_kw` for an asset with PV, 0 for storage alone.
        """
        continuous_kw, peak_kw, pv_dc_kw = self.rated_kw()
        return AssetRatings(
            battery_continuous_kw=continuous_kw,
            battery_peak_kw=peak_kw,
            usable_kwh=self.storage_kwh,
            round_trip_efficiency=self.round_trip_efficiency,
            coupling=self.coupling,
            pv_dc_kw=pv_dc_kw,
            inverter_ac_kw=self.capacity_kw,
            backup_reserve_pct=self.backup_reserve_pct,
        )


class AssetRegistered(Contract, BatteryRatings):
    """An asset's latest record. Keyed by asset id on a compacted topic: the newest wins."""

    asset_id: AssetId
    status: AssetStatus
    asset_type: AssetType
    inverter: Text = Field(description="Inverter make and model, e.g. 'SolarEdge SE7600'")
    vendor: Name = Field(description="Inverter cloud the gateway speaks: solaredge, sma, ...")
    capacity_kw: float = Field(
        gt=0,
        le=MAX_ASSET_KW,
        description="AC rating of the inverter the battery discharges through [kW]",
    )
    storage_kwh: float = Field(
        0.0, ge=0, le=MAX_ASSET_KWH, description="Usable battery energy [kWh]"
    )
    backup_reserve_pct: float = Field(
        20.0,
        ge=0,
        le=100,
        description="State of charge kept for the household [%] (100: backup only, nothing to"
        " offer; onboarding no longer enrols it, records from before may carry it)",
    )
    meter_id: Name
    iso: Name = Field(description="ISO/RTO, e.g. PJM")
    iso_zone: Name = Field(description="ISO zone, e.g. PJM-PEPCO")
    resource_id: ResourceId = Field(description="The ISO resource the asset is aggregated into")
    subscriber_id: Name | None = Field(None, description="The program subscriber who owns it")
    gateway_id: GatewayId | None = Field(
        None,
        description="The gateway or vendor-cloud connector that commands the asset (the key of"
        " its `asset.command` messages); none: a gateway of its own, named by the asset id",
    )
    cohort: Name = Field(description="Subscriber cohort capacity payments are attributed to")
    telemetry_interval_s: int = Field(gt=0, le=86_400, description="Telemetry interval [s]")
    version: int = Field(
        ge=1, le=MAX_INT, description="Increases with every change of this asset's record"
    )
    updated_at: UtcDatetime

    @property
    def event_time(self) -> datetime:
        return self.updated_at

    @property
    def has_pv(self) -> bool:
        """Whether PV sits behind the asset's inverter: a battery-only asset reports no PV."""
        return self.asset_type is not AssetType.STORAGE

    @property
    def commanded_by(self) -> str:
        """The gateway that commands the asset: the registered one, or the asset's own."""
        return self.gateway_id or self.asset_id


# --- telemetry.interval ---------------------------------------------------------------------


class Channel(StrEnum):
    """What a reading can measure; the value is the payload field's name."""

    PV_KW = "pv_kw"
    LOAD_KW = "load_kw"
    BATTERY_KW = "battery_kw"
    NET_KW = "net_kw"
    SOC_PCT = "soc_pct"


class Quality(StrEnum):
    """How a channel's value was obtained. ESPI `ReadingQuality` codes map onto these:
    0 valid, 14 raw (not yet validated, but measured), 17 validated, 18 verified, 19 revenue
    quality -> actual; 7 manually edited, 8 estimated from a reference day, 9 interpolated,
    11 derived, 12 projected, 13 mixed, 15 weather-normalized -> estimated; 10 questionable,
    16 other -> questionable; a reading the source sent without a value -> missing."""

    ACTUAL = "actual"  # measured
    ESTIMATED = "estimated"  # filled in or substituted by the source
    QUESTIONABLE = "questionable"  # measured but implausible, or refused by our bounds
    MISSING = "missing"  # the source reported the interval without a value


class ReadingSource(Contract):
    """Where a normalized reading came from."""

    vendor: Name = Field(description="e.g. solaredge, enphase, sma, generac, sunspec, espi")
    endpoint: Name | None = Field(None, description="The vendor's API or file format")


class TelemetryInterval(Contract):
    """One asset's average powers over one interval, normalized (event type v2).

    A channel is part of the reading exactly when `quality` names it:
    - a value with quality actual, estimated or questionable;
    - no value (null) with quality missing (or questionable, when the source's value was
      refused as implausible): missing stays missing, never 0;
    - a channel not named is not measured by this reading; another reading, at its own
      resolution, may carry it (SolarEdge power is 15-minute, its battery data 5-minute).
    When `quality` is left out, every channel with a value is actual. A meter-only reading
    carries `net_kw` alone.
    """

    asset_id: AssetId
    interval_start: UtcDatetime
    interval_s: int = Field(gt=0, le=3600, description="Interval length [s]")
    pv_kw: float | None = Field(None, ge=0, le=MAX_ASSET_KW, description="Average PV [kW]")
    load_kw: float | None = Field(
        None, ge=0, le=MAX_ASSET_KW, description="Average household consumption [kW], a magnitude"
    )
    battery_kw: AssetKw | None = Field(
        None, description="Average battery power [kW]; + discharge, - charge"
    )
    net_kw: AssetKw | None = Field(
        None, description="Average power at the site meter [kW]; + export, - import"
    )
    soc_pct: float | None = Field(None, ge=0, le=100, description="Battery SoC at interval end [%]")
    quality: dict[Channel, Quality] = Field(
        default_factory=dict, description="Quality of each channel this reading carries"
    )
    devices_reporting: Count | None = Field(
        None, description="Devices behind the reading that reported, e.g. 23 microinverters"
    )
    devices_total: Count | None = Field(None, description="Devices behind the reading")
    source: ReadingSource | None = None

    @model_validator(mode="before")
    @classmethod
    def _actual_by_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("quality"):
            data = {
                **data,
                "quality": {c: Quality.ACTUAL for c in CHANNELS if data.get(c) is not None},
            }
        return data

    @model_validator(mode="after")
    def _consistent(self) -> TelemetryInterval:
        if self.interval_end >= LATEST:
            raise ValueError(f"the interval must end before {LATEST:%Y-%m-%d} UTC")
        quality = self.quality
        if not quality:
            raise ValueError("a reading carries at least one channel")
        for channel in CHANNELS:
            value, q = getattr(self, channel), quality.get(channel)
            if value is not None and (q is None or q is Quality.MISSING):
                raise ValueError(f"{channel} has a value, so its quality cannot be {q}")
            if value is None and (q is Quality.ACTUAL or q is Quality.ESTIMATED):
                raise ValueError(f"{channel} is {q} but has no value")
        if (
            self.devices_reporting is not None
            and self.devices_total is not None
            and self.devices_reporting > self.devices_total
        ):
            raise ValueError("devices_reporting cannot exceed devices_total")
        return self

    @property
    def channels(self) -> list[Channel]:
        """The channels this reading carries (with a value or reported missing)."""
        return list(self.quality)

    def value(self, channel: Channel) -> float | None:
        return getattr(self, channel)  # type: ignore[no-any-return]

    @property
    def interval_end(self) -> datetime:
        return self.interval_start + timedelta(seconds=self.interval_s)

    @property
    def event_time(self) -> datetime:
        return self.interval_end


CHANNELS: tuple[Channel, ...] = tuple(Channel)


class TelemetryIntervalV1(Contract):
    """The first telemetry contract, every channel required: still read, upgraded on decode."""

    asset_id: AssetId
    interval_start: UtcDatetime
    interval_s: int = Field(gt=0, le=3600)
    pv_kw: float = Field(ge=0, le=MAX_ASSET_KW)
    load_kw: float = Field(ge=0, le=MAX_ASSET_KW)
    battery_kw: AssetKw
    net_kw: AssetKw
    soc_pct: float | None = Field(None, ge=0, le=100)

    def upgrade(self) -> TelemetryInterval:
        return TelemetryInterval.model_validate(self.model_dump())

    @property
    def event_time(self) -> datetime:
        return self.interval_start + timedelta(seconds=self.interval_s)


# --- telemetry.raw --------------------------------------------------------------------------


class VendorPayload(RootModel[dict[str, Any] | list[Any]]):
    """A vendor's own payload (a SolarEdge `storageData` response, an Enphase `telemetry/battery`
    response, ...), carried as is on `telemetry.raw`; the event type names its format and
    telemetry-ingest parses it. Its event time is only known once parsed."""

    model_config = ConfigDict(frozen=True)


# --- dispatch.instruction / dispatch.confirmed ----------------------------------------------


class InstructionKind(StrEnum):
    EVENT = "event"  # a dispatch the ISO pays for
    TEST = "test"  # a capability test: dispatched like an event, reported as a test


class DispatchInstruction(Window):
    """The ISO asks a resource to deliver `mw` over the window.

    A higher `revision` of the same instruction id replaces the earlier one mid-event (new MW,
    or `cancelled`). MW <= 0 is read, and answered `rejected` with the reason: the ISO adapter
    learns what was wrong instead of hearing nothing."""

    instruction_id: InstructionId
    resource_id: ResourceId
    mw: float = Field(
        ge=-MAX_RESOURCE_MW,
        le=MAX_RESOURCE_MW,
        description="Requested delivery [MW]; <= 0 is answered rejected",
    )
    issued_at: UtcDatetime
    revision: int = Field(
        1, ge=1, le=MAX_INT, description="1 first; a higher revision replaces the lower ones"
    )
    kind: InstructionKind = InstructionKind.EVENT
    cancelled: bool = Field(False, description="The ISO calls the event off from `issued_at`")

    @property
    def event_time(self) -> datetime:
        return self.issued_at


class DispatchStatus(StrEnum):
    CONFIRMED = "confirmed"  # the whole request is covered
    PARTIAL = "partial"  # some MW confirmed, less than requested
    REJECTED = "rejected"  # nothing confirmed; `reason` says why
    CANCELLED = "cancelled"  # the ISO called the event off; the assets were told to stop


class DispatchConfirmed(Window):
    """The platform's answer to one revision of an instruction (`reason` says when the assets
    were commanded over less than its window: it came after the window opened)."""

    instruction_id: InstructionId
    resource_id: ResourceId
    status: DispatchStatus
    reason: Text | None = Field(None, description="Why not everything was confirmed")
    mw_requested: ResourceMw = Field(description="[MW]")
    mw_confirmed: ResourceMw = Field(
        description="What the acknowledged assets are expected to deliver: each acknowledged"
        " setpoint times the asset's measured performance ratio (1 without history) [MW]"
    )
    mw_acknowledged: ResourceMw | None = Field(
        None, description="Sum of the acknowledged setpoints [MW]"
    )
    assets_commanded: Count
    assets_dispatched: Count = Field(description="Assets that acknowledged their setpoint")
    assets_replaced: Count = Field(
        0, description="Assets that did not acknowledge in time and were replaced by others"
    )
    instruction_received_at: UtcDatetime = Field(description="Event time of the instruction")
    commands_start: UtcDatetime | None = Field(
        None,
        description="When the assets' setpoints start: the window's start, or later for an"
        " instruction that came when too little of the window was left for gateways to act",
    )
    confirmed_at: UtcDatetime = Field(description="Event time of this answer")
    processing_ms: float = Field(
        ge=0, le=86_400_000, description="Wall time from instruction to answer [ms]"
    )
    revision: int = Field(1, ge=1, le=MAX_INT, description="The instruction revision answered")
    kind: InstructionKind = InstructionKind.EVENT

    @property
    def event_time(self) -> datetime:
        return self.confirmed_at


def answer_event_id(instruction_id: str, revision: int) -> str:
    """The event id of dispatch's answer to one instruction revision.

    The first revision keeps the id answers had before revisions existed, `confirmed:<id>`.
    Instruction ids are the ISO's and may hold any printable character, so the other forms
    differ before the id (`confirmed-r<revision>:<id>`): no id can make two answers' event
    ids collide."""
    if revision == 1:
        return f"confirmed:{instruction_id}"
    return f"confirmed-r{revision}:{instruction_id}"


def conflict_event_id(instruction_id: str, revision: int, digest: str) -> str:
    """The event id of the `rejected` answer to an instruction id reused with other content
    (`digest`: a fixed-length hash of that content). It answers the reuse, not the
    instruction first sent under the id."""
    return f"conflict-{digest}:r{revision}:{instruction_id}"


def is_conflict_answer(event_id: str) -> bool:
    """Whether a `dispatch.confirmed` event answers a reused id (see `conflict_event_id`; and
    for one release the form before it, `confirmed:<id>[:r<revision>]:conflict:<hash>`)."""
    return event_id.startswith("conflict-") or bool(_CONFLICT_BEFORE.search(event_id))


_CONFLICT_BEFORE = re.compile(r":conflict:[0-9a-f]{16}$")


# --- asset.command / asset.command-ack (dispatch <-> inverter gateways) ---------------------

# Setpoints per `asset.command` message: a gateway with more assets gets several parts, so a
# message stays far below Kafka's 1 MiB default (a setpoint is ~50 bytes of JSON).
MAX_SETPOINTS_PER_COMMAND = 2000


class Setpoint(Contract):
    asset_id: AssetId
    setpoint_kw: float = Field(
        ge=0, le=MAX_ASSET_KW, description="Battery discharge setpoint [kW]; 0: stop"
    )


class AssetCommand(Window):
    """Dispatch's setpoints, for one instruction revision, to the assets one gateway commands
    (all of them, or one part when they are more than `MAX_SETPOINTS_PER_COMMAND`). Each asset
    holds its setpoint over the window; a newer command replaces an asset's older one."""

    command_id: Name = Field(description="<instruction id>:r<revision>:<gateway id>:<round>-<part>")
    instruction_id: InstructionId
    revision: int = Field(1, ge=1, le=MAX_INT)
    kind: InstructionKind = InstructionKind.EVENT
    resource_id: ResourceId
    gateway_id: GatewayId
    setpoints: list[Setpoint] = Field(min_length=1, max_length=MAX_SETPOINTS_PER_COMMAND)
    issued_at: UtcDatetime

    @property
    def event_time(self) -> datetime:
        return self.issued_at


class SetpointAck(Contract):
    """One asset's answer to its setpoint."""

    asset_id: AssetId
    accepted: bool
    setpoint_kw: float = Field(
        ge=0, le=MAX_ASSET_KW, description="Setpoint the asset will hold [kW]"
    )
    reason: Text | None = None


class AssetCommandAck(Contract):
    """A gateway's answer to one command: one entry per asset it reached (an asset it could not
    reach is left out, and dispatch counts it as not acknowledged)."""

    command_id: Name
    instruction_id: InstructionId
    gateway_id: GatewayId
    acks: list[SetpointAck] = Field(min_length=1, max_length=MAX_SETPOINTS_PER_COMMAND)
    acked_at: UtcDatetime

    @property
    def event_time(self) -> datetime:
        return self.acked_at


class AssetCommandV1(Window):
    """The first command contract, one asset per message: still read for one release, upgraded
    to a command of the asset's own gateway."""

    command_id: Name
    instruction_id: InstructionId
    asset_id: AssetId
    resource_id: ResourceId
    setpoint_kw: float = Field(ge=0, le=MAX_ASSET_KW, description="Battery discharge setpoint [kW]")
    issued_at: UtcDatetime

    def upgrade(self) -> AssetCommand:
        return AssetCommand(
            command_id=self.command_id,
            instruction_id=self.instruction_id,
            resource_id=self.resource_id,
            gateway_id=self.asset_id,
            setpoints=[Setpoint(asset_id=self.asset_id, setpoint_kw=self.setpoint_kw)],
            window_start=self.window_start,
            window_end=self.window_end,
            issued_at=self.issued_at,
        )

    @property
    def event_time(self) -> datetime:
        return self.issued_at


class AssetCommandAckV1(Contract):
    """The first ack contract, one asset per message: still read for one release."""

    command_id: Name
    instruction_id: InstructionId
    asset_id: AssetId
    accepted: bool
    setpoint_kw: float = Field(
        ge=0, le=MAX_ASSET_KW, description="Setpoint the asset will hold [kW]"
    )
    reason: Text | None = None
    acked_at: UtcDatetime

    def upgrade(self) -> AssetCommandAck:
        return AssetCommandAck(
            command_id=self.command_id,
            instruction_id=self.instruction_id,
            gateway_id=self.asset_id,
            acks=[
                SetpointAck(
                    asset_id=self.asset_id,
                    accepted=self.accepted,
                    setpoint_kw=self.setpoint_kw,
                    reason=self.reason,
                )
            ],
            acked_at=self.acked_at,
        )

    @property
    def event_time(self) -> datetime:
        return self.acked_at


# --- capacity.snapshot ----------------------------------------------------------------------


DeliveryYear = Annotated[
    str, Field(pattern=r"^[0-9]{4}/[0-9]{2}$", description="June 1 to May 31, e.g. 2026/27")
]
# A sum over a resource's assets: bounded by what each asset may be, not by MAX_RESOURCE_MW.
SumMw = Annotated[float, Field(ge=0)]
MwByDeliveryYear = Annotated[
    dict[DeliveryYear, SumMw], Field(max_length=20, description="[MW] per delivery year")
]


class CohortCapacity(Contract):
    """One subscriber cohort's part of a resource's capacity (its enrolled assets)."""

    cohort: Name
    assets_enrolled: Count
    assets_reporting: Count
    available_mw: SumMw = Field(description="Dischargeable now for one hour [MW]")
    icap_mw: SumMw = Field(description="Installed capacity the ELCC ratings apply to [MW]")
    ucap_mw: MwByDeliveryYear = Field(description="Accredited capacity per delivery year [MW]")


class CapacitySnapshot(Contract):
    """A resource's capacity as the capacity model sees it now. Compacted by resource id.

    The resource's totals are the sums of its cohorts' parts (each rounded to the watt)."""

    resource_id: ResourceId
    as_of: UtcDatetime = Field(description="Event time of the newest input")
    assets_enrolled: Count
    assets_reporting: Count = Field(description="Enrolled assets with fresh telemetry")
    nameplate_mw: float = Field(ge=0, description="Sum of inverter ratings [MW]")
    storage_mwh: float = Field(ge=0, description="Sum of usable battery energy [MWh]")
    available_mw: float = Field(ge=0, description="Dischargeable now for one hour [MW]")
    icap_mw: SumMw = Field(
        0.0, description="Installed capacity the ELCC class ratings apply to [MW]"
    )
    ucap_mw: MwByDeliveryYear = Field(
        default_factory=dict,
        description="Accredited capacity (UCAP = ICAP x ELCC class rating) per delivery year [MW]",
    )
    cohorts: list[CohortCapacity] = Field(default_factory=list, max_length=10_000)

    @property
    def event_time(self) -> datetime:
        return self.as_of


# --- capacity.offer / capacity.clearing -----------------------------------------------------

MAX_PRICE_USD_PER_MW_DAY = 10_000.0  # [$/MW-day] beyond any capacity price (caps are ~$330-500)
MAX_USD = 1e12  # [$] beyond any resource's year of capacity money (10 GW x $10,000 x 366 d)
OfferId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
PricePerMwDay = Annotated[float, Field(ge=0, le=MAX_PRICE_USD_PER_MW_DAY)]
Usd = Annotated[float, Field(ge=0, le=MAX_USD)]


class OfferState(StrEnum):
    """Where an auction offer is: sized -> approved -> submitted -> cleared or not_cleared."""

    SIZED = "sized"  # recommended by commitment sizing, waiting for an operator
    APPROVED = "approved"  # an operator approved it
    SUBMITTED = "submitted"  # sent to the ISO's auction
    CLEARED = "cleared"  # the auction took some or all of it
    NOT_CLEARED = "not_cleared"  # the auction took none of it


class OfferSizing(Contract):
    """The commitment sizing an offer came from: expectations over deliverable UCAP."""

    recommended_ucap_mw: ResourceMw = Field(description="The sizing's recommendation [MW]")
    quantile: float = Field(
        ge=0, le=1, description="The recommendation is this quantile of deliverable UCAP [-]"
    )
    expected_revenue_usd: Usd = Field(description="Of the offered UCAP over the year, if cleared")
    expected_penalty_usd: Usd = Field(
        description="Expected deficiency + non-performance charges of the offered UCAP"
    )
    expected_shortfall_mw: ResourceMw = Field(description="E[max(offered - deliverable, 0)] [MW]")
    resource_ucap_mw: ResourceMw = Field(description="The resource's UCAP for the year at sizing")
    samples: Count = Field(description="Deliverable-UCAP samples the expectations are over")
    terms_source: Text = Field(description="Where the price and charge rates came from")


_IN_AUCTION = frozenset({OfferState.APPROVED, OfferState.SUBMITTED, OfferState.CLEARED})


class CapacityOffer(Contract):
    """An auction offer's current state, compacted by offer id: each state change is a new
    version (the highest is the current one)."""

    offer_id: OfferId
    resource_id: ResourceId
    delivery_year: DeliveryYear
    state: OfferState
    offered_ucap_mw: float = Field(gt=0, le=MAX_RESOURCE_MW, description="[MW] UCAP")
    price_usd_per_mw_day: PricePerMwDay = Field(description="Offer price [$/MW-day]")
    sizing: OfferSizing
    approved_by: Name | None = Field(None, description="The operator who approved it")
    cleared_mw: ResourceMw | None = Field(None, description="UCAP the auction took [MW]")
    clearing_price_usd_per_mw_day: PricePerMwDay | None = Field(
        None, description="The auction's clearing price [$/MW-day], once cleared"
    )
    version: int = Field(ge=1, le=MAX_INT, description="1 when sized, +1 per state change")
    updated_at: UtcDatetime = Field(description="When it entered its state")

    @model_validator(mode="after")
    def _consistent(self) -> CapacityOffer:
        approved = self.state is not OfferState.SIZED
        if approved != (self.approved_by is not None):
            raise ValueError("approved_by is set exactly when the offer is past sized")
        cleared = self.state is OfferState.CLEARED
        if cleared != (self.cleared_mw is not None and self.cleared_mw > 0):
            raise ValueError("cleared_mw > 0 is set exactly when the offer is cleared")
        if cleared and self.clearing_price_usd_per_mw_day is None:
            raise ValueError("a cleared offer has a clearing price")
        if self.cleared_mw is not None and self.cleared_mw > self.offered_ucap_mw:
            raise ValueError("cleared_mw cannot exceed offered_ucap_mw")
        return self

    @property
    def in_auction(self) -> bool:
        """Approved, submitted or cleared: the resource's one offer for the year."""
        return self.state in _IN_AUCTION

    @property
    def event_time(self) -> datetime:
        return self.updated_at


class OfferClearing(Contract):
    """The auction's result for one offer, from the ISO adapter. Compacted by offer id."""

    offer_id: OfferId
    resource_id: ResourceId
    delivery_year: DeliveryYear
    cleared: bool
    cleared_mw: ResourceMw = Field(description="UCAP the auction took [MW]; 0 when not cleared")
    clearing_price_usd_per_mw_day: PricePerMwDay = Field(description="[$/MW-day]")
    cleared_at: UtcDatetime

    @model_validator(mode="after")
    def _consistent(self) -> OfferClearing:
        if self.cleared != (self.cleared_mw > 0):
            raise ValueError("cleared is true exactly when cleared_mw > 0")
        return self

    @property
    def event_time(self) -> datetime:
        return self.cleared_at


# --- settlement.filed -----------------------------------------------------------------------


class CohortSettlement(Contract):
    cohort: Name
    assets: Count
    delivered_mwh: float = Field(description="Energy delivered above baseline [MWh]")
    share_pct: float = Field(description="Share of the resource's delivered energy [%]")
    accredited_kw: float = Field(
        0.0, ge=0, description="The cohort's accredited share: its assets' ratings [kW]"
    )
    performance_cents: int = Field(
        0, description="The cohort's part of the window's bonus minus its charge [US cents]"
    )


class DataQuality(StrEnum):
    """How settled a report is. Each new version of a window's report supersedes the last."""

    PRELIMINARY = "preliminary"  # the window's telemetry met the coverage threshold
    RESTATED = "restated"  # data arrived after an earlier version: the numbers changed
    FINAL = "final"  # the restatement deadline passed: no later version will follow


class BaselineAccuracy(Contract):
    """How well a baseline method would have predicted the resource's load on its recent
    non-event days (PJM accepts a method whose relative RMSE is below 20 %)."""

    method: Name
    rrmse_pct: float | None = Field(None, description="Relative RMSE [%]; None: not computable")
    accepted: bool
    days: Count = Field(description="Non-event days the method was tested on")
    note: Text | None = Field(None, description="Why it could not be computed")


class HourlyDelivery(Contract):
    """One registration-hour of the ISO-format report (PJM: hour ending, prevailing local time)."""

    registration_id: ResourceId
    date: str = Field(description="Local market date, YYYY-MM-DD")
    hour_ending: int = Field(ge=1, le=25, description="Local hour ending, 1-24 (25: DST fall-back)")
    baseline_kwh: float
    metered_kwh: float
    reduction_kwh: float = Field(description="Credited load reduction / delivery [kWh]")


class SettlementDiff(Contract):
    """What changed against the version this one supersedes [Wh, to the watt-hour]."""

    previous_report_id: Name
    delivered_wh: int
    baseline_wh: int
    metered_wh: int
    coverage_pct: float = Field(description="Change in coverage [percentage points]")
    assets_metered: int
    hours_wh: dict[str, int] = Field(
        description="Change in delivered energy per hour that changed, keyed like the hourly"
        " report: 'YYYY-MM-DD HEnn' in market time [Wh]"
    )
    cohorts_wh: dict[str, int] = Field(description="Change in delivered energy per cohort [Wh]")


class PerformanceMoney(Contract):
    """The window assessed as Performance Assessment Intervals: owed = the MW the ISO asked."""

    delivery_year: Name
    expected_mw: float = Field(description="What the window owed [MW]")
    shortfall_mw: float = Field(
        description="expected - delivered over the window; negative: over-performance"
    )
    intervals: Count = Field(
        description="5-minute assessment intervals in the window, each priced on its own (a"
        " shorter last one pro rata)"
    )
    charge_rate_usd_per_mw_interval: float = Field(ge=0)
    bonus_rate_usd_per_mw_interval: float = Field(ge=0)
    charge_cents: int = Field(ge=0, description="Non-performance charge [US cents]")
    bonus_cents: int = Field(ge=0, description="Bonus for over-performance [US cents]")
    net_cents: int = Field(description="bonus - charge, split to the cohorts [US cents]")


class SettlementFiled(Window):
    """What a resource delivered over one dispatch window, measured against a baseline. A
    window is filed as versions: preliminary once its data is in, restated when late data (or
    a later revision of the instruction) changes it, final at the deadline. The window is the
    instruction's, ended early where a cancellation in force called the event off."""

    report_id: Name
    instruction_id: InstructionId
    resource_id: ResourceId
    status: Literal["filed"] = "filed"
    version: int = Field(ge=1, le=MAX_INT, description="1 for the first filing of the window")
    supersedes: Name | None = Field(None, description="The report_id this version replaces")
    data_quality: DataQuality
    participation_model: Name = Field(description="demand-response or der-aggregator")
    baseline_method: Name = Field(description="The resource's baseline method")
    baseline_methods: dict[str, Count] = Field(
        description="Assets per method actually used (a fallback, or 'none': not credited)"
    )
    baseline_accuracy: list[BaselineAccuracy]
    mw_requested: ResourceMw = Field(
        description="What the revisions in force asked, time-weighted over the window [MW]"
    )
    mw_confirmed: ResourceMw = Field(description="The newest request's confirmed MW [MW]")
    revision: int = Field(
        1, ge=1, le=MAX_INT, description="The highest instruction revision in force"
    )
    kind: InstructionKind = Field(
        InstructionKind.EVENT, description="event, or test: a capability test, scored at 0 money"
    )
    delivered_mw: float = Field(description="Average delivery above baseline over the window [MW]")
    delivered_mwh: float = Field(description="Energy delivered above baseline [MWh]")
    performance_pct: float = Field(description="delivered_mw / mw_requested [%]")
    assets_enrolled: Count = Field(description="Assets enrolled in the resource as of the window")
    assets_metered: Count
    coverage_pct: float = Field(
        ge=0,
        le=100,
        description="Share of the enrolled assets' slots in the window with measured data [%]",
    )
    coverage_threshold_pct: float = Field(ge=0, le=100, description="Needed for a filing [%]")
    intervals_csv: str = Field(
        description="Per-slot table: start, baseline, metered, delivered [MW], coverage [%],"
        " requested [MW] (reports filed before revisions end at coverage)"
    )
    iso_report: list[HourlyDelivery] = Field(description="Hourly kWh per registration")
    iso_report_csv: str = Field(description="The same hourly report as CSV")
    performance: PerformanceMoney
    cohorts: list[CohortSettlement]
    diff: SettlementDiff | None = Field(None, description="Against the superseded version")
    filed_at: UtcDatetime = Field(description="When this version was filed (wall clock)")

    @property
    def event_time(self) -> datetime:
        return self.filed_at


class SettlementFiledV1(Window):
    """The first settlement contract: one final report per window. Still read, upgraded."""

    report_id: Name
    instruction_id: InstructionId
    resource_id: ResourceId
    status: Literal["filed"] = "filed"
    baseline_method: Name
    mw_requested: ResourceMw
    mw_confirmed: ResourceMw
    delivered_mw: float
    delivered_mwh: float
    performance_pct: float
    assets_metered: Count
    intervals_csv: str
    cohorts: list[CohortSettlement]
    filed_at: UtcDatetime

    def upgrade(self) -> SettlementFiled:
        """Version 1, final (it was the only one), with what v1 did not measure left empty."""
        return SettlementFiled(
            **self.model_dump(),
            version=1,
            data_quality=DataQuality.FINAL,
            participation_model="der-aggregator",
            baseline_methods={self.baseline_method: self.assets_metered},
            baseline_accuracy=[],
            assets_enrolled=self.assets_metered,
            coverage_pct=0.0,
            coverage_threshold_pct=0.0,
            iso_report=[],
            iso_report_csv="",
            performance=PerformanceMoney(
                delivery_year="unknown",
                expected_mw=self.mw_requested,
                shortfall_mw=0.0,
                intervals=0,
                charge_rate_usd_per_mw_interval=0.0,
                bonus_rate_usd_per_mw_interval=0.0,
                charge_cents=0,
                bonus_cents=0,
                net_cents=0,
            ),
        )

    @property
    def event_time(self) -> datetime:
        return self.filed_at


# --- dead.letter ----------------------------------------------------------------------------


class DeadLetter(Contract):
    """A message a consumer could not decode or validate, kept whole with the reason."""

    original_topic: str
    original_partition: int
    original_offset: int
    consumer_group: str
    error: str = Field(description="Why the message was refused")
    key: str | None = Field(None, description="Original key's first KiB, UTF-8 with replacement")
    key_base64: str | None = Field(
        None, description="Original key, byte for byte (None when absent or over 16 KiB)"
    )
    value_text: str = Field(description="Original value's first 16 KiB, UTF-8 with replacement")
    value_base64: str = Field(
        description="Original value, byte for byte (empty when truncated: over 256 KiB)"
    )
    value_bytes: int = Field(ge=0, description="Size of the original value [bytes]")
    truncated: bool = Field(
        False, description="The value was too large to carry whole; replay it from its origin"
    )
    failed_at: UtcDatetime

    @property
    def event_time(self) -> datetime:
        return self.failed_at


# --- reducing a batch ----------------------------------------------------------------------


def newest_versions(records: Iterable[AssetRegistered]) -> list[AssetRegistered]:
    """The highest version of each asset's record (ties: the later one)."""
    return _newest_per_asset(records, lambda r: r.version)


def _newest_per_asset(
    items: Iterable[PerAsset], order: Callable[[PerAsset], Any]
) -> list[PerAsset]:
    newest: dict[str, PerAsset] = {}
    for item in items:
        seen = newest.get(item.asset_id)
        if seen is None or order(item) >= order(seen):
            newest[item.asset_id] = item
    return list(newest.values())
