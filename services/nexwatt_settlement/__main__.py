from __future__ import annotations

import sys

from nexwatt_settlement import cli
from nexwatt_settlement.bootstrap import MIGRATIONS, bootstrap
from nexwatt_settlement.config import Settings
from nexwatt_shared.wiring import service_main


def main() -> None:
    """`nexwatt-settlement [run | migrate]` runs the service; the analyst commands
    (`list | show | export | plot | revenue`) read its database."""
    if len(sys.argv) > 1 and sys.argv[1] in cli.COMMANDS:
        sys.exit(cli.main(sys.argv[1:]))
    service_main(Settings, bootstrap, MIGRATIONS)


if __name__ == "__main__":
    main()
