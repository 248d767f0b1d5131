"""Backfill meter data files (Green Button XML, Download My Data CSV) onto telemetry.interval.

    nexwatt-ingest import PATH... --asset ID [--timezone TZ] [--format auto|greenbutton|csv]
                                  [--state PATH] [--restart]

- Each file is read as a stream by its parser (`greenbutton`, `dmd_csv`; `auto` tells them
  apart by the first byte: `<` is XML) into `net_kw` readings of the asset, published in
  batches, pipelined, each batch acknowledged by the broker before the next.
- Idempotent: an event's id is its natural key, `mdms:<asset>:<start>:<length s>`, and its
  bytes depend on nothing else (its time is the interval's end), so a re-import changes
  nothing downstream (which also drops exact repeats).
- Resumable: a state file (`--state`, default `$XDG_CACHE_HOME/nexwatt-ingest/import-state.json`
  or `.cache/nexwatt-ingest/...` in the working directory) keeps, per file (asset, format,
  time zone, size and the SHA-256 of its first MiB), how many readings the broker
  acknowledged; a rerun skips those, `--restart` ignores the state.
- Within a file, a reading of an interval already read is a duplicate when equal (dropped,
  counted) and refused otherwise. The summary tells files, rows read, readings published,
  missing values, duplicates, gaps (intervals absent within each file's span, and the
  longest) and refused rows with the first reasons.

Exit code: 0 when every row was published, 1 when rows were refused, 2 on a usage error, 3 when
Kafka failed (what was acknowledged is kept: rerun to resume). Kafka settings come from the
environment, as for the services (NEXWATT_KAFKA_BOOTSTRAP_SERVERS, ...).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiokafka.errors import KafkaError
from pydantic import TypeAdapter, ValidationError
from tqdm import tqdm

from nexwatt_shared.codec import encode, envelope
from nexwatt_shared.contracts import AssetId, TelemetryInterval
from nexwatt_shared.kafka.producer import EventProducer, Headers
from nexwatt_shared.settings import ServiceSettings
from nexwatt_shared.topics import TELEMETRY_INTERVAL, Topic
from nexwatt_telemetry_ingest.formats import FormatError
from nexwatt_telemetry_ingest.mdms import Rows, Tally, dmd_csv, greenbutton

SOURCE = "nexwatt-ingest"
FORMATS = ("auto", "greenbutton", "csv")
BATCH = 5000  # readings per pipelined send
HASHED_BYTES = 1 << 20  # a file is known by its size and the hash of its first MiB
REASONS_SHOWN = 10

Record = tuple[str | bytes | None, bytes, Headers]


class Sink(Protocol):
    """Where records go: `EventProducer` (or, to measure parsing alone, nothing)."""

    async def send_raw_many(self, topic: str, records: Sequence[Record]) -> None: ...


class UsageError(ValueError):
    """Arguments that cannot work: nothing was imported."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="meter data files")
    parser.add_argument("--asset", required=True, help="the asset the meter belongs to")
    parser.add_argument("--timezone", help="the site's IANA time zone (CSV times are local)")
    parser.add_argument("--format", choices=FORMATS, default="auto", help="default: by content")
    parser.add_argument(
        "--state",
        type=Path,
        help="progress file (default: $XDG_CACHE_HOME, else ./.cache, /nexwatt-ingest/...)",
    )
    parser.add_argument("--restart", action="store_true", help="ignore the progress file")


async def run(args: argparse.Namespace) -> int:
    try:
        asset_id, tz, files = _checked(args)
        state = ImportState.load(args.state or default_state_path(), restart=args.restart)
        settings = ServiceSettings()
    except (UsageError, ValidationError) as exc:  # ValidationError: of NEXWATT_* settings
        print(f"nexwatt-ingest import: {exc}", file=sys.stderr)
        return 2
    producer = EventProducer(settings.kafka_bootstrap_servers, SOURCE, settings.kafka_security())
    try:
        await producer.start()
        try:
            summary = await import_files(files, asset_id, tz, producer, state)
        finally:
            await producer.stop()
    except KafkaError as exc:
        print(f"nexwatt-ingest import: Kafka failed ({exc!r}); rerun to resume", file=sys.stderr)
        return 3
    print(summary.render())
    return 1 if summary.refused else 0


