"""What a simulated SolarEdge site's monitoring cloud serves, in SolarEdge's own shapes.

The fleet's SolarEdge assets publish these on `telemetry.raw` instead of normalized readings;
telemetry-ingest turns them into the standard series. Built from the simulator's own physics,
never from the normalizer. SolarEdge's conventions, as its Monitoring API documents them:
- times are the site's LOCAL wall time, `YYYY-MM-DD hh:mm:ss`, without an offset;
- `storageData`: one battery's samples (`telemetries`), each with its instantaneous `power` [W]
  where + means CHARGING (the opposite of ours), lifetime charged / discharged energy counters
  [Wh], the energy a full pack holds [Wh] and the state of charge `batteryPercentageState` [%];
- `powerDetails`: 15-minute average powers [W] per meter, each value labelled by its quarter
  hour's local START; `FeedIn` (export) and `Purchased` (import) are both magnitudes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

STORAGE_DATA = "solaredge.storage-data.v1"
POWER_DETAILS = "solaredge.power-details.v1"
QUARTER_S = 900  # powerDetails' QUARTER_OF_AN_HOUR [s]
LOCAL_TIME = "%Y-%m-%d %H:%M:%S"
BATTERY_ENABLED = 3  # SolarEdge's batteryState of a battery in normal operation
W_PER_KW = 1000.0


@dataclass(frozen=True)
class BatterySample:
    """One battery telemetry sample, in our terms."""

    at: datetime  # timezone-aware
    battery_kw: float  # + = discharging (ours) [kW]
    charged_wh: float  # lifetime energy charged [Wh]
    discharged_wh: float  # lifetime energy discharged [Wh]
    soc_pct: float  # [%]


def local(at: datetime, zone: ZoneInfo) -> str:
    """`at` as the site's local wall time, the way SolarEdge writes it (no offset)."""
    return at.astimezone(zone).strftime(LOCAL_TIME)


def storage_data(
    serial: str, model: str, pack_wh: float, samples: list[BatterySample], zone: ZoneInfo
) -> dict[str, Any]:
    """A `/site/{id}/storageData` response for one battery of `pack_wh` [Wh] usable energy.
    Powers are rounded to 0.1 W, counters to 0.1 Wh, the SoC to 0.01 %."""
    telemetries = [
        {
            "timeStamp": local(s.at, zone),
            "power": round(-s.battery_kw * W_PER_KW, 1) + 0.0,  # SolarEdge: + = charging
            "batteryState": BATTERY_ENABLED,
            "lifeTimeEnergyCharged": round(s.charged_wh, 1),
            "lifeTimeEnergyDischarged": round(s.discharged_wh, 1),
            "fullPackEnergyAvailable": round(pack_wh, 1),
            "batteryPercentageState": round(s.soc_pct, 2),
        }
        for s in samples
    ]
    battery = {
        "nameplate": round(pack_wh, 1),
        "serialNumber": serial,
        "modelNumber": model,
        "telemetryCount": len(telemetries),
        "telemetries": telemetries,
    }
    return {"storageData": {"batteryCount": 1, "batteries": [battery]}}


def power_details(
    start: datetime, zone: ZoneInfo, pv_kw: float, load_kw: float, export_kw: float,
    import_kw: float,
) -> dict[str, Any]:  # fmt: skip
    """A `/site/{id}/powerDetails` response for the quarter hour from `start`: average PV,
    consumption, export and import over it [kW in, W out, rounded to 0.1 W]. Export and import
    are averaged separately (each step's net power is one or the other), so
    FeedIn - Purchased is the quarter's average net power."""
    date = local(start, zone)
    meters = {"Production": pv_kw, "Consumption": load_kw, "FeedIn": export_kw,
              "Purchased": import_kw}  # fmt: skip
    return {
        "powerDetails": {
            "timeUnit": "QUARTER_OF_AN_HOUR",
            "unit": "W",
            "meters": [
                {"type": name, "values": [{"date": date, "value": round(kw * W_PER_KW, 1)}]}
                for name, kw in meters.items()
            ],
        }
    }
