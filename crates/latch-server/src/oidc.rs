//! The signing keys of external OpenID Connect issuers, discovered and cached.
//!
//! For an issuer `I` latch reads `I/.well-known/openid-configuration`,
//! checks that its `issuer` is `I` exactly, follows its `jwks_uri` and keeps
//! the keys. Only issuers that some service principal is federated with are
//! ever fetched (the caller checks that first), so a token cannot make latch
//! call an address of its choosing.
//!
//! - Keys are used for at most [`MAX_AGE`] after they were fetched, then
//!   fetched again before use, so a key the issuer withdrew stops working.
//! - A token naming an unknown `kid` (the issuer rotated its keys) triggers
//!   a refetch, at most once per [`REFETCH_INTERVAL`] per issuer, so a flood of
//!   made-up `kid`s costs the issuer one request per interval.
//! - When the keys cannot be fetched, exchange fails closed (503) rather than
//!   trusting keys past their age; a failed fetch is retried no sooner than
//!   [`REFETCH_INTERVAL`] later.
//!
//! Time is the server's [`latch_core::Clock`]. Outbound requests use `ureq`
//! (rustls): https only, plain http only to a loopback address (an issuer on
//! this machine, as in tests); redirects are not followed; bodies are capped
//! at [`MAX_BODY`]; each request gives up after [`FETCH_TIMEOUT`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latch_core::Timestamp;
use latch_core::federation::parse_url;
use latch_crypto::jose::{Jwk, parse_jwks};
use serde_json::Value;

/// Keys older than this are fetched again before use.
pub const MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// The shortest time between two fetches of one issuer's keys.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Largest discovery or JWKS document accepted.
pub const MAX_BODY: u64 = 256 * 1024;
/// Each outbound request gives up after this.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads a JSON document over HTTP(S). Blocking; run off the async workers.
pub trait Fetch: Send + Sync + 'static {
    fn get_json(&self, url: &str) -> Result<Value, String>;

    /// POSTs a form (with HTTP Basic client authentication when given) and
    /// returns the status and the JSON answer, as a token endpoint gives it.
    fn post_form(&self, url: &str, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Result<(u16, Value), String> {
        let _ = (url, form, basic);
        Err("this fetcher cannot POST".into())
    }
}

/// [`Fetch`] with `ureq`: https, or http to loopback only; no redirects.
pub struct HttpFetch {
    agent: ureq::Agent,
}

impl Default for HttpFetch {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpFetch {
    pub fn new() -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(FETCH_TIMEOUT))
            .max_redirects(0)
            .http_status_as_error(false)
            .user_agent(concat!("latch/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        HttpFetch { agent }
    }
}

/// Whether latch may fetch `url`: https, or http to a loopback host.
pub fn fetchable(what: &str, url: &str) -> Result<(), String> {
    let parts = parse_url(what, url).map_err(|e| e.0)?;
    if parts.https || parts.is_loopback() {
        Ok(())
    } else {
        Err(format!("{what} {url:?} is plain http to a non-loopback host: latch fetches keys only over https"))
    }
}

impl Fetch for HttpFetch {
    fn get_json(&self, url: &str) -> Result<Value, String> {
        fetchable("URL", url)?;
        let mut resp = self.agent.get(url).header("Accept", "application/json").call().map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(format!("GET {url} answered HTTP {status}"));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| format!("GET {url}: cannot read the body: {e}"))?;
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
    }

