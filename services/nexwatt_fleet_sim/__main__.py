from __future__ import annotations

from nexwatt_fleet_sim.bootstrap import bootstrap
from nexwatt_fleet_sim.config import Settings
from nexwatt_fleet_sim.register import register
from nexwatt_shared.wiring import service_main


def main() -> None:
    service_main(Settings, bootstrap, commands={"register": register})


if __name__ == "__main__":
    main()
