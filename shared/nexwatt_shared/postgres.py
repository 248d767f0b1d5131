"""PostgreSQL: one database per service, an asyncpg pool, versioned SQL migrations.

Migrations are files `NNN_name.sql` in the service's `migrations/` folder, applied in order,
each in its own transaction, recorded in `schema_migrations`. An advisory lock makes two
replicas starting at once apply them once.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog

log = structlog.get_logger()
MIGRATION_FILE = re.compile(r"^(\d+)_([a-z0-9_]+)\.sql$")
MIGRATION_LOCK = 0x6E657877  # any constant: one lock id per database is enough


def database_url(server_url: str, database: str) -> str:
    """The server URL with its path replaced by `database`."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def ensure_database(server_url: str, database: str) -> None:
    """Create the service's database when it is missing (needs CREATEDB; a managed database
    that already exists is left alone)."""
    conn = await asyncpg.connect(database_url(server_url, "postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{database}"')
                log.info("database created", database=database)
            except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                pass  # another replica created it a moment ago
    finally:
        await conn.close()


def _migrations(folder: Path) -> list[tuple[int, str, str]]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = MIGRATION_FILE.match(path.name)
        if match is None:
            raise ValueError(f"{path}: migration files are named NNN_lower_snake.sql")
        found.append((int(match.group(1)), match.group(2), path.read_text()))
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"{folder}: two migrations share a version number")
    return found


async def migrate(pool: asyncpg.Pool, folder: Path) -> list[int]:
    """Apply the migrations in `folder` not applied yet; return the versions applied."""
    applied_now = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, name, sql in _migrations(folder):
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        version,
                        name,
                    )
                applied_now.append(version)
                log.info("migration applied", version=version, name=name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied_now


async def open_pool(server_url: str, database: str, migrations: Path | None = None) -> asyncpg.Pool:
    """Create the database if needed, open a pool, and bring the schema up to date."""
    await ensure_database(server_url, database)
    pool = await asyncpg.create_pool(database_url(server_url, database), min_size=1, max_size=10)
    if migrations is not None:
        await migrate(pool, migrations)
    return pool


@contextlib.asynccontextmanager
async def advisory_lock(pool: asyncpg.Pool, key: str) -> AsyncIterator[None]:
    """Hold a session advisory lock named by `key` for the block: one holder at a time across
    every replica using the same database (e.g. one decision per instruction)."""
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", key)
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