def _checked(args: argparse.Namespace) -> tuple[str, ZoneInfo | None, list[tuple[Path, str]]]:
    try:
        asset_id = TypeAdapter(AssetId).validate_python(args.asset)
    except ValidationError as exc:
        raise UsageError(f"--asset {args.asset!r}: {exc.errors()[0]['msg']}") from exc
    try:
        tz = ZoneInfo(args.timezone) if args.timezone else None
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: e.g. "America"
        raise UsageError(f"--timezone {args.timezone!r} is not an IANA time zone") from exc
    files = []
    for path in args.paths:
        try:
            fmt = detect(path) if args.format == "auto" else args.format
        except OSError as exc:  # absent, a directory, not readable
            raise UsageError(f"{path}: {exc.strerror or exc}") from exc
        if not path.is_file():
            raise UsageError(f"{path}: not a file")
        if fmt == "csv" and tz is None:
            raise UsageError(f"{path}: CSV times are local: give the site's --timezone")
        files.append((path, fmt))
    return asset_id, tz, files


def detect(path: Path) -> str:
    """greenbutton when the file starts (after a BOM and blanks) with '<', else csv."""
    with path.open("rb") as f:
        head = f.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
    return "greenbutton" if head.startswith(b"<") else "csv"


def default_state_path() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.cwd() / ".cache"
    return Path(cache) / "nexwatt-ingest" / "import-state.json"


# --- progress -------------------------------------------------------------------------------


class ImportState:
    """How many readings of each file the broker has acknowledged, kept in a JSON file."""

    def __init__(self, path: Path, files: dict[str, dict[str, str | int]]) -> None:
        self.path = path
        self._files = files  # file key -> {"path": ..., "done": readings acknowledged}

    @classmethod
    def load(cls, path: Path, *, restart: bool = False) -> ImportState:
        if restart or not path.exists():
            return cls(path, {})
        try:
            files = json.loads(path.read_text())["files"]
            if not isinstance(files, dict) or not all(
                isinstance(f, dict) and type(f.get("done")) is int for f in files.values()
            ):
                raise ValueError("unexpected shape")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"state file {path} is unreadable ({exc}): use --restart") from exc
        return cls(path, files)

    def done(self, key: str) -> int:
        done = self._files.get(key, {}).get("done", 0)
        return done if isinstance(done, int) else 0

    def record(self, key: str, path: Path, done: int) -> None:
        """Note that `done` readings of the file are acknowledged, and save (atomically)."""
        self._files[key] = {"path": str(path.resolve()), "done": done}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps({"files": self._files}, indent=1) + "\n")
        partial.replace(self.path)


def file_key(path: Path, asset_id: str, fmt: str, tz: ZoneInfo | None) -> str:
    """What makes two imports the same: asset, format, time zone (CSV), size and first MiB."""
    digest = hashlib.sha256(
        f"{asset_id}\n{fmt}\n{tz.key if tz and fmt == 'csv' else ''}\n".encode()
    )
    with path.open("rb") as f:
        digest.update(f"{os.fstat(f.fileno()).st_size}\n".encode())
        digest.update(f.read(HASHED_BYTES))
    return digest.hexdigest()


# --- importing ------------------------------------------------------------------------------


def event_id(reading: TelemetryInterval) -> str:
    """A reading's natural key: the same interval imported again has the same id."""
    return f"mdms:{reading.asset_id}:{reading.interval_start:%Y%m%dT%H%M%SZ}:{reading.interval_s}"


def record(topic: Topic, reading: TelemetryInterval) -> Record:
    """A reading's Kafka record; its bytes depend on the reading alone (id and time included),
    so a re-import sends byte-identical records."""
    event = envelope(
        topic, reading, source=SOURCE, event_id=event_id(reading), time=reading.interval_end
    )
    return reading.asset_id, encode(event), ()


@dataclass
class Summary:
    files: int = 0
    rows: int = 0
    published: int = 0
    already_done: int = 0  # acknowledged in an earlier run
    missing_values: int = 0
    duplicates: int = 0
    gaps: int = 0  # intervals absent within a file's span
    longest_gap: tuple[timedelta, datetime, str] | None = None  # length, from, file
    refused: int = 0
    reasons: list[str] = field(default_factory=list)  # the first few

    def refuse(self, path: Path, exc: FormatError) -> None:
        self.refused += 1
        if len(self.reasons) < REASONS_SHOWN:
            self.reasons.append(f"{path.name}: {exc}")

    def render(self) -> str:
        longest = (
            f" (longest {self.longest_gap[0]} from {self.longest_gap[1]:%Y-%m-%dT%H:%MZ}"
            f" in {self.longest_gap[2]})"
            if self.longest_gap
            else ""
        )
        lines = [
            f"files: {self.files}, rows read: {self.rows}",
            f"readings published: {self.published}"
            f" (already done in an earlier run: {self.already_done}),"
            f" missing values: {self.missing_values}",
            f"duplicates: {self.duplicates}, gaps: {self.gaps} missing intervals{longest}",
            f"refused: {self.refused}",
            *(f"  {reason}" for reason in self.reasons),
        ]
        if self.refused > len(self.reasons):
            lines.append(f"  ... and {self.refused - len(self.reasons)} more")
        return "\n".join(lines)


