//! Compact EdDSA (Ed25519) JSON Web Tokens, signed and verified by hand.
//!
//! Only one algorithm exists here, so there is no algorithm confusion to
//! defend against: a token whose header says anything but `EdDSA`, or names
//! an unknown `kid`, is refused before any signature work.

use serde_json::{Value, json};

use crate::{SigningKey, VerifyingKey};

const B64: data_encoding::Encoding = data_encoding::BASE64URL_NOPAD;

/// The longest token accepted for verification; bounds work on hostile input.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("token is not a compact JWT (three base64url parts)")]
    Malformed,
    #[error("token header is not valid: {0}")]
    Header(&'static str),
    #[error("token is signed by an unknown key")]
    UnknownKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token claims are not a JSON object")]
    Claims,
    #[error("token is too long")]
    TooLong,
}

/// Signs `claims` (a JSON object) with `key`, naming `kid` in the header.
pub fn sign(key: &SigningKey, kid: &str, claims: &Value) -> String {
    let header = json!({ "alg": "EdDSA", "typ": "JWT", "kid": kid });
    let signing_input =
        format!("{}.{}", B64.encode(header.to_string().as_bytes()), B64.encode(claims.to_string().as_bytes()));
    let sig = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(&sig))
}

/// The header's `kid`, without verifying anything.
pub fn peek_kid(token: &str) -> Result<String, JwtError> {
    let header = token.split('.').next().ok_or(JwtError::Malformed)?;
    let bytes = B64.decode(header.as_bytes()).map_err(|_| JwtError::Malformed)?;
    let h: Value = serde_json::from_slice(&bytes).map_err(|_| JwtError::Header("not JSON"))?;
    if h["alg"] != "EdDSA" {
        return Err(JwtError::Header("alg must be EdDSA"));
    }
    h["kid"].as_str().map(str::to_string).ok_or(JwtError::Header("kid missing"))
}

/// Verifies the signature with the key `lookup(kid)` and returns the claims.
/// Time-based checks (exp, nbf) are the caller's: it owns the clock.
pub fn verify(token: &str, lookup: impl Fn(&str) -> Option<VerifyingKey>) -> Result<Value, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    let kid = peek_kid(token)?;
    let key = lookup(&kid).ok_or(JwtError::UnknownKey)?;
    let sig = B64.decode(s.as_bytes()).map_err(|_| JwtError::Malformed)?;
    if !key.verify(format!("{h}.{c}").as_bytes(), &sig) {
        return Err(JwtError::BadSignature);
    }
    let claims = B64.decode(c.as_bytes()).map_err(|_| JwtError::Malformed)?;
    let claims: Value = serde_json::from_slice(&claims).map_err(|_| JwtError::Claims)?;
    if !claims.is_object() {
        return Err(JwtError::Claims);
    }
    Ok(claims)
}

/// The JWK (RFC 8037) of an Ed25519 public key.
pub fn jwk(key: &VerifyingKey) -> Value {
    json!({ "kty": "OKP", "crv": "Ed25519", "x": B64.encode(&key.to_bytes()), "kid": key.key_id(), "alg": "EdDSA", "use": "sig" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_refusals() {
        let k = SigningKey::generate().unwrap();
        let kid = k.verifying_key().key_id();
        let claims = json!({ "sub": "alice", "exp": 10 });
        let t = sign(&k, &kid, &claims);
        let vk = k.verifying_key();
        let lookup = |id: &str| (id == kid).then(|| vk.clone());
        assert_eq!(verify(&t, lookup).unwrap(), claims);
        // Tampered claims.
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], B64.encode(br#"{"sub":"root","exp":10}"#), parts[2]);
        assert_eq!(verify(&forged, lookup), Err(JwtError::BadSignature));
        // alg=none and friends.
        let none = format!("{}.{}.", B64.encode(br#"{"alg":"none","kid":"x"}"#), parts[1]);
        assert_eq!(verify(&none, lookup), Err(JwtError::Header("alg must be EdDSA")));
        assert_eq!(verify("a.b", lookup), Err(JwtError::Malformed));
        assert_eq!(verify(&t, |_| None), Err(JwtError::UnknownKey));
        assert_eq!(verify(&"a".repeat(MAX_TOKEN_LEN + 1), lookup), Err(JwtError::TooLong));
        let j = jwk(&vk);
        assert_eq!(j["kty"], "OKP");
        assert_eq!(B64.decode(j["x"].as_str().unwrap().as_bytes()).unwrap(), vk.to_bytes());
    }
}
