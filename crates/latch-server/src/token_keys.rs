//! The keys that sign latch tokens, and their rotation.
//!
//! One active Ed25519 key signs; rotating makes a new active key and keeps
//! the old one published in the JWKS (and accepted by introspection) until
//! every token it signed has expired, so verifiers never see a valid token
//! whose key vanished. Key files live in `DATA/keys/` with mode 0600.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use latch_crypto::{SigningKey, VerifyingKey};

use crate::keys::{self, KeyError};

pub struct TokenKeyring {
    dir: PathBuf,
    pub active: Arc<SigningKey>,
    /// Older keys still published, with the path of their file.
    pub retired: Vec<(VerifyingKey, PathBuf)>,
}

impl TokenKeyring {
    fn active_path(dir: &Path) -> PathBuf {
        dir.join("token-ed25519.key")
    }

    /// Loads the active key (creating it on first start) and retired keys.
    pub fn load(data_dir: &Path) -> Result<Self, KeyError> {
        let dir = data_dir.join("keys");
        let active = Arc::new(keys::load_or_create(&Self::active_path(&dir))?);
        let mut retired = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("token-retired-") && name.ends_with(".key") {
                    retired.push((keys::load(&e.path())?.verifying_key(), e.path()));
                }
            }
        }
        Ok(TokenKeyring { dir, active, retired })
    }

    pub fn kid(&self) -> String {
        self.active.verifying_key().key_id()
    }

    /// The key with id `kid`, if it is active or still published.
    pub fn find(&self, kid: &str) -> Option<VerifyingKey> {
        let active = self.active.verifying_key();
        if active.key_id() == kid {
            return Some(active);
        }
        self.retired.iter().find(|(k, _)| k.key_id() == kid).map(|(k, _)| k.clone())
    }

    pub fn published(&self) -> Vec<VerifyingKey> {
        std::iter::once(self.active.verifying_key()).chain(self.retired.iter().map(|(k, _)| k.clone())).collect()
    }

    /// Retires the active key and makes a new one; returns the new keyring.
    pub fn rotate(&self) -> Result<TokenKeyring, KeyError> {
        let old_kid = self.kid();
        let active_path = Self::active_path(&self.dir);
        let retired_path = self.dir.join(format!("token-retired-{old_kid}.key"));
        std::fs::rename(&active_path, &retired_path)
            .map_err(|source| KeyError::Write { path: retired_path.clone(), source })?;
        Self::load(self.dir.parent().unwrap_or(&self.dir))
    }

    /// Drops retired keys for which `still_needed(kid)` is false.
    pub fn prune(&self, still_needed: impl Fn(&str) -> bool) -> Option<TokenKeyring> {
        let stale: Vec<&PathBuf> =
            self.retired.iter().filter(|(k, _)| !still_needed(&k.key_id())).map(|(_, p)| p).collect();
        if stale.is_empty() {
            return None;
        }
        for p in &stale {
            if let Err(e) = std::fs::remove_file(p) {
                tracing::warn!(path = %p.display(), error = %e, "cannot remove retired token key");
            }
        }
        Some(TokenKeyring {
            dir: self.dir.clone(),
            active: self.active.clone(),
            retired: self.retired.iter().filter(|(k, _)| still_needed(&k.key_id())).cloned().collect(),
        })
    }
}
