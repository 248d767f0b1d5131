from __future__ import annotations

from pydantic import Field

from nexwatt_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "settlement"
    http_port: int = 8085
    settlement_grace_s: float = Field(
        180.0, ge=0, description="Event time waited after a window's end before settling it [s]"
    )
    settlement_baseline_lookback_s: float = Field(
        1800.0, gt=0, description="Span before the window the baseline is averaged over [s]"
    )
