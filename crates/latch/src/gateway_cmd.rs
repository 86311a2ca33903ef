//! `latch gateway`: the recording SSH gateway, talking to the server over
//! its HTTP API with the token of a service principal in `ssh-gateways`.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use latch_gateway::control::{AuthorizeRequest, Authorized, EndedGrant, StartRecording};
use latch_gateway::{Control, ControlError, Gateway, GatewayConfig, UpstreamHostKeys};
use russh::keys::ssh_key::PrivateKey;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::UsageError;
use crate::cli::{GatewayArgs, Global};
use crate::client::{Client, ClientError, seg};

const ASCIICAST: &str = "application/x-asciicast";
/// Calls the server may take before the gateway treats it as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(args: GatewayArgs, g: &Global) -> anyhow::Result<()> {
    let creds = match (&args.client_id, &args.client_secret_file) {
        (Some(id), Some(file)) => {
            let secret = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the client secret from {}", file.display()))?;
            Some((id.clone(), secret.trim().to_string()))
        }
        (None, None) if g.token.is_some() => None,
        _ => {
            return Err(UsageError(
                "the gateway signs in as a service principal in the ssh-gateways group: give --client-id and \
                 --client-secret-file (it signs in again when its session ends), or a token in LATCH_TOKEN"
                    .into(),
            )
            .into());
        }
    };
    let upstream_host_keys = match (&args.known_hosts, args.insecure_accept_any_host_key) {
        (Some(p), false) => UpstreamHostKeys::KnownHosts(p.clone()),
        (None, true) => UpstreamHostKeys::AcceptAny,
        _ => {
            return Err(UsageError(
                "give exactly one of --known-hosts FILE (the targets' host keys) or --insecure-accept-any-host-key"
                    .into(),
            )
            .into());
        }
    };
    let parse = |what: &str, v: &str| latch_core::parse_duration(v).map_err(|e| UsageError(format!("{what}: {e}")));
    let cfg = GatewayConfig {
        host_key: host_key(&args.host_key)?,
        spool: args.spool.clone(),
        upstream_host_keys,
        poll_interval: Duration::from_millis(args.poll_interval_ms),
        max_offline: parse("--max-offline", &args.max_offline)?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let http = Http { g: g.clone(), creds, client: RwLock::new(Arc::new(Client::with_timeout(g, CALL_TIMEOUT)?)) };
    if http.creds.is_some() {
        http.sign_in().map_err(|e| anyhow::anyhow!("cannot sign in to latch as the gateway: {e}"))?;
    }
    let control: Arc<dyn Control> = Arc::new(HttpControl(Arc::new(http)));
    let threads = args.threads.map_or_else(|| std::thread::available_parallelism().map_or(1, usize::from), usize::from);
    let listener =
        std::net::TcpListener::bind(args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let public = cfg.host_key.public_key().to_openssh().unwrap_or_default();
    single_threaded_runtime()?.block_on(async move {
        let gateway = Arc::new(Gateway::start(cfg, control).context("the gateway cannot start")?);
        // One single-threaded runtime per thread, each accepting on the same
        // socket: a connection stays on the thread that accepted it.
        let (failed_tx, mut failed) = tokio::sync::mpsc::unbounded_channel::<anyhow::Error>();
        for n in 1..threads {
            let (listener, gateway, failed_tx) = (listener.try_clone()?, gateway.clone(), failed_tx.clone());
            std::thread::Builder::new().name(format!("gateway-{n}")).spawn(move || {
                let served = single_threaded_runtime().and_then(|rt| {
                    rt.block_on(async { gateway.accept(tokio::net::TcpListener::from_std(listener)?).await })
                        .map_err(anyhow::Error::from)
                });
                if let Err(e) = served {
                    let _ = failed_tx.send(e);
                }
            })?;
        }
        let listener = tokio::net::TcpListener::from_std(listener)?;
        // Machine-readable, the address last; nobody may be reading (logs go to stderr).
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "LATCH_GATEWAY_HOST_KEY={public}");
        let _ = writeln!(out, "LATCH_GATEWAY_ADDR={addr}");
        let _ = out.flush();
        drop(out);
        tokio::select! {
            served = gateway.accept(listener) => served.context("the gateway stopped"),
            Some(e) = failed.recv() => Err(e.context("a gateway thread stopped")),
        }
    })
}

fn single_threaded_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

