//! latch-store: where latch keeps its state.
//!
//! The [`Store`] trait speaks the domain (users, sessions, audit), not SQL.
//! Every method that changes state takes the [`AuditDraft`] describing the
//! change and appends it in the same transaction, so a change without its
//! audit event cannot be written (invariant 1), and a failed append fails the
//! change.
//!
//! Both backends run the same domain SQL (`ops`, over the small [`sql::Db`]
//! interface) and the same migrations:
//! - **SQLite** (embedded, the default) in WAL mode with `synchronous=FULL`:
//!   an acknowledged write survives power loss.
//! - **PostgreSQL** for several latch nodes sharing one database: the audit
//!   chain stays one total order by locking it at the start of every write
//!   transaction, and background work runs on the one node that holds an
//!   advisory lock.
//!
//! In both, one writer thread per store batches the writes that arrive
//! together into one transaction (group commit), each in its own savepoint,
//! so concurrent writers share one commit without weakening durability.
#![forbid(unsafe_code)]

pub mod cache;
mod chunk_files;
pub mod migrations;
pub mod model;
mod ops;
pub mod pg_tls;
pub mod postgres;
pub mod sql;
pub mod sqlite;
mod store;
mod writer;

use async_trait::async_trait;
use latch_audit::{AuditDraft, AuditEvent, Checkpoint};
use latch_core::{Principal, PrincipalKind, Timestamp};
use latch_crypto::SigningKey;
use std::sync::Arc;
use thiserror::Error;

pub use model::*;
pub use postgres::PgOptions;
pub use store::SqlStore;
pub use writer::WriteCtx;

#[derive(Clone, Debug, Error)]
pub enum StoreError {
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Precondition(String),
    #[error("storage error: {0}")]
    Backend(String),
    #[error("the store is closed")]
    Closed,
    /// The database cannot be reached: nothing was changed; retry later.
    #[error("{0}")]
    Unavailable(String),
    #[error("storage schema is version {found}, newer than this latch (knows {known}): upgrade latch")]
    SchemaTooNew { found: i64, known: i64 },
}

impl StoreError {
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        StoreError::NotFound { kind, name: name.into() }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Filters for listing audit events. `since` is exclusive: events with `seq > since`.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub since: i64,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub limit: usize,
}

/// Access requests, approvals, grants, tokens and policy versions.
#[async_trait]
pub trait JitStore: Send + Sync + 'static {
    async fn active_policy(&self) -> Result<Option<PolicyVersion>>;
    /// Stores `v` (if new) and makes it the active version.
    async fn apply_policy(&self, v: PolicyVersion, audit: AuditDraft) -> Result<()>;

    /// Creates a request in `req.state`: Pending, Denied (by policy), or Active
    /// together with its `grant` (auto-approval, break-glass).
    async fn create_request(
        &self,
        req: AccessRequest,
        grant: Option<Grant>,
        audit: AuditDraft,
    ) -> Result<AccessRequest>;
    async fn get_request(&self, id: &str) -> Result<Option<AccessRequest>>;
    async fn list_requests(&self, f: RequestFilter) -> Result<Vec<AccessRequest>>;
    /// Records one approval of a pending request. Exactly one call — the one
    /// that reaches the threshold — creates the grant `grant_id`, starting now,
    /// for the requested duration clipped to `max_duration_ms` (the role's
    /// maximum in force now; the grant's event then says it was clipped).
    async fn approve_request(
        &self,
        id: &str,
        approval: Approval,
        grant_id: String,
        max_duration_ms: i64,
        audit: AuditDraft,
        grant_audit: AuditDraft,
    ) -> Result<ApprovalOutcome>;
    /// Ends a pending request as Denied or Cancelled.
    async fn close_request(
        &self,
        id: &str,
        to: latch_core::RequestState,
        by: &str,
        note: &str,
        audit: AuditDraft,
    ) -> Result<AccessRequest>;
    /// Records the post-incident review of a break-glass request.
    async fn review_request(&self, id: &str, by: &str, comment: &str, audit: AuditDraft) -> Result<AccessRequest>;

    async fn get_grant(&self, id: &str) -> Result<Option<Grant>>;
    async fn list_grants(&self, principal_id: Option<&str>, live_at: Option<Timestamp>) -> Result<Vec<Grant>>;
    /// Revokes an active grant and, in the same transaction, every token issued under it.
    async fn revoke_grant(&self, id: &str, by: &str, reason: &str, audit: AuditDraft) -> Result<(Grant, Vec<String>)>;
    /// Expires grants and times out pending requests due at `now`, one audit event each.
    async fn sweep(
        &self,
        now: Timestamp,
        expire: SweepAudit<Grant>,
        timeout: SweepAudit<AccessRequest>,
    ) -> Result<Swept>;

    /// Records an issued token, refusing if its grant is not live at that moment.
    async fn record_token(&self, t: IssuedToken, audit: AuditDraft) -> Result<()>;
    async fn get_token(&self, jti: &str) -> Result<Option<(IssuedToken, Grant)>>;
    /// Revoked tokens that have not yet expired at `now`.
    async fn revoked_tokens(&self, now: Timestamp) -> Result<Vec<IssuedToken>>;

    /// Whether any token signed by key `kid` is unexpired at `now`.
    async fn key_in_use(&self, kid: &str, now: Timestamp) -> Result<bool>;

    /// A named consumer's position in the audit log (0 when new).
    async fn cursor(&self, name: &str) -> Result<i64>;
    async fn set_cursor(&self, name: &str, seq: i64) -> Result<()>;
}

