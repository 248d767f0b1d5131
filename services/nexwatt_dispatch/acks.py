"""Gateway acknowledgements, gathered as they arrive (never polled from a store), for the
instruction that waits on them."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from prometheus_client import Counter

from nexwatt_dispatch.domain import Answer
from nexwatt_shared.contracts import AssetCommandAck

# Acks of an instruction are kept this long after its first one [s]: long enough for its
# answer, or for another replica to answer it if the deciding one died; and read again this
# far back at start. At 100,000 assets an instruction brings 100,000 acks to every replica.
KEEP_S = 600.0
_ROUND = re.compile(r"^r([0-9]+):.*:([0-9]+)-[0-9]+$")
ACKS_IGNORED = Counter(
    "nexwatt_dispatch_acks_ignored_total",
    "Acknowledgements counted and ignored, by why",
    ["reason"],
)


Round = tuple[str, int, int]  # instruction id, revision, round


def round_of(instruction_id: str, command_id: str) -> Round:
    """The instruction revision and round a command id names
    (`<instruction>:r<revision>:<gateway>:<round>-<part>`); a version-1 command id
    (`<instruction>:<asset>`) answers the first round of the first revision."""
    found = _ROUND.match(command_id.removeprefix(f"{instruction_id}:"))
    return (instruction_id, *map(int, found.groups())) if found else (instruction_id, 1, 0)  # type: ignore[return-value]


@dataclass
class _Waiter:
    remaining: set[str]
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Book:
    """One round of an instruction revision's acks: the first answer of each asset stands."""

    created: float
    acks: dict[str, Answer] = field(default_factory=dict)
    commands: set[str] = field(default_factory=set)  # command ids a gateway answered
    waiter: _Waiter | None = None


class AckBook:
    """Every replica sees every ack (dispatch's state consumer reads all partitions); the one
    deciding an instruction waits here for its assets' answers."""

    def __init__(self) -> None:
        self._books: dict[Round, _Book] = {}

    def _book(self, key: Round) -> _Book:
        book = self._books.get(key)
        if book is None:
            self._prune()
            book = self._books[key] = _Book(time.monotonic())
        return book

    def _prune(self) -> None:
        old = time.monotonic() - KEEP_S
        for key in [k for k, b in self._books.items() if b.created < old and b.waiter is None]:
            del self._books[key]

    def add(self, messages: list[AssetCommandAck]) -> None:
        for message in messages:
            book = self._book(round_of(message.instruction_id, message.command_id))
            book.commands.add(message.command_id)
            waiter = book.waiter
            acks = book.acks
            for ack in message.acks:
                if ack.asset_id not in acks:
                    acks[ack.asset_id] = Answer(ack.accepted, ack.setpoint_kw)
            if waiter is not None:
                waiter.remaining.difference_update(a.asset_id for a in message.acks)
            if waiter is not None and not waiter.remaining:
                waiter.done.set()

    async def wait(
        self, key: Round, assets: Collection[str], timeout_s: float
    ) -> Mapping[str, Answer]:
        """The round's acks (by asset; not to be changed), once all of `assets` have answered
        or `timeout_s` has passed, whichever is first."""
        book = self._book(key)
        waiter = _Waiter({a for a in assets if a not in book.acks})
        if waiter.remaining:
            book.waiter = waiter
            try:
                await asyncio.wait_for(waiter.done.wait(), timeout_s)
            except TimeoutError:
                pass
            finally:
                book.waiter = None
        return book.acks

    def answered(self, key: Round) -> set[str]:
        """The command ids of the round that a gateway has answered."""
        return set(self._book(key).commands)
