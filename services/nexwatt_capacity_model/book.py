"""Each replica's in-memory books: per resource, its assets as numpy columns, kept current from
the store's rows (`store.resource_rows` once, then `store.changes_since`), so a snapshot is
arithmetic on arrays instead of a read of every asset.

The store stays the truth, shared by every replica: a book is rebuilt from it on start, and
takes every replica's writes through `changes_since`. Each row read is the row's current
state, so applying one twice, or late, changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from nexwatt_capacity_model.accreditation import PJM_ELCC_CLASS_RATINGS
from nexwatt_capacity_model.domain import Assets, accredit
from nexwatt_capacity_model.store import Changes, Columns
from nexwatt_shared.contracts import AssetStatus, AssetType, Channel
from nexwatt_shared.power_model import AssetRatings

DELIVERY_YEARS: tuple[str, ...] = tuple(PJM_ELCC_CLASS_RATINGS.by_delivery_year)
# Row columns kept as float64 arrays (times in seconds since the epoch, NaN: none/unknown).
_FLOATS = (
    "capacity_kw",
    "storage_kwh",
    "backup_reserve_pct",
    "battery_continuous_kw",
    "battery_peak_kw",
    "round_trip_efficiency",
    "pv_dc_kw",
    "updated_at_s",
    "pv_end_s",
    "pv_kw",
    "soc_end_s",
    "soc_pct",
)
_CHANNEL_COLUMNS = {
    Channel.PV_KW.value: ("pv_end_s", "pv_kw"),
    Channel.SOC_PCT.value: ("soc_end_s", "soc_pct"),
}


class ResourceBook:
    """One resource's assets, one slot each; an asset leaving hands its slot to the last one."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.slot: dict[str, int] = {}
        self.cohorts: list[str] = []
        self._cohort_code: dict[str, int] = {}
        self._columns: dict[str, np.ndarray] = {name: np.empty(0) for name in _FLOATS}
        self._columns |= {
            "enrolled": np.empty(0, bool),
            "has_pv": np.empty(0, bool),
            "cohort_code": np.empty(0, np.intp),
            "coupling": np.empty(0, "<U2"),
            "icap_mw": np.empty(0),
        }
        self._ucap_mw = np.empty((len(DELIVERY_YEARS), 0))
        self._view: Assets | None = None
        self._ratings_view: AssetRatings | None = None  # kept while only telemetry changes

    def __len__(self) -> int:
        return len(self.ids)

    def _grow(self, size: int) -> None:
        capacity = self._ucap_mw.shape[1]
        if size <= capacity:
            return
        new = max(size, 2 * capacity, 64)
        for name, column in self._columns.items():
            grown = np.zeros(new, column.dtype)
            grown[:capacity] = column
            self._columns[name] = grown
        ucap = np.zeros((len(DELIVERY_YEARS), new))
        ucap[:, :capacity] = self._ucap_mw
        self._ucap_mw = ucap

    def _code(self, cohort: str | None) -> int:
        name = cohort or "unknown"  # a row stored before cohorts were (migration 004)
        if name not in self._cohort_code:
            self._cohort_code[name] = len(self.cohorts)
            self.cohorts.append(name)
        return self._cohort_code[name]

    def put(self, rows: Columns) -> None:
        """Set these assets' rows (columns of `store._ASSET_COLUMNS`; added if new),
        accrediting each from its ratings. Ratings the power model refuses raise ValueError
        before anything changes."""
        ids = rows["asset_id"].tolist()
        if not ids:
            return
        has_pv = rows["asset_type"] != AssetType.STORAGE.value
        icap, ucap = accredit(_ratings(rows), has_pv, rows["pv_mounting"], DELIVERY_YEARS)
        for asset_id in ids:
            if asset_id not in self.slot:
                self.slot[asset_id] = len(self.ids)
                self.ids.append(asset_id)
        self._grow(len(self.ids))
        at = np.array([self.slot[asset_id] for asset_id in ids])
        c = self._columns
        for name in _FLOATS:
            c[name][at] = rows[name]
        c["enrolled"][at] = rows["status"] == AssetStatus.ENROLLED.value
        c["has_pv"][at] = has_pv
        codes = {cohort: self._code(cohort) for cohort in set(rows["cohort"].tolist())}
        c["cohort_code"][at] = [codes[cohort] for cohort in rows["cohort"].tolist()]
        c["coupling"][at] = rows["coupling"]
        c["icap_mw"][at] = icap
        self._ucap_mw[:, at] = ucap
        self._view = self._ratings_view = None

    def remove(self, asset_ids: Iterable[str]) -> None:
        """Drop these assets (unknown ones are ignored)."""
        for asset_id in asset_ids:
            slot = self.slot.pop(asset_id, None)
            if slot is None:
                continue
            last = len(self.ids) - 1
            if slot != last:
                moved = self.ids[last]
                self.ids[slot], self.slot[moved] = moved, slot
                for column in self._columns.values():
                    column[slot] = column[last]
                self._ucap_mw[:, slot] = self._ucap_mw[:, last]
            self.ids.pop()
        self._view = self._ratings_view = None

    def put_channels(self, rows: Columns) -> None:
        """Set the newest interval of a channel (columns `asset_id`, `channel`, `end_s`,
        `value`) of the assets in this book; other assets' rows are ignored."""
        for channel, (end, value) in _CHANNEL_COLUMNS.items():
            mine = [
                (i, self.slot[asset_id])
                for i, (asset_id, name) in enumerate(
                    zip(rows["asset_id"].tolist(), rows["channel"].tolist(), strict=True)
                )
                if name == channel and asset_id in self.slot
            ]
            if mine:
                row, slot = np.array(mine).T
                self._columns[end][slot] = rows["end_s"][row]
                self._columns[value][slot] = rows["value"][row]
        self._view = None

    def view(self) -> Assets:
        """The book's assets as read-only arrays (rebuilt only after a change)."""
        if self._view is None:
            n = len(self.ids)
            c = {name: column[:n] for name, column in self._columns.items()}
            if self._ratings_view is None:
                self._ratings_view = _ratings(c)
            self._view = Assets(
                enrolled=c["enrolled"],
                cohort_code=c["cohort_code"],
                cohorts=tuple(self.cohorts),
                has_pv=c["has_pv"],
                ratings=self._ratings_view,
                icap_mw=c["icap_mw"],
                ucap_mw=self._ucap_mw[:, :n],
                delivery_years=DELIVERY_YEARS,
                updated_at_s=c["updated_at_s"],
                pv_end_s=c["pv_end_s"],
                pv_kw=c["pv_kw"],
                soc_end_s=c["soc_end_s"],
                soc_pct=c["soc_pct"],
            )
        return self._view


