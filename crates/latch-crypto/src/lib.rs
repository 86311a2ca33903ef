//! latch-crypto: every cryptographic primitive latch uses, behind small,
//! misuse-resistant functions.
//!
//! Threat model, briefly: an attacker may read the database (so session and
//! service-principal tokens are stored only as SHA-256 hashes, passwords only
//! as Argon2id hashes), may time our comparisons (so secret comparisons are
//! constant-time), and may read logs (so secret types redact themselves in
//! `Debug` and zeroize on drop). Randomness comes only from the OS CSPRNG.
//! Keys come in as bytes: this crate does no file or network IO.
#![forbid(unsafe_code)]

pub mod jose;
pub mod jwt;
pub mod keyring;
pub mod keys;
pub mod password;
pub mod random;
pub mod seal;
pub mod shamir;
pub mod totp;

use sha2::{Digest, Sha256};
use thiserror::Error;

pub use keys::{SigningKey, VerifyingKey};
pub use random::{Secret, new_id, new_token, random_bytes};

#[derive(Debug, Error)]
pub enum CryptoError {
    #[error("the operating system's random number generator failed: {0}")]
    Rng(String),
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    #[error("stored password hash is malformed")]
    MalformedHash,
    #[error("key material is malformed: {0}")]
    BadKey(&'static str),
    /// Wrong key, wrong context, or altered ciphertext: nothing is revealed.
    #[error("sealed data does not open with this key: it was altered, or sealed under another key")]
    Unseal,
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// How opaque bearer tokens are stored: lowercase hex SHA-256. Tokens carry
/// 256 bits of entropy, so a fast hash is enough; it lets the store index them.
pub fn token_hash(token: &str) -> String {
    hex(&sha256(token.as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

pub fn hex_decode(s: &str) -> Result<Vec<u8>, CryptoError> {
    data_encoding::HEXLOWER_PERMISSIVE.decode(s.as_bytes()).map_err(|_| CryptoError::BadKey("not hex"))
}

/// Constant-time equality for secrets and their hashes.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answer() {
        assert_eq!(hex(&sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn ct_eq_compares() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }
}
