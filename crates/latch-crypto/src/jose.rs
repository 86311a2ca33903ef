//! Verifying JSON Web Tokens signed by someone else — an external OpenID
//! Connect issuer such as a CI system — with the public keys of its JWKS.
//!
//! latch's own tokens are EdDSA only ([`crate::jwt`]). Tokens from outside
//! come in three algorithms, and only these: RS256, ES256 and EdDSA
//! (Ed25519). Defences against the classic JWT mistakes:
//!
//! - **Algorithm allow-list.** `none`, every HMAC (`HS*`) and everything else
//!   are refused by name before a key is looked at, so a public key can never
//!   be used as an HMAC secret.
//! - **A key fits one algorithm.** An RSA key verifies only RS256, a P-256 key
//!   only ES256, an Ed25519 key only EdDSA; a JWK that names its `alg` is used
//!   only with that one. A token cannot pick how its key is interpreted.
//! - **Keys come only from the issuer's JWKS.** Header parameters that carry
//!   or point at a key (`jwk`, `jku`, `x5u`, `x5c`) are ignored; a `crit`
//!   header is refused, as no extension is understood.
//! - **A `kid` is required**, so a token names the one key it is checked with.
//!
//! Time, issuer and audience checks belong to the caller, which owns the
//! clock and the trust configuration. No IO happens here.

use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey,
};
use serde_json::{Map, Value};

const B64: data_encoding::Encoding = data_encoding::BASE64URL_NOPAD;

/// The longest token accepted; bounds the work hostile input can cause.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The signature algorithms latch accepts from external issuers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Es256,
    EdDsa,
}

impl Alg {
    /// The allowed algorithms, as named in JOSE headers.
    pub const ALLOWED: [&'static str; 3] = ["RS256", "ES256", "EdDSA"];

    pub fn parse(s: &str) -> Option<Alg> {
        match s {
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            "EdDSA" => Some(Alg::EdDsa),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
enum KeyMaterial {
    /// Big-endian modulus and exponent, without leading zeros.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed SEC1 point: 0x04 || x || y.
    P256(Vec<u8>),
    Ed25519(Vec<u8>),
}

/// One verification key from a JWKS.
#[derive(Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The one algorithm this key verifies.
    pub alg: Alg,
    key: KeyMaterial,
}

impl std::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwk").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JoseError {
    #[error("the token is not a compact JWS: {0}")]
    Malformed(&'static str),
    #[error("the token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("algorithm {0} is not accepted: use RS256, ES256 or EdDSA")]
    Algorithm(String),
    #[error("the token header has no kid: latch needs it to pick the issuer's key")]
    MissingKid,
    #[error("the token header has a crit parameter: no JWS extension is understood")]
    Critical,
    #[error("key {kid} is for {key_alg}, but the token says {token_alg}")]
    KeyMismatch { kid: String, key_alg: &'static str, token_alg: &'static str },
    #[error("the signature does not verify with the issuer's key {0}")]
    Signature(String),
}

/// A parsed, not yet verified, token.
#[derive(Debug)]
pub struct Jws<'a> {
    pub alg: Alg,
    pub kid: String,
    /// The claims; trust none of them until [`Jws::verify`] succeeds.
    pub claims: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

fn header_text(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut short: String = s.chars().filter(|c| !c.is_control()).take(32).collect();
    if s.chars().count() > 32 {
        short.push('…');
    }
    format!("{short:?}")
}

/// Splits and decodes `token`, checking its header (algorithm allow-list,
/// `kid`, no `crit`) before anything else. The signature is not checked.
pub fn parse(token: &str) -> Result<Jws<'_>, JoseError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JoseError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JoseError::Malformed("it must be three base64url parts separated by dots"));
    };
    let header = B64.decode(h.as_bytes()).map_err(|_| JoseError::Malformed("the header is not base64url"))?;
    let header: Value = serde_json::from_slice(&header).map_err(|_| JoseError::Malformed("the header is not JSON"))?;
    let header = header.as_object().ok_or(JoseError::Malformed("the header is not a JSON object"))?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => {
            Alg::parse(a).ok_or_else(|| JoseError::Algorithm(header_text(&Value::from(a.as_str()))))?
        }
        Some(other) => return Err(JoseError::Algorithm(header_text(other))),
        None => return Err(JoseError::Malformed("the header has no alg")),
    };
    if header.contains_key("crit") {
        return Err(JoseError::Critical);
    }
    let kid = match header.get("kid") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        _ => return Err(JoseError::MissingKid),
    };
    let claims = B64.decode(c.as_bytes()).map_err(|_| JoseError::Malformed("the claims are not base64url"))?;
    let claims: Value = serde_json::from_slice(&claims).map_err(|_| JoseError::Malformed("the claims are not JSON"))?;
    let Value::Object(claims) = claims else {
        return Err(JoseError::Malformed("the claims are not a JSON object"));
    };
    let signature = B64.decode(s.as_bytes()).map_err(|_| JoseError::Malformed("the signature is not base64url"))?;
    if signature.is_empty() {
        return Err(JoseError::Malformed("the signature is empty"));
    }
    let signing_input = &token[..h.len() + 1 + c.len()];
    Ok(Jws { alg, kid, claims, signing_input, signature })
}