async def import_files(
    files: Sequence[tuple[Path, str]],
    asset_id: str,
    tz: ZoneInfo | None,
    sink: Sink,
    state: ImportState,
    *,
    topic: Topic = TELEMETRY_INTERVAL,
    progress: bool = True,
) -> Summary:
    """Parse each (path, format) and publish its readings on `topic` in acknowledged batches,
    skipping what `state` says is done and recording progress there."""
    summary = Summary()
    for path, fmt in files:
        await _import_file(path, fmt, asset_id, tz, sink, state, topic, progress, summary)
    return summary


async def _import_file(
    path: Path,
    fmt: str,
    asset_id: str,
    tz: ZoneInfo | None,
    sink: Sink,
    state: ImportState,
    topic: Topic,
    progress: bool,
    summary: Summary,
) -> None:
    summary.files += 1
    key = file_key(path, asset_id, fmt, tz)
    done = state.done(key)
    tally = Tally()
    seen: dict[tuple[datetime, int], TelemetryInterval] = {}
    batch: list[Record] = []
    count = 0  # the file's readings so far, in publishing order
    with ExitStack() as stack:
        bar = stack.enter_context(
            tqdm(desc=path.name, unit=" readings", file=sys.stderr, disable=not progress)
        )

        async def flush() -> None:
            await sink.send_raw_many(topic.name, batch)
            state.record(key, path, count)  # only once the broker has them all
            summary.published += len(batch)
            bar.update(len(batch))
            batch.clear()

        try:
            for row in _rows(stack, path, fmt, asset_id, tz, tally):
                if isinstance(row, FormatError):
                    summary.refuse(path, row)
                    continue
                if not _first(row, seen, summary, path):
                    continue
                count += 1
                summary.missing_values += row.net_kw is None
                if count <= done:
                    summary.already_done += 1
                    continue
                batch.append(record(topic, row))
                if len(batch) == BATCH:
                    await flush()
        except FormatError as exc:  # the rest of the file cannot be read
            summary.refuse(path, exc)
        except OSError as exc:
            summary.refuse(path, FormatError("", f"cannot read the file: {exc}"))
        if batch:
            await flush()
    summary.rows += tally.rows
    summary.duplicates += tally.duplicates
    for start, length, missing in gaps(sorted(seen)):
        summary.gaps += missing
        if summary.longest_gap is None or length > summary.longest_gap[0]:
            summary.longest_gap = (length, start, path.name)


def _rows(
    stack: ExitStack, path: Path, fmt: str, asset_id: str, tz: ZoneInfo | None, tally: Tally
) -> Rows:
    if fmt == "greenbutton":
        return greenbutton.parse(stack.enter_context(path.open("rb")), asset_id, tally)
    if tz is None:
        raise FormatError("--timezone", "CSV times are local: the site's time zone is needed")
    # Only the preamble may hold non-ASCII (a name): a byte that is not UTF-8 is replaced.
    stream = stack.enter_context(path.open(encoding="utf-8-sig", errors="replace", newline=""))
    return dmd_csv.parse(stream, asset_id, tz, tally)


def _first(
    row: TelemetryInterval,
    seen: dict[tuple[datetime, int], TelemetryInterval],
    summary: Summary,
    path: Path,
) -> bool:
    """Whether this is the file's first reading of its interval (a repeat is counted as a
    duplicate when equal, refused when not)."""
    earlier = seen.setdefault((row.interval_start, row.interval_s), row)
    if earlier is row:
        return True
    if (earlier.net_kw, earlier.quality) == (row.net_kw, row.quality):
        summary.duplicates += 1
    else:
        summary.refuse(
            path,
            FormatError(
                f"interval {row.interval_start.isoformat()} + {row.interval_s} s",
                f"read twice with different values: {earlier.net_kw} and {row.net_kw} kW",
            ),
        )
    return False


def gaps(intervals: Sequence[tuple[datetime, int]]) -> Iterator[tuple[datetime, timedelta, int]]:
    """The holes between sorted (start, length [s]) intervals: where each starts, how long it
    is and how many intervals of the preceding one's length it misses."""
    for (start, interval_s), (next_start, _) in pairwise(intervals):
        end = start + timedelta(seconds=interval_s)
        if next_start > end:
            yield end, next_start - end, (next_start - end) // timedelta(seconds=interval_s)
