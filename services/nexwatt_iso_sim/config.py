from __future__ import annotations

from datetime import datetime

from pydantic import Field

from nexwatt_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "iso-sim"
    http_port: int = 8087
    iso_resource_id: str = "NXW-PJM-0042"
    iso_mw: float = Field(44.5, description="Requested delivery [MW]")
    iso_issue_at: datetime = Field(
        datetime.fromisoformat("2026-03-12T09:17:00-04:00"),
        description="Event time at which the instruction is sent",
    )
    iso_window_start: datetime = datetime.fromisoformat("2026-03-12T09:15:00-04:00")
    iso_window_end: datetime = datetime.fromisoformat("2026-03-12T10:15:00-04:00")
    iso_instruction_id: str | None = Field(None, description="Default: a new id per run")
    iso_test_at: datetime | None = Field(
        None,
        description="Event time of a capability test before the event (none by default): the"
        " same MW over `iso_test_minutes`, from its issue time on",
    )
    iso_test_minutes: float = Field(15.0, gt=0, description="Length of the capability test")
    iso_timezone: str = Field("America/New_York", description="Zone the log is printed in")
    iso_timeout_s: float = Field(600.0, description="Give up after this much wall time")
    # The capacity auction (`nexwatt-iso-sim auction`).
    iso_clearing_prices: dict[str, float] = Field(
        {"2026/27": 329.17, "2027/28": 333.44},
        description="Clearing price per delivery year [$/MW-day] (JSON): PJM's 2026/27 and "
        "2027/28 auctions as Nexwatt's notes transcribe them (each at its price cap); verify",
    )
    iso_clearing_fill_share: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Share of an offer's UCAP that clears when its price is low enough [-]: "
        "1 clears it whole, 0.5 partly, 0 not at all",
    )
