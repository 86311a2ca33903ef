-- latch schema v8: the seal and the KV v2 secrets engines.
--
-- The keyring (master key versions + HMAC key) is stored only sealed under
-- the unseal key, which exists outside the database as Shamir shares. Each
-- secret version is encrypted under its own data key, stored wrapped by one
-- master key version: no column here holds a secret in the clear.

CREATE TABLE seal_config (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    shares         BIGINT NOT NULL,
    threshold      BIGINT NOT NULL,
    keyring        TEXT NOT NULL,      -- hex: AES-256-GCM(keyring) under the unseal key
    active_version BIGINT NOT NULL,    -- the master key version new data keys are wrapped with
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE kv_mounts (
    path                    TEXT PRIMARY KEY,   -- without slashes at either end
    description             TEXT NOT NULL,
    accessor                TEXT NOT NULL,
    max_versions            BIGINT NOT NULL,    -- 0: the default (10)
    cas_required            BOOLEAN NOT NULL,
    delete_version_after_ms BIGINT NOT NULL,    -- 0: never
    created_at              BIGINT NOT NULL
);

CREATE TABLE kv_secrets (
    mount                   TEXT NOT NULL REFERENCES kv_mounts(path),
    path                    TEXT NOT NULL,
    current_version         BIGINT NOT NULL,    -- 0 before any data was written
    oldest_version          BIGINT NOT NULL,
    max_versions            BIGINT NOT NULL,
    cas_required            BOOLEAN NOT NULL,
    delete_version_after_ms BIGINT NOT NULL,
    custom_metadata         TEXT NOT NULL,      -- JSON object of strings (not secret)
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL,
    PRIMARY KEY (mount, path)
);

CREATE TABLE kv_versions (
    mount          TEXT NOT NULL,
    path           TEXT NOT NULL,
    version        BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    deleted_at     BIGINT,                      -- soft delete (undelete clears it)
    destroyed      BOOLEAN NOT NULL,            -- the ciphertext is gone for good
    master_version BIGINT,                      -- NULL once destroyed
    wrapped_key    TEXT,                        -- hex: the data key under master key master_version
    ciphertext     TEXT,                        -- hex: the JSON data under the data key
    PRIMARY KEY (mount, path, version)
);
CREATE INDEX kv_versions_master ON kv_versions (master_version);

-- Tokens made through Vault's `auth/token/create`: latch sessions of the
-- creating principal, bounded by (and revoked with) their parent session.
CREATE TABLE child_tokens (
    session_id     TEXT PRIMARY KEY REFERENCES sessions(id),
    parent_id      TEXT,                 -- NULL: an orphan (administrators only)
    display_name   TEXT NOT NULL,
    meta           TEXT NOT NULL,        -- JSON object of strings (not secret)
    renewable      BOOLEAN NOT NULL,
    ttl_ms         BIGINT NOT NULL,      -- what a renewal without increment extends by
    max_expires_at BIGINT NOT NULL       -- renewals never pass it
);
CREATE INDEX child_tokens_parent ON child_tokens (parent_id);
