from __future__ import annotations

from pydantic import Field

from nexwatt_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "dispatch"
    http_port: int = 8084
    dispatch_ack_timeout_s: float = Field(5.0, description="How long to wait for gateway acks")
    dispatch_telemetry_max_age_s: float = Field(
        900.0, description="Assets whose newest PV or SoC is older than this are not dispatched"
    )
    dispatch_min_setpoint_kw: float = Field(
        0.1, description="Smaller allocations are dropped (not worth a command)"
    )
