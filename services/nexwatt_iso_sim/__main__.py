"""`nexwatt-iso-sim`: one dispatch event, configured by NEXWATT_ISO_* environment variables."""

from __future__ import annotations

import asyncio
import logging

from nexwatt_iso_sim.config import Settings
from nexwatt_iso_sim.play import play


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(play(Settings()))


if __name__ == "__main__":
    main()
