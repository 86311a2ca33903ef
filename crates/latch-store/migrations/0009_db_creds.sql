-- latch schema v9: dynamic PostgreSQL credentials. Administrators register
-- target databases (the administrator's password sealed at rest); a grant's
-- holder gets a PostgreSQL role of its own with a random password, dropped
-- again when the grant ends. Dropping is network IO, so it is queued: the
-- grant's revocation or expiry marks the credential 'revoking' in its own
-- transaction, and a background job drops the role, retrying until it can.

CREATE TABLE db_connections (
    name            TEXT PRIMARY KEY,
    host            TEXT NOT NULL,
    port            BIGINT NOT NULL,
    database_name   TEXT NOT NULL,
    username        TEXT NOT NULL,       -- the administrator latch creates and drops roles as
    sslmode         TEXT NOT NULL,       -- disable | prefer
    sealed_password TEXT NOT NULL,       -- hex: AES-256-GCM(password), context 'db-connection:NAME'
    created_at      BIGINT NOT NULL,
    created_by      TEXT NOT NULL
);

CREATE TABLE db_credentials (
    lease_id        TEXT PRIMARY KEY,    -- database/creds/ROLE/RANDOM, as Vault names leases
    grant_id        TEXT NOT NULL REFERENCES grants(id),
    principal_id    TEXT NOT NULL,       -- the grant's holder
    principal_name  TEXT NOT NULL,
    role            TEXT NOT NULL,       -- the latch role
    connection      TEXT NOT NULL,
    username        TEXT NOT NULL UNIQUE, -- the PostgreSQL role
    revocation      TEXT NOT NULL,       -- JSON array: the revocation statements in force at issue
    issued_at       BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,     -- never past the grant's end
    state           TEXT NOT NULL,       -- issuing | active | revoking | revoked
    revoke_requested_at BIGINT,
    revoked_at      BIGINT,
    revoke_attempts BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at BIGINT
);
CREATE INDEX db_credentials_grant ON db_credentials (grant_id);
CREATE INDEX db_credentials_state ON db_credentials (state, next_attempt_at);
