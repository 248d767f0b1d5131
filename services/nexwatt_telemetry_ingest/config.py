from __future__ import annotations

from nexwatt_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "telemetry-ingest"
    http_port: int = 8082
