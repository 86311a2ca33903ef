//! Key files in the data directory.
//!
//! The audit checkpoint key lives in a file beside, not inside, the database:
//! someone who can rewrite the database rows still cannot forge checkpoints.
//! It stays outside the seal on purpose — audit must work while sealed. The
//! SSH CA and token keys are under the master keyring instead
//! (see [`crate::issuer_keys`]).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use latch_crypto::SigningKey;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write key file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("key file {path} is malformed: expected 64 hex digits (an Ed25519 seed)")]
    Malformed { path: PathBuf },
    #[error("cannot generate a key: {0}")]
    Generate(#[from] latch_crypto::CryptoError),
}

pub fn audit_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("audit-ed25519.key")
}

/// The key-encryption key under which older releases sealed the SSH CA in
/// `ca_keys`; read once to migrate the CA under the master keyring, then
/// deleted (see [`crate::issuer_keys`]).
pub fn kek_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("kek-aes256.key")
}

/// Loads the key at `path`, or creates it (mode 0600, directory 0700) if absent.
pub fn load_or_create(path: &Path) -> Result<SigningKey, KeyError> {
    let seed = load_or_create_secret(path)?;
    SigningKey::from_seed(&*seed).map_err(|_| KeyError::Malformed { path: path.to_path_buf() })
}

/// 32 secret random bytes kept in `path` (created as for [`load_or_create`]).
pub fn load_or_create_secret(path: &Path) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let seed = match fs::read_to_string(path) {
        Ok(text) => parse(path, &text)?.seed(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match create(path) {
            Ok(k) => k.seed(),
            // Another node or process created it first: read theirs.
            Err(KeyError::Write { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                let text =
                    fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.to_path_buf(), source })?;
                parse(path, &text)?.seed()
            }
            Err(e) => return Err(e),
        },
        Err(source) => return Err(KeyError::Read { path: path.to_path_buf(), source }),
    };
    Ok(seed)
}

/// Loads an existing key (for offline verification).
pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
    let text = fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.to_path_buf(), source })?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<SigningKey, KeyError> {
    let malformed = || KeyError::Malformed { path: path.to_path_buf() };
    let seed =
        Zeroizing::new(data_encoding::HEXLOWER_PERMISSIVE.decode(text.trim().as_bytes()).map_err(|_| malformed())?);
    SigningKey::from_seed(&seed).map_err(|_| malformed())
}

fn create(path: &Path) -> Result<SigningKey, KeyError> {
    let key = SigningKey::generate()?;
    let hex = Zeroizing::new(latch_crypto::hex(&*key.seed()));
    write_secret_file(path, &hex)?;
    Ok(key)
}

/// The dev server's one unseal share: dev mode unseals itself with it.
pub fn dev_unseal_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("unseal-dev.share")
}

/// Writes `text` to a new file (mode 0600, directory 0700), durably; never
/// overwrites a file another process just wrote.
pub fn write_secret_file(path: &Path, text: &str) -> Result<(), KeyError> {
    let werr = |source| KeyError::Write { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(werr)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(werr)?;
    }
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(werr)?;
    f.write_all(text.as_bytes()).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded() {
        let dir = std::env::temp_dir().join(format!("latch-keys-{}", latch_crypto::new_id("t").unwrap()));
        let path = audit_key_path(&dir);
        let a = load_or_create(&path).unwrap();
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.verifying_key(), b.verifying_key());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::write(&path, "zz").unwrap();
        assert!(matches!(load(&path), Err(KeyError::Malformed { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
