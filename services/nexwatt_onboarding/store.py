"""The service's store in PostgreSQL: assets (latest record per asset, each of one tenant) and
the outbox. (The tenants' API keys are in the same database, see `nexwatt_shared.auth`.)

Functions that change data take a connection inside the caller's transaction, so that an asset's
row and its outbox row are committed together or not at all.
"""

from __future__ import annotations

import asyncpg

from nexwatt_shared.contracts import AssetRegistered, AssetStatus

# Two-key advisory locks, one key space per purpose (the migrations use the one-key space).
_ASSET_LOCK = 1
_RESOURCE_LOCK = 2
_METER_LOCK = 3

# The partial unique index of migration 002: one asset that is not unenrolled per meter.
METER_IN_USE_INDEX = "assets_meter_in_use"

_COLUMNS = list(AssetRegistered.model_fields)
_SELECT_ASSET = f"SELECT {', '.join(_COLUMNS)} FROM assets WHERE asset_id = $1"
# The status is a literal, not a parameter: only then can a generic plan of the prepared statement
# prove the partial index's predicate and use it.
_SELECT_METER_HOLDER = (
    "SELECT asset_id, tenant_id FROM assets"
    f" WHERE meter_id = $1 AND status <> '{AssetStatus.UNENROLLED}'"
)


async def lock_asset(conn: asyncpg.Connection, asset_id: str) -> None:
    """Serialize changes of one asset until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _ASSET_LOCK, asset_id)


async def lock_resource(conn: asyncpg.Connection, resource_id: str) -> None:
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))", _RESOURCE_LOCK, resource_id
    )


async def lock_meter(conn: asyncpg.Connection, meter_id: str) -> None:
    """Serialize registrations naming one meter, so that two assets can't both find it free."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _METER_LOCK, meter_id)


async def get_asset(db: asyncpg.Pool | asyncpg.Connection, asset_id: str) -> AssetRegistered | None:
    row = await db.fetchrow(_SELECT_ASSET, asset_id)
    return AssetRegistered.model_validate(dict(row)) if row else None


async def asset_owner(db: asyncpg.Pool | asyncpg.Connection, asset_id: str) -> str | None:
    """The tenant whose asset `asset_id` is; None when no tenant has it."""
    return await db.fetchval("SELECT tenant_id FROM assets WHERE asset_id = $1", asset_id)


async def zone_in_use(conn: asyncpg.Connection, resource_id: str, other_than: str) -> str | None:
    """The zone of assets (other than `other_than`) that still belong to `resource_id`."""
    return await conn.fetchval(
        "SELECT iso_zone FROM assets WHERE resource_id = $1 AND asset_id <> $2"
        " AND status <> $3 LIMIT 1",
        resource_id,
        other_than,
        AssetStatus.UNENROLLED.value,
    )


async def meter_holder(conn: asyncpg.Connection, meter_id: str) -> asyncpg.Record | None:
    """The asset (`asset_id`, `tenant_id`) that holds `meter_id`: the one, if any, whose status
    is not unenrolled (the unique index allows at most one)."""
    return await conn.fetchrow(_SELECT_METER_HOLDER, meter_id)


class AssetIdTaken(Exception):
    """The asset id is another tenant's (said without naming the tenant)."""


async def save_asset(conn: asyncpg.Connection, record: AssetRegistered, tenant_id: str) -> None:
    """Upsert the asset's record and queue it in the outbox, in the caller's transaction. The
    tenant is set when the asset is first stored and never changes: the callers check it first,
    and the write itself refuses another tenant's row (AssetIdTaken), whatever the caller."""
    values = {**record.model_dump(), "tenant_id": tenant_id}  # enum members are str
    columns = [*_COLUMNS, "tenant_id"]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS if c != "asset_id")
    written = await conn.execute(
        f"INSERT INTO assets ({', '.join(columns)})"
        f" VALUES ({', '.join(f'${i}' for i in range(1, len(columns) + 1))})"
        f" ON CONFLICT (asset_id) DO UPDATE SET {updates}"
        " WHERE assets.tenant_id = EXCLUDED.tenant_id",
        *[values[c] for c in columns],
    )
    if written != "INSERT 0 1":
        raise AssetIdTaken(record.asset_id)
    await conn.execute(
        "INSERT INTO outbox (event_id, asset_id, version, payload, created_at)"
        " VALUES ($1, $2, $3, $4, $5)",
        f"{record.asset_id}:v{record.version}",
        record.asset_id,
        record.version,
        record.model_dump_json(),
        record.updated_at,
    )


async def resource_totals(pool: asyncpg.Pool, resource_id: str, tenant_id: str) -> asyncpg.Record:
    """The resource's zone, and count/capacity/storage of the tenant's enrolled assets in it."""
    return await pool.fetchrow(
        """
        SELECT min(iso_zone) AS iso_zone,
               count(*) FILTER (WHERE status = $2) AS assets_enrolled,
               coalesce(sum(capacity_kw) FILTER (WHERE status = $2), 0) AS capacity_kw,
               coalesce(sum(storage_kwh) FILTER (WHERE status = $2), 0) AS storage_kwh
        FROM assets WHERE resource_id = $1 AND tenant_id = $3
        """,
        resource_id,
        AssetStatus.ENROLLED.value,
        tenant_id,
    )


async def list_assets(
    pool: asyncpg.Pool, tenant_id: str, filters: dict[str, str], after: str | None, limit: int
) -> list[AssetRegistered]:
    """The tenant's assets matching every filter (column = value), in asset id order, from the
    one after `after` (keyset paging: the index of migration 005 on (tenant_id, asset_id) finds
    the page's start, however deep). `filters` names columns: the caller passes only known ones."""
    unknown = filters.keys() - set(_COLUMNS)
    if unknown:
        raise ValueError(f"not columns of assets: {sorted(unknown)}")
    conditions = ["tenant_id = $1", "asset_id > $2"]
    conditions += [f"{column} = ${i}" for i, column in enumerate(filters, start=4)]
    rows = await pool.fetch(
        f"SELECT {', '.join(_COLUMNS)} FROM assets WHERE {' AND '.join(conditions)}"
        " ORDER BY asset_id LIMIT $3",
        tenant_id,
        after or "",  # every asset id sorts after the empty string
        limit,
        *filters.values(),
    )
    return [AssetRegistered.model_validate(dict(row)) for row in rows]


async def claim_unsent(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Unsent outbox rows in `id` order, locked until the transaction ends; rows another relay
    holds are skipped. Only each asset's oldest unsent row is eligible: a relay can never
    publish version n+1 of an asset while version n is unsent or being sent by another relay."""
    return await conn.fetch(
        """
        SELECT id, event_id, payload, created_at FROM outbox o
        WHERE sent_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM outbox earlier
                          WHERE earlier.asset_id = o.asset_id AND earlier.sent_at IS NULL
                            AND earlier.id < o.id)
        ORDER BY id LIMIT $1
        FOR UPDATE SKIP LOCKED
        """,
        limit,
    )


async def mark_sent(conn: asyncpg.Connection, ids: list[int]) -> None:
    await conn.execute("UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", ids)


async def backlog(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
