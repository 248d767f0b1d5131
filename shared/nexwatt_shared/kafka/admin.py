"""Creating the registry's topics explicitly (the broker's auto-create is never relied on)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from nexwatt_shared.topics import ALL, Topic

log = structlog.get_logger()
TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error code


async def create_topics(
    bootstrap_servers: str,
    topics: Sequence[Topic] = ALL,
    replication_factor: int = 1,
    security: dict[str, Any] | None = None,
) -> list[str]:
    """Create every missing topic with its partitions and config; return the names created.

    Existing topics are left as they are (changing partitions or config is an operator's act).
    """
    admin = AIOKafkaAdminClient(
        **(security or {}), bootstrap_servers=bootstrap_servers, client_id="nexwatt-admin"
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(t.name, t.partitions, replication_factor, topic_configs=t.config())
                    for t in missing
                ]
            )
            failed = [
                (name, code, *rest)
                for name, code, *rest in response.topic_errors
                if code not in (0, TOPIC_ALREADY_EXISTS)  # another replica may have won the race
            ]
            if failed:
                raise RuntimeError(f"creating topics failed: {failed}")
        for t in missing:
            log.info("topic created", topic=t.name, partitions=t.partitions, **t.config())
        await _warn_on_drift(admin, [t for t in topics if t.name in existing])
        return [t.name for t in missing]
    finally:
        await admin.close()


async def _warn_on_drift(admin: AIOKafkaAdminClient, topics: list[Topic]) -> None:
    """Say when an existing topic has fewer partitions than the registry asks for."""
    if not topics:
        return
    for described in await admin.describe_topics([t.name for t in topics]):
        wanted = next(t.partitions for t in topics if t.name == described["topic"])
        if len(described["partitions"]) < wanted:
            log.warning(
                "topic has fewer partitions than the registry asks for; add them with "
                "kafka-topics --alter if key ordering allows",
                topic=described["topic"],
                partitions=len(described["partitions"]),
                wanted=wanted,
            )


async def partition_counts(
    bootstrap_servers: str, names: Sequence[str], security: dict[str, Any] | None = None
) -> dict[str, int]:
    """How many partitions each topic has on the broker (an operator may have added some)."""
    admin = AIOKafkaAdminClient(
        **(security or {}), bootstrap_servers=bootstrap_servers, client_id="nexwatt-admin"
    )
    await admin.start()
    try:
        return {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(list(names))}
    finally:
        await admin.close()
