"""The one registry of Kafka topics: name, payload, event type, partitions, retention, cleanup.

Topics are created from here by `nexwatt-admin create-topics`; nothing relies on the broker's
auto-create. Schemas and the AsyncAPI document in `schemas/` are exported from here too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel

from nexwatt_shared import contracts as c

DAY_MS = 24 * 3600 * 1000
_FORMAT_TYPE = re.compile(r"[a-z0-9]+(?:[.-][a-z0-9]+)*\.v[0-9]+")


@dataclass(frozen=True)
class Topic:
    name: str
    payload: type[BaseModel]
    description: str
    key: str = ""  # the payload field whose value is the message key
    partitions: int = 1
    retention_ms: int = 7 * DAY_MS
    cleanup_policy: str = "delete"
    producers: tuple[str, ...] = ()
    consumers: tuple[str, ...] = ()
    extra_config: dict[str, str] = field(default_factory=dict)
    version: int = 1
    # Older event types still read, with their payload: it is upgraded on decode (`upgrade()`).
    readable: Mapping[str, type[BaseModel]] = field(default_factory=dict)
    # Set on topics whose event type names a format: any type `nexwatt.<name>.<format>.v<n>`.
    formats: bool = False

    @property
    def event_type(self) -> str:
        """The type we produce; on a topic of formats, the prefix every format's type shares."""
        return f"nexwatt.{self.name}." + ("" if self.formats else f"v{self.version}")

    @property
    def dataschema(self) -> str:
        return f"urn:nexwatt:schema:{self.name}:v{self.version}"

    def payload_for(self, event_type: object) -> type[BaseModel] | None:
        """The payload model of a record of `event_type` on this topic; None: not ours."""
        if not isinstance(event_type, str):
            return None
        if self.formats:
            fmt = event_type.removeprefix(self.event_type)
            return self.payload if fmt != event_type and _FORMAT_TYPE.fullmatch(fmt) else None
        if event_type == self.event_type:
            return self.payload
        return self.readable.get(event_type)

    def config(self) -> dict[str, str]:
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            **self.extra_config,
        }