/// The SSH user CA and the certificates it signed.
#[async_trait]
pub trait SshStore: Send + Sync + 'static {
    async fn ca_key(&self, name: &str) -> Result<Option<StoredCaKey>>;
    /// Stores `key` unless a key of that name exists; returns the stored one
    /// (another node may have created it first).
    async fn create_ca_key(&self, key: StoredCaKey, audit: AuditDraft) -> Result<StoredCaKey>;
    /// Records a signed certificate, refusing if its grant is not live at that
    /// moment or the certificate would outlive it.
    async fn record_ssh_cert(&self, c: IssuedSshCert, audit: AuditDraft) -> Result<()>;
    /// The certificate latch signed with this serial, revoked or not.
    async fn ssh_cert(&self, serial: i64) -> Result<Option<IssuedSshCert>>;
    /// Revoked certificates still valid at `now_unix` (seconds), for the KRL.
    async fn revoked_ssh_serials(&self, now_unix: i64) -> Result<RevokedSerials>;
}

/// The keys latch signs with, under the master keyring (see `StoredIssuerKey`).
#[async_trait]
pub trait IssuerKeyStore: Send + Sync + 'static {
    /// Every issuer key, active ones first, then by creation.
    async fn issuer_keys(&self) -> Result<Vec<StoredIssuerKey>>;
    /// Stores `key` unless (active) its kind already has an active key or the
    /// id is taken; returns whether it was stored (another node may have been
    /// first). When stored, also deletes the `legacy_ca` row of `ca_keys`
    /// (the copy sealed under a node key file, which this one replaces).
    async fn create_issuer_key(
        &self,
        key: StoredIssuerKey,
        legacy_ca: Option<String>,
        audit: AuditDraft,
    ) -> Result<bool>;
    /// Retires active key `retiring` and stores `next` as its kind's active
    /// key, in one transaction; a conflict if `retiring` is no longer active.
    async fn rotate_issuer_key(&self, retiring: &str, next: StoredIssuerKey, audit: AuditDraft) -> Result<()>;
    /// Deletes a retired key (no longer needed to verify anything).
    async fn delete_retired_issuer_key(&self, id: &str, audit: AuditDraft) -> Result<bool>;
    /// Replaces a key's wrapped data key, only if it is still `old`; returns whether it was.
    async fn store_rewrapped_issuer_key(&self, id: &str, old: StoredEnvelope, new: StoredEnvelope) -> Result<bool>;
}

