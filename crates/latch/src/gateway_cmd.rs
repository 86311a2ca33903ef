//! `latch gateway`: the recording SSH gateway, talking to the server over
//! its HTTP API with the token of a service principal in `ssh-gateways`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use latch_gateway::control::{AuthorizeRequest, Authorized, EndedGrant, StartRecording};
use latch_gateway::{Control, ControlError, GatewayConfig, UpstreamHostKeys};
use russh::keys::ssh_key::PrivateKey;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::UsageError;
use crate::cli::{GatewayArgs, Global};
use crate::client::{Client, ClientError, seg};

/// Calls the server may take before the gateway treats it as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(args: GatewayArgs, g: &Global) -> anyhow::Result<()> {
    if g.token.is_none() {
        return Err(UsageError(
            "the gateway needs a token: set LATCH_TOKEN to the token of a service principal in the ssh-gateways group"
                .into(),
        )
        .into());
    }
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
    let control: Arc<dyn Control> = Arc::new(HttpControl { client: Arc::new(Client::with_timeout(g, CALL_TIMEOUT)?) });
    let rt =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let public = cfg.host_key.public_key().to_openssh().unwrap_or_default();
        println!("LATCH_GATEWAY_ADDR={addr}");
        println!("LATCH_GATEWAY_HOST_KEY={public}");
        latch_gateway::serve(listener, cfg, control).await.context("the gateway stopped")
    })
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

struct HttpControl {
    client: Arc<Client>,
}

impl HttpControl {
    async fn post<T: DeserializeOwned + Send + 'static>(&self, path: String, body: Value) -> Result<T, ControlError> {
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || client.post::<T>(&path, &body))
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
        let path = format!("/v1/recordings/{}/chunks", seg(recording));
        self.post::<Value>(path, json!({ "seq": seq, "events": events })).await.map(|_| ())
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
