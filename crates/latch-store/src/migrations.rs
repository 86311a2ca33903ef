//! Versioned schema migrations, embedded in the binary and applied in order,
//! each in its own transaction with its version recorded. A database newer
//! than this binary is refused rather than guessed at.

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "foundation", sql: include_str!("../migrations/0001_foundation.sql") },
    Migration { version: 2, name: "jit", sql: include_str!("../migrations/0002_jit.sql") },
    Migration { version: 3, name: "cluster", sql: include_str!("../migrations/0003_cluster.sql") },
    Migration { version: 4, name: "ssh", sql: include_str!("../migrations/0004_ssh.sql") },
    Migration { version: 5, name: "recordings", sql: include_str!("../migrations/0005_recordings.sql") },
    Migration { version: 6, name: "federation", sql: include_str!("../migrations/0006_federation.sql") },
    Migration { version: 7, name: "oidc_login", sql: include_str!("../migrations/0007_oidc_login.sql") },
    Migration { version: 8, name: "secrets", sql: include_str!("../migrations/0008_secrets.sql") },
    Migration { version: 9, name: "db_creds", sql: include_str!("../migrations/0009_db_creds.sql") },
    Migration { version: 10, name: "issuer_keys", sql: include_str!("../migrations/0010_issuer_keys.sql") },
    Migration {
        version: 11,
        name: "sp_secret_rotation",
        sql: include_str!("../migrations/0011_sp_secret_rotation.sql"),
    },
    Migration { version: 12, name: "db_tls", sql: include_str!("../migrations/0012_db_tls.sql") },
    Migration { version: 13, name: "session_acr", sql: include_str!("../migrations/0013_session_acr.sql") },
    Migration { version: 14, name: "recording_files", sql: include_str!("../migrations/0014_recording_files.sql") },
];

pub const LATEST: i64 = 14;

pub const BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";
