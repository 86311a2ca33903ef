//! The keys latch signs with — the SSH user CA and the token signing keys —
//! kept under the master keyring like secrets.
//!
//! Each private key is stored encrypted (AES-256-GCM) under its own data key
//! bound to `issuer-key:ID`, the data key wrapped by the active master key
//! version and re-wrapped by `rotate-master` (see [`crate::barrier`]). The
//! database is shared, so every node of a cluster signs with the same keys.
//!
//! A node holds the public halves always, and the private halves only while
//! unsealed: sealing drops them (the key types zeroize on drop). A sealed
//! node therefore still serves what needs no private key — the CA's public
//! key, the KRL, the JWKS, token introspection and gateway authorization —
//! and answers signing (SSH certificates, tokens) with 503 "sealed".
//!
//! Older releases kept the CA in `ca_keys` sealed under a node key file
//! (`DATA/keys/kek-aes256.key`) and the token keys in plain key files; the
//! first unseal moves them here unchanged (same CA, same kids) and removes
//! the files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use latch_audit::AuditDraft;
use latch_crypto::keyring::Keyring;
use latch_crypto::{SigningKey, VerifyingKey, seal};
use latch_ssh::{PublicKey, UserCa};
use latch_store::{ISSUER_SSH_USER_CA, ISSUER_TOKEN, Store, StoredIssuerKey};
use serde_json::json;
use zeroize::Zeroizing;

use crate::barrier::{Barrier, from_envelope, to_envelope};
use crate::error::ApiError;
use crate::keys;

/// The id of the SSH user CA (also its name in the legacy `ca_keys`).
pub const SSH_CA_ID: &str = "ssh-user";
/// Bound the legacy KEK-sealed CA seed to its one use.
const LEGACY_CA_CONTEXT: &str = "latch ca_keys ssh-user";
const LEGACY_TOKEN_ACTIVE: &str = "token-ed25519.key";
const LEGACY_TOKEN_RETIRED: &str = "token-retired-";

/// The encryption context of an issuer key's private half.
pub fn context(id: &str) -> String {
    format!("issuer-key:{id}")
}

fn token_id(kid: &str) -> String {
    format!("token:{kid}")
}

fn sealed_signing(what: &str) -> ApiError {
    ApiError::Unavailable(format!(
        "latch is sealed: {what} needs the private key, which is only in memory while unsealed; \
         unseal with `latch operator unseal` (public keys, the KRL and token introspection keep working)"
    ))
}

/// A token key that verifiers accept: the active one, or a retired one still
/// needed for tokens it signed.
#[derive(Clone)]
pub struct TokenKey {
    pub id: String,
    pub key: VerifyingKey,
    pub active: bool,
}

/// The issuer keys as this node holds them now.
#[derive(Default)]
pub struct Issuers {
    ssh_ca_public: Option<(String, PublicKey)>,
    ssh_ca: Option<Arc<UserCa>>,
    token_signer: Option<(String, Arc<SigningKey>)>,
    /// Active first.
    tokens: Vec<TokenKey>,
    /// What these were built from, to notice a change on another node.
    version: String,
}

impl Issuers {
    fn no_ca() -> ApiError {
        ApiError::Unavailable(
            "there is no SSH CA yet: latch creates it when first unsealed (`latch operator init`)".into(),
        )
    }

    /// The CA's public key (served sealed or not).
    pub fn ssh_ca_public(&self) -> Result<&PublicKey, ApiError> {
        self.ssh_ca_public.as_ref().map(|(_, k)| k).ok_or_else(Self::no_ca)
    }

    /// The `TrustedUserCAKeys` line.
    pub fn ssh_ca_line(&self) -> Result<&str, ApiError> {
        self.ssh_ca_public.as_ref().map(|(l, _)| l.as_str()).ok_or_else(Self::no_ca)
    }

    /// The CA, to sign with; 503 while sealed.
    pub fn ssh_ca(&self) -> Result<Arc<UserCa>, ApiError> {
        self.ssh_ca.clone().ok_or_else(|| sealed_signing("signing an SSH certificate"))
    }

    /// (kid, key) to sign tokens with; 503 while sealed.
    pub fn token_signer(&self) -> Result<(String, Arc<SigningKey>), ApiError> {
        self.token_signer.clone().ok_or_else(|| sealed_signing("issuing a token"))
    }

    pub fn active_kid(&self) -> Option<String> {
        self.tokens.iter().find(|k| k.active).map(|k| k.key.key_id())
    }

    /// The token key with id `kid`, if it is active or still published.
    pub fn find(&self, kid: &str) -> Option<VerifyingKey> {
        self.tokens.iter().find(|k| k.key.key_id() == kid).map(|k| k.key.clone())
    }

