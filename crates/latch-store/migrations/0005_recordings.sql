-- latch schema v5: recorded sessions (asciicast v2), written incrementally
-- by the gateway as ordered chunks of event lines.

CREATE TABLE recordings (
    id             TEXT PRIMARY KEY,     -- rec_…
    principal_id   TEXT NOT NULL,        -- whose session: the grant's holder
    principal_kind TEXT NOT NULL,
    principal_name TEXT NOT NULL,
    grant_id       TEXT NOT NULL REFERENCES grants(id),
    started_by_id  TEXT NOT NULL,        -- who writes it (the gateway, or the holder)
    started_by     TEXT NOT NULL,
    target         TEXT NOT NULL,        -- host name
    login          TEXT NOT NULL,
    kind           TEXT NOT NULL,        -- shell | exec
    width          BIGINT NOT NULL,
    height         BIGINT NOT NULL,
    term           TEXT NOT NULL,
    started_at     BIGINT NOT NULL,
    ended_at       BIGINT,
    state          TEXT NOT NULL,        -- active | ended
    next_seq       BIGINT NOT NULL,      -- chunks stored: 0..next_seq
    events         BIGINT NOT NULL,
    bytes          BIGINT NOT NULL,      -- bytes of event data (output, input)
    last_time_us   BIGINT NOT NULL       -- time of the last event, microseconds from the start
);
CREATE INDEX recordings_principal ON recordings (principal_id, started_at);
CREATE INDEX recordings_state ON recordings (state, started_at);

CREATE TABLE recording_chunks (
    recording_id TEXT NOT NULL REFERENCES recordings(id),
    seq          BIGINT NOT NULL,
    body         TEXT NOT NULL,          -- asciicast v2 event lines, each ending in \n
    digest       TEXT NOT NULL,          -- SHA-256 of body: tells a retry from a different chunk
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (recording_id, seq)
);
