"""Green Button (NAESB REQ.21 ESPI) Atom XML -> net_kw readings.

What a Green Button file says:
- It is an Atom feed; each `entry` carries one ESPI resource in its `content`: UsagePoint (a
  service point), MeterReading, ReadingType (what the values mean) and IntervalBlock (the
  values). Atom links tie them: a MeterReading entry's `related` links point at its
  ReadingType entry (that entry's `self` href) and at the collection of its IntervalBlocks
  (their entries' `up` href; their `self` hrefs lie under the MeterReading's). A file with a
  single ReadingType needs no links.
- `IntervalBlock{interval{start, duration}, IntervalReading*{cost, ReadingQuality*{quality},
  timePeriod{start, duration}, value}}`: `start` is epoch seconds UTC, durations are seconds.
- ReadingType: `uom` 72 = Wh (energy over the interval), 38 = W (average power); a value counts
  units of 10^`powerOfTenMultiplier`; `flowDirection` 1 = forward = delivered TO the customer
  (import), 19 = reverse = received FROM the customer (export), absent = forward;
  `defaultQuality` applies to readings without a ReadingQuality; `intervalLength` [s] to those
  without a duration; `accumulationBehaviour` 1 (bulk) and 3 (cumulative) are register reads,
  not interval data, and refused.
- LocalTimeParameters only describe the customer's clock: every time is UTC already.

What we make of it (one `net_kw` reading per interval, + = export):
- units: Wh over the interval -> average kW (250 Wh in 15 min = 1.0 kW); W -> kW;
- sign: a file with both directions: net = export - import per interval, missing when either
  direction lacks the interval or its value; a file with one direction: that one alone (import
  counts -, export +);
- quality: ESPI codes -> ours by `QUALITY` (several on one reading: the worst; none: the
  ReadingType's `defaultQuality`, else actual); a net of two directions takes the worse;
- time: each interval keeps its start and length (at most 3600 s; longer ones are refused);
- a reading without a value is missing (null), never 0. Two readings of one interval and
  direction: the same value is a duplicate (counted, kept once), another value is refused.

Hostile input: defusedxml refuses any DTD (so no entity expansion, no external entity);
iterparse streams the file and each IntervalReading element is dropped once read. The readings
themselves are held until the end (a few MB for a year of 15-minute data), because a file's
two directions can only be merged once both are read; they come out in order of start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse
from pydantic import ValidationError

from nexwatt_shared.contracts import Channel, Quality, ReadingSource
from nexwatt_telemetry_ingest.formats import FormatError, rules
from nexwatt_telemetry_ingest.mdms import Rows, Tally

ATOM = "{http://www.w3.org/2005/Atom}"
ESPI = "{http://naesb.org/espi}"
SOURCE = ReadingSource(vendor="espi", endpoint="green-button-atom")
FORWARD, REVERSE = 1, 19  # flowDirection: import, export
WH, W = 72, 38  # uom
_REGISTER_READS = {1: "bulkQuantity", 3: "cumulative"}  # accumulationBehaviour
_INT64 = 2**63  # ESPI values are xs:long
_WHOLE = re.compile(r"[+-]?[0-9]{1,19}")

# ESPI QualityOfReading -> Quality. Raw (14) is what the meter measured, not yet through the
# utility's validation: measured, so actual (`Quality.QUESTIONABLE` means implausible).
QUALITY: dict[int, Quality] = {
    0: Quality.ACTUAL,  # valid
    7: Quality.ESTIMATED,  # manually edited
    8: Quality.ESTIMATED,  # estimated using a reference day
    9: Quality.ESTIMATED,  # estimated by linear interpolation
    10: Quality.QUESTIONABLE,  # questionable: failed a validation check
    11: Quality.ESTIMATED,  # derived (calculated)
    12: Quality.ESTIMATED,  # projected (a forecast)
    13: Quality.ESTIMATED,  # mixed: part of it is not measured
    14: Quality.ACTUAL,  # raw: measured, not validated yet
    15: Quality.ESTIMATED,  # normalized for weather
    16: Quality.QUESTIONABLE,  # other, unspecified
    17: Quality.ACTUAL,  # validated
    18: Quality.ACTUAL,  # verified: failed a check, confirmed as actual usage
    19: Quality.ACTUAL,  # revenue quality
}
_RANK = (Quality.ACTUAL, Quality.ESTIMATED, Quality.QUESTIONABLE)  # better to worse


@dataclass(frozen=True)
class ReadingType:
    uom: int  # WH or W
    power_of_ten: int
    direction: int  # FORWARD or REVERSE
    interval_s: int | None  # intervalLength, for readings without a duration
    default_quality: Quality


@dataclass(frozen=True)
class _Raw:
    """One IntervalReading's texts, read once its block's ReadingType is known."""

    field: str
    start: str | None
    duration: str | None
    value: str | None
    qualities: tuple[str | None, ...]


@dataclass
class _Entry:
    field: str  # entry[i]
    links: list[tuple[str, str]] = field(default_factory=list)  # (rel, href)
    reading_type: ReadingType | FormatError | None = None
    meter_reading: bool = False
    readings: list[_Raw] = field(default_factory=list)

    def hrefs(self, *rels: str) -> list[str]:
        return [href for rel, href in self.links if rel in rels and href]


# One direction's values: (start, interval_s) -> [(kW, quality, field)], in file order.
Series = dict[tuple[datetime, int], list[tuple[float | None, Quality, str]]]


def parse(stream: BinaryIO, asset_id: str, tally: Tally) -> Rows:
    """The net_kw readings of a Green Button file (bytes), in order of start, and a FormatError
    for each IntervalReading that cannot be read; raises FormatError when the file is not
    well-formed Atom XML."""
    entries = _read_entries(stream, tally)
    series: dict[int, Series] = {FORWARD: {}, REVERSE: {}}
    types = _reading_types(entries)
    meters = [e for e in entries if e.meter_reading]
    for entry in entries:
        if not entry.readings:
            continue
        rt = _type_of(entry, meters, types)
        for raw in entry.readings:
            try:
                if isinstance(rt, FormatError):
                    raise FormatError(raw.field, f"its ReadingType is unusable: {rt}")
                key, kw, quality = _convert(raw, rt)
            except FormatError as exc:
                yield exc
                continue
            series[rt.direction].setdefault(key, []).append((kw, quality, raw.field))
    yield from _net(series, asset_id, tally)


# --- reading the XML ------------------------------------------------------------------------


def _read_entries(stream: BinaryIO, tally: Tally) -> list[_Entry]:
    """The file's Atom entries with what we need of them."""
    entries: list[_Entry] = []
    entry: _Entry | None = None
    depth = entry_depth = 0
    try:
        for event, elem in iterparse(stream, events=("start", "end"), forbid_dtd=True):
            if event == "start":
                depth += 1
                if depth == 1 and elem.tag not in (f"{ATOM}feed", f"{ATOM}entry"):
                    raise FormatError(_name(elem.tag), "not an Atom feed: not a Green Button file")
                if elem.tag == f"{ATOM}entry":
                    if entry is not None:
                        raise FormatError(f"{entry.field}.entry", "an entry inside an entry")
                    entry, entry_depth = _Entry(f"entry[{len(entries)}]"), depth
                continue
            if entry is not None:
                if elem.tag == f"{ATOM}link" and depth == entry_depth + 1:
                    entry.links.append((elem.get("rel", ""), elem.get("href", "").strip()))
                elif elem.tag == f"{ESPI}IntervalReading":
                    at = f"{entry.field}.IntervalBlock.IntervalReading[{len(entry.readings)}]"
                    entry.readings.append(_raw(elem, at))
                    tally.rows += 1
                    elem.clear()  # streaming: keep the texts, drop the element
                elif elem.tag == f"{ESPI}ReadingType":
                    entry.reading_type = _reading_type(elem, f"{entry.field}.ReadingType")
                elif elem.tag == f"{ESPI}MeterReading":
                    entry.meter_reading = True
                elif elem.tag == f"{ATOM}entry":
                    entries.append(entry)
                    entry = None
                    elem.clear()
            depth -= 1
    except FormatError:
        raise
    except ParseError as exc:
        raise FormatError("xml", f"not well-formed XML: {exc}") from exc
    except DefusedXmlException as exc:  # a DTD: entity bombs and external entities start there
        raise FormatError("xml", f"a DTD is not allowed in Green Button data: {exc!r}") from exc
    except (ValueError, LookupError) as exc:  # e.g. an unknown encoding
        raise FormatError("xml", f"unreadable XML: {exc}"[:200]) from exc
    return entries


