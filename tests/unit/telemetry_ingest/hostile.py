"""Hostile variants of a vendor payload: each node replaced by a value of the wrong kind, or
removed. A format must answer every variant with readings or a FormatError, nothing else."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

from nexwatt_telemetry_ingest.formats import Format, FormatError, RawContext

HOSTILE: tuple[Any, ...] = (
    None,
    True,
    "12",
    "",
    [],
    {},
    -1,
    0,
    1.5,
    1e308,
    -1e308,
    math.nan,
    math.inf,
    10**400,  # JSON integers are unbounded; float() of this overflows
    [[[[[[[[[[]]]]]]]]]],
    {"a": {"b": {"c": {}}}},
)

Path = tuple[str | int, ...]
_REMOVE = object()  # a variant without the node


def _paths(node: Any, path: Path = ()) -> Iterator[Path]:
    if path:
        yield path
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, (*path, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _paths(child, (*path, i))


def variants(payload: Any) -> Iterator[tuple[str, Any]]:
    """(description, payload) for the whole payload replaced, each node replaced by each
    hostile value, and each node removed."""
    for value in HOSTILE:
        yield f"payload = {value!r:.40}", value
    for path in _paths(payload):
        for value in (*HOSTILE, _REMOVE):
            changed = copy.deepcopy(payload)
            parent = changed
            for step in path[:-1]:
                parent = parent[step]
            if value is _REMOVE:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
            yield f"{'/'.join(map(str, path))} = {value!r:.40}", changed


def refusals(fmt: Format, payload: Any, ctx: RawContext) -> tuple[int, list[str]]:
    """Parse every variant: (how many raised FormatError, the variants that raised anything
    else, each with its exception)."""
    refused, crashed = 0, []
    for description, data in variants(payload):
        try:
            fmt.parse(data, ctx)
        except FormatError:
            refused += 1
        except Exception as exc:  # what the test exists to find
            crashed.append(f"{description}: {type(exc).__name__}: {exc}")
    return refused, crashed
