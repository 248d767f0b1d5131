from __future__ import annotations

from pydantic import Field

from nexwatt_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "capacity-model"
    http_port: int = 8083
    capacity_freshness_s: float = Field(
        900.0,
        gt=0,
        description="An asset reports when its latest PV and SoC intervals end within this "
        "of its resource's clock [s]",
    )
