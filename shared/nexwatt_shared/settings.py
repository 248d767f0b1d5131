"""Connection and runtime settings, read from environment variables.

The names are the same everywhere (local stack, docker compose, Helm): NEXWATT_ plus the field
name in upper case, e.g. NEXWATT_KAFKA_BOOTSTRAP_SERVERS.
"""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiokafka.helpers import create_ssl_context
from pydantic import AfterValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ValueError, ZoneInfoNotFoundError) as exc:
        raise ValueError(f"not an IANA time zone: {value!r}") from exc
    return value


TimeZoneName = Annotated[str, AfterValidator(_known_zone)]  # e.g. America/New_York


class ServiceSettings(BaseSettings):
    """What every service reads. A service subclasses it to set its own defaults."""

    model_config = SettingsConfigDict(env_prefix="NEXWATT_", extra="ignore")

    service_name: str = Field("nexwatt", description="Name in logs, metrics and consumer groups")
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    kafka_security_protocol: str = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_mechanism: str = Field("PLAIN", description="PLAIN, SCRAM-SHA-256 or -512")
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    postgres_url: str = Field(
        "postgresql://nexwatt:nexwatt@127.0.0.1:15432",
        description="Server URL; the database name comes from postgres_database",
    )
    postgres_database: str = ""
    redis_url: str = "redis://127.0.0.1:16379/0"
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    log_level: str = "INFO"
    consumer_max_records: int = Field(500, description="Largest batch one getmany() returns")
    ready_max_lag: int = Field(1000, description="/readyz fails while consumer lag exceeds this")
    ready_max_retry_s: float = Field(
        60.0, gt=0, description="/readyz fails once a consumer has retried a batch this long [s]"
    )
    event_time_max_ahead_s: float = Field(
        300.0,
        ge=0,
        description="Records whose event time is further than this after the wall clock are "
        "dead-lettered (a clock far ahead would settle and mark fresh too early) [s]",
    )

    def kafka_security(self) -> dict[str, Any]:
        """aiokafka client options for the cluster's security, beyond the bootstrap servers
        (none for PLAINTEXT; TLS uses the system's trusted CAs)."""
        protocol = self.kafka_security_protocol.upper()
        options: dict[str, Any] = {}
        if protocol != "PLAINTEXT":
            options["security_protocol"] = protocol
        if "SSL" in protocol:
            options["ssl_context"] = create_ssl_context()
        if protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        return options

    @property
    def database(self) -> str:
        return self.postgres_database or f"nexwatt_{self.service_name.replace('-', '_')}"

    @property
    def consumer_group(self) -> str:
        return f"nexwatt.{self.service_name}"
