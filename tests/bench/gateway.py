"""A bench gateway for the dispatch benchmark (`tests.bench.dispatch`): answers every
`asset.command` message of the gateways whose id starts with a prefix with ONE
`asset.command-ack` accepting every setpoint as commanded, what an ideal vendor-cloud connector
would say.

A plain aiokafka consumer in a group of its own. It reads every partition (assigned, not
subscribed: no rebalance to wait for) from the end as it starts, and commits that position at
once: whoever starts it knows it is listening once its group has offsets on `asset.command`.
Records are picked by key (the gateway id) before anything is decoded. Prints nothing but
errors.

It stands for systems that run elsewhere, yet shares this machine's two cores with dispatch,
so it must cost next to nothing, or its CPU would be measured as dispatch's time. For a
100,000-setpoint instruction (50 messages, 7.5 MB of acks) on this machine: building the acks
as pydantic objects (`codec.decode` of each command, one `SetpointAck` per asset) took
0.6-1 s, the splice below ~15 ms; sending them through `EventProducer` (zstd) took 84 ms with
`publish_many` and 78 ms with `encode` + `send_raw_many` (medians of 5, within noise of each
other; with gzip, as EventProducer compressed before, 490 ms).

So the ack's envelope and fields are built by the codec (`envelope`, `encode`) with an empty
list of entries, and the entries are the command's setpoints, as the broker delivered them,
each marked accepted: a setpoint `{"asset_id":..,"setpoint_kw":..}` becomes
`{"accepted":true,"asset_id":..,"setpoint_kw":..}` (JSON member order does not matter). The
contract makes this safe: a setpoint holds an asset id (`[A-Za-z0-9._:-]`, no bracket, no
quote) and a number, so the first `]` after `"setpoints":[` closes the list, and a quote inside
any string is escaped, so that key cannot appear inside a string. The benchmark decodes the
acks it saw with `codec.decode` afterwards.

    python -m tests.bench.gateway --prefix BENCH-1234-
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from nexwatt_shared.codec import encode, envelope
from nexwatt_shared.contracts import AssetCommandAck
from nexwatt_shared.envelope import utcnow
from nexwatt_shared.kafka.admin import partition_counts
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.topics import ASSET_COMMAND, ASSET_COMMAND_ACK

BOOTSTRAP = os.environ.get("NEXWATT_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
SOURCE = "bench-gateway"
MAX_RECORDS = 500  # records per fetch: a 100,000-asset instruction is ~50 messages
_SETPOINTS = b'"setpoints":['
_NO_ACKS = b'"acks":[]'


def group_of(prefix: str) -> str:
    """The consumer group of the gateway serving `prefix`."""
    return f"bench.gateway.{prefix}"


def ack_value(command: bytes, acked_at: datetime) -> bytes:
    """The encoded `asset.command-ack` event accepting every setpoint of an encoded
    `asset.command` (v2) event as commanded; ValueError when it is not one."""
    start = command.find(_SETPOINTS)
    if start < 0:
        raise ValueError("no setpoints: not an asset.command v2 event")
    start += len(_SETPOINTS) - 1
    end = command.index(b"]", start) + 1
    head = json.loads(command[:start] + b"[]" + command[end:])
    if head.get("type") != ASSET_COMMAND.event_type:
        raise ValueError(f"event type {head.get('type')!r}, not {ASSET_COMMAND.event_type!r}")
    data = head["data"]
    ack = AssetCommandAck.model_construct(
        command_id=data["command_id"],
        instruction_id=data["instruction_id"],
        gateway_id=data["gateway_id"],
        acks=[],
        acked_at=acked_at,
    )
    # The event id comes from the command id: a re-sent command is answered under the same id.
    event = envelope(ASSET_COMMAND_ACK, ack, source=SOURCE, event_id=f"ack:{ack.command_id}")
    entries = command[start:end].replace(b'{"asset_id":', b'{"accepted":true,"asset_id":')
    return encode(event).replace(_NO_ACKS, b'"acks":' + entries, 1)


def answers(prefix: str, records: Sequence[ConsumerRecord]) -> list[tuple[bytes, bytes, tuple]]:
    """The ack records (key, value, headers) for the records whose key (gateway id) starts
    with `prefix`; a record that is not a command is reported on stderr and skipped."""
    wanted, now = prefix.encode(), utcnow()
    acks: list[tuple[bytes, bytes, tuple]] = []
    for record in records:
        if record.key is None or not record.key.startswith(wanted):
            continue
        try:
            acks.append((record.key, ack_value(record.value, now), ()))
        except (ValueError, KeyError, TypeError) as exc:
            where = f"{record.topic}[{record.partition}]@{record.offset}"
            print(f"bench gateway: not answered {where}: {exc!r}", file=sys.stderr, flush=True)
    return acks


async def listen_from_end(consumer: AIOKafkaConsumer) -> None:
    """Assign every partition of `asset.command`, start at its end, and commit that position
    (the sign, for whoever started us, that we are listening)."""
    counts = await partition_counts(BOOTSTRAP, [ASSET_COMMAND.name])
    partitions = [TopicPartition(ASSET_COMMAND.name, p) for p in range(counts[ASSET_COMMAND.name])]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    await consumer.commit({tp: await consumer.position(tp) for tp in partitions})


async def serve(prefix: str, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP, group_id=group_of(prefix), enable_auto_commit=False
    )
    producer = EventProducer(BOOTSTRAP, SOURCE)
    await consumer.start()
    await producer.start()
    try:
        await listen_from_end(consumer)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=MAX_RECORDS)
            acks = answers(prefix, [r for records in batch.values() for r in records])
            if acks:
                await producer.send_raw_many(ASSET_COMMAND_ACK.name, acks)
    finally:
        await producer.stop()
        await consumer.stop()


async def main(prefix: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(asyncio.CancelledError):
        await serve(prefix, stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.bench.gateway", description=__doc__)
    parser.add_argument("--prefix", required=True, help="answer the gateways whose id starts so")
    asyncio.run(main(parser.parse_args().prefix))