    fn post_form(&self, url: &str, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Result<(u16, Value), String> {
        fetchable("URL", url)?;
        let mut req = self.agent.post(url).header("Accept", "application/json");
        if let Some((user, password)) = basic {
            // RFC 6749 2.3.1: both parts form-encoded before Basic encoding.
            let pair = format!("{}:{}", form_encode(user), form_encode(password));
            req = req.header("Authorization", format!("Basic {}", data_encoding::BASE64.encode(pair.as_bytes())));
        }
        let mut resp = req.send_form(form.iter().copied()).map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| format!("POST {url}: cannot read the body: {e}"))?;
        let v =
            serde_json::from_slice(&body).map_err(|e| format!("POST {url} answered HTTP {status}, not JSON: {e}"))?;
        Ok((status, v))
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why no key could be had.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The issuer's discovery document or JWKS could not be fetched or used.
    #[error("the signing keys of issuer {issuer:?} cannot be fetched: {detail}")]
    Unavailable { issuer: String, detail: String },
    /// No key with that `kid`, even after a refetch (or a refetch was not
    /// allowed yet).
    #[error("{}", unknown_kid_message(kid, *refetched))]
    UnknownKid { kid: String, refetched: bool },
}

fn unknown_kid_message(kid: &str, refetched: bool) -> String {
    let shown: String = kid.chars().filter(|c| !c.is_control()).take(64).collect();
    if refetched {
        format!("the issuer's JWKS has no key with kid {shown:?} (fetched just now)")
    } else {
        format!(
            "the issuer's JWKS has no key with kid {shown:?}; latch fetches it again at most every {} s",
            REFETCH_INTERVAL.as_secs()
        )
    }
}

/// What latch uses of an issuer's discovery document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovery {
    pub jwks_uri: String,
    /// For people's sign-in (authorization code flow); absent for a CI issuer.
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    /// RFC 8628: present when the provider offers the device grant.
    pub device_authorization_endpoint: Option<String>,
}

#[derive(Default)]
struct Entry {
    discovery: Option<Discovery>,
    discovered_at: Option<Timestamp>,
    keys: Vec<Jwk>,
    /// Last successful JWKS fetch.
    fetched_at: Option<Timestamp>,
    /// Last fetch attempt, successful or not.
    attempted_at: Option<Timestamp>,
    last_error: Option<String>,
    /// How many fetches were made (for tests and operators).
    fetches: u64,
}

/// What an issuer's cache holds, for operators and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerStatus {
    pub kids: Vec<String>,
    pub fetches: u64,
    pub last_error: Option<String>,
}

/// The cache of issuers' keys, shared by every request of one node.
pub struct IssuerKeys {
    fetch: Arc<dyn Fetch>,
    issuers: Mutex<HashMap<String, Entry>>,
}

fn after(t: Option<Timestamp>, d: Duration, now: Timestamp) -> bool {
    t.is_none_or(|t| now >= t.plus(d))
}

