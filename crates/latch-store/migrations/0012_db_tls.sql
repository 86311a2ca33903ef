-- latch schema v12: TLS to target databases. sslmode may now also be
-- require / verify-full (both verified: the chain must lead to ca_cert, or
-- to a public root when ca_cert is NULL, and the certificate must name the host).

ALTER TABLE db_connections ADD COLUMN ca_cert TEXT;   -- PEM; NULL: the public roots
