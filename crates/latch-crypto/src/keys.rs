//! Ed25519 signing keys (audit checkpoints now; tokens and SSH later).

use ed25519_dalek::Signer;
use zeroize::Zeroizing;

use crate::{CryptoError, random_bytes, sha256};

/// A private Ed25519 key. Its `Debug` prints only the key id.
pub struct SigningKey(ed25519_dalek::SigningKey);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl SigningKey {
    pub fn generate() -> Result<Self, CryptoError> {
        let seed = Zeroizing::new(random_bytes(32)?);
        Self::from_seed(&seed)
    }
    pub fn from_seed(seed: &[u8]) -> Result<Self, CryptoError> {
        let seed: [u8; 32] = seed.try_into().map_err(|_| CryptoError::BadKey("an Ed25519 seed is 32 bytes"))?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(kid={})", self.verifying_key().key_id())
    }
}

impl VerifyingKey {
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        let b: [u8; 32] = b.try_into().map_err(|_| CryptoError::BadKey("an Ed25519 public key is 32 bytes"))?;
        ed25519_dalek::VerifyingKey::from_bytes(&b)
            .map(VerifyingKey)
            .map_err(|_| CryptoError::BadKey("not a valid Ed25519 point"))
    }
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
    /// A short, stable key id: base64url of the first 12 bytes of SHA-256(public key).
    pub fn key_id(&self) -> String {
        data_encoding::BASE64URL_NOPAD.encode(&sha256(&self.to_bytes())[..12])
    }
    /// Strict verification (rejects small-order keys and malleable signatures).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = <[u8; 64]>::try_from(sig) else { return false };
        let sig = ed25519_dalek::Signature::from_bytes(&sig);
        self.0.verify_strict(msg, &sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_roundtrip() {
        let k = SigningKey::generate().unwrap();
        let v = k.verifying_key();
        let sig = k.sign(b"checkpoint 42");
        assert!(v.verify(b"checkpoint 42", &sig));
        assert!(!v.verify(b"checkpoint 43", &sig));
        assert!(!v.verify(b"checkpoint 42", &sig[..63]));
        let k2 = SigningKey::from_seed(&*k.seed()).unwrap();
        assert_eq!(k2.verifying_key(), v);
        assert_eq!(VerifyingKey::from_bytes(&v.to_bytes()).unwrap(), v);
        assert!(!format!("{k:?}").contains(&hex_seed(&k)));
    }

    fn hex_seed(k: &SigningKey) -> String {
        crate::hex(&*k.seed())
    }
}
