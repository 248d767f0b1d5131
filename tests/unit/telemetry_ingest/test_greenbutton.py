"""Green Button (ESPI Atom XML) meter data -> net_kw readings.

Every file is written here in the shape of the NAESB ESPI schema. T0 = 1782864000 is
2026-07-01T00:00:00Z; intervals are 900 s (15 min) unless said otherwise.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from nexwatt_shared.contracts import Channel, Quality, TelemetryInterval
from nexwatt_telemetry_ingest.formats import FormatError
from nexwatt_telemetry_ingest.mdms import Tally, greenbutton

T0 = 1782864000
START = datetime(2026, 7, 1, tzinfo=UTC)
IMPORT, EXPORT = 1, 19


def reading_type(
    n: int,
    direction: int | None = IMPORT,
    uom: int = 72,
    power: int = 0,
    accumulation: int = 4,  # deltaData: energy per interval
    extra: str = "",
) -> str:
    flow = "" if direction is None else f"<flowDirection>{direction}</flowDirection>"
    return f"""
  <entry><id>urn:uuid:rt-{n}</id>
    <link rel="self" href="ReadingType/{n}"/><link rel="up" href="ReadingType"/>
    <content><ReadingType xmlns="http://naesb.org/espi">
      <accumulationBehaviour>{accumulation}</accumulationBehaviour><commodity>1</commodity>
      {flow}<intervalLength>900</intervalLength><kind>12</kind>
      <powerOfTenMultiplier>{power}</powerOfTenMultiplier><uom>{uom}</uom>{extra}
    </ReadingType></content></entry>"""


def meter_reading(n: int) -> str:
    """MeterReading n of usage point 1, tied to ReadingType n and its IntervalBlocks."""
    base = f"RetailCustomer/9/UsagePoint/1/MeterReading/{n}"
    return f"""
  <entry><id>urn:uuid:mr-{n}</id>
    <link rel="self" href="{base}"/>
    <link rel="up" href="RetailCustomer/9/UsagePoint/1/MeterReading"/>
    <link rel="related" href="{base}/IntervalBlock"/>
    <link rel="related" href="ReadingType/{n}"/>
    <content><MeterReading xmlns="http://naesb.org/espi"/></content></entry>"""


def block(n: int, *readings: str, block_id: int = 1) -> str:
    """An IntervalBlock entry of MeterReading n."""
    base = f"RetailCustomer/9/UsagePoint/1/MeterReading/{n}/IntervalBlock"
    return f"""
  <entry><id>urn:uuid:ib-{n}-{block_id}</id>
    <link rel="self" href="{base}/{block_id}"/><link rel="up" href="{base}"/>
    <content><IntervalBlock xmlns="http://naesb.org/espi">
      <interval><duration>86400</duration><start>{T0}</start></interval>
      {"".join(readings)}
    </IntervalBlock></content></entry>"""


def iv(k: int, value: int | str | None, *qualities: int | str, duration: int = 900) -> str:
    """IntervalReading k (starting T0 + k x 15 min); value None: no <value> element."""
    quality = "".join(f"<ReadingQuality><quality>{q}</quality></ReadingQuality>" for q in qualities)
    val = "" if value is None else f"<value>{value}</value>"
    return (
        f"<IntervalReading><cost>100</cost>{quality}<timePeriod><duration>{duration}</duration>"
        f"<start>{T0 + 900 * k}</start></timePeriod>{val}</IntervalReading>"
    )


def feed(*entries: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom"><id>urn:uuid:feed</id>'
        "<title>Green Button Usage Feed</title>" + "".join(entries) + "</feed>"
    ).encode()


def one_meter(*readings: str, **type_args: object) -> bytes:
    return feed(meter_reading(1), reading_type(1, **type_args), block(1, *readings))  # type: ignore[arg-type]


def parse(xml: bytes) -> tuple[list[TelemetryInterval], list[FormatError], Tally]:
    tally = Tally()
    rows = list(greenbutton.parse(io.BytesIO(xml), "GB-1", tally))
    readings = [r for r in rows if isinstance(r, TelemetryInterval)]
    return readings, [r for r in rows if isinstance(r, FormatError)], tally


def net(readings: list[TelemetryInterval]) -> list[float | None]:
    return [r.net_kw for r in readings]


# --- units, sign, time ----------------------------------------------------------------------


def test_wh_with_a_milli_multiplier_is_the_average_kw_imported() -> None:
    # 250000 x 10^-3 Wh = 250 Wh over 15 min = 1.0 kW delivered to the customer: net -1.0 kW.
    # 62500 x 10^-3 Wh = 62.5 Wh over 15 min = 0.25 kW: net -0.25 kW.
    readings, refused, tally = parse(one_meter(iv(0, 250000), iv(1, 62500), power=-3))
    assert refused == []
    assert net(readings) == [pytest.approx(-1.0, abs=1e-9), pytest.approx(-0.25, abs=1e-9)]
    first = readings[0]
    assert first.interval_start == START  # epoch seconds, UTC, labelled by the start
    assert first.interval_s == 900
    assert first.quality == {Channel.NET_KW: Quality.ACTUAL}
    assert first.source is not None and first.source.vendor == "espi"
    assert (first.pv_kw, first.load_kw, first.battery_kw, first.soc_pct) == (None,) * 4
    assert readings[1].interval_start == datetime(2026, 7, 1, 0, 15, tzinfo=UTC)
    assert tally.rows == 2


def test_watts_are_an_average_power_and_reverse_flow_is_export() -> None:
    # uom 38 = W: 1500 W = 1.5 kW, whatever the length. Reverse (19) = received from the
    # customer: +1.5 kW; forward (1) = delivered to the customer: -1.5 kW.
    exported, _, _ = parse(one_meter(iv(0, 1500), uom=38, direction=EXPORT))
    imported, _, _ = parse(one_meter(iv(0, 1500, duration=300), uom=38, direction=IMPORT))
    assert net(exported) == [pytest.approx(1.5, abs=1e-9)]
    assert net(imported) == [pytest.approx(-1.5, abs=1e-9)]
    assert imported[0].interval_s == 300


def test_a_reading_type_without_flow_direction_is_forward() -> None:
    # 100 Wh over 15 min = 0.4 kW, delivered to the customer: -0.4 kW.
    readings, _, _ = parse(one_meter(iv(0, 100), direction=None))
    assert net(readings) == [pytest.approx(-0.4, abs=1e-9)]


def test_both_directions_net_export_minus_import_per_interval() -> None:
    # Interval 0: import 1000 Wh / 15 min = 4.0 kW, export 1500 Wh = 6.0 kW: net +2.0 kW.
    # Interval 1: import 500 Wh = 2.0 kW, export 0 Wh: net -2.0 kW.
    # Interval 2: import has no value: net missing. Interval 3: no export reading: missing.
    xml = feed(
        meter_reading(1),
        meter_reading(2),
        block(1, iv(0, 1000), iv(1, 500), iv(2, None), iv(3, 700)),
        block(2, iv(0, 1500), iv(1, 0), iv(2, 100)),
        # The ReadingTypes last: blocks are tied to them by links, whatever the order.
        reading_type(1, IMPORT),
        reading_type(2, EXPORT),
    )
    readings, refused, tally = parse(xml)
    assert refused == []
    assert net(readings) == [
        pytest.approx(2.0, abs=1e-9),
        pytest.approx(-2.0, abs=1e-9),
        None,
        None,
    ]
    assert [r.quality[Channel.NET_KW] for r in readings[2:]] == [Quality.MISSING] * 2
    assert tally.rows == 7


def test_blocks_are_tied_to_their_reading_type_by_links_not_by_order() -> None:
    # Block of meter reading 2 (W, export) comes first and its id lies under MeterReading/2.
    xml = feed(
        reading_type(1, IMPORT, uom=72),
        reading_type(2, EXPORT, uom=38),
        block(2, iv(0, 800)),
        meter_reading(2),
        meter_reading(1),
        block(1, iv(0, 50)),
    )
    # Export 800 W = 0.8 kW; import 50 Wh / 15 min = 0.2 kW: net +0.6 kW.
    readings, refused, _ = parse(xml)
    assert refused == []
    assert net(readings) == [pytest.approx(0.6, abs=1e-9)]


def test_a_file_with_one_reading_type_needs_no_links() -> None:
    xml = feed(
        '<entry><content><ReadingType xmlns="http://naesb.org/espi"><flowDirection>1'
        "</flowDirection><powerOfTenMultiplier>0</powerOfTenMultiplier><uom>72</uom>"
        "</ReadingType></content></entry>",
        '<entry><content><IntervalBlock xmlns="http://naesb.org/espi">'
        + iv(0, 250)
        + "</IntervalBlock></content></entry>",
    )
    readings, refused, _ = parse(xml)  # 250 Wh / 15 min = 1.0 kW import
    assert (net(readings), refused) == ([pytest.approx(-1.0, abs=1e-9)], [])


def test_a_block_without_links_among_several_reading_types_is_refused() -> None:
    xml = feed(
        reading_type(1),
        reading_type(2, EXPORT),
        '<entry><content><IntervalBlock xmlns="http://naesb.org/espi">'
        + iv(0, 250)
        + "</IntervalBlock></content></entry>",
    )
    readings, refused, _ = parse(xml)
    assert readings == []
    assert [e.field for e in refused] == ["entry[2].IntervalBlock.IntervalReading[0]"]
    assert "not linked to a ReadingType" in refused[0].reason


def test_a_year_of_quarter_hours_in_daily_blocks() -> None:
    # 365 days x 96 = 35,040 readings; 100 Wh each = 0.4 kW import.
    days = [block(1, *(iv(96 * d + k, 100) for k in range(96)), block_id=d) for d in range(365)]
    readings, refused, tally = parse(feed(meter_reading(1), reading_type(1), *days))
    assert (len(readings), refused, tally.rows) == (35_040, [], 35_040)
    assert readings[-1].interval_start == datetime(2027, 6, 30, 23, 45, tzinfo=UTC)
    assert all(r.net_kw == pytest.approx(-0.4, abs=1e-9) for r in readings)


# --- quality and missing values -------------------------------------------------------------


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ((), Quality.ACTUAL),  # no ReadingQuality: valid
        ((0,), Quality.ACTUAL),  # valid
        ((17,), Quality.ACTUAL),  # validated
        ((14,), Quality.ACTUAL),  # raw: measured, not validated yet
        ((7,), Quality.ESTIMATED),  # manually edited
        ((8,), Quality.ESTIMATED),  # estimated using a reference day
        ((9,), Quality.ESTIMATED),  # estimated by interpolation
        ((10,), Quality.QUESTIONABLE),  # failed a validation check
        ((99,), Quality.QUESTIONABLE),  # a code ESPI does not define
        ((0, 8), Quality.ESTIMATED),  # several: the worst
        ((10, 8, 0), Quality.QUESTIONABLE),
    ],
)
def test_reading_quality_codes_map_to_ours(codes: tuple[int, ...], expected: Quality) -> None:
    # 250 Wh over 15 min = 1.0 kW import, whatever the quality: the value is kept.
    readings, _, _ = parse(one_meter(iv(0, 250, *codes)))
    assert readings[0].quality == {Channel.NET_KW: expected}
    assert readings[0].net_kw == pytest.approx(-1.0, abs=1e-9)


def test_default_quality_applies_to_readings_without_their_own() -> None:
    xml = one_meter(iv(0, 250), iv(1, 250, 0), extra="<defaultQuality>8</defaultQuality>")
    readings, _, _ = parse(xml)
    assert [r.quality[Channel.NET_KW] for r in readings] == [Quality.ESTIMATED, Quality.ACTUAL]


def test_the_net_of_two_directions_takes_the_worse_quality() -> None:
    # import 250 Wh = 1.0 kW (estimated), export 500 Wh = 2.0 kW (actual): net +1.0 estimated.
    xml = feed(
        meter_reading(1),
        meter_reading(2),
        reading_type(1, IMPORT),
        reading_type(2, EXPORT),
        block(1, iv(0, 250, 8)),
        block(2, iv(0, 500, 0)),
    )
    [reading], _, _ = parse(xml)
    assert reading.net_kw == pytest.approx(1.0, abs=1e-9)
    assert reading.quality == {Channel.NET_KW: Quality.ESTIMATED}


@pytest.mark.parametrize("value", ["<value/>", "<value>  </value>", ""])
def test_a_reading_without_a_value_is_missing_never_zero(value: str) -> None:
    reading_xml = iv(0, None).replace("</IntervalReading>", f"{value}</IntervalReading>")
    [reading], refused, _ = parse(one_meter(reading_xml))
    assert refused == []
    assert reading.net_kw is None
    assert reading.quality == {Channel.NET_KW: Quality.MISSING}


def test_an_implausible_value_is_dropped_and_flagged_questionable() -> None:
    # 9 x 10^15 Wh in 15 min = 3.6e13 kW: beyond any site (100 MW): questionable, no value.
    [reading], refused, _ = parse(one_meter(iv(0, 9 * 10**15)))
    assert refused == []
    assert (reading.net_kw, reading.quality[Channel.NET_KW]) == (None, Quality.QUESTIONABLE)


def test_a_repeated_reading_is_a_duplicate_and_a_different_one_is_refused() -> None:
    readings, refused, tally = parse(one_meter(iv(0, 250), iv(0, 250), iv(1, 100), iv(1, 200)))
    assert net(readings) == [pytest.approx(-1.0, abs=1e-9)]  # interval 1: neither is kept
    assert tally.duplicates == 1
    assert [e.field for e in refused] == ["entry[2].IntervalBlock.IntervalReading[3]"]
    assert "another value" in refused[0].reason


def test_the_interval_length_comes_from_the_reading_type_when_a_reading_has_none() -> None:
    reading_xml = iv(0, 250).replace("<duration>900</duration>", "")
    [reading], _, _ = parse(one_meter(reading_xml))  # intervalLength 900: 1.0 kW import
    assert (reading.interval_s, reading.net_kw) == (900, pytest.approx(-1.0, abs=1e-9))


# --- refused rows and files -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reading_xml", "field", "reason"),
    [
        (iv(0, "abc"), "value", "expected a whole number"),
        (iv(0, "1.5"), "value", "expected a whole number"),
        (iv(0, "NaN"), "value", "expected a whole number"),
        (iv(0, "9" * 5000), "value", "expected a whole number"),  # beyond int("...") limits
        (iv(0, str(2**63)), "value", "lies outside"),  # beyond xs:long
        (iv(0, 250, "high"), "ReadingQuality[0].quality", "expected a whole number"),
        (iv(0, 250, duration=3601), "timePeriod.duration", "lies outside 1..3600"),
        (iv(0, 250, duration=0), "timePeriod.duration", "lies outside 1..3600"),
        (iv(0, 250).replace(str(T0), "4102444800"), "timePeriod.start", "outside 2000-2100"),
        (iv(0, 250).replace(str(T0), "-1"), "timePeriod.start", "outside 2000-2100"),
        (iv(0, 250).replace(f"<start>{T0}</start>", ""), "timePeriod.start", "got None"),
    ],
)
def test_an_unreadable_reading_is_refused_with_its_field(
    reading_xml: str, field: str, reason: str
) -> None:
    readings, refused, _ = parse(one_meter(iv(1, 250), reading_xml))
    assert net(readings) == [pytest.approx(-1.0, abs=1e-9)]  # the other reading still counts
    [error] = refused
    assert error.field == f"entry[2].IntervalBlock.IntervalReading[1].{field}"
    assert reason in error.reason


@pytest.mark.parametrize(
    ("type_args", "field", "reason"),
    [
        ({"uom": 169}, "uom", "neither 72 (Wh) nor 38 (W)"),  # therms: a gas meter
        ({"direction": 4}, "flowDirection", "neither 1 nor 19"),
        ({"power": 15}, "powerOfTenMultiplier", "outside -12..12"),
        ({"accumulation": 3}, "accumulationBehaviour", "a register read"),  # cumulative
    ],
)
def test_readings_of_an_unusable_reading_type_are_refused(
    type_args: dict[str, object], field: str, reason: str
) -> None:
    readings, refused, _ = parse(one_meter(iv(0, 250), iv(1, 250), **type_args))
    assert readings == []
    assert [e.field for e in refused] == [
        f"entry[2].IntervalBlock.IntervalReading[{i}]" for i in (0, 1)
    ]
    assert f"entry[1].ReadingType.{field}" in refused[0].reason
    assert reason in refused[0].reason


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<feed xmlns="http://www.w3.org/2005/Atom"><title>&lol3;</title></feed>"""
EXTERNAL = b"""<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<feed xmlns="http://www.w3.org/2005/Atom"><title>&x;</title></feed>"""


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        (BOMB, "a DTD is not allowed"),
        (EXTERNAL, "a DTD is not allowed"),
        (one_meter(iv(0, 250))[:-20], "not well-formed XML"),  # truncated
        (b"", "not well-formed XML"),
        (b"\xff\xfe\x00garbage", "not well-formed XML"),
        (b"TYPE,DATE,START TIME\n", "not well-formed XML"),  # a CSV
        (b'<?xml version="1.0" encoding="klingon"?><feed/>', "XML"),
        (b"<html><body>Log in</body></html>", "not an Atom feed"),
        (feed("<entry><entry></entry></entry>"), "an entry inside an entry"),
    ],
)
def test_a_file_that_is_not_green_button_xml_is_refused_whole(xml: bytes, reason: str) -> None:
    with pytest.raises(FormatError) as caught:
        parse(xml)
    assert reason in str(caught.value)


