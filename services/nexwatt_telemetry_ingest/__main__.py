from __future__ import annotations

from nexwatt_shared.wiring import service_main
from nexwatt_telemetry_ingest.bootstrap import MIGRATIONS, bootstrap
from nexwatt_telemetry_ingest.config import Settings


def main() -> None:
    service_main(Settings, bootstrap, MIGRATIONS)


if __name__ == "__main__":
    main()
