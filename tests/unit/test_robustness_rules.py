"""The pure rules behind "no message stops a service": one series per asset, a resource's
event clock, which errors are retried, and how reasons are made printable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest
import redis.exceptions
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from nexwatt_shared.event_time import resource_clock
from nexwatt_shared.kafka.consumer import is_infrastructure_error, printable
from nexwatt_shared.series import Interval, sort_out

T0 = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)


def iv(asset: str, minute: int, length_s: int = 300, battery_kw: float = 1.0) -> Interval:
    return Interval(asset, T0 + timedelta(minutes=minute), length_s, (battery_kw,))


def test_repeats_are_dropped_and_overlaps_refused_against_the_store_and_the_batch() -> None:
    stored = [iv("A", 0), iv("A", 5)]
    candidates = [
        iv("A", 10),  # 0: new, right after the stored ones
        iv("A", 5),  # 1: repeats a stored interval (a redelivery)
        iv("A", 5, battery_kw=2.0),  # 2: same interval, other values: a correction
        iv("A", 7),  # 3: overlaps 09:05-09:10 and the new 09:10-09:15
        iv("B", 5),  # 4: another asset: new
        iv("A", 10),  # 5: repeats candidate 0 within the batch
        iv("A", 14, length_s=60),  # 6: inside candidate 0
    ]
    new, repeats, refused = sort_out(candidates, stored)
    assert new == [0, 4]
    assert repeats == [1, 5]
    assert sorted(refused) == [2, 3, 6]
    assert refused[2].startswith("other values for the stored interval 2026-03-12T09:05:00+00:00")
    assert refused[3].startswith("overlaps the interval 2026-03-12T09:05:00+00:00 + 300 s")
    assert "corrections are not accepted" in refused[6]


def test_intervals_that_only_touch_do_not_overlap() -> None:
    new, repeats, refused = sort_out([iv("A", 5), iv("A", 10)], [iv("A", 0)])
    assert (new, repeats, refused) == ([0, 1], [], {})


def test_the_resource_clock_ignores_a_minority_running_ahead() -> None:
    ends = np.array([100.0, 110.0, 120.0, 130.0, np.nan, 4.1e9])  # one asset stamped ~2099
    assert resource_clock(ends) == 120.0  # the time 3 of the 5 reporting assets reached
    assert resource_clock(ends, share_reached=1.0) == 100.0  # every asset: the oldest
    assert np.isnan(resource_clock(np.array([np.nan])))
    assert resource_clock([42.0]) == 42.0
    with pytest.raises(ValueError, match="share_reached"):
        resource_clock(ends, share_reached=0.0)


@pytest.mark.parametrize(
    ("exc", "infrastructure"),
    [
        (ConnectionRefusedError(111, "refused"), True),
        (TimeoutError(), True),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), True),
        (asyncpg.exceptions.CannotConnectNowError("starting up"), True),
        (asyncpg.exceptions.DeadlockDetectedError("deadlock"), True),
        (asyncpg.exceptions.InterfaceError("connection is closed"), True),
        (redis.exceptions.ConnectionError("gone"), True),
        (KafkaConnectionError(), True),
        # The data's fault: isolate the record.
        (asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte 0x00"), False),
        (asyncpg.exceptions.NumericValueOutOfRangeError("integer out of range"), False),
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), False),
        (MessageSizeTooLargeError(), False),
        (OverflowError("date value out of range"), False),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), False),
        (ValueError("bad"), False),
        (KeyError("x"), False),
    ],
)
def test_only_server_and_network_failures_are_retried(exc: Exception, infrastructure: bool) -> None:
    assert is_infrastructure_error(exc) is infrastructure


def test_reasons_are_made_printable() -> None:
    assert printable("id 'A\x00B' and \ud800, line\nnext") == "id 'A\\x00B' and \\ud800, line\nnext"
    assert printable("x" * 5000, 10) == "x" * 10