/// Dynamic PostgreSQL credentials: the target databases registered by
/// administrators, and the roles created on them under grants (see
/// `ops::db_creds` for why the states are what they are).
#[async_trait]
pub trait DbCredStore: Send + Sync + 'static {
    /// Registers a connection; a name already taken is a conflict.
    async fn create_db_connection(&self, c: DbConnection, audit: AuditDraft) -> Result<DbConnection>;
    async fn db_connection(&self, name: &str) -> Result<Option<DbConnection>>;
    async fn list_db_connections(&self) -> Result<Vec<DbConnection>>;
    /// Replaces a connection's sealed password if it is still `old` (a
    /// master-key re-wrap; another node may have done it first).
    async fn store_rewrapped_db_password(&self, name: &str, old: &str, new: &str) -> Result<bool>;
    /// Refused ([`StoreError::Precondition`]) while a credential on it is not yet revoked.
    async fn delete_db_connection(&self, name: &str, audit: AuditDraft) -> Result<()>;
    /// Records a credential as `issuing`, before its role exists, refusing if
    /// its grant is not live at that moment or it would outlive the grant.
    async fn record_db_credential(&self, c: DbCredential, audit: AuditDraft) -> Result<()>;
    /// `issuing` → `active` once the role exists; false when the credential
    /// was meanwhile marked for revocation (the caller must drop the role).
    async fn activate_db_credential(&self, lease_id: &str) -> Result<bool>;
    async fn db_credential(&self, lease_id: &str) -> Result<Option<DbCredential>>;
    async fn list_db_credentials(&self, f: DbCredFilter) -> Result<Vec<DbCredential>>;
    /// Marks the selected live credentials `revoking` (and asks for an
    /// immediate retry of those already revoking); returns both, and appends
    /// `audit` (with the lease ids) when there were any.
    async fn request_db_revocation(&self, sel: LeaseSelector, audit: AuditDraft) -> Result<Vec<String>>;
    /// Marks credentials whose lease ended at `now` (before their grant) `revoking`, one event each.
    async fn expire_db_credentials(&self, now: Timestamp, audit: SweepAudit<DbCredential>) -> Result<Vec<String>>;
    /// Credentials being revoked whose next attempt is due at `now`.
    async fn due_db_revocations(&self, now: Timestamp, limit: usize) -> Result<Vec<DbCredential>>;
    /// The role is gone: `revoked`, with `audit`; false if it already was.
    async fn finish_db_revocation(&self, lease_id: &str, audit: AuditDraft) -> Result<bool>;
    /// A failed attempt: counts it, keeps the error, schedules the next; returns the attempts so far.
    async fn fail_db_revocation(
        &self,
        lease_id: &str,
        error: &str,
        next_attempt_at: Timestamp,
        audit: AuditDraft,
    ) -> Result<i64>;
    /// Moves an active credential's end to `expires_at`, never past its grant's.
    async fn renew_db_credential(
        &self,
        lease_id: &str,
        expires_at: Timestamp,
        audit: AuditDraft,
    ) -> Result<DbCredential>;
}

/// Recorded sessions (asciicast v2), stored incrementally as ordered chunks.
#[async_trait]
pub trait RecordingStore: Send + Sync + 'static {
    /// Starts recording a session under `r.grant_id`, refusing if the grant
    /// is not live at that moment; the session belongs to the grant's holder.
    async fn start_recording(&self, r: NewRecording, audit: AuditDraft) -> Result<Recording>;
    async fn get_recording(&self, id: &str) -> Result<Option<Recording>>;
    /// Newest first.
    async fn list_recordings(&self, f: RecordingFilter) -> Result<Vec<Recording>>;
    /// Stores chunk `c.seq`: the next expected one is appended; one stored
    /// before with the same content is a [`ChunkOutcome::Duplicate`]; anything
    /// else (a gap, different content, an ended recording) is a conflict
    /// naming the seq expected. Not audited one by one: see `end_recording`.
    async fn append_recording_chunk(&self, c: RecordingChunk) -> Result<ChunkOutcome>;
    /// Ends an active recording with the audit event `audit` builds from its
    /// totals; an ended one is returned unchanged (`false`), for retries.
    async fn end_recording(&self, id: &str, audit: RecordingAudit) -> Result<(Recording, bool)>;
    /// The event lines of every stored chunk, in order.
    async fn recording_chunks(&self, id: &str) -> Result<Vec<String>>;
}

