//! Records as stored. Secret material appears here only as hashes (and the
//! TOTP seed, which must be readable to verify codes).

use latch_core::{PrincipalKind, Timestamp};

#[derive(Clone, Debug)]
pub struct NewUser {
    pub id: String,
    pub name: String,
    pub password_hash: Option<String>,
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub name: String,
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub totp_secret: Option<String>,
    pub totp_confirmed: bool,
    pub totp_last_step: Option<i64>,
    pub created_at: Timestamp,
    pub groups: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub description: String,
    pub created_at: Timestamp,
    pub members: Vec<Member>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub kind: PrincipalKind,
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct NewServicePrincipal {
    pub id: String,
    pub name: String,
    pub description: String,
    pub secret_hash: String,
    /// `None`: the server default; `Some(0)`: never expires.
    pub secret_lifetime_ms: Option<i64>,
    pub secret_expires_at: Option<Timestamp>,
}

/// A new secret for a service principal.
#[derive(Clone, Debug)]
pub struct SpSecretRotation {
    pub secret_hash: String,
    pub expires_at: Option<Timestamp>,
    /// The principal's lifetime from now on (`None`: unchanged).
    pub lifetime_ms: Option<Option<i64>>,
    /// Keep the previous secret valid until then (never past its own
    /// expiry), sessions included; `None` ends it and its sessions at once.
    pub overlap_until: Option<Timestamp>,
}

#[derive(Clone, Debug)]
pub struct ServicePrincipal {
    pub id: String,
    pub name: String,
    pub description: String,
    pub secret_hash: String,
    pub secret_rotated_at: Timestamp,
    /// When the current secret stops authenticating (`None`: never).
    pub secret_expires_at: Option<Timestamp>,
    /// `None`: the server default; `Some(0)`: secrets never expire.
    pub secret_lifetime_ms: Option<i64>,
    /// The secret before the last rolling rotation, valid until its expiry.
    pub previous_secret_hash: Option<String>,
    pub previous_secret_expires_at: Option<Timestamp>,
    pub disabled: bool,
    pub created_at: Timestamp,
    pub groups: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct NewSession {
    pub id: String,
    pub token_hash: String,
    pub principal_id: String,
    pub principal_kind: PrincipalKind,
    pub mfa: bool,
    pub source: String,
    pub expires_at: Timestamp,
    /// A throttling key whose failed logins this success forgets.
    pub clears_failures: Option<String>,
}

/// A service principal's trust in an external OpenID Connect issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Federation {
    pub id: String,
    pub sp_id: String,
    pub sp_name: String,
    pub sp_disabled: bool,
    pub name: String,
    pub issuer: String,
    pub audience: String,
    pub conditions: Vec<latch_core::federation::Condition>,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct NewFederation {
    pub id: String,
    pub name: String,
    pub issuer: String,
    pub audience: String,
    pub conditions: Vec<latch_core::federation::Condition>,
}

/// An external token traded for a session: remembered until `expires_at`
/// so that it cannot be traded again.
#[derive(Clone, Debug)]
pub struct ExchangedToken {
    pub issuer: String,
    pub jti: String,
    pub expires_at: Timestamp,
}

/// A sign-in through an OIDC provider, between start and callback.
#[derive(Clone, Debug)]
pub struct PendingOidcLogin {
    pub state: String,
    pub provider: String,
    pub nonce: String,
    pub code_verifier: String,
    pub redirect_uri: String,
    pub expires_at: Timestamp,
}

/// Who an OIDC provider says signed in, and the groups it asserts.
#[derive(Clone, Debug)]
pub struct OidcSignIn {
    pub provider: String,
    pub subject: String,
    /// The latch user name, for a first sign-in.
    pub username: String,
    /// The latch groups (among `managed`) the user must be in.
    pub member_of: Vec<String>,
    /// The latch groups the provider's mapping decides; others are left alone.
    pub managed: Vec<String>,
    /// The ID token's `acr` ("" when absent) and `amr`, kept with the session for policy.
    pub acr: String,
    pub amr: Vec<String>,
}

/// What a sign-in changed.
#[derive(Clone, Debug, Default)]
pub struct OidcSignInOutcome {
    pub user_id: String,
    pub user_name: String,
    pub provisioned: bool,
    pub groups_added: Vec<String>,
    pub groups_removed: Vec<String>,
    /// Mapped groups that do not exist in latch (nothing to add to).
    pub groups_missing: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub principal_id: String,
    pub principal_kind: PrincipalKind,
    pub mfa: bool,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A stored policy bundle (roles + Cedar policies), addressed by content hash.
#[derive(Clone, Debug)]
pub struct PolicyVersion {
    pub hash: String,
    pub files: std::collections::BTreeMap<String, String>,
    pub created_at: Timestamp,
    pub created_by: String,
}

#[derive(Clone, Debug)]
pub struct AccessRequest {
    pub id: String,
    pub requester_id: String,
    pub requester_kind: PrincipalKind,
    pub requester_name: String,
    pub role: String,
    pub reason: String,
    pub ticket: String,
    pub duration_ms: i64,
    pub state: latch_core::RequestState,
    pub breakglass: bool,
    pub approvals_required: i64,
    pub policy_hash: String,
    pub context: serde_json::Value,
    pub decision: serde_json::Value,
    pub created_at: Timestamp,
    pub pending_until: Timestamp,
    pub decided_at: Option<Timestamp>,
    pub decided_by: Option<String>,
    pub decision_note: Option<String>,
    pub grant_id: Option<String>,
    pub reviewed_at: Option<Timestamp>,
    pub reviewed_by: Option<String>,
    pub review_comment: Option<String>,
    /// Filled when read: approvals recorded so far.
    pub approvals: Vec<Approval>,
}

#[derive(Clone, Debug)]
pub struct Approval {
    pub approver_id: String,
    pub approver_name: String,
    pub comment: String,
    pub created_at: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantState {
    Active,
    Expired,
    Revoked,
}

impl GrantState {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Active => "active",
            GrantState::Expired => "expired",
            GrantState::Revoked => "revoked",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(GrantState::Active),
            "expired" => Some(GrantState::Expired),
            "revoked" => Some(GrantState::Revoked),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Grant {
    pub id: String,
    pub request_id: String,
    pub principal_id: String,
    pub principal_kind: PrincipalKind,
    pub principal_name: String,
    pub role: String,
    pub breakglass: bool,
    pub starts_at: Timestamp,
    pub expires_at: Timestamp,
    pub state: GrantState,
    pub ended_at: Option<Timestamp>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
}

impl Grant {
    /// Live at `now`: active and not past its end (the sweeper may lag).
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.state == GrantState::Active && now < self.expires_at
    }
}

#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub jti: String,
    pub grant_id: String,
    pub kid: String,
    pub audience: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Default)]
pub struct RequestFilter {
    pub state: Option<latch_core::RequestState>,
    pub requester_id: Option<String>,
    pub roles: Option<Vec<String>>,
    pub limit: usize,
}

/// What one approval did.
#[derive(Clone, Debug)]
pub enum ApprovalOutcome {
    /// Recorded; `have` of `need` approvals so far.
    Recorded { have: i64, need: i64 },
    /// The threshold was reached by this approval: the grant now exists.
    Granted(Grant),
}

/// What the sweeper ended.
#[derive(Clone, Debug, Default)]
pub struct Swept {
    pub expired: Vec<Grant>,
    pub timed_out: Vec<AccessRequest>,
}

/// A CA key as stored: its public half, and its private half sealed.
#[derive(Clone, Debug)]
pub struct StoredCaKey {
    pub name: String,
    pub public_key: String,
    /// Hex of the sealed private key; never logged.
    pub sealed: String,
    pub created_at: Timestamp,
}

/// What an issuer key signs.
pub const ISSUER_SSH_USER_CA: &str = "ssh-user-ca";
pub const ISSUER_TOKEN: &str = "token";

/// A key latch signs with (the SSH user CA, a token signing key): its public
/// half in the clear, its private half encrypted under the master keyring.
#[derive(Clone, Debug)]
pub struct StoredIssuerKey {
    /// `ssh-user`, or `token:KID`.
    pub id: String,
    /// [`ISSUER_SSH_USER_CA`] or [`ISSUER_TOKEN`].
    pub kind: String,
    pub public_key: String,
    /// Signs; a retired key is only published (and verified against).
    pub active: bool,
    /// The private seed; never logged.
    pub envelope: StoredEnvelope,
    pub created_at: Timestamp,
    pub retired_at: Option<Timestamp>,
}

/// An SSH certificate latch signed.
#[derive(Clone, Debug)]
pub struct IssuedSshCert {
    pub serial: i64,
    pub grant_id: String,
    pub key_id: String,
    pub principals: Vec<String>,
    pub fingerprint: String,
    pub valid_after: i64,
    pub valid_before: i64,
    pub issued_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// What a Key Revocation List needs: the serials of revoked certificates
/// still inside their validity, and a version that grows with every revocation.
#[derive(Clone, Debug, Default)]
pub struct RevokedSerials {
    pub serials: Vec<i64>,
    pub version: i64,
}

/// A recorded session as the server starts it.
#[derive(Clone, Debug)]
pub struct NewRecording {
    pub id: String,
    pub grant_id: String,
    /// Who starts it and will write its chunks (a gateway, or the holder).
    pub started_by_id: String,
    pub started_by: String,
    pub target: String,
    pub login: String,
    /// `shell` or `exec`.
    pub kind: String,
    pub width: i64,
    pub height: i64,
    pub term: String,
}

/// A recorded session: its metadata and the totals of what was stored.
#[derive(Clone, Debug)]
pub struct Recording {
    pub id: String,
    pub principal_id: String,
    pub principal_kind: PrincipalKind,
    pub principal_name: String,
    pub grant_id: String,
    pub started_by_id: String,
    pub started_by: String,
    pub target: String,
    pub login: String,
    pub kind: String,
    pub width: i64,
    pub height: i64,
    pub term: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// `active` or `ended`.
    pub state: String,
    /// Chunks stored (numbered 0..next_seq): the next one expected.
    pub next_seq: i64,
    pub events: i64,
    pub bytes: i64,
    /// Time of the last event, microseconds after the start.
    pub last_time_us: i64,
}

/// One chunk of asciicast event lines, validated by the caller.
#[derive(Clone, Debug)]
pub struct RecordingChunk {
    pub recording_id: String,
    pub seq: i64,
    /// Event lines, each ending in `\n`.
    pub body: String,
    pub events: i64,
    pub bytes: i64,
    pub first_time_us: i64,
    pub last_time_us: i64,
}

/// What an append did.
#[derive(Clone, Debug)]
pub enum ChunkOutcome {
    /// Stored now.
    Appended(Recording),
    /// The same chunk was stored before (a retry): nothing changed.
    Duplicate(Recording),
}

#[derive(Clone, Debug, Default)]
pub struct RecordingFilter {
    /// Only this principal's sessions.
    pub principal_id: Option<String>,
    /// Only sessions still running.
    pub active: bool,
    pub limit: usize,
}

/// Aggregates of the store's state at one moment, for `/metrics`. Counts of
/// credentials are over all time (rows are never deleted), so they only grow.
#[derive(Clone, Debug, Default)]
pub struct StoreStats {
    /// (role, state, count): state is `active`, `expired` (including active
    /// grants whose end has passed but the sweeper has not yet reached) or `revoked`.
    pub grants: Vec<(String, String, i64)>,
    pub pending_requests: i64,
    /// Creation time of the oldest pending request.
    pub oldest_pending: Option<Timestamp>,
    pub breakglass_total: i64,
    /// Break-glass uses still awaiting their post-incident review.
    pub breakglass_unreviewed: i64,
    pub tokens_issued: i64,
    pub tokens_revoked: i64,
    pub ssh_certs_issued: i64,
    pub ssh_certs_revoked: i64,
    pub active_recordings: i64,
    pub audit_head_seq: i64,
}

/// What [`crate::Store::slo_data`] reads: a window of time and the
/// thresholds that make a credential long-lived.
#[derive(Clone, Debug)]
pub struct SloQuery {
    /// The window is `from..=to` (milliseconds, inclusive).
    pub from: Timestamp,
    pub to: Timestamp,
    /// Service-principal secrets last rotated before this are overdue.
    pub secret_rotated_before: Timestamp,
    /// Tokens and SSH certificates valid for longer than this are long-lived.
    pub long_lived_ms: i64,
    /// Audit actions that only standing administrators can take.
    pub standing_actions: Vec<String>,
}

/// A request that became active in the window: when it was made and when its
/// grant became active (the commit of the transition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activation {
    pub request_id: String,
    pub created_at: Timestamp,
    pub activated_at: Timestamp,
    pub breakglass: bool,
    /// 0 when policy activated it on request.
    pub approvals_required: i64,
}

/// One break-glass activation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakglassUse {
    pub request_id: String,
    pub requester: String,
    pub role: String,
    pub at: Timestamp,
    pub reviewed: bool,
}

/// One grant revocation and when what it ended was over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    pub grant_id: String,
    /// When the revocation was asked for (the handler's clock; the commit
    /// time for events written before latch recorded it).
    pub requested_at: Timestamp,
    /// Commit of the revocation: grant, tokens and certificates ended.
    pub committed_at: Timestamp,
    /// Latest `revoked_at` of the grant's tokens and certificates.
    pub credentials_revoked_at: Option<Timestamp>,
    /// Latest end of the recorded sessions that were running when the grant was revoked.
    pub sessions_ended_at: Option<Timestamp>,
    /// Of those sessions, how many are still running.
    pub sessions_open: i64,
}