ASSET_REGISTERED = Topic(
    "asset.registered",
    c.AssetRegistered,
    "Each asset's latest record (enrolled / suspended / unenrolled), compacted by asset id.",
    key="asset_id",
    cleanup_policy="compact",
    retention_ms=-1,
    producers=("onboarding",),
    consumers=("telemetry-ingest", "capacity-model", "dispatch", "settlement"),
    extra_config={"min.compaction.lag.ms": str(3600 * 1000)},
)
TELEMETRY_RAW = Topic(
    "telemetry.raw",
    c.VendorPayload,
    "Vendor-native telemetry from inverter gateways and cloud connectors, keyed by asset id."
    " The event type names the format (nexwatt.telemetry.raw.<vendor>.<format>.v<n>), the"
    " subject is the asset id and the `sitetimezone` extension the site's IANA time zone.",
    partitions=3,
    producers=("inverter gateways", "vendor-cloud connectors"),
    consumers=("telemetry-ingest",),
    formats=True,
)
TELEMETRY_INTERVAL = Topic(
    "telemetry.interval",
    c.TelemetryInterval,
    "Normalized interval telemetry per asset: from telemetry-ingest (vendor and meter data) and"
    " from gateways that speak the standard.",
    key="asset_id",
    partitions=3,
    producers=("telemetry-ingest", "inverter gateways"),
    consumers=("telemetry-ingest", "capacity-model", "dispatch", "settlement"),
    version=2,
    readable={"nexwatt.telemetry.interval.v1": c.TelemetryIntervalV1},
)
DISPATCH_INSTRUCTION = Topic(
    "dispatch.instruction",
    c.DispatchInstruction,
    "Dispatch instructions from the ISO adapter, keyed by resource id.",
    key="resource_id",
    # Replicas share the partitions: with one, one replica decided every instruction however
    # many ran (decisions are CPU-bound: about 1.3 s of CPU at 100,000 assets).
    partitions=3,
    retention_ms=30 * DAY_MS,
    producers=("ISO adapter",),
    consumers=("dispatch", "settlement"),
)
DISPATCH_CONFIRMED = Topic(
    "dispatch.confirmed",
    c.DispatchConfirmed,
    "The platform's answer to each instruction: MW confirmed and assets dispatched, or why not.",
    key="resource_id",
    retention_ms=30 * DAY_MS,
    producers=("dispatch",),
    consumers=("settlement", "ISO adapter"),
)
SETTLEMENT_FILED = Topic(
    "settlement.filed",
    c.SettlementFiled,
    "Settlement reports per dispatch window, in versions (preliminary, restated, final):"
    " delivered MW against the resource's baseline, the hourly ISO report, per-cohort money.",
    key="resource_id",
    version=2,
    readable={"nexwatt.settlement.filed.v1": c.SettlementFiledV1},
    retention_ms=400 * DAY_MS,
    producers=("settlement",),
    consumers=("ISO adapter", "analysts"),
)
ASSET_COMMAND = Topic(
    "asset.command",
    c.AssetCommand,
    "Setpoints from dispatch to inverter gateways and vendor-cloud connectors: one message per"
    " gateway and instruction revision (in parts beyond 2,000 assets), keyed by gateway id."
    " Version 1 (one asset per message, keyed by asset id) is still read.",
    key="gateway_id",
    partitions=3,
    producers=("dispatch",),
    consumers=("inverter gateways",),
    version=2,
    readable={"nexwatt.asset.command.v1": c.AssetCommandV1},
)
ASSET_COMMAND_ACK = Topic(
    "asset.command-ack",
    c.AssetCommandAck,
    "Gateways' acknowledgements: one message per command, one entry per asset reached, keyed"
    " by gateway id. Version 1 (one asset per message) is still read.",
    key="gateway_id",
    partitions=3,
    producers=("inverter gateways",),
    consumers=("dispatch",),
    version=2,
    readable={"nexwatt.asset.command-ack.v1": c.AssetCommandAckV1},
)
CAPACITY_SNAPSHOT = Topic(
    "capacity.snapshot",
    c.CapacitySnapshot,
    "Each resource's current capacity, compacted by resource id.",
    key="resource_id",
    cleanup_policy="compact",
    retention_ms=-1,
    producers=("capacity-model",),
    consumers=("analysts",),
)
CAPACITY_OFFER = Topic(
    "capacity.offer",
    c.CapacityOffer,
    "Each capacity auction offer's current state (sized, approved, submitted, cleared,"
    " not_cleared), compacted by offer id; the highest version is the current one.",
    key="offer_id",
    cleanup_policy="compact",
    retention_ms=-1,
    producers=("capacity-model",),
    consumers=("ISO adapter", "iso-sim", "analysts"),
    # Every state stays readable for an hour before compaction keeps only the newest.
    extra_config={"min.compaction.lag.ms": str(3600 * 1000)},
)
CAPACITY_CLEARING = Topic(
    "capacity.clearing",
    c.OfferClearing,
    "The auction's result for each submitted offer (cleared MW and price, or not cleared),"
    " compacted by offer id.",
    key="offer_id",
    cleanup_policy="compact",
    retention_ms=-1,
    producers=("ISO adapter", "iso-sim"),
    consumers=("capacity-model",),
)
DEAD_LETTER = Topic(
    "dead.letter",
    c.DeadLetter,
    "Messages a consumer could not decode or validate, with the reason and their origin.",
    key="",
    retention_ms=30 * DAY_MS,
    producers=("every consumer",),
    consumers=("operators",),
)

ALL: tuple[Topic, ...] = (
    ASSET_REGISTERED,
    TELEMETRY_RAW,
    TELEMETRY_INTERVAL,
    DISPATCH_INSTRUCTION,
    DISPATCH_CONFIRMED,
    SETTLEMENT_FILED,
    ASSET_COMMAND,
    ASSET_COMMAND_ACK,
    CAPACITY_SNAPSHOT,
    CAPACITY_OFFER,
    CAPACITY_CLEARING,
    DEAD_LETTER,
)
BY_NAME: dict[str, Topic] = {t.name: t for t in ALL}