def test_deep_nesting_and_unknown_elements_do_not_crash() -> None:
    deep = "<x>" * 50_000 + "</x>" * 50_000
    readings, refused, _ = parse(one_meter(iv(0, 250).replace("<cost>", f"{deep}<cost>")))
    assert (net(readings), refused) == ([pytest.approx(-1.0, abs=1e-9)], [])


HOSTILE_TEXTS = ("", " ", "-1", "0", "1e400", "NaN", "inf", "x" * 10_000, "9" * 30, "\u00e9", "1.0")


def test_every_hostile_text_in_every_element_gives_readings_or_format_errors() -> None:
    sample = feed(
        meter_reading(1),
        meter_reading(2),
        reading_type(1, IMPORT, power=-3),
        reading_type(2, EXPORT, uom=38, extra="<defaultQuality>8</defaultQuality>"),
        block(1, iv(0, 250000, 0), iv(1, 100)),
        block(2, iv(0, 800, 14)),
    )
    tree = ET.ElementTree(ET.fromstring(sample))
    leaves = [e for e in tree.iter() if len(e) == 0 and (e.text or "").strip()]
    crashed = []
    for leaf in leaves:
        original = leaf.text
        for text in HOSTILE_TEXTS:
            leaf.text = text
            try:
                parse(ET.tostring(tree.getroot()))
            except FormatError:
                pass
            except Exception as exc:  # what the test exists to find
                crashed.append(f"{leaf.tag}={text[:20]!r}: {type(exc).__name__}: {exc}")
        leaf.text = original
    assert len(leaves) > 40
    assert crashed == []