def _raw(elem: Element, at: str) -> _Raw:
    return _Raw(
        at,
        elem.findtext(f"{ESPI}timePeriod/{ESPI}start"),
        elem.findtext(f"{ESPI}timePeriod/{ESPI}duration"),
        elem.findtext(f"{ESPI}value"),
        tuple(q.text for q in elem.iterfind(f"{ESPI}ReadingQuality/{ESPI}quality")),
    )


def _reading_type(elem: Element, at: str) -> ReadingType | FormatError:
    """What a ReadingType says, or why its readings cannot be used."""

    def whole(name: str, lo: int, hi: int) -> int | None:
        text = elem.findtext(f"{ESPI}{name}")
        return None if text is None else _whole(text, f"{at}.{name}", lo, hi)

    try:
        uom = whole("uom", 0, _INT64)
        if uom not in (WH, W):
            reason = "missing" if uom is None else f"{uom} is neither 72 (Wh) nor 38 (W)"
            raise FormatError(f"{at}.uom", reason)
        accumulation = whole("accumulationBehaviour", 0, _INT64)
        if accumulation in _REGISTER_READS:
            raise FormatError(
                f"{at}.accumulationBehaviour",
                f"{accumulation} ({_REGISTER_READS[accumulation]}) is a register read, not"
                " interval data",
            )
        direction = whole("flowDirection", 0, _INT64)
        if direction not in (None, FORWARD, REVERSE):
            raise FormatError(f"{at}.flowDirection", f"{direction} is neither 1 nor 19")
        default = whole("defaultQuality", 0, _INT64)
        return ReadingType(
            uom=uom,
            power_of_ten=whole("powerOfTenMultiplier", -12, 12) or 0,
            direction=direction or FORWARD,
            interval_s=whole("intervalLength", 1, 3600),
            default_quality=Quality.ACTUAL if default is None else _quality(default),
        )
    except FormatError as exc:
        return exc