/// Workload identity federation: service principals' trust in external
/// OpenID Connect issuers, and the tokens already exchanged.
#[async_trait]
pub trait FederationStore: Send + Sync + 'static {
    /// Binds service principal `sp` (name or client id) to an issuer.
    async fn create_federation(&self, sp: &str, f: NewFederation, audit: AuditDraft) -> Result<Federation>;
    /// The bindings of service principal `sp`, by name.
    async fn list_federations(&self, sp: &str) -> Result<Vec<Federation>>;
    /// Every binding that trusts `issuer` (compared exactly), of any principal.
    async fn federations_by_issuer(&self, issuer: &str) -> Result<Vec<Federation>>;
    async fn delete_federation(&self, sp: &str, name: &str, audit: AuditDraft) -> Result<()>;
    /// Creates the session of a token exchange and remembers the token, in
    /// one transaction: a token already exchanged (same issuer and jti) fails
    /// with [`StoreError::Precondition`] and changes nothing.
    async fn exchange(&self, session: NewSession, token: ExchangedToken, audit: AuditDraft) -> Result<Session>;
    /// Forgets exchanged tokens that expired before `before`; returns how many.
    async fn prune_exchanged_tokens(&self, before: Timestamp) -> Result<u64>;
}

/// People's sign-in through OpenID Connect providers.
#[async_trait]
pub trait OidcStore: Send + Sync + 'static {
    /// Stores a pending sign-in (and forgets expired ones).
    async fn begin_oidc_login(&self, login: PendingOidcLogin) -> Result<()>;
    /// Takes (removes) the pending sign-in of `state`: each is used once.
    async fn take_oidc_login(&self, state: &str) -> Result<Option<PendingOidcLogin>>;
    /// Resolves the external identity to its user — provisioning the user
    /// (no password) and linking it on a first sign-in, refusing a name that
    /// a local or differently linked user already has — syncs the managed
    /// groups, and opens the session, with the event `audit` builds from what
    /// changed, in one transaction. A disabled user fails with
    /// [`StoreError::Precondition`].
    async fn oidc_sign_in(
        &self,
        who: OidcSignIn,
        session: NewSession,
        audit: OidcSignInAudit,
    ) -> Result<(OidcSignInOutcome, Session)>;
}

/// Builds the audit event of an OIDC sign-in from what it changed.
pub type OidcSignInAudit = Box<dyn FnOnce(&OidcSignInOutcome) -> AuditDraft + Send>;

/// Builds the audit event of a recording's end from its final totals.
pub type RecordingAudit = Box<dyn FnOnce(&Recording) -> AuditDraft + Send>;

/// Builds the audit event for one item the sweeper ends.
pub type SweepAudit<T> = Box<dyn Fn(&T) -> AuditDraft + Send + Sync>;

/// Tokens made from other tokens (Vault's `auth/token/*`).
#[async_trait]
pub trait ChildTokenStore: Send + Sync + 'static {
    /// A new session made from the parent session (or an orphan).
    async fn create_child_session(&self, s: NewSession, t: ChildToken, audit: AuditDraft) -> Result<Session>;
    async fn session_by_hash(&self, token_hash: &str) -> Result<Option<SessionInfo>>;
    async fn session_by_id(&self, id: &str) -> Result<Option<SessionInfo>>;
    /// Moves a live session's expiry.
    async fn renew_session(&self, id: &str, expires_at: Timestamp, audit: AuditDraft) -> Result<()>;
}