/// The store's facts for the SLIs M1–M6 over a window (see `latch-server`'s `slo`).
#[derive(Clone, Debug, Default)]
pub struct SloData {
    /// M1: grants used for SSH in the window (a user certificate issued or a
    /// recorded session started under it), each with whether it has any recorded session.
    pub ssh_grants: Vec<(String, bool)>,
    /// M1: recorded sessions started in the window.
    pub sessions_recorded: i64,
    /// M2: requests whose grant became active in the window.
    pub activations: Vec<Activation>,
    /// M3: credentials issued under grants in the window.
    pub tokens_issued: i64,
    pub ssh_certs_issued: i64,
    /// M3: successful standing-administrator actions in the window (not by `system`), by action.
    pub standing_ops: Vec<(String, i64)>,
    /// M4: enabled service principals whose secret is overdue for rotation: (name, rotated at).
    /// …or whose secret has expired: (name, rotated at, expires at).
    pub stale_sp_secrets: Vec<(String, Timestamp, Option<Timestamp>)>,
    /// M4: CA keys: (name, created at).
    pub ca_keys: Vec<(String, Timestamp)>,
    /// M4: every stored KV secret with a readable current version:
    /// (`mount/path`, when that version was written).
    pub static_secrets: Vec<(String, Timestamp)>,
    /// M4: token-key rotations, newest first: (time, the kid made active).
    pub token_key_rotations: Vec<(Timestamp, String)>,
    /// Time of the first audit event: when the store (and its first keys) began.
    pub first_event: Option<Timestamp>,
    /// M4: unexpired, unrevoked tokens and certificates valid for longer than the threshold.
    pub long_lived_tokens: i64,
    pub long_lived_ssh_certs: i64,
    /// M5: break-glass activations in the window, oldest first.
    pub breakglass: Vec<BreakglassUse>,
    /// M6: grant revocations committed in the window, oldest first.
    pub revocations: Vec<Revocation>,
}

