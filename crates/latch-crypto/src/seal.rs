//! Sealing secrets at rest: AES-256-GCM under a key-encryption key, bound to
//! a context string (the AAD) so a sealed value cannot be moved to another
//! use. Layout: 12-byte random nonce ‖ ciphertext ‖ 16-byte tag.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::{CryptoError, random_bytes};

fn key(kek: &[u8; 32]) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, kek).map(LessSafeKey::new).map_err(|_| CryptoError::BadKey("AES-256 key"))
}

/// Encrypts `plaintext` under `kek` for `context`.
pub fn seal(kek: &[u8; 32], context: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let nonce_bytes: [u8; NONCE_LEN] =
        random_bytes(NONCE_LEN)?.try_into().map_err(|_| CryptoError::Rng("short read".into()))?;
    let mut buf = plaintext.to_vec();
    key(kek)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(context.as_bytes()), &mut buf)
        .map_err(|_| CryptoError::BadKey("AES-256-GCM"))?;
    let mut out = nonce_bytes.to_vec();
    out.extend_from_slice(&buf);
    Ok(out)
}

/// Decrypts what [`seal`] made with the same key and context.
pub fn open(kek: &[u8; 32], context: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(CryptoError::Unseal);
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Unseal)?;
    let mut buf = rest.to_vec();
    let plain =
        key(kek)?.open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf).map_err(|_| CryptoError::Unseal)?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_with_the_same_key_and_context() {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let s = seal(&k1, "ssh-user-ca", b"seed").unwrap();
        assert_eq!(open(&k1, "ssh-user-ca", &s).unwrap(), b"seed");
        assert!(matches!(open(&k2, "ssh-user-ca", &s), Err(CryptoError::Unseal)));
        assert!(matches!(open(&k1, "other", &s), Err(CryptoError::Unseal)));
        let mut t = s.clone();
        t[20] ^= 1;
        assert!(matches!(open(&k1, "ssh-user-ca", &t), Err(CryptoError::Unseal)));
        assert!(matches!(open(&k1, "ssh-user-ca", &s[..10]), Err(CryptoError::Unseal)));
        assert_ne!(seal(&k1, "c", b"x").unwrap(), seal(&k1, "c", b"x").unwrap(), "fresh nonce each time");
    }
}