    pub fn published(&self) -> Vec<VerifyingKey> {
        self.tokens.iter().map(|k| k.key.clone()).collect()
    }

    pub fn retired(&self) -> impl Iterator<Item = &TokenKey> {
        self.tokens.iter().filter(|k| !k.active)
    }

    /// Whether both hold the private keys (a sealed node holds none).
    pub fn can_sign(&self) -> bool {
        self.ssh_ca.is_some() && self.token_signer.is_some()
    }
}

/// This node's issuer keys, replaced whole on unseal, seal and changes made
/// by any node.
#[derive(Default)]
pub struct IssuerKeyring {
    current: RwLock<Arc<Issuers>>,
    /// When a token with an unknown kid last made this node look again.
    last_miss: std::sync::Mutex<Option<Instant>>,
}

/// The shortest time between two look-ups for unknown kids: tokens naming
/// made-up kids cost the database one read per interval, not one each.
const MISS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl IssuerKeyring {
    pub fn get(&self) -> Arc<Issuers> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, i: Issuers) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(i);
    }

    /// Drops the private keys (at seal); the public halves stay.
    pub fn drop_private(&self) {
        let cur = self.get();
        self.set(Issuers {
            ssh_ca_public: cur.ssh_ca_public.clone(),
            ssh_ca: None,
            token_signer: None,
            tokens: cur.tokens.clone(),
            version: String::new(),
        });
    }

    /// Re-reads the keys from the store, opening the private halves if the
    /// node is unsealed — and, when it is, first moving keys of an older
    /// release into the store and creating any that are missing.
    pub async fn reload(&self, store: &Arc<dyn Store>, barrier: &Barrier, data_dir: &Path) -> Result<(), ApiError> {
        let ring = barrier.keyring(store.as_ref(), Instant::now()).await.ok();
        if let Some(ring) = &ring {
            ensure(store, ring, data_dir).await?;
        }
        self.set(build(store, ring.as_deref(), data_dir).await?);
        Ok(())
    }

    /// A token names a kid this node does not know: another node may have
    /// rotated the token key a moment ago, before [`Self::follow`]'s next
    /// round here. Looks again, at most once per [`MISS_INTERVAL`]; true when
    /// it did.
    pub async fn follow_unknown_kid(
        &self,
        store: &Arc<dyn Store>,
        barrier: &Barrier,
        data_dir: &Path,
    ) -> Result<bool, ApiError> {
        {
            let mut last = self.last_miss.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < MISS_INTERVAL) {
                return Ok(false);
            }
            *last = Some(Instant::now());
        }
        self.follow(store, barrier, data_dir).await?;
        Ok(true)
    }

    /// Reloads if the stored keys or this node's seal changed since the last
    /// load (another node rotated or pruned a token key, or unsealed first).
    pub async fn follow(&self, store: &Arc<dyn Store>, barrier: &Barrier, data_dir: &Path) -> Result<(), ApiError> {
        let rows = store.issuer_keys().await?;
        if version_of(&rows, !barrier.is_sealed()) != self.get().version {
            self.reload(store, barrier, data_dir).await?;
        }
        Ok(())
    }

    /// Retires the active token key and makes a new one (unsealed only);
    /// returns (retired kid, new kid).
    pub async fn rotate_token_key(
        &self,
        store: &Arc<dyn Store>,
        barrier: &Barrier,
        data_dir: &Path,
        audit: AuditDraft,
    ) -> Result<(String, String), ApiError> {
        let ring = barrier.keyring(store.as_ref(), Instant::now()).await.map_err(|_| sealed_signing("rotating"))?;
        let old = self.get().active_kid().ok_or_else(|| sealed_signing("rotating"))?;
        let key = SigningKey::generate()?;
        let kid = key.verifying_key().key_id();
        let next = sealed_token_key(&ring, &key, true)?;
        let ev = audit.details(json!({ "retired_kid": old, "active_kid": kid }));
        store.rotate_issuer_key(&token_id(&old), next, ev).await?;
        self.reload(store, barrier, data_dir).await?;
        Ok((old, kid))
    }
}

fn version_of(rows: &[StoredIssuerKey], unsealed: bool) -> String {
    let mut v = format!("unsealed={unsealed}");
    for r in rows {
        v.push_str(&format!(";{}:{}:{}", r.id, r.active, r.envelope.master_version));
    }
    v
}

fn sealed_token_key(ring: &Keyring, key: &SigningKey, active: bool) -> Result<StoredIssuerKey, ApiError> {
    let vk = key.verifying_key();
    let id = token_id(&vk.key_id());
    let env = ring.encrypt(&context(&id), &*key.seed())?;
    Ok(StoredIssuerKey {
        id,
        kind: ISSUER_TOKEN.into(),
        public_key: latch_crypto::hex(&vk.to_bytes()),
        active,
        envelope: from_envelope(&env),
        created_at: latch_core::Timestamp(0),
        retired_at: None,
    })
}

