-- latch schema v2: policy versions, access requests, approvals, grants,
-- issued tokens, token signing keys, delivery cursors.

CREATE TABLE policy_versions (
    hash       TEXT PRIMARY KEY,
    files      TEXT NOT NULL,            -- JSON object: relative path -> content
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    active     BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE access_requests (
    id                 TEXT PRIMARY KEY,
    requester_id       TEXT NOT NULL,
    requester_kind     TEXT NOT NULL,
    requester_name     TEXT NOT NULL,
    role               TEXT NOT NULL,
    reason             TEXT NOT NULL,
    ticket             TEXT NOT NULL,
    duration_ms        BIGINT NOT NULL,
    state              TEXT NOT NULL,
    breakglass         BOOLEAN NOT NULL,
    approvals_required BIGINT NOT NULL,
    policy_hash        TEXT NOT NULL,
    context            TEXT NOT NULL,    -- JSON decision context, for replay
    decision           TEXT NOT NULL,    -- JSON: determining policy ids
    created_at         BIGINT NOT NULL,
    pending_until      BIGINT NOT NULL,
    decided_at         BIGINT,
    decided_by         TEXT,
    decision_note      TEXT,
    grant_id           TEXT,
    reviewed_at        BIGINT,
    reviewed_by        TEXT,
    review_comment     TEXT
);
CREATE INDEX access_requests_state ON access_requests (state, pending_until);
CREATE INDEX access_requests_requester ON access_requests (requester_id, created_at);

CREATE TABLE approvals (
    request_id    TEXT NOT NULL REFERENCES access_requests(id),
    approver_id   TEXT NOT NULL,
    approver_name TEXT NOT NULL,
    comment       TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (request_id, approver_id)
);

CREATE TABLE grants (
    id             TEXT PRIMARY KEY,
    request_id     TEXT NOT NULL UNIQUE REFERENCES access_requests(id),
    principal_id   TEXT NOT NULL,
    principal_kind TEXT NOT NULL,
    principal_name TEXT NOT NULL,
    role           TEXT NOT NULL,
    breakglass     BOOLEAN NOT NULL,
    starts_at      BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    state          TEXT NOT NULL,         -- active | expired | revoked
    ended_at       BIGINT,
    revoked_by     TEXT,
    revoke_reason  TEXT
);
CREATE INDEX grants_state ON grants (state, expires_at);
CREATE INDEX grants_principal ON grants (principal_id, state);

CREATE TABLE tokens (
    jti        TEXT PRIMARY KEY,
    grant_id   TEXT NOT NULL REFERENCES grants(id),
    kid        TEXT NOT NULL,
    audience   TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX tokens_grant ON tokens (grant_id);
CREATE INDEX tokens_revoked ON tokens (revoked_at, expires_at);

CREATE TABLE delivery_cursors (
    name TEXT PRIMARY KEY,
    seq  BIGINT NOT NULL
);