impl Jws<'_> {
    /// Checks the signature with `key`, which must be of the token's algorithm.
    pub fn verify(&self, key: &Jwk) -> Result<(), JoseError> {
        let kid = key.kid.clone().unwrap_or_default();
        if key.alg != self.alg {
            return Err(JoseError::KeyMismatch { kid, key_alg: key.alg.as_str(), token_alg: self.alg.as_str() });
        }
        let msg = self.signing_input.as_bytes();
        let ok = match &key.key {
            KeyMaterial::Rsa { n, e } => {
                RsaPublicKeyComponents { n, e }.verify(&RSA_PKCS1_2048_8192_SHA256, msg, &self.signature).is_ok()
            }
            KeyMaterial::P256(point) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(msg, &self.signature).is_ok()
            }
            KeyMaterial::Ed25519(x) => UnparsedPublicKey::new(&ED25519, x).verify(msg, &self.signature).is_ok(),
        };
        if ok { Ok(()) } else { Err(JoseError::Signature(kid)) }
    }
}

fn b64_field(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let s = jwk.get(name).and_then(Value::as_str).ok_or_else(|| format!("has no {name}"))?;
    B64.decode(s.trim_end_matches('=').as_bytes()).map_err(|_| format!("{name} is not base64url"))
}

fn strip_zeros(mut b: Vec<u8>) -> Vec<u8> {
    let lead = b.iter().take_while(|&&x| x == 0).count();
    b.drain(..lead);
    b
}

/// One key of a JWKS: `Ok(None)` for a key latch does not verify with (an
/// encryption key, an unknown key type or curve, an algorithm outside the
/// allow-list); `Err` for a signing key that is malformed.
pub fn parse_jwk(v: &Value) -> Result<Option<Jwk>, String> {
    let jwk = v.as_object().ok_or("is not a JSON object")?;
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err("kid is not a string".into()),
    };
    if jwk.get("use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let named = match jwk.get("alg") {
        None => None,
        Some(Value::String(a)) => match Alg::parse(a) {
            Some(alg) => Some(alg),
            None => return Ok(None),
        },
        Some(_) => return Err("alg is not a string".into()),
    };
    let crv = jwk.get("crv").and_then(Value::as_str);
    let (alg, key) = match (jwk.get("kty").and_then(Value::as_str), crv) {
        (Some("RSA"), _) => {
            let n = strip_zeros(b64_field(jwk, "n")?);
            let e = strip_zeros(b64_field(jwk, "e")?);
            if n.len() < 256 {
                return Err(format!("its RSA modulus has {} bits; at least 2048 are required", n.len() * 8));
            }
            if e.is_empty() || e.len() > 8 {
                return Err("its RSA exponent is not valid".into());
            }
            (Alg::Rs256, KeyMaterial::Rsa { n, e })
        }
        (Some("EC"), Some("P-256")) => {
            let (x, y) = (b64_field(jwk, "x")?, b64_field(jwk, "y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err("a P-256 key needs 32-byte x and y".into());
            }
            let mut point = Vec::with_capacity(65);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (Alg::Es256, KeyMaterial::P256(point))
        }
        (Some("OKP"), Some("Ed25519")) => {
            let x = b64_field(jwk, "x")?;
            if x.len() != 32 {
                return Err("an Ed25519 key needs a 32-byte x".into());
            }
            (Alg::EdDsa, KeyMaterial::Ed25519(x))
        }
        _ => return Ok(None),
    };
    if named.is_some_and(|n| n != alg) {
        // A key whose stated algorithm does not fit its type is unusable.
        return Err(format!("alg {} does not fit its key type", named.map_or("?", Alg::as_str)));
    }
    Ok(Some(Jwk { kid, alg, key }))
}

