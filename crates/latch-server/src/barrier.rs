//! The seal: whether this node holds the keys that open stored secrets.
//!
//! `latch operator init` makes the unseal key and the keyring, stores the
//! keyring sealed under the unseal key, and hands out the unseal key as
//! Shamir shares once. A starting node is **sealed**: it serves everything
//! but secrets (which answer 503 "sealed") until `threshold` shares are
//! submitted (`latch operator unseal`, or Vault's `sys/unseal`); then it
//! keeps the unseal key and the opened keyring in memory only. Each node of a
//! cluster is unsealed on its own, as in Vault. A wrong combination is found
//! by the keyring's AES-GCM tag failing, and the submitted shares are
//! forgotten so the next attempt starts clean.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latch_audit::AuditDraft;
use latch_core::Timestamp;
use latch_crypto::keyring::{Envelope, Keyring};
use latch_crypto::shamir;
use latch_store::{SealConfig, Store, StoreError, StoredEnvelope};
use zeroize::Zeroizing;

use crate::error::ApiError;

/// How often a node re-reads the active master key version, so that after a
/// rotation on one node the others stop wrapping with the old version.
const RELOAD_EVERY: Duration = Duration::from_secs(1);
/// Data keys re-wrapped per transaction during a master key rotation.
const REWRAP_BATCH: usize = 256;

#[derive(Default)]
struct Unsealed {
    unseal_key: Zeroizing<[u8; 32]>,
    keyring: Option<Arc<Keyring>>,
    checked: Option<Instant>,
}

#[derive(Default)]
struct State {
    unsealed: Option<Unsealed>,
    /// Shares submitted towards the threshold (never logged).
    progress: Vec<Zeroizing<Vec<u8>>>,
    /// Identifies the current unseal attempt, as Vault's `nonce`.
    nonce: String,
}

/// What `sys/seal-status` reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SealStatus {
    pub initialized: bool,
    pub sealed: bool,
    pub threshold: i64,
    pub shares: i64,
    pub progress: usize,
    pub nonce: String,
}

#[derive(Default)]
pub struct Barrier {
    state: Mutex<State>,
}

fn sealed_error() -> ApiError {
    ApiError::Unavailable(
        "latch is sealed: secrets are unavailable until it is unsealed with `latch operator unseal` \
         (or initialized with `latch operator init`)"
            .into(),
    )
}

fn share_error(e: shamir::ShamirError) -> ApiError {
    ApiError::BadRequest(format!("unseal share refused: {e}"))
}