impl IssuerKeys {
    pub fn new(fetch: Arc<dyn Fetch>) -> Self {
        IssuerKeys { fetch, issuers: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.issuers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn status(&self, issuer: &str) -> Option<IssuerStatus> {
        self.lock().get(issuer).map(|e| IssuerStatus {
            kids: e.keys.iter().filter_map(|k| k.kid.clone()).collect(),
            fetches: e.fetches,
            last_error: e.last_error.clone(),
        })
    }

    /// The key `kid` of `issuer` at `now`, fetching the issuer's keys when
    /// they are missing, older than [`MAX_AGE`], or lack `kid` (rate-limited).
    pub async fn key(&self, issuer: &str, kid: &str, now: Timestamp) -> Result<Jwk, KeyError> {
        let unavailable = |detail: String| KeyError::Unavailable { issuer: issuer.to_string(), detail };
        let known = {
            let mut map = self.lock();
            let e = map.entry(issuer.to_string()).or_default();
            let fresh = !after(e.fetched_at, MAX_AGE, now);
            if fresh && let Some(k) = e.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                return Ok(k.clone());
            }
            if !after(e.attempted_at, REFETCH_INTERVAL, now) {
                return Err(if fresh {
                    KeyError::UnknownKid { kid: kid.to_string(), refetched: false }
                } else {
                    unavailable(e.last_error.clone().unwrap_or_else(|| "a fetch is under way".into()))
                });
            }
            // Claimed under the lock: concurrent requests do not fetch too.
            e.attempted_at = Some(now);
            e.fetches += 1;
            e.discovery.clone().filter(|_| !after(e.discovered_at, MAX_AGE, now))
        };
        let fetch = self.fetch.clone();
        let iss = issuer.to_string();
        let fetched = tokio::task::spawn_blocking(move || fetch_keys(fetch.as_ref(), &iss, known))
            .await
            .map_err(|e| unavailable(format!("the fetch task failed: {e}")));
        let mut map = self.lock();
        let e = map.entry(issuer.to_string()).or_default();
        match fetched.and_then(|r| r.map_err(unavailable)) {
            Ok((discovery, keys)) => {
                if e.discovery.as_ref() != Some(&discovery) || after(e.discovered_at, MAX_AGE, now) {
                    e.discovered_at = Some(now);
                }
                e.discovery = Some(discovery);
                e.keys = keys;
                e.fetched_at = Some(now);
                e.last_error = None;
                e.keys
                    .iter()
                    .find(|k| k.kid.as_deref() == Some(kid))
                    .cloned()
                    .ok_or_else(|| KeyError::UnknownKid { kid: kid.to_string(), refetched: true })
            }
            Err(err) => {
                if let KeyError::Unavailable { detail, .. } = &err {
                    tracing::warn!(issuer = %issuer, error = %detail, "cannot fetch an OIDC issuer's keys");
                    e.last_error = Some(detail.clone());
                }
                Err(err)
            }
        }
    }
}

/// Discovery (unless it is known and fresh), then the JWKS.
fn fetch_keys(fetch: &dyn Fetch, issuer: &str, known: Option<Discovery>) -> Result<(Discovery, Vec<Jwk>), String> {
    let discovery = match known {
        Some(d) => d,
        None => discover(fetch, issuer)?,
    };
    let uri = &discovery.jwks_uri;
    let doc = fetch.get_json(uri)?;
    let (keys, skipped) = parse_jwks(&doc).map_err(|e| format!("{uri}: {e}"))?;
    for s in &skipped {
        tracing::warn!(issuer = %issuer, jwks_uri = %uri, "skipped a JWKS key: {s}");
    }
    if keys.is_empty() {
        return Err(format!("{uri} has no RS256, ES256 or EdDSA signing key"));
    }
    Ok((discovery, keys))
}

/// `issuer`'s discovery document, which must name `issuer` exactly; every
/// endpoint in it must be fetchable.
fn discover(fetch: &dyn Fetch, issuer: &str) -> Result<Discovery, String> {
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let doc = fetch.get_json(&url)?;
    if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err(format!("{url} names issuer {}, not {issuer:?}", doc.get("issuer").unwrap_or(&Value::Null)));
    }
    let endpoint = |name: &str| -> Result<Option<String>, String> {
        match doc.get(name).and_then(Value::as_str) {
            Some(u) => fetchable(name, u).map(|()| Some(u.to_string())),
            None => Ok(None),
        }
    };
    let jwks_uri = endpoint("jwks_uri")?.ok_or_else(|| format!("{url} has no jwks_uri"))?;
    Ok(Discovery {
        jwks_uri,
        authorization_endpoint: endpoint("authorization_endpoint")?,
        token_endpoint: endpoint("token_endpoint")?,
        device_authorization_endpoint: endpoint("device_authorization_endpoint")?,
    })
}

impl IssuerKeys {
    /// `issuer`'s discovery document (cached like its keys, for [`MAX_AGE`]).
    pub async fn discovery(&self, issuer: &str, now: Timestamp) -> Result<Discovery, KeyError> {
        {
            let map = self.lock();
            if let Some(e) = map.get(issuer)
                && let Some(d) = e.discovery.clone().filter(|_| !after(e.discovered_at, MAX_AGE, now))
            {
                return Ok(d);
            }
        }
        let fetch = self.fetch.clone();
        let iss = issuer.to_string();
        let found = tokio::task::spawn_blocking(move || discover(fetch.as_ref(), &iss))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        match found {
            Ok(d) => {
                let mut map = self.lock();
                let e = map.entry(issuer.to_string()).or_default();
                e.discovery = Some(d.clone());
                e.discovered_at = Some(now);
                Ok(d)
            }
            Err(detail) => Err(KeyError::Unavailable { issuer: issuer.to_string(), detail }),
        }
    }