/// The gateway's host key: read, or made on first start (mode 0600).
fn host_key(path: &Path) -> anyhow::Result<PrivateKey> {
    if path.exists() {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        return PrivateKey::from_openssh(&text)
            .map_err(|e| UsageError(format!("{} is not an OpenSSH private key: {e}", path.display())).into());
    }
    let seed: [u8; 32] = latch_crypto::random_bytes(32)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("the OS random generator returned too few bytes"))?;
    let (private, _) = latch_ssh::user_key_pair(&seed, "latch-gateway")?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_private(path, private.as_bytes())?;
    Ok(PrivateKey::from_openssh(private.as_str())?)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

struct HttpControl(Arc<Http>);

struct Http {
    g: Global,
    /// Client id and secret, to sign in again when the session ends.
    creds: Option<(String, String)>,
    client: RwLock<Arc<Client>>,
}

impl Http {
    fn current(&self) -> Arc<Client> {
        self.client.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Signs in with the service principal's secret; later calls use the new session.
    fn sign_in(&self) -> Result<(), ClientError> {
        let Some((id, secret)) = &self.creds else { return Ok(()) };
        let anon = Client::with_timeout(&Global { token: None, ..self.g.clone() }, CALL_TIMEOUT)?;
        let v: Value = anon.post("/v1/auth/sp/login", &json!({ "client_id": id, "client_secret": secret }))?;
        let token = v["token"].as_str().ok_or_else(|| ClientError::Protocol("sign-in returned no token".into()))?;
        let client = Client::with_timeout(&Global { token: Some(token.to_string()), ..self.g.clone() }, CALL_TIMEOUT)?;
        *self.client.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(client);
        Ok(())
    }

    fn post_blocking<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, ClientError> {
        let json = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.send_blocking(path, "application/json", &json)
    }

    /// POSTs `json`, signing in again once if the session has ended.
    fn send_blocking<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<T, ClientError> {
        match self.current().send::<T>("POST", path, content_type, body) {
            Err(ClientError::Api(f)) if f.status == 401 && self.creds.is_some() => {
                self.sign_in()?;
                self.current().send::<T>("POST", path, content_type, body)
            }
            other => other,
        }
    }
}

impl HttpControl {
    async fn post<T: DeserializeOwned + Send + 'static>(&self, path: String, body: Value) -> Result<T, ControlError> {
        let me = self.0.clone();
        tokio::task::spawn_blocking(move || me.post_blocking::<T>(&path, &body))
            .await
            .map_err(|e| ControlError::Unavailable(e.to_string()))?
            .map_err(classify)
    }
}

/// 4xx is the server's answer; anything else may pass.
fn classify(e: ClientError) -> ControlError {
    match e {
        ClientError::Api(f) if (400..500).contains(&f.status) && f.status != 408 && f.status != 429 => {
            ControlError::Refused(f.message)
        }
        other => ControlError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl Control for HttpControl {
    async fn authorize(&self, req: AuthorizeRequest) -> Result<Authorized, ControlError> {
        let body = serde_json::to_value(&req).map_err(|e| ControlError::Refused(e.to_string()))?;
        self.post("/v1/gateway/authorize".into(), body).await
    }

    async fn start_recording(&self, req: StartRecording) -> Result<String, ControlError> {
        let body = serde_json::to_value(&req).map_err(|e| ControlError::Refused(e.to_string()))?;
        let v: Value = self.post("/v1/recordings".into(), body).await?;
        v["id"].as_str().map(str::to_string).ok_or_else(|| ControlError::Unavailable("no recording id".into()))
    }

    async fn append_chunk(&self, recording: &str, seq: u64, events: String) -> Result<(), ControlError> {
        // The event lines as they are (asciicast), not escaped into JSON once more.
        let path = format!("/v1/recordings/{}/chunks?seq={seq}", seg(recording));
        let me = self.0.clone();
        tokio::task::spawn_blocking(move || me.send_blocking::<Value>(&path, ASCIICAST, events.as_bytes()))
            .await
            .map_err(|e| ControlError::Unavailable(e.to_string()))?
            .map_err(classify)
            .map(|_| ())
    }

    async fn end_recording(&self, recording: &str) -> Result<(), ControlError> {
        self.post::<Value>(format!("/v1/recordings/{}/end", seg(recording)), json!({})).await.map(|_| ())
    }

    async fn ended_grants(&self, grants: Vec<String>) -> Result<Vec<EndedGrant>, ControlError> {
        #[derive(serde::Deserialize)]
        struct Poll {
            ended: Vec<EndedGrant>,
        }
        let p: Poll = self.post("/v1/gateway/grants".into(), json!({ "grant_ids": grants })).await?;
        Ok(p.ended)
    }
}
