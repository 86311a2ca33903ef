//! Loading the SSH user CA: its private key is stored in the database sealed
//! under the node's key-encryption key (`DATA/keys/kek-aes256.key`), so a
//! database copy alone does not yield it, and every node holding the same
//! key file uses the same CA.

use std::path::Path;
use std::sync::Arc;

use latch_audit::AuditDraft;
use latch_core::Timestamp;
use latch_crypto::seal;
use latch_ssh::UserCa;
use latch_store::{Store, StoredCaKey};
use serde_json::json;
use zeroize::Zeroizing;

use crate::keys;
use crate::serve::ServeError;

const NAME: &str = "ssh-user";
/// Binds the sealed bytes to this one use.
const CONTEXT: &str = "latch ca_keys ssh-user";

/// The CA, created and sealed on the first start of an empty store.
pub async fn load(store: &Arc<dyn Store>, data_dir: &Path, now: Timestamp) -> Result<UserCa, ServeError> {
    let kek = keys::load_or_create_secret(&keys::kek_path(data_dir))?;
    let stored = match store.ca_key(NAME).await? {
        Some(k) => k,
        None => {
            let seed: Zeroizing<Vec<u8>> = Zeroizing::new(latch_crypto::random_bytes(32)?);
            let seed32: &[u8; 32] = seed.as_slice().try_into().map_err(|_| ServeError::SshCa("short seed".into()))?;
            let ca = UserCa::from_seed(seed32);
            let sealed = latch_crypto::hex(&seal::seal(&kek, CONTEXT, seed32)?);
            let ev = AuditDraft::new("system", "ssh.ca.create", format!("ca:{NAME}"))
                .details(json!({ "public_key": ca.public_line() }));
            let key = StoredCaKey { name: NAME.into(), public_key: ca.public_line(), sealed, created_at: now };
            store.create_ca_key(key, ev).await?
        }
    };
    let sealed = data_encoding::HEXLOWER_PERMISSIVE
        .decode(stored.sealed.as_bytes())
        .map_err(|_| ServeError::SshCa("the stored SSH CA key is not hex".into()))?;
    let seed = Zeroizing::new(seal::open(&kek, CONTEXT, &sealed).map_err(|_| {
        ServeError::SshCa(format!(
            "the SSH CA key in the database does not open with {}: every node sharing a database needs the \
             same key files (copy DATA/keys from the node that created them)",
            keys::kek_path(data_dir).display()
        ))
    })?);
    let seed32: &[u8; 32] = seed
        .as_slice()
        .try_into()
        .map_err(|_| ServeError::SshCa("the stored SSH CA key has the wrong length".into()))?;
    let ca = UserCa::from_seed(seed32);
    if ca.public_line() != stored.public_key {
        return Err(ServeError::SshCa("the stored SSH CA public key does not match its private key".into()));
    }
    Ok(ca)
}
