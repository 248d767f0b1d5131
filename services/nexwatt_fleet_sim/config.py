from __future__ import annotations

from datetime import datetime

from pydantic import Field, SecretStr, field_validator

from nexwatt_shared.settings import ServiceSettings, TimeZoneName


class Settings(ServiceSettings):
    service_name: str = "fleet-sim"
    http_port: int = 8086
    sim_assets: int = Field(312, description="Fleet size (about 1 in 10 is a commercial site)")
    sim_seed: int = Field(42, description="Same seed, same fleet and same weather")
    sim_start: datetime = Field(
        datetime.fromisoformat("2026-03-12T08:44:00-04:00"), description="Event time to start at"
    )
    sim_history_days: int = Field(
        14,
        ge=0,
        le=366,
        description="Days of hourly telemetry published before `sim_start`, for customer"
        " baselines (0: none)",
    )
    sim_speed: float = Field(60.0, description="Event seconds per wall second")
    sim_asset_prefix: str = Field(
        "BTM-",
        # Ids are built from it: asset ids <prefix><5 digits>, vendor-cloud gateways
        # <prefix><vendor>-cloud, site gateways <asset id>-gw; each id fits 64 characters.
        max_length=40,
        pattern=r"^[A-Za-z0-9._:-]*$",
        description="Asset ids are <prefix><5 digits>; the homes' vendor-cloud gateways"
        " <prefix><vendor>-cloud",
    )
    sim_resource_id: str | None = Field(None, description="Register into this ISO resource")
    sim_iso_zone: str = "PJM-PEPCO"
    sim_latitude_deg: float = 38.9
    sim_longitude_deg: float = -77.0
    sim_site_timezone: TimeZoneName = Field(
        "America/New_York", description="IANA zone of the sites' local times (SolarEdge's)"
    )
    sim_home_self_consumption: bool = Field(
        True,
        description="Home batteries cover their household's load outside events (and are near"
        " their reserve by morning); false: they hold their charge for events, as a program's"
        " 'save for events' mode does",
    )
    sim_offline_fraction: float = Field(0.02, description="Assets that never report or ack")
    sim_under_response_fraction: float = Field(
        0.05, description="Assets that acknowledge a setpoint and deliver less"
    )
    sim_refusal_fraction: float = Field(0.01, description="Assets whose owner opts out")
    sim_unreachable_fraction: float = Field(
        0.0,
        description="Assets that report telemetry but that their gateway cannot reach: a"
        " command to them is never acknowledged",
    )
    sim_lost_command_fraction: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Command messages a gateway loses the first time it sees them (drawn from"
        " the seed and the command id); a re-sent command is always answered",
    )
    sim_onboarding_url: str = Field(
        "http://127.0.0.1:8081", description="Where `register` sends the fleet"
    )
    api_key: SecretStr | None = Field(
        None,
        description="The onboarding API key `register` sends (NEXWATT_API_KEY; scope "
        "assets:write); none: onboarding must not require keys",
    )

    @field_validator("sim_start")
    @classmethod
    def _whole_minute(cls, value: datetime) -> datetime:
        # Intervals close on multiples of their length, counted from whole minutes.
        if value.second or value.microsecond:
            raise ValueError("sim_start must fall on a whole minute")
        return value