class Books:
    """A replica's books, one per resource it has looked at, and how far it has read."""

    def __init__(self) -> None:
        self.of: dict[str, ResourceBook] = {}
        self._resource_of: dict[str, str] = {}  # asset id -> the book holding it
        self.xmin: str | None = None  # rows written since have txid >= xmin

    def load(self, resource_id: str, rows: Changes) -> ResourceBook:
        """A new book of every asset in the resource (`store.resource_rows`), kept only once
        it is whole."""
        book = ResourceBook()
        book.put(rows.assets)
        self._hand_over(book.ids, resource_id)
        self.of[resource_id] = book
        if self.xmin is None:
            self.xmin = rows.xmin
        return book

    def apply(self, changes: Changes) -> None:
        """Rows written since `xmin` (`store.changes_since`), to the books holding them.
        Should a row fail, `xmin` stays: the rows are read again next time (applying a row
        twice changes nothing)."""
        self._apply_assets(changes.assets)
        if changes.channels:
            held_by = [self._resource_of.get(a) for a in changes.channels["asset_id"].tolist()]
            for resource_id, rows in _split(changes.channels, held_by).items():
                self.of[resource_id].put_channels(rows)
        self.xmin = changes.xmin

    def _apply_assets(self, rows: Columns) -> None:
        if not rows or not len(rows["asset_id"]):
            return
        resource_ids = rows["resource_id"].tolist()
        into = [r if r in self.of else None for r in resource_ids]
        for resource_id, resource_rows in _split(rows, into).items():
            self.of[resource_id].put(resource_rows)  # each refuses its rows before changing
            self._hand_over(resource_rows["asset_id"].tolist(), resource_id)
        # Assets now in a resource this replica has no book of leave the book they were in.
        gone = [a for a, r in zip(rows["asset_id"].tolist(), into, strict=True) if r is None]
        self._hand_over(gone, None)

    def _hand_over(self, asset_ids: list[str], resource_id: str | None) -> None:
        """Record these assets as held by `resource_id`'s book (None: by none), taking them
        out of any other book that held them."""
        leaving: dict[str, list[str]] = {}
        for asset_id in asset_ids:
            held_by = self._resource_of.get(asset_id)
            if held_by is not None and held_by != resource_id:
                leaving.setdefault(held_by, []).append(asset_id)
            if resource_id is None:
                self._resource_of.pop(asset_id, None)
            else:
                self._resource_of[asset_id] = resource_id
        for held_by, moved in leaving.items():
            self.of[held_by].remove(moved)


def _ratings(columns: Columns) -> AssetRatings:
    """The power model's ratings of rows or of a book's columns (checked: ValueError)."""
    return AssetRatings(
        battery_continuous_kw=columns["battery_continuous_kw"],
        battery_peak_kw=columns["battery_peak_kw"],
        usable_kwh=columns["storage_kwh"],
        round_trip_efficiency=columns["round_trip_efficiency"],
        coupling=columns["coupling"],
        pv_dc_kw=columns["pv_dc_kw"],
        inverter_ac_kw=columns["capacity_kw"],
        backup_reserve_pct=columns["backup_reserve_pct"],
    )


def _split(rows: Columns, keys: Sequence[str | None]) -> dict[str, Columns]:
    """The rows per key, each as columns; rows keyed None are left out."""
    at: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key is not None:
            at.setdefault(key, []).append(i)
    return {
        key: {name: column[index] for name, column in rows.items()} for key, index in at.items()
    }
