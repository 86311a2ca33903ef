-- latch schema v4: the SSH user CA (its key sealed at rest) and the
-- certificates it signed, for revocation lists.

CREATE TABLE ca_keys (
    name       TEXT PRIMARY KEY,     -- 'ssh-user'
    public_key TEXT NOT NULL,        -- OpenSSH public-key line
    sealed     TEXT NOT NULL,        -- hex: AES-256-GCM(private seed) under the node key-encryption key
    created_at BIGINT NOT NULL
);

CREATE TABLE ssh_certs (
    serial       BIGINT PRIMARY KEY,
    grant_id     TEXT NOT NULL REFERENCES grants(id),
    key_id       TEXT NOT NULL,
    principals   TEXT NOT NULL,      -- JSON array of login names
    fingerprint  TEXT NOT NULL,      -- SHA256:… of the certified key
    valid_after  BIGINT NOT NULL,    -- Unix seconds, as in the certificate
    valid_before BIGINT NOT NULL,
    issued_at    BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX ssh_certs_grant ON ssh_certs (grant_id);
CREATE INDEX ssh_certs_revoked ON ssh_certs (revoked_at, valid_before);
