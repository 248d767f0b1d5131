"""API keys: the token format, its hash, scopes, the key store and the FastAPI check.

A key is the token `nxw_<key_id>_<secret>`: `key_id` (12 hex digits) names it without revealing
it, `secret` is 32 random bytes. The token is shown once, when it is created; only its SHA-256 is
stored. A fast hash is enough here: a slow one (bcrypt, argon2) protects guessable passwords,
while a 256-bit random secret can't be found from its hash by trying candidates.

A request presents the key as `Authorization: Bearer <token>` or `X-API-Key: <token>`. A missing,
unknown or revoked key is a 401 (with `WWW-Authenticate`), a key without the route's scope a 403.
With `required=False` a request without a key acts as the tenant `default` with every scope (the
way the API worked before keys), while a key that is given must still be valid.

The keys live in onboarding's database (its migration 005 creates `tenants` and `api_keys`);
onboarding checks them per request and `nexwatt-admin keys` manages them.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated

import asyncpg
from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

DEFAULT_TENANT = "default"
TOKEN_PREFIX = "nxw"
_TOKEN = re.compile(rf"^{TOKEN_PREFIX}_([0-9a-f]{{12}})_[A-Za-z0-9_-]{{43}}$")
TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="nexwatt"'}


class Scope(StrEnum):
    ASSETS_WRITE = "assets:write"
    ASSETS_READ = "assets:read"
    REPORTS_READ = "reports:read"


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never its secret)."""

    key_id: str
    tenant_id: str
    scopes: frozenset[Scope]
    name: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class Caller:
    """Who a request acts for: its tenant, and the key it used (None: no key, not required)."""

    tenant_id: str
    key_id: str | None


def new_token() -> tuple[str, str]:
    """A new key's id and its whole token."""
    key_id = secrets.token_hex(6)
    return key_id, f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    """The hex SHA-256 of the token, as stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed(token: str) -> bool:
    """The token has the shape of a key (checked before any lookup)."""
    return _TOKEN.match(token) is not None


# The key store, in onboarding's database.

_KEY_COLUMNS = "key_id, tenant_id, scopes, name, created_at, revoked_at"


def _key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        key_id=row["key_id"],
        tenant_id=row["tenant_id"],
        scopes=frozenset(Scope(s) for s in row["scopes"]),
        name=row["name"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


async def create_key(
    db: asyncpg.Pool | asyncpg.Connection, tenant_id: str, scopes: Sequence[Scope], name: str = ""
) -> tuple[ApiKey, str]:
    """Store a new key of `tenant_id` (created with it if new); the key and its token, which
    exists nowhere else from now on."""
    if not TENANT_ID.match(tenant_id):
        raise ValueError(f"a tenant id is 1-63 of a-z, 0-9 and '-': {tenant_id!r}")
    if not scopes:
        raise ValueError("a key needs at least one scope")
    key_id, token = new_token()
    await db.execute(
        "INSERT INTO tenants (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING", tenant_id
    )
    row = await db.fetchrow(
        f"INSERT INTO api_keys (key_id, token_hash, tenant_id, scopes, name)"
        f" VALUES ($1, $2, $3, $4, $5) RETURNING {_KEY_COLUMNS}",
        key_id,
        token_hash(token),
        tenant_id,
        sorted(set(scopes)),
        name,
    )
    return _key(row), token


async def list_keys(db: asyncpg.Pool | asyncpg.Connection) -> list[ApiKey]:
    rows = await db.fetch(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY tenant_id, created_at")
    return [_key(r) for r in rows]


async def revoke_key(db: asyncpg.Pool | asyncpg.Connection, key_id: str) -> bool:
    """Revoke the key from now on; False when no such key is active."""
    done = await db.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL", key_id
    )
    return done == "UPDATE 1"


async def find_active_key(db: asyncpg.Pool | asyncpg.Connection, token: str) -> ApiKey | None:
    """The active (not revoked) key whose token this is."""
    row = await db.fetchrow(
        f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE token_hash = $1 AND revoked_at IS NULL",
        token_hash(token),
    )
    return _key(row) if row else None


# The check on HTTP routes (an app sets `app.state.authenticator`).

KeyLookup = Callable[[str], Awaitable[ApiKey | None]]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The API key, as an alternative to Bearer"
)


class Authenticator:
    """Checks a request's key against the key store (`lookup`)."""

    def __init__(self, lookup: KeyLookup, required: bool) -> None:
        self.lookup = lookup
        self.required = required

    async def caller(self, token: str | None, any_of: Sequence[Scope]) -> Caller:
        """Who presents `token` (None: no key), if its key holds one of `any_of`; raises the
        401 or 403 HTTPException otherwise."""
        if token is None:
            if self.required:
                raise HTTPException(401, "an API key is required", CHALLENGE)
            return Caller(DEFAULT_TENANT, None)
        try:
            key = await self.lookup(token) if well_formed(token) else None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The key store is away: the caller may try again, nothing is wrong with the key.
            raise HTTPException(503, "the key store is unavailable", {"Retry-After": "5"}) from exc
        if key is None:
            raise HTTPException(401, "the API key is unknown or revoked", CHALLENGE)
        if not key.scopes.intersection(any_of):
            needed = " or ".join(s.value for s in any_of)
            raise HTTPException(403, f"the key {key.key_id} lacks the scope {needed}")
        return Caller(key.tenant_id, key.key_id)


class Requires:
    """Route dependency giving the request's `Caller`, whose key must hold one of `any_of`:
    `caller: Annotated[Caller, Depends(Requires(Scope.ASSETS_READ))]`. The app's Authenticator
    is `app.state.authenticator` (so that the dependency can be declared at module level)."""

    def __init__(self, *any_of: Scope) -> None:
        self.any_of = any_of

    async def __call__(
        self,
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        header_key: Annotated[str | None, Security(_api_key_header)],
    ) -> Caller:
        authenticator: Authenticator = request.app.state.authenticator
        token = bearer.credentials if bearer is not None else header_key
        return await authenticator.caller(token, self.any_of)
