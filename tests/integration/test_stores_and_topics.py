"""Topic creation, migrations and Redis against the real servers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from nexwatt_shared.kafka.admin import create_topics
from nexwatt_shared.postgres import database_url, migrate, open_pool
from nexwatt_shared.redis_client import open_redis
from nexwatt_shared.topics import ALL, ASSET_REGISTERED, TELEMETRY_INTERVAL
from tests.helpers import unique

pytestmark = pytest.mark.integration


async def test_every_registry_topic_exists_with_its_partitions_and_cleanup_policy(
    servers: dict[str, str],
) -> None:
    bootstrap = servers["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"]
    assert await create_topics(bootstrap) == []  # the fixture created them; again is a no-op
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics([t.name for t in ALL])}
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t.name) for t in ALL]
        )
    finally:
        await admin.close()
    for topic in ALL:
        assert len(described[topic.name]["partitions"]) == topic.partitions, topic.name
    found = {
        resource[3]: {entry[0]: entry[1] for entry in resource[4]}
        for response in configs
        for resource in response.resources
    }
    assert found[ASSET_REGISTERED.name]["cleanup.policy"] == "compact"
    assert found[TELEMETRY_INTERVAL.name]["cleanup.policy"] == "delete"
    assert found[TELEMETRY_INTERVAL.name]["retention.ms"] == str(TELEMETRY_INTERVAL.retention_ms)


async def test_migrations_apply_once_even_from_two_replicas_at_once(
    servers: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "001_first.sql").write_text("CREATE TABLE a (id int PRIMARY KEY);")
    (tmp_path / "002_second.sql").write_text("ALTER TABLE a ADD COLUMN note text;")
    database = unique("test_migrate").replace("-", "_")
    first, second = await asyncio.gather(
        open_pool(servers["NEXWATT_POSTGRES_URL"], database),
        open_pool(servers["NEXWATT_POSTGRES_URL"], database),
    )
    try:
        applied = await asyncio.gather(migrate(first, tmp_path), migrate(second, tmp_path))
        assert sorted(applied, key=len) == [[], [1, 2]]
        (tmp_path / "003_third.sql").write_text("ALTER TABLE a ADD COLUMN n int;")
        assert await migrate(first, tmp_path) == [3]
        conn = await asyncpg.connect(database_url(servers["NEXWATT_POSTGRES_URL"], database))
        try:
            columns = await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'a'"
            )
        finally:
            await conn.close()
        assert {r["column_name"] for r in columns} == {"id", "note", "n"}
    finally:
        await first.close()
        await second.close()


async def test_a_failing_migration_leaves_nothing_half_applied(
    servers: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "001_ok.sql").write_text("CREATE TABLE b (id int);")
    (tmp_path / "002_broken.sql").write_text("CREATE TABLE c (id int); SELECT no_such_fn();")
    pool = await open_pool(servers["NEXWATT_POSTGRES_URL"], unique("test_mig").replace("-", "_"))
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await migrate(pool, tmp_path)
        assert await pool.fetchval("SELECT max(version) FROM schema_migrations") == 1
        assert await pool.fetchval("SELECT to_regclass('c')") is None
    finally:
        await pool.close()


async def test_redis_round_trip(servers: dict[str, str]) -> None:
    redis = open_redis(servers["NEXWATT_REDIS_URL"])
    key = unique("test:key")
    try:
        await redis.hset(key, mapping={"soc_pct": "81.5"})
        assert await redis.hget(key, "soc_pct") == "81.5"
    finally:
        await redis.delete(key)
        await redis.aclose()
