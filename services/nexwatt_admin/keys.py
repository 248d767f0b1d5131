"""`nexwatt-admin keys create|list|revoke`: tenants' API keys, in onboarding's database.

The secret of a new key is printed once and stored nowhere (only its hash is kept).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from nexwatt_shared import auth
from nexwatt_shared.postgres import database_url


class KeyCommandError(Exception):
    """A key command that can't be done (no such key, a bad tenant id)."""


async def _connect(server_url: str, database: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(database_url(server_url, database))
    except asyncpg.InvalidCatalogNameError as exc:
        raise KeyCommandError(f"no database {database!r}: has onboarding started once?") from exc


async def create(
    server_url: str, database: str, tenant_id: str, scopes: Sequence[auth.Scope], name: str
) -> tuple[auth.ApiKey, str]:
    """A new key and its token."""
    conn = await _connect(server_url, database)
    try:
        async with conn.transaction():
            return await auth.create_key(conn, tenant_id, scopes, name)
    except ValueError as exc:
        raise KeyCommandError(str(exc)) from exc
    finally:
        await conn.close()


async def listing(server_url: str, database: str) -> list[auth.ApiKey]:
    conn = await _connect(server_url, database)
    try:
        return await auth.list_keys(conn)
    finally:
        await conn.close()


async def revoke(server_url: str, database: str, key_id: str) -> None:
    conn = await _connect(server_url, database)
    try:
        if not await auth.revoke_key(conn, key_id):
            raise KeyCommandError(f"no active key {key_id!r}")
    finally:
        await conn.close()


def key_line(key: auth.ApiKey) -> str:
    """One line per key for `keys list`: never the secret."""
    state = f"revoked {key.revoked_at:%Y-%m-%dT%H:%M:%SZ}" if key.revoked_at else "active"
    scopes = ",".join(sorted(key.scopes))
    return (
        f"{key.key_id}  {key.tenant_id:<16} {scopes:<40} {state:<28}"
        f" created {key.created_at:%Y-%m-%dT%H:%M:%SZ}  {key.name}"
    ).rstrip()