/// The seal and the KV v2 secrets engines. Values arrive and leave
/// encrypted: this layer never sees a secret in the clear.
#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    async fn seal_config(&self) -> Result<Option<SealConfig>>;
    /// Stores the first seal configuration; `Conflict` if already initialized.
    async fn init_seal(&self, c: SealConfig, audit: AuditDraft) -> Result<()>;
    /// Replaces the sealed keyring if its active version is still
    /// `expect_active` (`Conflict` otherwise: someone else rotated).
    async fn set_keyring(&self, keyring: String, active: i64, expect_active: i64, audit: AuditDraft) -> Result<()>;

    async fn create_mount(&self, m: KvMount, audit: AuditDraft) -> Result<KvMount>;
    async fn list_mounts(&self) -> Result<Vec<KvMount>>;
    /// Changes a mount's defaults (`max_versions`, `cas_required`, `delete_version_after`).
    async fn tune_mount(&self, path: &str, u: KvMetaUpdate, audit: AuditDraft) -> Result<KvMount>;
    /// Removes a mount and every secret in it.
    async fn delete_mount(&self, path: &str, audit: AuditDraft) -> Result<()>;

    /// Writes the next version (pruning versions beyond `max_versions`).
    async fn kv_put(&self, w: KvWrite, audit: AuditDraft) -> Result<(KvMeta, KvVersion)>;
    /// The metadata and every kept version (without ciphertext when `with_data` is false).
    async fn kv_get(&self, mount: &str, path: &str) -> Result<Option<(KvMeta, Vec<KvVersion>)>>;
    /// One version (the current one when `version` is `None`) with its ciphertext.
    async fn kv_version(&self, mount: &str, path: &str, version: Option<i64>) -> Result<Option<(KvMeta, KvVersion)>>;
    /// Paths in `mount` starting with `prefix`, sorted.
    async fn kv_paths(&self, mount: &str, prefix: &str) -> Result<Vec<String>>;
    /// Soft-deletes (`deleted`) or undeletes versions; destroyed ones stay destroyed.
    async fn kv_set_deleted(
        &self,
        mount: &str,
        path: &str,
        versions: Vec<i64>,
        deleted: bool,
        audit: AuditDraft,
    ) -> Result<()>;
    /// Destroys versions: their ciphertext and wrapped key are erased.
    async fn kv_destroy(&self, mount: &str, path: &str, versions: Vec<i64>, audit: AuditDraft) -> Result<()>;
    /// Creates or changes a secret's metadata.
    async fn kv_update_meta(&self, mount: &str, path: &str, u: KvMetaUpdate, audit: AuditDraft) -> Result<KvMeta>;
    /// Removes a secret, its metadata and every version.
    async fn kv_delete_all(&self, mount: &str, path: &str, audit: AuditDraft) -> Result<()>;
    /// Up to `limit` data keys wrapped by a master key version below `active`.
    async fn keys_to_rewrap(&self, active: i64, limit: usize) -> Result<Vec<WrappedKey>>;
    /// Stores re-wrapped data keys (each only if it was not changed meanwhile).
    async fn store_rewrapped(&self, keys: Vec<(WrappedKey, StoredEnvelope)>) -> Result<u64>;
}

