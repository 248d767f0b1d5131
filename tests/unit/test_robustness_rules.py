"""The pure rules behind "no message stops a service": one series per asset and channel, a
resource's event clock, which errors are retried, and letters that always fit in a record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest
import redis.exceptions
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from nexwatt_shared.codec import envelope
from nexwatt_shared.event_time import resource_clock
from nexwatt_shared.kafka.consumer import (
    DEAD_LETTER_MAX_VALUE_BYTES,
    dead_letter,
    is_data_error,
    printable,
)
from nexwatt_shared.series import Interval, sort_out
from nexwatt_shared.topics import DEAD_LETTER

T0 = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)


def iv(
    asset: str,
    minute: int,
    length_s: int = 300,
    value: float | None = 1.0,
    channel: str = "battery_kw",
    quality: str = "actual",
) -> Interval:
    return Interval(asset, channel, T0 + timedelta(minutes=minute), length_s, value, quality)


def test_repeats_are_dropped_and_overlaps_refused_against_the_store_and_the_batch() -> None:
    stored = [iv("A", 0), iv("A", 5)]
    candidates = [
        iv("A", 10),  # 0: new, right after the stored ones
        iv("A", 5),  # 1: repeats a stored interval (a redelivery)
        iv("A", 5, value=2.0),  # 2: same interval, other values: a correction
        iv("A", 7),  # 3: overlaps 09:05-09:10 and the new 09:10-09:15
        iv("B", 5),  # 4: another asset: new
        iv("A", 10),  # 5: repeats candidate 0 within the batch
        iv("A", 14, length_s=60),  # 6: inside candidate 0
    ]
    new, repeats, refused = sort_out(candidates, stored)
    assert new == [0, 4]
    assert repeats == [1, 5]
    assert sorted(refused) == [2, 3, 6]
    assert refused[2].startswith(
        "battery_kw: other values for the stored interval 2026-03-12T09:05:00+00:00"
    )
    assert refused[3].startswith(
        "battery_kw: overlaps the interval 2026-03-12T09:05:00+00:00 + 300 s"
    )
    assert "corrections are not accepted" in refused[6]


def test_intervals_that_only_touch_do_not_overlap() -> None:
    new, repeats, refused = sort_out([iv("A", 5), iv("A", 10)], [iv("A", 0)])
    assert (new, repeats, refused) == ([0, 1], [], {})


def test_channels_of_one_asset_at_different_resolutions_do_not_clash() -> None:
    # SolarEdge: power every 15 minutes (net_kw 09:00-09:15), battery every 5 (09:00, 09:05,
    # 09:10). Each channel is its own series: nothing overlaps, all four are new. A second
    # 15-minute net_kw reading starting 09:05 overlaps the first net_kw one: refused.
    stored = [iv("A", 0, 900, value=-1.0, channel="net_kw")]
    candidates = [
        iv("A", 0),
        iv("A", 5),
        iv("A", 10),
        iv("A", 15, 900, value=-2.0, channel="net_kw"),  # touches the stored one: new
        iv("A", 5, 900, value=-2.0, channel="net_kw"),
    ]
    new, repeats, refused = sort_out(candidates, stored)
    assert (new, repeats, sorted(refused)) == ([0, 1, 2, 3], [], [4])
    assert refused[4].startswith("net_kw: overlaps the interval 2026-03-12T09:00:00+00:00 + 900 s")


def test_a_missing_interval_repeats_only_as_missing() -> None:
    # Reported missing at 09:00, then sent again missing (a repeat), then with a value (a
    # correction of the stored interval: refused like any other).
    stored = [iv("A", 0, value=None, quality="missing")]
    candidates = [iv("A", 0, value=None, quality="missing"), iv("A", 0, value=1.0)]
    new, repeats, refused = sort_out(candidates, stored)
    assert (new, repeats, sorted(refused)) == ([], [0], [1])


def test_the_resource_clock_ignores_a_minority_running_ahead() -> None:
    ends = np.array([100.0, 110.0, 120.0, 130.0, np.nan, 4.1e9])  # one asset stamped ~2099
    assert resource_clock(ends) == 120.0  # the time 3 of the 5 reporting assets reached
    assert resource_clock(ends, share_reached=1.0) == 100.0  # every asset: the oldest
    assert np.isnan(resource_clock(np.array([np.nan])))
    assert resource_clock([42.0]) == 42.0
    # Four assets: the 2nd newest (half of four), whether two are ahead or two are silent.
    assert resource_clock([10.0, 10.0, 70.0, 70.0]) == 70.0
    assert resource_clock([10.0, 10.0, 10.0, 9e9]) == 10.0
    with pytest.raises(ValueError, match="share_reached"):
        resource_clock(ends, share_reached=0.0)


@pytest.mark.parametrize(
    ("exc", "data"),
    [
        # The data's fault: isolate the record.
        (asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte 0x00"), True),
        (asyncpg.exceptions.NumericValueOutOfRangeError("integer out of range"), True),
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), True),
        (MessageSizeTooLargeError(), True),
        (OverflowError("date value out of range"), True),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), True),
        (ValueError("bad"), True),
        (RecursionError(), True),
        # Not the message's fault: keep the batch and retry (and alert when it lasts).
        (ConnectionRefusedError(111, "refused"), False),
        (TimeoutError(), False),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), False),
        (asyncpg.exceptions.CannotConnectNowError("starting up"), False),
        (asyncpg.exceptions.DeadlockDetectedError("deadlock"), False),
        (asyncpg.exceptions.ReadOnlySQLTransactionError("read-only transaction"), False),
        (asyncpg.exceptions.InsufficientPrivilegeError("permission denied"), False),
        (asyncpg.exceptions.InterfaceError("connection is closed"), False),
        (redis.exceptions.ConnectionError("gone"), False),
        (redis.exceptions.ReadOnlyError("a replica after failover"), False),
        (KafkaConnectionError(), False),
        (KeyError("a bug"), False),
    ],
)
def test_only_the_datas_errors_isolate_a_record(exc: Exception, data: bool) -> None:
    assert is_data_error(exc) is data


def test_a_letter_always_fits_in_one_record() -> None:
    at = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
    origin = ("telemetry.interval", 2, 17)
    # The worst case for JSON: control bytes are escaped six-fold.
    for value in (b"\x01" * DEAD_LETTER_MAX_VALUE_BYTES, b"\xff" * 900_000):
        letter = dead_letter(origin, "g", b"\x01" * 900_000, value, "bad", at)
        size = len(envelope(DEAD_LETTER, letter, source="g").model_dump_json())
        assert size < 768 * 1024, size
        assert letter.key_base64 is None and len(letter.value_text) == 16 * 1024
    small = dead_letter(origin, "g", b"A-1", b"{not json", "not JSON", at)
    assert (small.value_base64, small.key_base64, small.truncated) == (
        "e25vdCBqc29u",
        "QS0x",
        False,
    )
    pointer = dead_letter(origin, "g", b"A-1", b"{not json", "not JSON", at, whole=False)
    assert (pointer.value_text, pointer.value_base64, pointer.truncated) == ("", "", True)
    assert pointer.value_bytes == 9


def test_reasons_are_made_printable() -> None:
    assert printable("id 'A\x00B' and \ud800, line\nnext") == "id 'A\\x00B' and \\ud800, line\nnext"
    assert printable("x" * 5000, 10) == "x" * 10
