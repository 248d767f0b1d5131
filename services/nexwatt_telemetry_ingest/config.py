from __future__ import annotations

from pydantic import Field

from nexwatt_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "telemetry-ingest"
    http_port: int = 8082
    # Readings are small and the historian writes a batch in one COPY: larger batches.
    consumer_max_records: int = Field(2000, ge=1, le=100_000)
    raw_max_records: int = Field(
        50, ge=1, le=10_000, description="Vendor payloads per batch (each may hold hundreds)"
    )
