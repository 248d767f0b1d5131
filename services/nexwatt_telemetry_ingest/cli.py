"""`nexwatt-ingest`: telemetry tools that run beside the service.

nexwatt-ingest import PATH... --asset ID     backfill meter data files (Green Button, CSV)
nexwatt-ingest connect --sites FILE          poll vendor clouds / Modbus devices
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from nexwatt_telemetry_ingest.connectors import runner
from nexwatt_telemetry_ingest.mdms import importer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nexwatt-ingest", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, module in (("import", importer), ("connect", runner)):
        sub = commands.add_parser(
            name, help=module.__doc__.splitlines()[0] if module.__doc__ else ""
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    sys.exit(asyncio.run(args.run(args)))