fn sealed_ca(ring: &Keyring, seed: &[u8; 32]) -> Result<(StoredIssuerKey, String), ApiError> {
    let line = UserCa::from_seed(seed).public_line();
    let env = ring.encrypt(&context(SSH_CA_ID), seed)?;
    let key = StoredIssuerKey {
        id: SSH_CA_ID.into(),
        kind: ISSUER_SSH_USER_CA.into(),
        public_key: line.clone(),
        active: true,
        envelope: from_envelope(&env),
        created_at: latch_core::Timestamp(0),
        retired_at: None,
    };
    Ok((key, line))
}

/// Token key files of an older release: (path, key, whether it was the active one).
fn legacy_token_files(data_dir: &Path) -> Result<Vec<(PathBuf, SigningKey, bool)>, ApiError> {
    let dir = data_dir.join("keys");
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(out) };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let active = name == LEGACY_TOKEN_ACTIVE;
        if active || (name.starts_with(LEGACY_TOKEN_RETIRED) && name.ends_with(".key")) {
            out.push((e.path(), keys::load(&e.path()).map_err(ApiError::internal)?, active));
        }
    }
    // The active one first, so it becomes the active key.
    out.sort_by_key(|(_, _, active)| !active);
    Ok(out)
}

fn remove_legacy(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a migrated key file");
    }
}

/// Moves legacy keys into the store and creates missing ones (unsealed).
async fn ensure(store: &Arc<dyn Store>, ring: &Keyring, data_dir: &Path) -> Result<(), ApiError> {
    let rows = store.issuer_keys().await?;
    let has_active = |kind: &str| rows.iter().any(|r| r.kind == kind && r.active);

    if !has_active(ISSUER_SSH_USER_CA) {
        let legacy = store.ca_key(SSH_CA_ID).await?;
        let seed: Zeroizing<[u8; 32]> = match &legacy {
            Some(stored) => open_legacy_ca(data_dir, &stored.sealed, &stored.public_key)?,
            None => latch_crypto::keyring::new_key()?,
        };
        let (key, line) = sealed_ca(ring, &seed)?;
        let (action, legacy_name) = match legacy {
            Some(_) => ("issuer_key.migrate", Some(SSH_CA_ID.to_string())),
            None => ("ssh.ca.create", None),
        };
        let ev = AuditDraft::new("system", action, format!("ca:{SSH_CA_ID}"))
            .details(json!({ "public_key": line, "master_version": key.envelope.master_version }));
        store.create_issuer_key(key, legacy_name, ev).await?;
    }
    // The node key file sealed only the legacy CA: once that row is gone it
    // protects nothing, and leaving it would let a database backup taken
    // before the upgrade still yield the CA.
    let kek = keys::kek_path(data_dir);
    if kek.exists() && store.ca_key(SSH_CA_ID).await?.is_none() {
        remove_legacy(&kek);
    }

    let mut active_exists = has_active(ISSUER_TOKEN);
    for (path, key, was_active) in legacy_token_files(data_dir)? {
        let id = token_id(&key.verifying_key().key_id());
        if !rows.iter().any(|r| r.id == id) {
            // Another node's active key may already be in the store: then
            // this node's becomes retired, still published for its tokens.
            let active = was_active && !active_exists;
            let stored = sealed_token_key(ring, &key, active)?;
            let ev = AuditDraft::new("system", "issuer_key.migrate", format!("key:{id}"))
                .details(json!({ "active": active, "master_version": stored.envelope.master_version }));
            if store.create_issuer_key(stored, None, ev).await? && active {
                active_exists = true;
            }
        }
        remove_legacy(&path);
    }
    if !active_exists && !store.issuer_keys().await?.iter().any(|r| r.kind == ISSUER_TOKEN && r.active) {
        let key = SigningKey::generate()?;
        let stored = sealed_token_key(ring, &key, true)?;
        let ev = AuditDraft::new("system", "key.create", format!("key:{}", stored.id))
            .details(json!({ "kind": ISSUER_TOKEN, "master_version": stored.envelope.master_version }));
        store.create_issuer_key(stored, None, ev).await?;
    }
    Ok(())
}

