"""Wires onboarding: PostgreSQL (assets, outbox, API keys), the ISO rules, the HTTP API, the
relay."""

from __future__ import annotations

from pathlib import Path

from nexwatt_onboarding.api import create_app
from nexwatt_onboarding.config import Settings
from nexwatt_onboarding.handlers import Onboarding
from nexwatt_onboarding.outbox import OutboxRelay
from nexwatt_onboarding.rules import load_rules
from nexwatt_shared.auth import ApiKey, Authenticator, find_active_key
from nexwatt_shared.service import ServiceProcess
from nexwatt_shared.wiring import open_resources

MIGRATIONS = Path(__file__).with_name("migrations")


async def bootstrap(settings: Settings) -> ServiceProcess:
    rules = load_rules()  # before connecting: a broken rules file stops the start
    res = await open_resources(settings, migrations=MIGRATIONS)
    assert res.pool is not None
    relay = OutboxRelay(
        res.pool,
        res.producer,
        poll_s=settings.outbox_poll_s,
        batch_size=settings.outbox_batch_size,
    )
    pool = res.pool

    async def lookup(token: str) -> ApiKey | None:
        # Per request, so that a revocation holds from the next request on.
        return await find_active_key(pool, token)

    auth = Authenticator(lookup, required=settings.auth_required)
    app = create_app(Onboarding(pool, rules, on_change=relay.wake), auth, settings.max_body_bytes)
    return res.process([relay.run], app)
