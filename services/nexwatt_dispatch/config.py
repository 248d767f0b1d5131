from __future__ import annotations

from pydantic import Field

from nexwatt_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "dispatch"
    http_port: int = 8084
    dispatch_ack_timeout_s: float = Field(
        5.0,
        description="How long to wait for gateway acks; halfway, a command no gateway answered"
        " is sent once more, and at the end assets that did not answer are replaced (and their"
        " replacements waited for as long again)",
    )
    dispatch_telemetry_max_age_s: float = Field(
        900.0, description="Assets whose newest PV or SoC is older than this are not dispatched"
    )
    dispatch_min_setpoint_kw: float = Field(
        0.1, description="Smaller allocations are dropped (not worth a command)"
    )
    dispatch_lead_time_s: float = Field(
        30.0,
        description="Time gateways need to reach every asset: commands for a window already"
        " open (or opening sooner) start this long after the instruction's issue time",
    )
    dispatch_replay_s: float = Field(
        900.0,
        description="At a start without a snapshot, telemetry published this long ago [s of"
        " wall time] is read again to rebuild the in-memory view (registrations: all of them);"
        " at least the telemetry max age (older readings are stale anyway)",
    )
    dispatch_max_events_per_season: int = Field(
        30, ge=0, description="The program's promise: events a subscriber takes part in per season"
    )
    dispatch_max_hours_per_event: float = Field(
        4.0, gt=0, description="The program's promise: longest event a subscriber is called for [h]"
    )
    dispatch_performance_refresh_s: float = Field(
        30.0, gt=0, description="How often each asset's measured performance is re-read"
    )
    dispatch_snapshot_every_s: float = Field(
        60.0,
        gt=0,
        description="How often the in-memory view is written to Redis, for a fast restart",
    )
