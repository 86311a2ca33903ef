-- latch schema v11: service-principal secrets with a lifetime, and rolling
-- rotation: after `latch sp rotate`, the previous secret stays valid for an
-- overlap so a pipeline can switch without downtime.

ALTER TABLE service_principals ADD COLUMN secret_expires_at BIGINT;          -- NULL: never expires
ALTER TABLE service_principals ADD COLUMN secret_lifetime_ms BIGINT;         -- NULL: the server default; 0: never
ALTER TABLE service_principals ADD COLUMN previous_secret_hash TEXT;         -- valid until previous_secret_expires_at
ALTER TABLE service_principals ADD COLUMN previous_secret_expires_at BIGINT;
