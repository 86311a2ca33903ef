-- latch schema v3: a counter bumped by every change that can make a cached
-- authentication or token lookup stale (revocations, disables, deletions,
-- membership changes). Nodes that cache reads watch it (PostgreSQL also
-- sends a NOTIFY) and drop their caches when it moves.

CREATE TABLE invalidations (
    id BIGINT PRIMARY KEY,
    n  BIGINT NOT NULL
);
INSERT INTO invalidations (id, n) VALUES (1, 0);
