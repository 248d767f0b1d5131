"""Onboarding's OpenAPI document as a file: `python -m nexwatt_onboarding.openapi OUT` (run by
`make schemas`, which writes schemas/openapi.json; a test keeps the committed one current)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import cast

from nexwatt_onboarding.api import create_app
from nexwatt_onboarding.handlers import Onboarding
from nexwatt_shared.auth import Authenticator


async def _no_keys(token: str) -> None:
    return None


def render() -> str:
    """The document as text. Only the routes are read: no store and no key store stand
    behind the app."""
    app = create_app(cast(Onboarding, None), Authenticator(_no_keys, required=True))
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(render())
