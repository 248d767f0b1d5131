from __future__ import annotations

from pydantic import Field

from nexwatt_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "onboarding"
    http_port: int = 8081
    outbox_poll_s: float = Field(0.15, gt=0, description="Outbox poll when nothing wakes it [s]")
    outbox_batch_size: int = Field(100, gt=0, description="Outbox rows published per transaction")
    max_body_bytes: int = Field(
        1024 * 1024,
        gt=0,
        le=64 * 1024 * 1024,
        description="Largest request body [bytes]; larger ones are refused (413) unread",
    )
    auth_required: bool = Field(
        True,
        description="Refuse requests without an API key (401); false (a development setting "
        "only) lets such a request act as the tenant `default` with every scope",
    )
