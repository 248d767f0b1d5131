from __future__ import annotations

from pydantic import Field

from nexwatt_settlement.baselines import ParticipationModel
from nexwatt_settlement.domain import BaselineMethod
from nexwatt_settlement.market_time import PJM_TIMEZONE
from nexwatt_settlement.money import PLACEHOLDER_PERFORMANCE_RATES
from nexwatt_shared.settings import ServiceSettings, TimeZoneName

DAY_S = 86_400.0


class Settings(ServiceSettings):
    service_name: str = "settlement"
    http_port: int = 8085
    settlement_participation_model: ParticipationModel = Field(
        ParticipationModel.DER_AGGREGATOR,
        description="der-aggregator: the battery is measured, export counts; demand-response:"
        " the site meter is measured, export is not credited",
    )
    settlement_baseline_method: BaselineMethod = Field(
        BaselineMethod.HIGH_X_OF_Y,
        description="Each asset's baseline (Hour Before from 5-minute data is the fallback)",
    )
    settlement_market_timezone: TimeZoneName = Field(
        PJM_TIMEZONE, description="The ISO's prevailing time: local days, hours, holidays"
    )
    settlement_coverage_threshold_pct: float = Field(
        98.0,
        ge=0,
        le=100,
        description="Share of a window's asset-slots measured before it is filed [%]",
    )
    settlement_stall_s: float = Field(
        900.0,
        gt=0,
        description="A window whose coverage has not grown for this long is filed below the"
        " threshold (offline assets are not waited for until the deadline) [s]",
    )
    settlement_restate_every_s: float = Field(
        300.0,
        ge=0,
        description="At most one restated version of a window this often: late data arriving"
        " in many batches is settled once [s]",
    )
    settlement_final_after_s: float = Field(
        60 * DAY_S,
        gt=0,
        description="After the window's end, the report becomes final: later data is refused [s]",
    )
    settlement_billing_quality_sources: str = Field(
        "espi,utility-csv",
        description="Reading sources (vendor names, comma-separated) that are billing-quality"
        " meter data: a window wholly covered by them is final at once",
    )
    settlement_check_interval_s: float = Field(
        30.0, gt=0, description="How often deadlines are checked without new input [s]"
    )
    settlement_charge_rate_usd_per_mw_interval: float = Field(
        PLACEHOLDER_PERFORMANCE_RATES.charge_usd_per_mw_interval,
        ge=0,
        description="Non-performance charge per MW short per 5-minute interval [$] (placeholder)",
    )
    settlement_bonus_rate_usd_per_mw_interval: float = Field(
        PLACEHOLDER_PERFORMANCE_RATES.bonus_usd_per_mw_interval,
        ge=0,
        description="Bonus per MW over per 5-minute interval [$] (placeholder)",
    )