/// The seal: shares and threshold of the unseal key, and the keyring sealed
/// under it (hex).
#[derive(Clone, Debug)]
pub struct SealConfig {
    pub shares: i64,
    pub threshold: i64,
    pub keyring: String,
    pub active_version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A KV v2 secrets engine mounted at `path`.
#[derive(Clone, Debug)]
pub struct KvMount {
    pub path: String,
    pub description: String,
    pub accessor: String,
    /// Versions kept per secret; 0 means the default.
    pub max_versions: i64,
    pub cas_required: bool,
    /// Versions are soft-deleted this long after they are written; 0: never.
    pub delete_version_after_ms: i64,
    pub created_at: Timestamp,
}

/// A secret's metadata (everything but its values, which are never here).
#[derive(Clone, Debug)]
pub struct KvMeta {
    pub mount: String,
    pub path: String,
    pub current_version: i64,
    pub oldest_version: i64,
    pub max_versions: i64,
    pub cas_required: bool,
    pub delete_version_after_ms: i64,
    /// JSON object of strings.
    pub custom_metadata: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A value encrypted under a data key wrapped by master key `master_version`
/// (hex columns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEnvelope {
    pub master_version: i64,
    pub wrapped_key: String,
    pub ciphertext: String,
}

/// One version of a secret; `envelope` is `None` once destroyed.
#[derive(Clone, Debug)]
pub struct KvVersion {
    pub version: i64,
    pub created_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
    pub destroyed: bool,
    pub envelope: Option<StoredEnvelope>,
}

/// A write of a new version.
#[derive(Clone, Debug)]
pub struct KvWrite {
    pub mount: String,
    pub path: String,
    /// Check-and-set: write only if the current version is this (0: only if absent).
    pub cas: Option<i64>,
    pub envelope: StoredEnvelope,
}

/// A change to a secret's metadata; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct KvMetaUpdate {
    pub max_versions: Option<i64>,
    pub cas_required: Option<bool>,
    pub delete_version_after_ms: Option<i64>,
    pub custom_metadata: Option<String>,
}

