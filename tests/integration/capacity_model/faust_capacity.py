"""The capacity model's per-resource aggregation on faust-streaming: the experiment of issue 10,
item 7, kept as the evidence (`test_faust_recovery.py`) for running the service on the aiokafka
runner instead (README, "Why not faust-streaming"). Nothing in the product starts it.

Flow (each arrow a Kafka topic; both tables are changelog-backed, `memory://` store, so a
restarted or new replica rebuilds them from their changelogs):

    asset.registered --route_records--> <app>-records-by-asset   (keyed by asset id)
    <app>-records-by-asset + telemetry.interval --update_assets--> table `assets`
        (asset id -> AssetState) --> <app>-contributions          (keyed by resource id)
    <app>-contributions --update_resources--> table `resources`
        (resource id -> {asset id: Contribution}) --> snapshot topic (keyed by resource id)

Why it is shaped so:
- Faust writes a table's changelog to the partition of the message in hand, and refuses a
  source topic whose partition count differs from the changelog's. `asset.registered` has one
  partition and `telemetry.interval` three, so records are first re-keyed into an internal topic
  with telemetry's partition count: one asset's records and readings then meet in one partition.
- Delivery is at-least-once: after a crash, messages since the last commit are processed again,
  and the tables may already hold their effect. Every update is therefore set-to-latest and
  guarded, never accumulated: a record applies only with a higher version, a channel only with
  a later (or equal) interval end, a contribution only when its stamp is not older. Totals are
  recomputed from the resource's entry with math.fsum, so they do not depend on the order.
- A contribution is always sent from the asset's current state, also when the message in hand
  changed nothing: the replay of a message whose table write survived a crash still delivers
  the contribution that may not have.

Per asset: the ratings `AssetRegistered.power_ratings()` gives (for a record without battery
ratings: continuous kW = min(inverter kW, 10 x usable kWh), round trip 0.9, DC-coupled);
available kW for 1 h from `nexwatt_shared.power_model.deliverable_kw`; UCAP [MW] of the battery
alone from `accreditation.storage_ucap_mw`, over the energy above the backup reserve. An
enrolled asset counts; an unknown PV or SoC credits 0 (no freshness rule, no PV UCAP, no
cohorts: the service's `domain.snapshot` has them).

Run: `python -m tests.integration.capacity_model.faust_capacity worker --without-web -l info`
(settings from NEXWATT_*; the CLI flag, not `web_enabled=False`, keeps the web server off).
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta

import faust
import numpy as np
import structlog
from pydantic import Field

from nexwatt_capacity_model.accreditation import storage_ucap_mw
from nexwatt_capacity_model.domain import DISCHARGE_H, KW_PER_MW, latest_channels
from nexwatt_shared.codec import UndecodableMessage, decode, refuse_if_ahead
from nexwatt_shared.contracts import AssetRegistered, AssetStatus, Channel, TelemetryInterval
from nexwatt_shared.envelope import utcnow
from nexwatt_shared.power_model import AssetRatings, Coupling, deliverable_kw
from nexwatt_shared.settings import ServiceSettings
from nexwatt_shared.topics import ASSET_REGISTERED, TELEMETRY_INTERVAL, Topic

log = structlog.get_logger()
RATINGS = tuple(f.name for f in fields(AssetRatings))


class StreamSettings(ServiceSettings):
    service_name: str = "capacity-model"
    stream_app_id: str = Field(
        "nexwatt.capacity-model.stream", description="Faust app id: consumer group, topic prefix"
    )
    stream_asset_topic: str = ASSET_REGISTERED.name
    stream_telemetry_topic: str = TELEMETRY_INTERVAL.name
    stream_snapshot_topic: str = "capacity.snapshot.stream"
    stream_partitions: int = Field(
        TELEMETRY_INTERVAL.partitions,
        gt=0,
        description="Partitions of the telemetry topic, so of the internal topics and changelogs",
    )
    delivery_year: str = Field("2026/27", description="The delivery year UCAP is accredited for")
    stream_session_timeout_s: float = Field(
        10.0, gt=0, description="A killed replica's partitions move after this long [s]"
    )
    stream_heartbeat_interval_s: float = Field(1.0, gt=0, description="[s], < session / 3")


class AssetState(faust.Record, serializer="json", namespace="nexwatt.capacity.AssetState"):
    """One asset as the stream knows it: its newest record (None before any arrived) and its
    newest PV and SoC by interval end (None: never reported; a value None: unknown)."""

    resource_id: str | None = None
    former_resource_ids: list[str] = []  # resources it left: each is sent a removal
    status: str | None = None
    # The power model's ratings (`AssetRegistered.power_ratings()`, defaults filled in).
    battery_continuous_kw: float = 0.0
    battery_peak_kw: float = 0.0
    usable_kwh: float = 0.0
    round_trip_efficiency: float = 1.0
    coupling: str = Coupling.DC.value
    pv_dc_kw: float = 0.0
    inverter_ac_kw: float = 0.0
    backup_reserve_pct: float = 0.0
    has_pv: bool = True
    version: int = 0
    updated_at_s: float = 0.0  # [s since the epoch]
    pv_kw: float | None = None
    pv_end_s: float = 0.0  # [s since the epoch]; 0: never reported
    soc_pct: float | None = None
    soc_end_s: float = 0.0


class Contribution(faust.Record, serializer="json", namespace="nexwatt.capacity.Contribution"):
    """What one asset adds to one resource; `stamp` orders an asset's contributions."""

    asset_id: str
    resource_id: str
    counted: bool  # enrolled in this resource
    available_kw: float  # [kW] for DISCHARGE_H
    ucap_mw: float  # [MW] for the delivery year
    stamp: list[float]  # (version, PV end, SoC end): each only grows
    event_time_s: float  # newest input time of the asset [s since the epoch]


