"""`nexwatt-iso-sim`: one dispatch event (`play`, the default) or the capacity auction
(`auction`), configured by NEXWATT_ISO_* environment variables."""

from __future__ import annotations

import argparse
import asyncio
import logging

from nexwatt_iso_sim.auction import run_auction
from nexwatt_iso_sim.config import Settings
from nexwatt_iso_sim.play import play


def main() -> None:
    parser = argparse.ArgumentParser(prog="nexwatt-iso-sim")
    parser.add_argument("command", nargs="?", default="play", choices=["play", "auction"])
    parser.add_argument(
        "--offers",
        type=int,
        default=0,
        help="auction: exit once this many submitted offers are answered (0: run until stopped)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = Settings()
    if args.command == "auction":
        asyncio.run(run_auction(settings, args.offers))
    else:
        asyncio.run(play(settings))


if __name__ == "__main__":
    main()