/// Decodes a share as hex or base64 (what `init` prints, in either form).
pub fn decode_share(text: &str) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let t = text.trim();
    let bytes = latch_crypto::hex_decode(t)
        .ok()
        .or_else(|| data_encoding::BASE64.decode(t.as_bytes()).ok())
        .ok_or_else(|| {
            ApiError::BadRequest("an unseal share must be hex or base64, as `latch operator init` printed it".into())
        })?;
    if bytes.len() != 33 {
        return Err(ApiError::BadRequest(format!(
            "an unseal share is 33 bytes (66 hex digits); this one is {} bytes",
            bytes.len()
        )));
    }
    Ok(Zeroizing::new(bytes))
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Barrier {
    /// The keyring, for reading and writing secrets; 503 when sealed.
    /// Re-reads the stored keyring at most every second, so a rotation done
    /// on another node reaches this one.
    pub async fn keyring(&self, store: &dyn Store, now: Instant) -> Result<Arc<Keyring>, ApiError> {
        let (key, ring, fresh) = {
            let st = lock(&self.state);
            let u = st.unsealed.as_ref().ok_or_else(sealed_error)?;
            let fresh = u.checked.is_some_and(|t| now.saturating_duration_since(t) < RELOAD_EVERY);
            (u.unseal_key.clone(), u.keyring.clone(), fresh)
        };
        if let (Some(ring), true) = (&ring, fresh) {
            return Ok(ring.clone());
        }
        let cfg = store.seal_config().await?.ok_or_else(sealed_error)?;
        let ring = match ring {
            Some(r) if i64::from(r.active()) == cfg.active_version => r,
            _ => Arc::new(open_keyring(&key, &cfg)?),
        };
        let mut st = lock(&self.state);
        if let Some(u) = st.unsealed.as_mut() {
            u.keyring = Some(ring.clone());
            u.checked = Some(now);
        }
        Ok(ring)
    }

    pub fn is_sealed(&self) -> bool {
        lock(&self.state).unsealed.is_none()
    }

    pub async fn status(&self, store: &dyn Store) -> Result<SealStatus, ApiError> {
        let cfg = store.seal_config().await?;
        let st = lock(&self.state);
        Ok(SealStatus {
            initialized: cfg.is_some(),
            sealed: st.unsealed.is_none(),
            threshold: cfg.as_ref().map_or(0, |c| c.threshold),
            shares: cfg.as_ref().map_or(0, |c| c.shares),
            progress: st.progress.len(),
            nonce: st.nonce.clone(),
        })
    }

    /// Initializes the seal; returns the unseal key's shares (shown once).
    /// This node is left unsealed.
    pub async fn init(
        &self,
        store: &dyn Store,
        shares: usize,
        threshold: usize,
        now: Timestamp,
        audit: AuditDraft,
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, ApiError> {
        if store.seal_config().await?.is_some() {
            return Err(ApiError::Conflict("latch is already initialized".into()));
        }
        let unseal_key = latch_crypto::keyring::new_key()?;
        let parts = shamir::split(&*unseal_key, shares, threshold).map_err(share_error)?;
        let ring = Keyring::generate(now.0)?;
        let cfg = SealConfig {
            shares: shares as i64,
            threshold: threshold as i64,
            keyring: latch_crypto::hex(&ring.seal(&unseal_key)?),
            active_version: i64::from(ring.active()),
            created_at: now,
            updated_at: now,
        };
        store.init_seal(cfg, audit.detail("shares", shares).detail("threshold", threshold)).await.map_err(
            |e| match e {
                StoreError::Conflict(m) => ApiError::Conflict(m),
                other => ApiError::from(other),
            },
        )?;
        let mut st = lock(&self.state);
        st.progress.clear();
        st.unsealed = Some(Unsealed { unseal_key, keyring: Some(Arc::new(ring)), checked: None });
        Ok(parts)
    }

    /// Adds one share; unseals when the threshold is reached. `reset`
    /// forgets the shares submitted so far.
    pub async fn submit_share(
        &self,
        store: &dyn Store,
        share: Option<&[u8]>,
        reset: bool,
    ) -> Result<SealStatus, ApiError> {
        let cfg = store
            .seal_config()
            .await?
            .ok_or_else(|| ApiError::BadRequest("latch is not initialized: run `latch operator init` first".into()))?;
        {
            let mut st = lock(&self.state);
            if reset {
                st.progress.clear();
                st.nonce.clear();
            }
            if let (Some(share), None) = (share, &st.unsealed) {
                if let Some(first) = st.progress.first()
                    && first.len() != share.len()
                {
                    return Err(share_error(shamir::ShamirError::LengthMismatch));
                }
                // Submitting the same share twice does not count twice.
                if !st.progress.iter().any(|s| latch_crypto::ct_eq(s, share)) {
                    if st.progress.is_empty() {
                        st.nonce = latch_crypto::new_id("unseal")?;
                    }
                    st.progress.push(Zeroizing::new(share.to_vec()));
                }
                if st.progress.len() as i64 >= cfg.threshold {
                    let shares: Vec<&[u8]> = st.progress.iter().map(|s| s.as_slice()).collect();
                    let combined = shamir::combine(&shares);
                    st.progress.clear();
                    st.nonce.clear();
                    let combined = combined.map_err(share_error)?;
                    let key: [u8; 32] = combined.as_slice().try_into().map_err(|_| {
                        ApiError::BadRequest("the shares do not combine into an unseal key: progress reset".into())
                    })?;
                    let key = Zeroizing::new(key);
                    let ring = open_keyring(&key, &cfg).map_err(|_| {
                        ApiError::BadRequest(
                            "the shares do not combine into this server's unseal key (a wrong or mistyped share?): \
                             progress reset, submit the shares again"
                                .into(),
                        )
                    })?;
                    st.unsealed = Some(Unsealed { unseal_key: key, keyring: Some(Arc::new(ring)), checked: None });
                }
            }
        }
        self.status(store).await
    }

    /// Forgets the keys: secrets answer 503 until unsealed again.
    pub fn seal(&self) {
        let mut st = lock(&self.state);
        st.unsealed = None;
        st.progress.clear();
        st.nonce.clear();
    }

    /// Adds a master key version and makes it active; data keys are
    /// re-wrapped afterwards by [`Barrier::rewrap`]. Returns the new version.
    pub async fn rotate(&self, store: &dyn Store, now: Timestamp, audit: AuditDraft) -> Result<u32, ApiError> {
        let ring = self.keyring(store, Instant::now()).await?;
        let key = {
            let st = lock(&self.state);
            st.unsealed.as_ref().map(|u| u.unseal_key.clone()).ok_or_else(sealed_error)?
        };
        let next = ring.rotated(now.0)?;
        let active = next.active();
        store
            .set_keyring(
                latch_crypto::hex(&next.seal(&key)?),
                i64::from(active),
                i64::from(ring.active()),
                audit.detail("version", active),
            )
            .await?;
        let mut st = lock(&self.state);
        if let Some(u) = st.unsealed.as_mut() {
            u.keyring = Some(Arc::new(next));
            u.checked = Some(Instant::now());
        }
        Ok(active)
    }

    /// Re-wraps every data key still under an older master key version with
    /// the active one, in batches; returns how many it re-wrapped. Reads keep
    /// working throughout: old versions stay in the keyring.
    /// Returns (secret data keys, issuer keys) re-wrapped; issuer keys (SSH
    /// CA, token keys) go first.
    pub async fn rewrap(&self, store: &dyn Store) -> Result<Rewrapped, ApiError> {
        let ring = self.keyring(store, Instant::now()).await?;
        let issuer_keys = crate::issuer_keys::rewrap(store, &ring).await?;
        let db_passwords = crate::db_creds::rewrap_passwords(store, &ring).await?;
        Ok(Rewrapped { secrets: self.rewrap_secrets(store).await?, issuer_keys, db_passwords })
    }

    /// What still waits for a re-wrap under master key version `active`, by kind.
    pub async fn pending_rewrap(store: &dyn Store, active: u32) -> Result<Rewrapped, ApiError> {
        Ok(Rewrapped {
            secrets: store.keys_to_rewrap(i64::from(active), 100_000).await?.len() as u64,
            issuer_keys: crate::issuer_keys::to_rewrap(store, active).await?,
            db_passwords: crate::db_creds::passwords_to_rewrap(store, active).await?,
        })
    }

    async fn rewrap_secrets(&self, store: &dyn Store) -> Result<u64, ApiError> {
        let mut total = 0;
        loop {
            let ring = self.keyring(store, Instant::now()).await?;
            let batch = store.keys_to_rewrap(i64::from(ring.active()), REWRAP_BATCH).await?;
            if batch.is_empty() {
                return Ok(total);
            }
            let mut done = Vec::with_capacity(batch.len());
            for k in batch {
                let env = to_envelope(&k.envelope)?;
                let new = ring.rewrap(&kv_context(&k.mount, &k.path), &env)?;
                done.push((k, from_envelope(&new)));
            }
            let n = done.len() as u64;
            let stored = store.store_rewrapped(done).await?;
            total += stored;
            if stored == 0 && n > 0 {
                // Every row changed under us (another node re-wrapping): let it finish.
                return Ok(total);
            }
        }
    }
}

/// Counts by kind of what a master key rotation re-wraps: what one re-wrap
/// moved, or what still waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrapped {
    pub secrets: u64,
    pub issuer_keys: u64,
    pub db_passwords: u64,
}

fn open_keyring(key: &[u8; 32], cfg: &SealConfig) -> Result<Keyring, ApiError> {
    let sealed = latch_crypto::hex_decode(&cfg.keyring).map_err(ApiError::internal)?;
    Ok(Keyring::open(key, &sealed)?)
}

/// The encryption context of a KV secret: its mount and path, so a stored
/// value cannot be moved to another secret and still open.
pub fn kv_context(mount: &str, path: &str) -> String {
    format!("kv:{mount}:{path}")
}

pub fn to_envelope(s: &StoredEnvelope) -> Result<Envelope, ApiError> {
    Ok(Envelope {
        master_version: u32::try_from(s.master_version).map_err(ApiError::internal)?,
        wrapped_key: latch_crypto::hex_decode(&s.wrapped_key).map_err(ApiError::internal)?,
        ciphertext: latch_crypto::hex_decode(&s.ciphertext).map_err(ApiError::internal)?,
    })
}

pub fn from_envelope(e: &Envelope) -> StoredEnvelope {
    StoredEnvelope {
        master_version: i64::from(e.master_version),
        wrapped_key: latch_crypto::hex(&e.wrapped_key),
        ciphertext: latch_crypto::hex(&e.ciphertext),
    }
}