class ResourceMembers(faust.Record, serializer="json", namespace="nexwatt.capacity.Members"):
    """A resource's entry: each asset's newest contribution, by asset id."""

    by_asset: dict[str, Contribution] = {}


class ResourceSnapshot(faust.Record, serializer="json", namespace="nexwatt.capacity.Snapshot"):
    resource_id: str
    as_of: str  # event time of the newest input, ISO 8601 UTC
    assets_enrolled: int
    available_mw: float  # [MW] for one hour
    ucap_mw: float  # [MW] accredited for `delivery_year`
    delivery_year: str


def apply_record(state: AssetState, record: AssetRegistered) -> AssetState:
    """The state with `record` applied if its version is newer (else unchanged)."""
    if record.version <= state.version:
        return state
    ratings = record.power_ratings()
    former = list(state.former_resource_ids)
    if state.resource_id is not None and state.resource_id != record.resource_id:
        former = sorted({*former, state.resource_id} - {record.resource_id})
    return state.derive(
        resource_id=record.resource_id,
        former_resource_ids=former,
        status=record.status.value,
        **{field: float(getattr(ratings, field)) for field in RATINGS if field != "coupling"},
        coupling=str(ratings.coupling),
        has_pv=record.has_pv,
        version=record.version,
        updated_at_s=record.updated_at.timestamp(),
    )


def apply_reading(state: AssetState, reading: TelemetryInterval) -> AssetState:
    """The state with each PV / SoC channel of `reading` applied if its interval ends no
    earlier than the one held (the later reading wins a tie, as in `domain.latest_channels`)."""
    changes: dict[str, float | None] = {}
    for channel in latest_channels([reading]):
        end_s = channel.interval_end.timestamp()
        if channel.channel is Channel.PV_KW and end_s >= state.pv_end_s:
            changes.update(pv_kw=channel.value, pv_end_s=end_s)
        elif channel.channel is Channel.SOC_PCT and end_s >= state.soc_end_s:
            changes.update(soc_pct=channel.value, soc_end_s=end_s)
    return state.derive(**changes) if changes else state


def asset_figures(state: AssetState, delivery_year: str) -> tuple[float, float]:
    """An asset's available power for DISCHARGE_H [kW] and UCAP for `delivery_year` [MW], from
    its record and newest readings (the record's ratings were checked when it was decoded)."""
    ratings = AssetRatings(**{field: getattr(state, field) for field in RATINGS})
    pv_kw = _or_nan(state.pv_kw) if state.has_pv else 0.0  # a battery-only asset has no PV
    available_kw = deliverable_kw(ratings, pv_kw, _or_nan(state.soc_pct), DISCHARGE_H)
    above_reserve_kwh = state.usable_kwh * (1 - state.backup_reserve_pct / 100)
    ucap_mw = storage_ucap_mw(
        state.battery_continuous_kw / KW_PER_MW, above_reserve_kwh / KW_PER_MW, delivery_year
    )
    return float(available_kw), float(ucap_mw)


def contributions(asset_id: str, state: AssetState, delivery_year: str) -> list[Contribution]:
    """What the asset adds to its resource, and a removal (0, not counted) for each resource it
    left."""
    if state.resource_id is None:
        return []  # readings before the asset's record: nothing to place yet
    counted = state.status == AssetStatus.ENROLLED
    available_kw = ucap_mw = 0.0
    if counted:
        available_kw, ucap_mw = asset_figures(state, delivery_year)
    stamp = [float(state.version), state.pv_end_s, state.soc_end_s]
    event_time_s = max(state.updated_at_s, state.pv_end_s, state.soc_end_s)
    current = Contribution(
        asset_id, state.resource_id, counted, available_kw, ucap_mw, stamp, event_time_s
    )
    removals = [
        current.derive(resource_id=r, counted=False, available_kw=0.0, ucap_mw=0.0)
        for r in state.former_resource_ids
    ]
    return [current, *removals]


def newer(stamp: list[float], held: list[float]) -> bool:
    """Whether a contribution stamped `stamp` may replace one stamped `held`: no part older."""
    return all(s >= h for s, h in zip(stamp, held, strict=True))


