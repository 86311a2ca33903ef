-- latch schema v10: the keys latch signs with (the SSH user CA, token
-- signing keys) under the master keyring, like secrets: each private key
-- encrypted (AES-256-GCM) under its own data key, wrapped by a master key
-- version and re-wrapped when the master key rotates. A sealed node holds
-- only the public halves. Rows of ca_keys (sealed under a node key file by
-- older releases) move here on the first unseal, keeping the same key.

CREATE TABLE issuer_keys (
    id             TEXT PRIMARY KEY,   -- 'ssh-user', or 'token:KID'
    kind           TEXT NOT NULL,      -- 'ssh-user-ca' | 'token'
    public_key     TEXT NOT NULL,      -- OpenSSH line (CA) or hex Ed25519 public key (token)
    active         BOOLEAN NOT NULL,   -- signs; retired keys stay published until unneeded
    master_version BIGINT NOT NULL,
    wrapped_key    TEXT NOT NULL,      -- hex: the data key wrapped by master key master_version
    ciphertext     TEXT NOT NULL,      -- hex: AES-256-GCM(private seed), context 'issuer-key:ID'
    created_at     BIGINT NOT NULL,
    retired_at     BIGINT
);
-- One active key per kind, so racing nodes cannot both create one.
CREATE UNIQUE INDEX issuer_keys_one_active ON issuer_keys (kind) WHERE active;
