"""`nexwatt-admin create-topics | export-schemas`."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from nexwatt_shared.kafka.admin import create_topics
from nexwatt_shared.observability import configure_logging
from nexwatt_shared.schema_export import render_all
from nexwatt_shared.settings import ServiceSettings


def main() -> None:
    parser = argparse.ArgumentParser(prog="nexwatt-admin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    topics = sub.add_parser("create-topics", help="create every topic in the registry")
    topics.add_argument("--replication-factor", type=int, default=1)
    export = sub.add_parser("export-schemas", help="write JSON Schemas and AsyncAPI")
    export.add_argument("--out", type=Path, default=Path("schemas"))
    args = parser.parse_args()

    settings = ServiceSettings(service_name="admin")
    configure_logging("admin", settings.log_level)
    if args.command == "create-topics":
        created = asyncio.run(
            create_topics(
                settings.kafka_bootstrap_servers,
                replication_factor=args.replication_factor,
                security=settings.kafka_security(),
            )
        )
        print(f"topics created: {', '.join(created) or 'none (all existed)'}")
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in render_all().items():
            (args.out / name).write_text(text)
        print(f"wrote {len(render_all())} files to {args.out}")


if __name__ == "__main__":
    main()
