-- latch schema v6: workload identity federation. A service principal trusts
-- an external OpenID Connect issuer, for one audience and under claim
-- conditions, to vouch for it (token exchange, RFC 8693 shape); the ids
-- (jti) of exchanged tokens are kept until they expire, so none is used twice.

CREATE TABLE federations (
    id          TEXT PRIMARY KEY,        -- fed_…
    sp_id       TEXT NOT NULL REFERENCES service_principals(id),
    name        TEXT NOT NULL,           -- unique per service principal
    issuer      TEXT NOT NULL,           -- compared with the token's iss exactly
    audience    TEXT NOT NULL,           -- must be one of the token's aud
    conditions  TEXT NOT NULL,           -- JSON: [{"claim", "equals" | "glob"}], all must hold
    created_at  BIGINT NOT NULL,
    UNIQUE (sp_id, name)
);
CREATE INDEX federations_issuer ON federations (issuer);

CREATE TABLE exchanged_tokens (
    issuer      TEXT NOT NULL,
    jti         TEXT NOT NULL,
    sp_id       TEXT NOT NULL,           -- who it was exchanged for
    exchanged_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,         -- the token's exp plus clock skew: kept until then
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX exchanged_tokens_expiry ON exchanged_tokens (expires_at);
