-- Tenants (the aggregators using the API) and their API keys (issue 12). Every asset belongs to
-- one tenant; assets stored before tenants existed belong to the tenant `default`, which is also
-- the tenant of requests without a key while keys are not required (NEXWATT_AUTH_REQUIRED).
CREATE TABLE tenants (
    tenant_id   text        PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tenants (tenant_id) VALUES ('default');

ALTER TABLE assets
    ADD COLUMN tenant_id text NOT NULL DEFAULT 'default' REFERENCES tenants (tenant_id);
CREATE INDEX assets_tenant ON assets (tenant_id, asset_id);

-- A key is `nxw_<key_id>_<secret>`; only the SHA-256 of the whole token is kept (see
-- nexwatt_shared.auth for why a fast hash is enough). `key_id` names the key in lists, logs and
-- `nexwatt-admin keys revoke` without revealing it.
CREATE TABLE api_keys (
    key_id      text        PRIMARY KEY,
    token_hash  text        NOT NULL UNIQUE,
    tenant_id   text        NOT NULL REFERENCES tenants (tenant_id),
    scopes      text[]      NOT NULL,
    name        text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