/// The usable keys of a JWKS document (`{"keys": [...]}`), and a note for
/// each signing key that was skipped because it is malformed.
pub fn parse_jwks(v: &Value) -> Result<(Vec<Jwk>, Vec<String>), &'static str> {
    let keys = v.get("keys").and_then(Value::as_array).ok_or("the JWKS has no \"keys\" array")?;
    let (mut ok, mut skipped) = (Vec::new(), Vec::new());
    for (i, k) in keys.iter().enumerate() {
        match parse_jwk(k) {
            Ok(Some(jwk)) => ok.push(jwk),
            Ok(None) => {}
            Err(why) => skipped.push(format!("key {i}: {why}")),
        }
    }
    Ok((ok, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
    use serde_json::json;

    /// A 2048-bit RSA key (PKCS#1 DER, base64) made for these tests only.
    const RSA_DER_B64: &str = concat!(
        "MIIEogIBAAKCAQEAyLD6dVjq2PaHcqEm6PbP1dEm01UAFH5tlZT91p6VK8mcmhP4+ozfF+kuyNk1R9kGm+Nl3RXwXp+vnxoW++DE",
        "1qAWuXchArK4jUGBPiehqNK7aKNvT95hOOcZ5L/3yPHBH7tO5oOBdCocjpGL5F2OS8OSoCG+fkg6Afcoh4EAZXspcgmZ8yBAngGV",
        "OyxuownvYonXq248WK4CrQPM9MO/eOrJ9YkBDqHpX33i4wyVaAO2WdrICZFx3Y+VZIrzwVjKLFZGlh3Seq+CY2d5r8c1erv7D93P",
        "FIlIPI2TmQVwagIRPsXVRAZzfwRA/Cofhel43kGcTL6iGWEwFczd8VhmRwIDAQABAoIBADFhZocINWTkKAi7AUVyMUpll52JPSdN",
        "wm37RogP5hlrlqZMwsb3cY9DF3lhBJykmF00EyTWmJnXxdEqjLw2HojGxECnQM6WphVPqFrgSoUtMOK60BFBYP+s0XC5EWF2prPF",
        "lVDfy7MHB5bG1jp/EJuwx/uxwdr1r5w7MdRBmBTfzIfipd0b7EZxa2he2AGYTjklTIDVE1YWVp5nsSbM5CpNwVoxWXveXgGCUDWH",
        "pmUwMmk6qGyUQUVOFH4vbzGm0kauJM2A7wQmIvI48kXOjivAIb8vxP+3oxtkUvilN9oq7uzI6ozaiD4ckhu1P67xa/sIfYu9Unyf",
        "Y0gebP7RAaECgYEA+kJ4NsHkDQs3MhSGkH1pS/+rz+0M1cL+z2vazdRKWXnCMBFEKdWHw35sRx0issImaPyfLtf7WAgLe/TETOU9",
        "QOtP0Og5QOqgteWu/dtPcea7gMcohgfttDY7QlKrEy0OA0/CGjFV3nPe1WbwSE/8pnC9HTm0njwL/4f2cQjytucCgYEAzUtxQm3f",
        "+48Un5edI2GDRX/Y/s/HW7kpzaG5ybjMea/o063iXsnJISRuab54YoL19IrFQJKxm4kmPysdnpxyWCrA0noegX7UmxCmXq++HdNK",
        "5uYjFcuko1H8NAA8ZjetmwP7DKsuK+v6RnAUYFL3tLGZmgDjOktmQd/EhB0oyaECgYBIhtTyAZUG1rZDVEF/RGkstkbjtm5e0Okp",
        "0bcSqbB2Z9wINCjN+u0ikdPtdBsnNS8OhA/Z8owMAiDZ5qCxLEppMwjpoTNeheDXdl4VgeZvOxAiDRXIainQbVsVKIIdx5PlD8tP",
        "7fZVxrzQmcmPG2c8ETYtbxjSNtK/VnbsYUx+BwKBgBPFuFrVikUIOsxEJfZKZgJDlfq0uFa1Nrl/Yg1zpv3xW1NH5A2NEboHcDrv",
        "BVk3k8jBtM3LUx/Pzcc3t9qW5sxnEbsz18xREtj8eYmVE5J7zzL951MqEelI9Clt/GM76ZSMhZlqwz+nsqsmEFBWrVTR5iFXBIuQ",
        "x4CAtMSkqlEBAoGAe8EW4UQpCLQu2wkvdKopkBBxybPOR9CMqEyiTWyl+tAbhkh//JSJaLmbNsmLgix40mwFBtsoR5gtCwFzjXtU",
        "n1BRDRTfk+E84jrGJL8j0Gj7PMdPdgeIwtL4nQmk0EY8z4F0RIn5iy0jQjEhPUKCgqCss6LwxTs+SP6bmqBSWns=",
    );

    fn enc(v: &Value) -> String {
        B64.encode(v.to_string().as_bytes())
    }

    fn token(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let input = format!("{}.{}", enc(header), enc(claims));
        let sig = sign(input.as_bytes());
        format!("{input}.{}", B64.encode(&sig))
    }

    struct Keys {
        rsa: RsaKeyPair,
        ec: EcdsaKeyPair,
        ed: Ed25519KeyPair,
    }

    fn keys() -> Keys {
        let rng = SystemRandom::new();
        let der = data_encoding::BASE64.decode(RSA_DER_B64.as_bytes()).unwrap();
        let rsa = RsaKeyPair::from_der(&der).unwrap();
        let pk = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pk.as_ref(), &rng).unwrap();
        let pk = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed = Ed25519KeyPair::from_pkcs8(pk.as_ref()).unwrap();
        Keys { rsa, ec, ed }
    }

    impl Keys {
        fn jwks(&self) -> Value {
            let (n, e) = self.rsa_ne();
            let point = self.ec.public_key().as_ref();
            json!({ "keys": [
                { "kty": "RSA", "kid": "r1", "use": "sig", "alg": "RS256", "n": B64.encode(&n), "e": B64.encode(&e) },
                { "kty": "EC", "kid": "e1", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..]) },
                { "kty": "OKP", "kid": "d1", "crv": "Ed25519", "x": B64.encode(self.ed.public_key().as_ref()) },
                { "kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB" },
                { "kty": "oct", "kid": "h1", "k": "c2VjcmV0" },
            ]})
        }
        fn rsa_ne(&self) -> (Vec<u8>, Vec<u8>) {
            let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(self.rsa.public());
            (c.n, c.e)
        }
        fn sign(&self, alg: &str, msg: &[u8]) -> Vec<u8> {
            let rng = SystemRandom::new();
            match alg {
                "RS256" => {
                    let mut sig = vec![0; self.rsa.public().modulus_len()];
                    self.rsa.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig).unwrap();
                    sig
                }
                "ES256" => self.ec.sign(&rng, msg).unwrap().as_ref().to_vec(),
                _ => self.ed.sign(msg).as_ref().to_vec(),
            }
        }
    }

    fn find<'a>(keys: &'a [Jwk], kid: &str) -> &'a Jwk {
        keys.iter().find(|k| k.kid.as_deref() == Some(kid)).unwrap()
    }

    #[test]
    fn each_allowed_algorithm_verifies_with_its_own_key_only() {
        let k = keys();
        let (jwks, skipped) = parse_jwks(&k.jwks()).unwrap();
        assert_eq!(jwks.len(), 3, "enc and oct keys are not verification keys");
        assert!(skipped.is_empty(), "{skipped:?}");
        let claims = json!({ "iss": "https://ci.example", "sub": "repo:org/app" });
        for (alg, kid) in [("RS256", "r1"), ("ES256", "e1"), ("EdDSA", "d1")] {
            let t = token(&json!({ "alg": alg, "kid": kid, "typ": "JWT" }), &claims, |m| k.sign(alg, m));
            let jws = parse(&t).unwrap();
            assert_eq!(jws.alg.as_str(), alg);
            assert_eq!(jws.claims["sub"], "repo:org/app");
            jws.verify(find(&jwks, kid)).unwrap();
            // Every other key refuses, by type before any signature work.
            for other in ["r1", "e1", "d1"].into_iter().filter(|o| *o != kid) {
                assert!(matches!(jws.verify(find(&jwks, other)), Err(JoseError::KeyMismatch { .. })));
            }
            // Tampered claims.
            let parts: Vec<&str> = t.split('.').collect();
            let forged = format!("{}.{}.{}", parts[0], enc(&json!({ "sub": "repo:org/evil" })), parts[2]);
            assert_eq!(parse(&forged).unwrap().verify(find(&jwks, kid)), Err(JoseError::Signature(kid.into())));
        }
    }

    #[test]
    fn refused_algorithms_and_headers() {
        let k = keys();
        let claims = json!({ "sub": "x" });
        let sig = |_: &[u8]| b"sig".to_vec();
        for alg in ["none", "HS256", "HS512", "RS384", "PS256", "ES384", "none ", "Rs256"] {
            let t = token(&json!({ "alg": alg, "kid": "r1" }), &claims, sig);
            assert!(matches!(parse(&t), Err(JoseError::Algorithm(_))), "{alg}");
        }
        // alg=none with an empty signature: refused for the algorithm.
        let none = format!("{}.{}.", enc(&json!({ "alg": "none" })), enc(&claims));
        assert!(matches!(parse(&none), Err(JoseError::Algorithm(_))));
        let t = token(&json!({ "alg": 7, "kid": "r1" }), &claims, sig);
        assert!(matches!(parse(&t), Err(JoseError::Algorithm(_))));
        let t = token(&json!({ "kid": "r1" }), &claims, sig);
        assert_eq!(parse(&t).unwrap_err(), JoseError::Malformed("the header has no alg"));
        for header in
            [json!({ "alg": "RS256" }), json!({ "alg": "RS256", "kid": "" }), json!({ "alg": "RS256", "kid": 3 })]
        {
            let t = token(&header, &claims, sig);
            assert_eq!(parse(&t).unwrap_err(), JoseError::MissingKid);
        }
        let t = token(&json!({ "alg": "RS256", "kid": "r1", "crit": ["exp"] }), &claims, sig);
        assert_eq!(parse(&t).unwrap_err(), JoseError::Critical);
        // A key embedded in the header is ignored: the JWKS key decides.
        let (jwks, _) = parse_jwks(&k.jwks()).unwrap();
        let attacker =
            Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap().as_ref()).unwrap();
        let header = json!({ "alg": "EdDSA", "kid": "d1",
            "jwk": { "kty": "OKP", "crv": "Ed25519", "x": B64.encode(attacker.public_key().as_ref()) } });
        let t = token(&header, &claims, |m| attacker.sign(m).as_ref().to_vec());
        assert_eq!(parse(&t).unwrap().verify(find(&jwks, "d1")), Err(JoseError::Signature("d1".into())));
        // Structure.
        assert!(matches!(parse("a.b"), Err(JoseError::Malformed(_))));
        assert!(matches!(parse("a.b.c.d"), Err(JoseError::Malformed(_))));
        assert!(matches!(parse("!!.b.c"), Err(JoseError::Malformed(_))));
        let arr = format!("{}.{}.c2ln", enc(&json!({ "alg": "RS256", "kid": "r1" })), enc(&json!([1])));
        assert_eq!(parse(&arr).unwrap_err(), JoseError::Malformed("the claims are not a JSON object"));
        assert_eq!(parse(&"a".repeat(MAX_TOKEN_LEN + 1)).unwrap_err(), JoseError::TooLong);
    }

    #[test]
    fn malformed_and_weak_keys_are_reported_not_used() {
        let short = json!({ "kty": "RSA", "kid": "s", "n": B64.encode(&[0xff; 128]), "e": "AQAB" });
        assert!(parse_jwk(&short).unwrap_err().contains("1024 bits"));
        let mismatched = json!({ "kty": "OKP", "crv": "Ed25519", "alg": "RS256", "x": B64.encode(&[1; 32]) });
        assert!(parse_jwk(&mismatched).unwrap_err().contains("does not fit"));
        let hs = json!({ "kty": "RSA", "alg": "HS256", "n": "AQAB", "e": "AQAB" });
        assert_eq!(parse_jwk(&hs), Ok(None));
        let bad_ec = json!({ "kty": "EC", "crv": "P-256", "x": B64.encode(&[1; 31]), "y": B64.encode(&[1; 32]) });
        assert!(parse_jwk(&bad_ec).is_err());
        let p384 = json!({ "kty": "EC", "crv": "P-384", "x": "AA", "y": "AA" });
        assert_eq!(parse_jwk(&p384), Ok(None));
        let (usable, skipped) = parse_jwks(&json!({ "keys": [short, p384] })).unwrap();
        assert!(usable.is_empty());
        assert_eq!(skipped.len(), 1);
        assert!(parse_jwks(&json!({ "nokeys": [] })).is_err());
        // Leading zeros in n are tolerated.
        let k = keys();
        let n: Vec<u8> = std::iter::once(0).chain(k.rsa_ne().0).collect();
        let padded = json!({ "kty": "RSA", "kid": "p", "n": B64.encode(&n), "e": "AQAB" });
        let jwk = parse_jwk(&padded).unwrap().unwrap();
        let t = token(&json!({ "alg": "RS256", "kid": "p" }), &json!({}), |m| k.sign("RS256", m));
        parse(&t).unwrap().verify(&jwk).unwrap();
    }
}
