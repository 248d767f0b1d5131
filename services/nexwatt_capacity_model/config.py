from __future__ import annotations

from pydantic import Field

from nexwatt_shared.settings import ServiceSettings, TimeZoneName


class Settings(ServiceSettings):
    service_name: str = "capacity-model"
    http_port: int = 8083
    capacity_freshness_s: float = Field(
        900.0,
        gt=0,
        description="An asset reports when its latest PV and SoC intervals end within this "
        "of its resource's clock [s]",
    )
    capacity_market_timezone: TimeZoneName = Field(
        "America/New_York", description="IANA zone of the program's local times (PJM: Eastern)"
    )
    capacity_window_opening_min: float = Field(
        15.0,
        gt=0,
        le=60,
        description="The fleet's SoC is recorded at the first snapshot this soon after a "
        "program day's event window opens [min]",
    )
    # Commitment sizing of auction offers. Placeholders, none read from PJM's tariff or
    # manuals (see the README's "Commitment sizing"): set them from the program's terms.
    offer_deficiency_share: float = Field(
        0.2,
        ge=0,
        le=10,
        description="Deficiency rate = offer price x (1 + this) [-]; a Nexwatt placeholder "
        "shaped like PJM's deficiency charge",
    )
    offer_non_performance_usd_per_mw_interval: float = Field(
        300.0 * 365 / 360 / 12,
        ge=0,
        le=1e6,
        description="Charge per MW short in each 5-minute PAI [$/MW]; placeholder: Net CONE "
        "$300/MW-day x 365 / 360 h / 12 (settlement's placeholder)",
    )
    offer_pai_intervals_per_year: float = Field(
        360.0,
        ge=0,
        le=105_408,
        description="Expected Performance Assessment Intervals a year (360: 30 hours, a guess)",
    )
    offer_soc_availability: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Share of the UCAP still enrolled that an event finds charged above the "
        "backup reserve [-], assumed while the resource has fewer than "
        "offer_soc_min_days program days of SoC at the window's opening (1.0: full batteries)",
    )
    offer_soc_min_days: int = Field(
        3, ge=1, le=366, description="Program days of measured SoC sizing needs to use them"
    )
    offer_soc_days: int = Field(
        60, ge=1, le=366, description="Most recent program days of measured SoC sizing draws on"
    )
    offer_default_monthly_churn_pct: float = Field(
        1.5,
        ge=0,
        lt=100,
        description="Monthly churn of a cohort with no enrolment history yet (every asset "
        "enrolled today) [%]; a placeholder",
    )
    offer_samples: int = Field(
        10_000, ge=100, le=1_000_000, description="Deliverable-UCAP samples an offer is sized on"
    )
    offer_sampling_seed: int = Field(
        0, ge=0, description="Seed of the sizing's random draws: one fleet, one answer"
    )
    offer_outbox_poll_s: float = Field(
        1.0, gt=0, description="How often offer changes left unpublished are sent again [s]"
    )