    /// POSTs `form` to `url` off the async workers (a token endpoint).
    pub async fn post_form(
        &self,
        url: &str,
        form: Vec<(String, String)>,
        basic: Option<(String, String)>,
    ) -> Result<(u16, Value), String> {
        let fetch = self.fetch.clone();
        let url = url.to_string();
        tokio::task::spawn_blocking(move || {
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            fetch.post_form(&url, &pairs, basic.as_ref().map(|(u, p)| (u.as_str(), p.as_str())))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    const ISS: &str = "https://ci.example";

    /// An issuer in memory: its JWKS keys can be swapped; fetches are counted.
    #[derive(Default)]
    struct FakeIssuer {
        kids: Mutex<Vec<&'static str>>,
        calls: Mutex<Vec<String>>,
        down: Mutex<bool>,
        discovery_issuer: Mutex<Option<String>>,
    }

    fn ed_jwk(kid: &str) -> Value {
        json!({ "kty": "OKP", "crv": "Ed25519", "kid": kid, "x": data_encoding::BASE64URL_NOPAD.encode(&[7u8; 32]) })
    }

    impl Fetch for FakeIssuer {
        fn get_json(&self, url: &str) -> Result<Value, String> {
            self.calls.lock().unwrap().push(url.to_string());
            if *self.down.lock().unwrap() {
                return Err("connection refused".into());
            }
            match url {
                "https://ci.example/.well-known/openid-configuration" => {
                    let iss = self.discovery_issuer.lock().unwrap().clone().unwrap_or(ISS.into());
                    Ok(json!({ "issuer": iss, "jwks_uri": "https://keys.ci.example/jwks" }))
                }
                "https://keys.ci.example/jwks" => {
                    let kids = self.kids.lock().unwrap().clone();
                    Ok(json!({ "keys": kids.iter().map(|k| ed_jwk(k)).collect::<Vec<_>>() }))
                }
                other => Err(format!("no such URL {other}")),
            }
        }
    }

    fn setup(kids: &[&'static str]) -> (Arc<FakeIssuer>, IssuerKeys) {
        let fake = Arc::new(FakeIssuer::default());
        *fake.kids.lock().unwrap() = kids.to_vec();
        (fake.clone(), IssuerKeys::new(fake))
    }

    fn calls(f: &FakeIssuer) -> Vec<String> {
        f.calls.lock().unwrap().clone()
    }

    const T0: Timestamp = Timestamp(1_800_000_000_000);

    fn at(secs: u64) -> Timestamp {
        T0.plus(Duration::from_secs(secs))
    }

    #[tokio::test]
    async fn keys_are_discovered_once_and_cached() {
        let (fake, keys) = setup(&["k1", "k2"]);
        assert_eq!(keys.key(ISS, "k1", T0).await.unwrap().kid.as_deref(), Some("k1"));
        assert_eq!(keys.key(ISS, "k2", at(1)).await.unwrap().kid.as_deref(), Some("k2"));
        assert_eq!(
            calls(&fake),
            ["https://ci.example/.well-known/openid-configuration", "https://keys.ci.example/jwks"]
        );
        // Past MAX_AGE: the keys (and discovery) are fetched again before use.
        keys.key(ISS, "k1", at(MAX_AGE.as_secs() + 1)).await.unwrap();
        assert_eq!(calls(&fake).len(), 4);
        assert_eq!(keys.status(ISS).unwrap().fetches, 2);
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_at_most_once_per_interval() {
        let (fake, keys) = setup(&["k1"]);
        keys.key(ISS, "k1", T0).await.unwrap();
        // The issuer rotates to k2; within the interval latch does not ask again.
        *fake.kids.lock().unwrap() = vec!["k2"];
        let e = keys.key(ISS, "k2", at(5)).await.unwrap_err();
        assert_eq!(e, KeyError::UnknownKid { kid: "k2".into(), refetched: false });
        assert!(e.to_string().contains("at most every 30 s"), "{e}");
        for i in 0..50 {
            assert!(keys.key(ISS, &format!("made-up-{i}"), at(6)).await.is_err());
        }
        assert_eq!(calls(&fake).len(), 2, "no fetch for unknown kids within the interval");
        // After it, one refetch of the JWKS only (discovery is still fresh) picks up k2.
        assert_eq!(keys.key(ISS, "k2", at(31)).await.unwrap().kid.as_deref(), Some("k2"));
        assert_eq!(calls(&fake).len(), 3);
        assert_eq!(calls(&fake)[2], "https://keys.ci.example/jwks");
        // The withdrawn k1 is gone at once.
        assert!(keys.key(ISS, "k1", at(32)).await.is_err());
        let e = keys.key(ISS, "nope", at(70)).await.unwrap_err();
        assert_eq!(e, KeyError::UnknownKid { kid: "nope".into(), refetched: true });
    }

    #[tokio::test]
    async fn an_unreachable_issuer_fails_closed_and_is_not_hammered() {
        let (fake, keys) = setup(&["k1"]);
        *fake.down.lock().unwrap() = true;
        let e = keys.key(ISS, "k1", T0).await.unwrap_err();
        assert!(matches!(&e, KeyError::Unavailable { detail, .. } if detail.contains("connection refused")), "{e}");
        assert!(keys.key(ISS, "k1", at(10)).await.is_err());
        assert_eq!(calls(&fake).len(), 1, "retried no sooner than the interval");
        *fake.down.lock().unwrap() = false;
        keys.key(ISS, "k1", at(31)).await.unwrap();
        // Keys past their age are not used while the issuer is down.
        *fake.down.lock().unwrap() = true;
        let e = keys.key(ISS, "k1", at(31 + MAX_AGE.as_secs())).await.unwrap_err();
        assert!(matches!(e, KeyError::Unavailable { .. }));
        assert!(keys.status(ISS).unwrap().last_error.is_some());
    }

    #[tokio::test]
    async fn discovery_must_name_the_issuer_and_point_at_https() {
        let (fake, keys) = setup(&["k1"]);
        *fake.discovery_issuer.lock().unwrap() = Some("https://evil.example".into());
        let e = keys.key(ISS, "k1", T0).await.unwrap_err();
        assert!(e.to_string().contains("names issuer \"https://evil.example\""), "{e}");

        struct PlainJwks;
        impl Fetch for PlainJwks {
            fn get_json(&self, url: &str) -> Result<Value, String> {
                Ok(json!({ "issuer": ISS, "jwks_uri": "http://keys.ci.example/jwks", "u": url }))
            }
        }
        let keys = IssuerKeys::new(Arc::new(PlainJwks));
        let e = keys.key(ISS, "k1", T0).await.unwrap_err();
        assert!(e.to_string().contains("only over https"), "{e}");
        assert!(fetchable("jwks_uri", "http://127.0.0.1:9/jwks").is_ok());
        assert!(fetchable("jwks_uri", "http://10.0.0.1/jwks").is_err());
    }

    #[tokio::test]
    async fn a_jwks_without_usable_keys_is_an_error() {
        struct HmacOnly;
        impl Fetch for HmacOnly {
            fn get_json(&self, url: &str) -> Result<Value, String> {
                if url.ends_with("openid-configuration") {
                    Ok(json!({ "issuer": ISS, "jwks_uri": "https://keys.ci.example/jwks" }))
                } else {
                    Ok(json!({ "keys": [{ "kty": "oct", "kid": "h", "k": "c2VjcmV0" }] }))
                }
            }
        }
        let keys = IssuerKeys::new(Arc::new(HmacOnly));
        let e = keys.key(ISS, "h", T0).await.unwrap_err();
        assert!(e.to_string().contains("no RS256, ES256 or EdDSA signing key"), "{e}");
    }
}