def snapshot(
    resource_id: str, members: dict[str, Contribution], delivery_year: str
) -> ResourceSnapshot:
    """The resource's figures from its assets' newest contributions; sums with math.fsum,
    so they are the same whatever order the contributions arrived in."""
    counted = [c for c in members.values() if c.counted]
    as_of_s = max(c.event_time_s for c in members.values())
    return ResourceSnapshot(
        resource_id=resource_id,
        as_of=datetime.fromtimestamp(as_of_s, UTC).isoformat(),
        assets_enrolled=len(counted),
        available_mw=math.fsum(c.available_kw for c in counted) / KW_PER_MW,
        ucap_mw=math.fsum(c.ucap_mw for c in counted),
        delivery_year=delivery_year,
    )


def _or_nan(value: float | None) -> float:
    return np.nan if value is None else value


def create_app(settings: StreamSettings) -> faust.App:
    """The faust app with its topics, tables and agents (nothing connects until it runs)."""
    brokers = ";".join(f"kafka://{s.strip()}" for s in settings.kafka_bootstrap_servers.split(","))
    app = faust.App(
        settings.stream_app_id,
        broker=brokers,
        store="memory://",
        topic_partitions=settings.stream_partitions,
        # Standbys would keep a second copy of every table on the other replica; the changelog
        # is the copy we test recovery from.
        table_standby_replicas=0,
        broker_session_timeout=settings.stream_session_timeout_s,
        broker_heartbeat_interval=settings.stream_heartbeat_interval_s,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        topic_disable_leader=True,
    )
    year = settings.delivery_year
    max_ahead = timedelta(seconds=settings.event_time_max_ahead_s)
    asset_topic = replace(ASSET_REGISTERED, name=settings.stream_asset_topic)
    telemetry_topic = replace(TELEMETRY_INTERVAL, name=settings.stream_telemetry_topic)
    raw = {"key_type": str, "value_type": bytes, "value_serializer": "raw"}
    source_records = app.topic(asset_topic.name, **raw)
    records_by_asset = app.topic(f"{app.conf.id}-records-by-asset", **raw)
    # Which contract each topic an agent reads carries.
    contracts: dict[str, Topic] = {
        asset_topic.name: asset_topic,
        records_by_asset.get_topic_name(): asset_topic,
        telemetry_topic.name: telemetry_topic,
    }
    # Faust creates the internal topics an agent subscribes to (topics that exist are left as
    # they are): records by asset with the telemetry topic's partition count.
    records_and_readings = app.topic(
        records_by_asset.get_topic_name(), telemetry_topic.name, internal=True, **raw
    )
    contributions_topic = app.topic(
        f"{app.conf.id}-contributions", internal=True, key_type=str, value_type=Contribution
    )
    snapshots = app.topic(settings.stream_snapshot_topic, key_type=str, value_type=ResourceSnapshot)
    assets = app.Table("assets", key_type=str, value_type=AssetState, default=AssetState)
    resources = app.Table(
        "resources", key_type=str, value_type=ResourceMembers, default=ResourceMembers
    )

    def admitted(
        message: faust.types.Message, value: bytes
    ) -> AssetRegistered | TelemetryInterval | None:
        """The record or reading in `value`, None (and a warning) for one that is refused."""
        try:
            event = decode(contracts[message.topic], value)
            refuse_if_ahead(event, utcnow(), max_ahead)
        except UndecodableMessage as exc:
            log.warning(
                "refused", where=(message.topic, message.partition, message.offset), reason=str(exc)
            )
            return None
        return event.data  # type: ignore[return-value]

    @app.agent(source_records, name="route_records")
    async def route_records(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            record = admitted(event.message, event.value)
            if isinstance(record, AssetRegistered):
                await records_by_asset.send(key=record.asset_id, value=event.value)

    @app.agent(records_and_readings, name="update_assets")
    async def update_assets(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            payload = admitted(event.message, event.value)
            if payload is None:
                continue
            asset_id = payload.asset_id
            state = assets[asset_id]
            if isinstance(payload, AssetRegistered):
                new_state = apply_record(state, payload)
            else:
                new_state = apply_reading(state, payload)
            if new_state is not state:
                assets[asset_id] = new_state
            for contribution in contributions(asset_id, new_state, year):
                await contributions_topic.send(key=contribution.resource_id, value=contribution)

    @app.agent(contributions_topic, name="update_resources")
    async def update_resources(stream: faust.StreamT[Contribution]) -> None:
        async for contribution in stream:
            members = dict(resources[contribution.resource_id].by_asset)
            held = members.get(contribution.asset_id)
            if held is not None and not newer(contribution.stamp, held.stamp):
                continue
            members[contribution.asset_id] = contribution
            resources[contribution.resource_id] = ResourceMembers(by_asset=members)
            snap = snapshot(contribution.resource_id, members, year)
            await snapshots.send(key=snap.resource_id, value=snap)

    return app


def main() -> None:
    create_app(StreamSettings()).main()


if __name__ == "__main__":
    main()