#[async_trait]
pub trait Store:
    JitStore
    + SshStore
    + IssuerKeyStore
    + DbCredStore
    + RecordingStore
    + FederationStore
    + OidcStore
    + SecretStore
    + ChildTokenStore
    + Send
    + Sync
    + 'static
{
    // --- users ---
    async fn create_user(&self, user: NewUser, groups: Vec<String>, audit: AuditDraft) -> Result<User>;
    async fn get_user(&self, name: &str) -> Result<Option<User>>;
    async fn list_users(&self) -> Result<Vec<User>>;
    /// Disabling also revokes every session of the user, in the same transaction.
    async fn set_user_disabled(&self, name: &str, disabled: bool, audit: AuditDraft) -> Result<User>;
    async fn delete_user(&self, name: &str, audit: AuditDraft) -> Result<()>;
    async fn set_password(&self, name: &str, password_hash: String, audit: AuditDraft) -> Result<()>;
    async fn set_totp_pending(&self, user_id: &str, secret: String, audit: AuditDraft) -> Result<()>;
    /// Activates the pending secret, consuming `step` (see [`Store::login`]).
    async fn confirm_totp(&self, user_id: &str, step: i64, audit: AuditDraft) -> Result<()>;
    async fn reset_totp(&self, name: &str, audit: AuditDraft) -> Result<()>;

    // --- groups ---
    async fn create_group(&self, name: &str, description: &str, audit: AuditDraft) -> Result<Group>;
    async fn get_group(&self, name: &str) -> Result<Option<Group>>;
    async fn list_groups(&self) -> Result<Vec<Group>>;
    async fn delete_group(&self, name: &str, audit: AuditDraft) -> Result<()>;
    async fn add_member(&self, group: &str, kind: PrincipalKind, member: &str, audit: AuditDraft) -> Result<()>;
    async fn remove_member(&self, group: &str, kind: PrincipalKind, member: &str, audit: AuditDraft) -> Result<()>;

    // --- service principals ---
    async fn create_sp(
        &self,
        sp: NewServicePrincipal,
        groups: Vec<String>,
        audit: AuditDraft,
    ) -> Result<ServicePrincipal>;
    async fn get_sp(&self, name_or_id: &str) -> Result<Option<ServicePrincipal>>;
    async fn list_sps(&self) -> Result<Vec<ServicePrincipal>>;
    /// Replaces the secret; without an overlap also revokes the principal's sessions.
    async fn rotate_sp_secret(&self, name: &str, r: SpSecretRotation, audit: AuditDraft) -> Result<ServicePrincipal>;
    async fn set_sp_disabled(&self, name: &str, disabled: bool, audit: AuditDraft) -> Result<ServicePrincipal>;
    async fn delete_sp(&self, name: &str, audit: AuditDraft) -> Result<()>;

    // --- sessions ---
    /// Creates a session. With `totp_step`, first consumes that TOTP step for
    /// the user with a compare-and-set; a step not later than the last one
    /// used fails with [`StoreError::Precondition`] and changes nothing.
    async fn login(&self, session: NewSession, totp_step: Option<i64>, audit: AuditDraft) -> Result<Session>;
    /// Resolves a bearer token (by hash) to its principal, if the session is
    /// live at `now` and the principal exists and is enabled.
    async fn authenticate(&self, token_hash: &str, now: Timestamp) -> Result<Option<Principal>>;
    async fn revoke_session(&self, session_id: &str, audit: AuditDraft) -> Result<()>;

    // --- login throttling, shared by every node ---
    /// Failed logins at or after `since` for each of `keys`.
    async fn login_failures(&self, keys: Vec<String>, since: Timestamp) -> Result<Vec<(String, Timestamp)>>;
    /// Records a failed login against each of `keys`, with its audit event.
    async fn record_login_failure(&self, keys: Vec<String>, audit: AuditDraft) -> Result<AuditEvent>;
    /// Forgets failures before `before`; returns how many.
    async fn prune_login_failures(&self, before: Timestamp) -> Result<u64>;

    // --- audit ---
    /// Appends an event that accompanies no other change (e.g. a failed login).
    async fn append_audit(&self, audit: AuditDraft) -> Result<AuditEvent>;
    async fn list_audit(&self, q: AuditQuery) -> Result<Vec<AuditEvent>>;
    async fn audit_head(&self) -> Result<(i64, String)>;
    /// Aggregates of the state at `now` (grants by role and state, pending
    /// requests, credentials issued and revoked, …), for `/metrics`.
    async fn stats(&self, now: Timestamp) -> Result<StoreStats>;
    /// The facts behind the SLIs M1–M6 over `q`'s window, for `/v1/slo`.
    async fn slo_data(&self, q: SloQuery) -> Result<SloData>;
    async fn list_checkpoints(&self) -> Result<Vec<Checkpoint>>;
    /// Signs and stores a checkpoint of the current head, unless one exists for it.
    async fn write_checkpoint(&self, key: Arc<SigningKey>) -> Result<Option<Checkpoint>>;
    /// Whether any identity exists yet (first start).
    async fn is_empty(&self) -> Result<bool>;

    // --- operation ---
    /// "sqlite" or "postgres".
    fn backend_name(&self) -> &'static str;
    /// Whether this node runs background work (sweeper, timeouts, delivery,
    /// checkpoints). Always true for SQLite; for PostgreSQL, true on the one
    /// node that holds the leadership lock.
    fn is_leader(&self) -> bool;
    /// A round trip to the database, for health checks.
    async fn ping(&self) -> Result<()>;
    /// Moves whenever this node learns of a committed change that can make
    /// what it holds in memory stale (revocations, policy applies), whichever
    /// node made it. See [`cache`].
    fn invalidation_epoch(&self) -> u64;
}
