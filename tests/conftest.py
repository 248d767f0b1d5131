"""Where the real servers come from, in this order:

1. NEXWATT_KAFKA_BOOTSTRAP_SERVERS, NEXWATT_POSTGRES_URL, NEXWATT_REDIS_URL from the environment;
2. the project's local stack (`deploy/local/stack.py up`, after `make setup`);
3. testcontainers, when a Docker engine answers.

Under CI (CI=true) a server that can't be had fails the run; elsewhere the tests that need it
are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexwatt_shared.kafka.admin import create_topics

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("NEXWATT_KAFKA_BOOTSTRAP_SERVERS", "NEXWATT_POSTGRES_URL", "NEXWATT_REDIS_URL")


def _from_local_stack() -> dict[str, str] | None:
    if not list((ROOT / ".cache").glob("kafka-*/libs/.complete")):
        return None  # `make setup` has not fetched the Kafka jars
    subprocess.run([sys.executable, str(ROOT / "deploy/local/stack.py"), "up"], check=True)
    env = dict(
        line.split("=", 1) for line in (ROOT / ".stack/env").read_text().splitlines() if line
    )
    return {k: env[k] for k in KEYS}


def _from_testcontainers() -> tuple[dict[str, str], list[object]] | None:
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        return None
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.community.redis import RedisContainer

    kafka = KafkaContainer("apache/kafka:4.1.2").with_kraft().start()
    pg = PostgresContainer("postgres:15", username="nexwatt", password="nexwatt").start()
    redis = RedisContainer("redis:7").start()
    env = {
        "NEXWATT_KAFKA_BOOTSTRAP_SERVERS": kafka.get_bootstrap_server(),
        "NEXWATT_POSTGRES_URL": f"postgresql://nexwatt:nexwatt@{pg.get_container_host_ip()}:"
        f"{pg.get_exposed_port(5432)}",
        "NEXWATT_REDIS_URL": f"redis://{redis.get_container_host_ip()}:"
        f"{redis.get_exposed_port(6379)}/0",
    }
    return env, [kafka, pg, redis]


@pytest.fixture(scope="session")
def servers() -> Iterator[dict[str, str]]:
    """Connection settings of a real Kafka, PostgreSQL and Redis, exported to os.environ so
    that services and subprocesses started by tests see them too."""
    containers: list[object] = []
    if all(os.environ.get(k) for k in KEYS):
        env = {k: os.environ[k] for k in KEYS}
    else:
        env = _from_local_stack()
        if env is None:
            found = _from_testcontainers()
            if found is None:
                reason = "no Kafka/PostgreSQL/Redis: run `make setup` or set NEXWATT_* URLs"
                if os.environ.get("CI") == "true":
                    pytest.fail(reason)
                pytest.skip(reason)
            env, containers = found
    os.environ.update(env)
    asyncio.run(create_topics(env["NEXWATT_KAFKA_BOOTSTRAP_SERVERS"]))
    yield env
    for container in containers:
        container.stop()  # type: ignore[attr-defined]
