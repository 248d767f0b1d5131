from __future__ import annotations

from nexwatt_capacity_model.bootstrap import MIGRATIONS, bootstrap
from nexwatt_capacity_model.config import Settings
from nexwatt_shared.wiring import service_main


def main() -> None:
    service_main(Settings, bootstrap, MIGRATIONS)


if __name__ == "__main__":
    main()