# --- tying blocks to their ReadingType -------------------------------------------------------


def _reading_types(entries: list[_Entry]) -> dict[str, ReadingType | FormatError]:
    """ReadingTypes by their entry's self href ("" holds the only one, when there is one)."""
    found = [(e, rt) for e in entries if (rt := e.reading_type) is not None]
    types = {href: rt for e, rt in found for href in e.hrefs("self")}
    if len(found) == 1:
        types[""] = found[0][1]
    return types


def _type_of(
    block: _Entry, meters: list[_Entry], types: dict[str, ReadingType | FormatError]
) -> ReadingType | FormatError:
    """The ReadingType of an IntervalBlock entry: through the MeterReading whose IntervalBlock
    collection (or own href) it lies in; else the file's only ReadingType."""
    own = block.hrefs("self", "up")
    for meter in meters:
        related, under = meter.hrefs("related"), [f"{h}/" for h in meter.hrefs("self")]
        if any(h in related or h.startswith(tuple(under)) for h in own):
            linked = [types[h] for h in related if h in types]
            if linked:
                return linked[0]
    if "" in types:
        return types[""]
    return FormatError(
        f"{block.field}.link",
        "the IntervalBlock is not linked to a ReadingType (through its MeterReading's related"
        " links), and the file has several or none",
    )


