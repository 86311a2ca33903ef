//! The master keyring behind the seal, and envelope encryption under it.
//!
//! Three layers, as in Vault's barrier:
//! - the **unseal key** (32 bytes) exists only split into Shamir shares held
//!   by people, and in the memory of an unsealed server;
//! - the **keyring** — every master key version plus a fixed HMAC key — is
//!   stored in the database sealed (AES-256-GCM) under the unseal key;
//! - every stored secret is encrypted with its own random **data key**, which
//!   is stored wrapped by the active master key version ([`Envelope`]).
//!
//! Rotating the master key adds a version and re-wraps the data keys (a few
//! bytes each); the encrypted values themselves are never rewritten, and a
//! value wrapped by an older version stays readable until it is re-wrapped.
//! Someone holding the database alone holds only ciphertext.

use std::fmt;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{CryptoError, hex, hex_decode, random_bytes, seal};

const KEYRING_CONTEXT: &str = "latch-keyring-v1";

fn key32(bytes: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey("expected 32 bytes"))?;
    Ok(Zeroizing::new(arr))
}

/// A fresh 32-byte key from the OS CSPRNG.
pub fn new_key() -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    key32(&Zeroizing::new(random_bytes(32)?))
}

struct MasterKey {
    version: u32,
    created_ms: i64,
    key: Zeroizing<[u8; 32]>,
}

/// The master key versions and the HMAC key. Never prints its keys.
pub struct Keyring {
    keys: Vec<MasterKey>,
    hmac_key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring").field("versions", &self.versions()).finish_non_exhaustive()
    }
}

/// A value encrypted under its own data key, and that key wrapped by master
/// key `master_version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub master_version: u32,
    pub wrapped_key: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl Keyring {
    /// A keyring with master key version 1.
    pub fn generate(now_ms: i64) -> Result<Keyring, CryptoError> {
        Ok(Keyring { keys: vec![MasterKey { version: 1, created_ms: now_ms, key: new_key()? }], hmac_key: new_key()? })
    }

    /// The version new data keys are wrapped with.
    pub fn active(&self) -> u32 {
        self.keys.iter().map(|k| k.version).max().unwrap_or(0)
    }

    /// (version, created at in Unix ms) of every master key, oldest first.
    pub fn versions(&self) -> Vec<(u32, i64)> {
        self.keys.iter().map(|k| (k.version, k.created_ms)).collect()
    }

    /// This keyring plus a new active master key version.
    pub fn rotated(&self, now_ms: i64) -> Result<Keyring, CryptoError> {
        let mut next = self.clone_keys();
        next.keys.push(MasterKey { version: self.active() + 1, created_ms: now_ms, key: new_key()? });
        Ok(next)
    }

    /// This keyring without the versions no longer needed: those below `min`.
    /// The active version is always kept.
    pub fn retaining_from(&self, min: u32) -> Keyring {
        let active = self.active();
        let mut next = self.clone_keys();
        next.keys.retain(|k| k.version >= min.min(active));
        next
    }

    fn clone_keys(&self) -> Keyring {
        Keyring {
            keys: self
                .keys
                .iter()
                .map(|k| MasterKey { version: k.version, created_ms: k.created_ms, key: k.key.clone() })
                .collect(),
            hmac_key: self.hmac_key.clone(),
        }
    }

    fn key(&self, version: u32) -> Result<&Zeroizing<[u8; 32]>, CryptoError> {
        self.keys
            .iter()
            .find(|k| k.version == version)
            .map(|k| &k.key)
            .ok_or(CryptoError::BadKey("unknown master key version"))
    }

    /// Seals the keyring under the unseal key, for storage.
    pub fn seal(&self, unseal_key: &[u8; 32]) -> Result<Vec<u8>, CryptoError> {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| json!({"version": k.version, "created_ms": k.created_ms, "key": hex(&*k.key)}))
            .collect();
        let doc = Zeroizing::new(json!({"keys": keys, "hmac_key": hex(&*self.hmac_key)}).to_string());
        seal::seal(unseal_key, KEYRING_CONTEXT, doc.as_bytes())
    }

    /// Opens what [`Keyring::seal`] stored; [`CryptoError::Unseal`] when
    /// `unseal_key` is not the key it was sealed under.
    pub fn open(unseal_key: &[u8; 32], sealed: &[u8]) -> Result<Keyring, CryptoError> {
        let doc = Zeroizing::new(seal::open(unseal_key, KEYRING_CONTEXT, sealed)?);
        let v: Value = serde_json::from_slice(&doc).map_err(|_| CryptoError::BadKey("keyring document"))?;
        let bad = || CryptoError::BadKey("keyring document");
        let hex_key = |v: &Value| -> Result<Zeroizing<[u8; 32]>, CryptoError> {
            let h = Zeroizing::new(hex_decode(v.as_str().ok_or_else(bad)?)?);
            key32(&h)
        };
        let mut keys = Vec::new();
        for k in v["keys"].as_array().ok_or_else(bad)? {
            keys.push(MasterKey {
                version: k["version"].as_u64().and_then(|v| u32::try_from(v).ok()).ok_or_else(bad)?,
                created_ms: k["created_ms"].as_i64().ok_or_else(bad)?,
                key: hex_key(&k["key"])?,
            });
        }
        if keys.is_empty() {
            return Err(bad());
        }
        Ok(Keyring { keys, hmac_key: hex_key(&v["hmac_key"])? })
    }

    /// Encrypts `plaintext` for `context` (which names the object, e.g. its
    /// path, so a ciphertext cannot be moved to another object) under a
    /// fresh data key wrapped by the active master key.
    pub fn encrypt(&self, context: &str, plaintext: &[u8]) -> Result<Envelope, CryptoError> {
        let dek = new_key()?;
        let ciphertext = seal::seal(&dek, context, plaintext)?;
        let master_version = self.active();
        let wrapped_key = seal::seal(self.key(master_version)?, &wrap_context(context), &*dek)?;
        Ok(Envelope { master_version, wrapped_key, ciphertext })
    }

    /// Opens an [`Envelope`] made for `context`.
    pub fn decrypt(&self, context: &str, env: &Envelope) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let dek = self.unwrap_key(context, env)?;
        Ok(Zeroizing::new(seal::open(&dek, context, &env.ciphertext)?))
    }

    fn unwrap_key(&self, context: &str, env: &Envelope) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let raw = Zeroizing::new(seal::open(self.key(env.master_version)?, &wrap_context(context), &env.wrapped_key)?);
        key32(&raw)
    }

    /// The same envelope with its data key wrapped by the active master key
    /// (the ciphertext is untouched).
    pub fn rewrap(&self, context: &str, env: &Envelope) -> Result<Envelope, CryptoError> {
        let dek = self.unwrap_key(context, env)?;
        let master_version = self.active();
        let wrapped_key = seal::seal(self.key(master_version)?, &wrap_context(context), &*dek)?;
        Ok(Envelope { master_version, wrapped_key, ciphertext: env.ciphertext.clone() })
    }

    /// HMAC-SHA256 of `data` under the keyring's HMAC key, hex: lets audit
    /// events correlate a value without containing it. Stable across master
    /// key rotations.
    pub fn hmac(&self, data: &[u8]) -> String {
        // HMAC accepts keys of any length; 32 bytes cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&*self.hmac_key) else {
            return String::new();
        };
        mac.update(data);
        format!("hmac-sha256:{}", hex(&mac.finalize().into_bytes()))
    }
}

