//! What the gateway asks of the latch server. The server decides; the
//! gateway enforces. Implemented over HTTP by the `latch` binary.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The server answered no (4xx): final, not retried.
    #[error("{0}")]
    Refused(String),
    /// The server could not be reached or failed (5xx): retried later.
    #[error("latch server unavailable: {0}")]
    Unavailable(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct AuthorizeRequest {
    pub certificate: String,
    pub login: String,
    pub target: String,
    pub upstream_key: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Authorized {
    pub grant_id: String,
    pub user: String,
    pub role: String,
    pub expires_at: String,
    pub serial: u64,
    pub upstream_certificate: String,
    pub record_input: bool,
    pub port_forwarding: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct StartRecording {
    pub grant_id: String,
    pub target: String,
    pub login: String,
    /// `shell` or `exec`.
    pub kind: String,
    pub width: i64,
    pub height: i64,
    pub term: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct EndedGrant {
    pub id: String,
    pub state: String,
}

#[async_trait]
pub trait Control: Send + Sync + 'static {
    /// Checks the user's certificate for `login@target`; certifies the gateway's upstream key.
    async fn authorize(&self, req: AuthorizeRequest) -> Result<Authorized, ControlError>;
    /// Starts a recording; returns its id.
    async fn start_recording(&self, req: StartRecording) -> Result<String, ControlError>;
    /// Appends chunk `seq` (asciicast event lines); sending a stored chunk again is a no-op.
    async fn append_chunk(&self, recording: &str, seq: u64, events: String) -> Result<(), ControlError>;
    async fn end_recording(&self, recording: &str) -> Result<(), ControlError>;
    /// Of `grants`, those no longer live.
    async fn ended_grants(&self, grants: Vec<String>) -> Result<Vec<EndedGrant>, ControlError>;
}
