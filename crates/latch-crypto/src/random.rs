//! Identifiers and secrets from the OS CSPRNG.

use std::fmt;

use zeroize::Zeroizing;

use crate::CryptoError;

pub fn random_bytes(n: usize) -> Result<Vec<u8>, CryptoError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| CryptoError::Rng(e.to_string()))?;
    Ok(buf)
}

/// A non-secret identifier: `prefix_` + 128 random bits in lowercase base32.
pub fn new_id(prefix: &str) -> Result<String, CryptoError> {
    let b = random_bytes(16)?;
    Ok(format!("{prefix}_{}", base32_lower(&b)))
}

/// A bearer secret: `prefix_` + 256 random bits. The prefix tells a reader
/// (and secret scanners) what leaked.
pub fn new_token(prefix: &str) -> Result<Secret, CryptoError> {
    let b = Zeroizing::new(random_bytes(32)?);
    Ok(Secret::new(format!("{prefix}_{}", data_encoding::BASE64URL_NOPAD.encode(&b))))
}

fn base32_lower(b: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(b).to_ascii_lowercase()
}

/// A secret string that never prints itself and is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(Zeroizing::new(s))
    }
    /// The one way to see the value; grep for it when auditing secret flows.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_tokens_are_unique_and_prefixed() {
        let a = new_id("usr").unwrap();
        let b = new_id("usr").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("usr_") && a.len() == 4 + 26);
        let t = new_token("lts").unwrap();
        assert!(t.expose().starts_with("lts_") && t.expose().len() == 4 + 43);
        assert_eq!(format!("{t:?}"), "Secret(<redacted>)");
    }
}
