//! A small blocking HTTP client for the latch API.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cli::Global;

/// A failed API call, carrying the server's error code and message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Api(#[from] ApiFailure),
    #[error("cannot reach latch at {addr}: {detail} (is the server running? set LATCH_ADDR)")]
    Unreachable { addr: String, detail: String },
    #[error("unexpected response from latch: {0}")]
    Protocol(String),
    #[error("cannot read CA certificate {path}: {detail}")]
    CaCert { path: String, detail: String },
}

pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(g: &Global) -> Result<Self, ClientError> {
        Self::with_timeout(g, Duration::from_secs(60))
    }

    /// A client whose every call gives up after `timeout`.
    pub fn with_timeout(g: &Global, timeout: Duration) -> Result<Self, ClientError> {
        let mut cfg = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("latch-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &g.ca_cert {
            let err = |detail: String| ClientError::CaCert { path: path.display().to_string(), detail };
            let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
            let cert = ureq::tls::Certificate::from_pem(&pem).map_err(|e| err(e.to_string()))?.to_owned();
            let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::new_with_certs(&[cert])).build();
            cfg = cfg.tls_config(tls);
        }
        Ok(Client { agent: cfg.build().into(), base: g.addr.trim_end_matches('/').to_string(), token: g.token.clone() })
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call("GET", path, None::<&()>)
    }

    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T, ClientError> {
        self.call("POST", path, Some(body))
    }

    pub fn put<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T, ClientError> {
        self.call("PUT", path, Some(body))
    }

    /// A GET whose 2xx body is bytes (a KRL) rather than JSON.
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = ureq::http::Request::builder().method("GET").uri(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let req = req.body(()).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut resp = self
            .agent
            .run(req)
            .map_err(|e| ClientError::Unreachable { addr: self.base.clone(), detail: e.to_string() })?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_vec()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if !(200..300).contains(&status) {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let code = v["error"]["code"].as_str().unwrap_or("http_error").to_string();
            let message =
                v["error"]["message"].as_str().map_or_else(|| format!("HTTP {status} from GET {path}"), str::to_string);
            return Err(ApiFailure { status, code, message }.into());
        }
        Ok(bytes)
    }

    pub fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.call::<Value>("DELETE", path, None::<&()>).map(|_| ())
    }

    /// Sends a request; a 2xx body is decoded as `T` (an empty body as JSON null).
    pub fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        match (method, body) {
            ("GET" | "DELETE", _) | (_, None) => {
                let req = self.request(method, path).body(()).map_err(|e| ClientError::Protocol(e.to_string()))?;
                let resp = self.agent.run(req).map_err(|e| self.unreachable(e))?;
                self.finish(method, path, resp)
            }
            (_, Some(b)) => {
                let json = serde_json::to_vec(b).map_err(|e| ClientError::Protocol(e.to_string()))?;
                self.send_json(method, path, &json)
            }
        }
    }

    /// Sends `json`, already encoded, as the body.
    pub fn send_json<T: DeserializeOwned>(&self, method: &str, path: &str, json: &[u8]) -> Result<T, ClientError> {
        self.send(method, path, "application/json", json)
    }

    /// Sends `body` of type `content_type`; the answer is JSON.
    pub fn send<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<T, ClientError> {
        let req = self
            .request(method, path)
            .header("Content-Type", content_type)
            .body(body)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = self.agent.run(req).map_err(|e| self.unreachable(e))?;
        self.finish(method, path, resp)
    }

    fn request(&self, method: &str, path: &str) -> ureq::http::request::Builder {
        let req = ureq::http::Request::builder().method(method).uri(format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    fn unreachable(&self, e: ureq::Error) -> ClientError {
        ClientError::Unreachable { addr: self.base.clone(), detail: e.to_string() }
    }

    fn finish<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        mut resp: ureq::http::Response<ureq::Body>,
    ) -> Result<T, ClientError> {
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if !(200..300).contains(&status) {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let code = v["error"]["code"].as_str().unwrap_or("http_error").to_string();
            // latch's `{"error": {…}}`, or the `{"errors": […]}` of its Vault-compatible routes.
            let message = v["error"]["message"]
                .as_str()
                .or_else(|| v["errors"][0].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {status} from {method} {path}"));
            return Err(ApiFailure { status, code, message }.into());
        }
        let text = if text.trim().is_empty() { "null" } else { text.as_str() };
        serde_json::from_str(text).map_err(|e| ClientError::Protocol(format!("{method} {path}: {e}")))
    }
}

/// Percent-encodes a path segment (names are validated server-side, but a
/// CLI argument must never be able to change which route is called).
pub fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