fn open_legacy_ca(data_dir: &Path, sealed_hex: &str, public: &str) -> Result<Zeroizing<[u8; 32]>, ApiError> {
    let path = keys::kek_path(data_dir);
    let unusable = || {
        ApiError::Internal(format!(
            "the SSH CA in the database was sealed by an older latch under {}, which is missing or does not \
             open it: copy DATA/keys/kek-aes256.key from the node that created the CA, then unseal again",
            path.display()
        ))
    };
    let text = std::fs::read_to_string(&path).map_err(|_| unusable())?;
    let kek = Zeroizing::new(latch_crypto::hex_decode(text.trim()).map_err(|_| unusable())?);
    let kek: &[u8; 32] = kek.as_slice().try_into().map_err(|_| unusable())?;
    let sealed = latch_crypto::hex_decode(sealed_hex).map_err(|_| unusable())?;
    let seed = Zeroizing::new(seal::open(kek, LEGACY_CA_CONTEXT, &sealed).map_err(|_| unusable())?);
    let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| unusable())?;
    let seed = Zeroizing::new(seed);
    if UserCa::from_seed(&seed).public_line() != public {
        return Err(ApiError::Internal("the stored SSH CA public key does not match its private key".into()));
    }
    Ok(seed)
}

fn open_seed(ring: &Keyring, row: &StoredIssuerKey) -> Result<Zeroizing<[u8; 32]>, ApiError> {
    let plain = ring
        .decrypt(&context(&row.id), &to_envelope(&row.envelope)?)
        .map_err(|_| ApiError::Internal(format!("issuer key {} does not open with the master keyring", row.id)))?;
    let seed: [u8; 32] =
        plain.as_slice().try_into().map_err(|_| ApiError::Internal(format!("issuer key {} is malformed", row.id)))?;
    Ok(Zeroizing::new(seed))
}

/// The keys from the store (private halves only with `ring`); before the
/// first unseal after an upgrade, the legacy public keys.
async fn build(store: &Arc<dyn Store>, ring: Option<&Keyring>, data_dir: &Path) -> Result<Issuers, ApiError> {
    let rows = store.issuer_keys().await?;
    let mut out = Issuers { version: version_of(&rows, ring.is_some()), ..Issuers::default() };
    for row in &rows {
        match row.kind.as_str() {
            ISSUER_SSH_USER_CA if row.active => {
                let public = latch_ssh::parse_user_key(&row.public_key).map_err(ApiError::internal)?;
                if let Some(ring) = ring {
                    let ca = UserCa::from_seed(&*open_seed(ring, row)?);
                    if ca.public_line() != row.public_key {
                        return Err(ApiError::Internal("the stored SSH CA does not match its public key".into()));
                    }
                    out.ssh_ca = Some(Arc::new(ca));
                }
                out.ssh_ca_public = Some((row.public_key.clone(), public));
            }
            ISSUER_TOKEN => {
                let bytes = latch_crypto::hex_decode(&row.public_key).map_err(ApiError::internal)?;
                let key = VerifyingKey::from_bytes(&bytes).map_err(ApiError::internal)?;
                if let (Some(ring), true) = (ring, row.active) {
                    let signer = SigningKey::from_seed(&*open_seed(ring, row)?)?;
                    if signer.verifying_key() != key {
                        return Err(ApiError::Internal(format!("token key {} does not match its id", row.id)));
                    }
                    out.token_signer = Some((key.key_id(), Arc::new(signer)));
                }
                out.tokens.push(TokenKey { id: row.id.clone(), key, active: row.active });
            }
            _ => {}
        }
    }
    if out.ssh_ca_public.is_none()
        && let Some(legacy) = store.ca_key(SSH_CA_ID).await?
    {
        let public = latch_ssh::parse_user_key(&legacy.public_key).map_err(ApiError::internal)?;
        out.ssh_ca_public = Some((legacy.public_key, public));
    }
    // Not migrated yet (sealed since the upgrade): keep verifying tokens the
    // old key files signed.
    if ring.is_none() {
        for (_, key, active) in legacy_token_files(data_dir)? {
            let vk = key.verifying_key();
            if out.find(&vk.key_id()).is_none() {
                let active = active && !out.tokens.iter().any(|k| k.active);
                out.tokens.push(TokenKey { id: token_id(&vk.key_id()), key: vk, active });
            }
        }
        out.tokens.sort_by_key(|k| !k.active);
    }
    Ok(out)
}

/// How many issuer keys are still wrapped by an older master key version.
pub async fn to_rewrap(store: &dyn Store, active: u32) -> Result<u64, ApiError> {
    let rows = store.issuer_keys().await?;
    Ok(rows.iter().filter(|r| r.envelope.master_version < i64::from(active)).count() as u64)
}

/// Re-wraps issuer keys still under an older master key version; returns how many.
pub async fn rewrap(store: &dyn Store, ring: &Keyring) -> Result<u64, ApiError> {
    let mut n = 0;
    for row in store.issuer_keys().await? {
        if row.envelope.master_version < i64::from(ring.active()) {
            let new = ring.rewrap(&context(&row.id), &to_envelope(&row.envelope)?)?;
            if store.store_rewrapped_issuer_key(&row.id, row.envelope.clone(), from_envelope(&new)).await? {
                n += 1;
            }
        }
    }
    Ok(n)
}
