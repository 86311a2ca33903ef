-- latch schema v14: a recording chunk's event lines are either in its row
-- (body; PostgreSQL) or in the recording's file beside the SQLite database
-- (file_offset, file_len; body NULL). A retried chunk is told from a
-- different one by comparing the bytes themselves, so the digest goes.

CREATE TABLE recording_chunks_v14 (
    recording_id TEXT NOT NULL REFERENCES recordings(id),
    seq          BIGINT NOT NULL,
    body         TEXT,                   -- asciicast v2 event lines, each ending in \n; NULL when in the file
    file_offset  BIGINT,                 -- where they start in the recording's file
    file_len     BIGINT,                 -- how many bytes they take there
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (recording_id, seq),
    CHECK ((body IS NULL) = (file_offset IS NOT NULL AND file_len IS NOT NULL))
);
INSERT INTO recording_chunks_v14 (recording_id, seq, body, file_offset, file_len, created_at)
    SELECT recording_id, seq, body, NULL, NULL, created_at FROM recording_chunks;
DROP TABLE recording_chunks;
ALTER TABLE recording_chunks_v14 RENAME TO recording_chunks;