/// A data key to re-wrap under the active master key.
#[derive(Clone, Debug)]
pub struct WrappedKey {
    pub mount: String,
    pub path: String,
    pub version: i64,
    pub envelope: StoredEnvelope,
}

/// What Vault's `auth/token/create` adds to a session.
#[derive(Clone, Debug)]
pub struct ChildToken {
    /// The session it was made from (revoked with it); `None` for an orphan.
    pub parent_id: Option<String>,
    pub display_name: String,
    /// JSON object of strings.
    pub meta: String,
    pub renewable: bool,
    pub ttl_ms: i64,
    pub max_expires_at: Timestamp,
}

/// A session as Vault's token lookups show it.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub id: String,
    pub principal_id: String,
    pub principal_kind: PrincipalKind,
    pub source: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// Present for tokens made by `auth/token/create`.
    pub child: Option<ChildToken>,
}

/// A registered target database for dynamic credentials. The
/// administrator's password is held only sealed.
#[derive(Clone, Debug)]
pub struct DbConnection {
    pub name: String,
    pub host: String,
    pub port: i64,
    pub database: String,
    /// The administrator latch creates and drops roles as.
    pub username: String,
    /// `disable`, `prefer`, `require` or `verify-full` (TLS always verified).
    pub sslmode: String,
    /// PEM of the CA the target's certificate must chain to; `None`: the public roots.
    pub ca_cert: Option<String>,
    /// Hex of the sealed password; never logged or answered.
    pub sealed_password: String,
    pub created_at: Timestamp,
    pub created_by: String,
}