fn wrap_context(context: &str) -> String {
    format!("data-key:{context}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_open_only_for_their_context_and_survive_rotation() {
        let ring = Keyring::generate(1).unwrap();
        let env = ring.encrypt("kv/secret/a", b"hunter2").unwrap();
        assert_eq!(env.master_version, 1);
        assert_eq!(&*ring.decrypt("kv/secret/a", &env).unwrap(), b"hunter2");
        assert!(matches!(ring.decrypt("kv/secret/b", &env), Err(CryptoError::Unseal)));
        assert!(!env.ciphertext.windows(7).any(|w| w == b"hunter2"));

        let next = ring.rotated(2).unwrap();
        assert_eq!(next.active(), 2);
        assert_eq!(&*next.decrypt("kv/secret/a", &env).unwrap(), b"hunter2", "old versions still open");
        let moved = next.rewrap("kv/secret/a", &env).unwrap();
        assert_eq!(moved.master_version, 2);
        assert_eq!(moved.ciphertext, env.ciphertext, "re-wrapping leaves the value alone");
        let trimmed = next.retaining_from(2);
        assert_eq!(trimmed.versions().len(), 1);
        assert_eq!(&*trimmed.decrypt("kv/secret/a", &moved).unwrap(), b"hunter2");
        assert!(trimmed.decrypt("kv/secret/a", &env).is_err(), "version 1 is gone");
        assert_eq!(ring.hmac(b"x"), trimmed.hmac(b"x"), "the HMAC key survives rotation");
    }

    #[test]
    fn the_keyring_opens_only_with_its_unseal_key() {
        let ring = Keyring::generate(5).unwrap().rotated(6).unwrap();
        let unseal = new_key().unwrap();
        let sealed = ring.seal(&unseal).unwrap();
        let back = Keyring::open(&unseal, &sealed).unwrap();
        assert_eq!(back.versions(), vec![(1, 5), (2, 6)]);
        let env = ring.encrypt("c", b"v").unwrap();
        assert_eq!(&*back.decrypt("c", &env).unwrap(), b"v");
        assert!(matches!(Keyring::open(&new_key().unwrap(), &sealed), Err(CryptoError::Unseal)));
        assert!(!format!("{back:?}").contains(&hex(&*back.hmac_key)));
    }
}
