//! Password hashing with Argon2id (RFC 9106), OWASP's recommended minimum
//! parameters: 19 MiB memory, 2 iterations, 1 lane. Hashes are PHC strings, so
//! parameters can be raised later without breaking stored hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::{CryptoError, random_bytes};

pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 1024;

fn argon2() -> Result<Argon2<'static>, CryptoError> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| CryptoError::PasswordHash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

pub fn hash_password(password: &str) -> Result<String, CryptoError> {
    let salt_bytes = random_bytes(16)?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| CryptoError::PasswordHash(e.to_string()))?;
    let hash =
        argon2()?.hash_password(password.as_bytes(), &salt).map_err(|e| CryptoError::PasswordHash(e.to_string()))?;
    Ok(hash.to_string())
}

/// Verifies in constant time (the comparison inside `argon2` is constant-time).
pub fn verify_password(password: &str, phc: &str) -> Result<bool, CryptoError> {
    let parsed = PasswordHash::new(phc).map_err(|_| CryptoError::MalformedHash)?;
    Ok(argon2()?.verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A hash of a random password, verified against when the user does not
/// exist, so that "no such user" and "wrong password" take the same time.
pub fn dummy_hash() -> Result<String, CryptoError> {
    hash_password("latch-dummy-password-for-timing")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct horse battery", &h).unwrap());
        assert!(!verify_password("wrong horse battery", &h).unwrap());
        assert!(verify_password("x", "not a phc string").is_err());
        assert_ne!(h, hash_password("correct horse battery").unwrap(), "salted");
    }
}