# --- values ---------------------------------------------------------------------------------


def _convert(raw: _Raw, rt: ReadingType) -> tuple[tuple[datetime, int], float | None, Quality]:
    """(start, interval_s), average kW of the reading's direction (a magnitude), quality."""
    start = rules.from_epoch(
        _whole(raw.start, f"{raw.field}.timePeriod.start", -_INT64, _INT64 - 1),
        f"{raw.field}.timePeriod.start",
    )
    if raw.duration is not None:
        interval_s = _whole(raw.duration, f"{raw.field}.timePeriod.duration", 1, 3600)
    elif rt.interval_s is not None:
        interval_s = rt.interval_s
    else:
        raise FormatError(f"{raw.field}.timePeriod.duration", "missing (no intervalLength either)")
    value = (
        None
        if raw.value is None or not raw.value.strip()
        else float(_whole(raw.value, f"{raw.field}.value", -_INT64, _INT64 - 1))
    )
    amount = rules.scaled(value, rt.power_of_ten)
    kw = rules.kw_from_wh(amount, interval_s) if rt.uom == WH else rules.kw_from_w(amount)
    codes = [
        _whole(q, f"{raw.field}.ReadingQuality[{k}].quality", 0, _INT64)
        for k, q in enumerate(raw.qualities)
    ]
    quality = _worst(_quality(c) for c in codes) if codes else rt.default_quality
    return (start, interval_s), kw, quality


def _net(series: dict[int, Series], asset_id: str, tally: Tally) -> Rows:
    """One reading per interval: export - import, or the file's only direction, signed."""
    directions = [(sign, s) for sign, s in ((-1.0, series[FORWARD]), (1.0, series[REVERSE])) if s]
    for key in sorted({k for _, s in directions for k in s}):
        start, interval_s = key
        net: float | None = 0.0
        qualities: list[Quality] = []
        try:
            for sign, values in directions:
                kw, quality = _one(values.get(key, []), key, tally)
                net = None if net is None or kw is None else net + sign * kw
                qualities.append(quality)
            reading = rules.reading(
                asset_id,
                start,
                interval_s,
                {Channel.NET_KW: net},
                SOURCE,
                quality=_worst(qualities),
            )
        except FormatError as exc:
            yield exc
            continue
        except ValidationError as exc:  # e.g. an interval ending in 2100
            yield FormatError(f"interval {start.isoformat()}", f"refused by the contract: {exc}")
            continue
        yield reading


def _one(
    values: list[tuple[float | None, Quality, str]], key: tuple[datetime, int], tally: Tally
) -> tuple[float | None, Quality]:
    """The one value of an interval in one direction (None when it has none)."""
    if not values:
        return None, Quality.MISSING
    kw, quality, first = values[0]
    for other_kw, other_quality, at in values[1:]:
        if (other_kw, other_quality) != (kw, quality):
            raise FormatError(
                at,
                f"another value for the interval {key[0].isoformat()} + {key[1]} s in the same"
                f" flowDirection as {first}",
            )
    tally.duplicates += len(values) - 1
    return kw, quality


def _quality(code: int) -> Quality:
    return QUALITY.get(code, Quality.QUESTIONABLE)  # an unknown code: not a clean measurement


def _worst(qualities: Iterable[Quality]) -> Quality:
    return max(qualities, key=lambda q: _RANK.index(q) if q in _RANK else -1)


def _whole(text: str | None, at: str, lo: int, hi: int) -> int:
    """A whole number lo..hi from an element's text."""
    if text is None or not _WHOLE.fullmatch(text.strip()):
        raise FormatError(at, f"expected a whole number, got {text!r}"[:120])
    value = int(text)
    if not lo <= value <= hi:
        raise FormatError(at, f"{value} lies outside {lo}..{hi}")
    return value


def _name(tag: str) -> str:
    return tag.rpartition("}")[2]
