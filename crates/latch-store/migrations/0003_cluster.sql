-- latch schema v3, for several nodes on one database. First: a counter bumped by every change that can make a cached
-- authentication or token lookup stale (revocations, disables, deletions,
-- membership changes). Nodes that cache reads watch it (PostgreSQL also
-- sends a NOTIFY) and drop their caches when it moves.

CREATE TABLE invalidations (
    id BIGINT PRIMARY KEY,
    n  BIGINT NOT NULL
);
INSERT INTO invalidations (id, n) VALUES (1, 0);

-- Failed logins, by identity ("user:alice") and by source ("source:10.1.2.3"):
-- throttling counts them across every node.
CREATE TABLE login_failures (
    key TEXT NOT NULL,
    at  BIGINT NOT NULL
);
CREATE INDEX login_failures_key ON login_failures (key, at);