/// Where a dynamic database credential is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbCredState {
    /// Recorded; its role is being created on the target.
    Issuing,
    Active,
    /// Its grant ended or it was revoked: the role is being dropped.
    Revoking,
    /// The role is gone.
    Revoked,
}

impl DbCredState {
    pub fn as_str(self) -> &'static str {
        match self {
            DbCredState::Issuing => "issuing",
            DbCredState::Active => "active",
            DbCredState::Revoking => "revoking",
            DbCredState::Revoked => "revoked",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "issuing" => Some(DbCredState::Issuing),
            "active" => Some(DbCredState::Active),
            "revoking" => Some(DbCredState::Revoking),
            "revoked" => Some(DbCredState::Revoked),
            _ => None,
        }
    }
}

/// A PostgreSQL role latch created under a grant (a lease, in Vault's words).
#[derive(Clone, Debug)]
pub struct DbCredential {
    /// `database/creds/ROLE/RANDOM`.
    pub lease_id: String,
    pub grant_id: String,
    pub principal_id: String,
    pub principal_name: String,
    /// The latch role of the grant.
    pub role: String,
    pub connection: String,
    /// The PostgreSQL role name.
    pub username: String,
    /// The revocation statements (templates) in force when it was issued,
    /// so a later policy change cannot strand it.
    pub revocation: Vec<String>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub state: DbCredState,
    pub revoke_requested_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub revoke_attempts: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<Timestamp>,
}

/// Which credentials a revocation is for.
#[derive(Clone, Debug)]
pub enum LeaseSelector {
    One(String),
    /// Every lease whose id starts with this (compared exactly, no wildcards).
    Prefix(String),
}

/// Filters for listing credentials; newest first.
#[derive(Clone, Debug, Default)]
pub struct DbCredFilter {
    pub state: Option<DbCredState>,
    pub grant_id: Option<String>,
    pub limit: usize,
}
