//! latch's recording SSH gateway.
//!
//! A user connects with the OpenSSH certificate latch issued under their
//! grant and names the target in the login (`ssh -p 2222
//! deploy@db-1.internal@gateway`). The gateway does not decide anything
//! itself: it passes the certificate to the latch server, which checks its
//! signature, that it issued and has not revoked it, and that the grant is
//! live and its role reaches that host with that login — and audits a
//! refusal with the check that failed. On success the server certifies a
//! key the gateway made for this connection alone (principal: that login;
//! valid minutes; bound to the same grant, so revoking the grant puts it on
//! the KRL too). The gateway logs in to the target with it, and proxies
//! shells and commands (port forwarding only where the role grants
//! `permit-port-forwarding`; subsystems such as sftp never, as they would
//! move files unrecorded).
//!
//! Every shell and command is recorded as an asciicast v2 stream, spooled to
//! local disk and uploaded in order ([`recorder`]); a session that cannot
//! be recorded is refused or ended. Live connections are ended within a
//! poll interval of their grant being revoked or expiring ([`live`]).
//!
//! Threat model: the gateway holds a latch token of a service principal in
//! the `ssh-gateways` group — it can check certificates, certify its own
//! throwaway keys under an existing live grant, and write recordings;
//! nothing else. It never holds a user's private key nor a long-lived key
//! to any target. It verifies each target's host key against a known-hosts
//! file (or, explicitly, not at all for labs). A compromised gateway sees
//! the sessions it proxies — as any recording proxy does — and can open
//! sessions only under grants that are live.
#![forbid(unsafe_code)]

pub mod cast;
pub mod control;
pub mod live;
pub mod recorder;
mod session;
pub mod target;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use russh::MethodKind;
use russh::keys::ssh_key::PrivateKey;
use tokio::net::TcpListener;
use tracing::{info, warn};

pub use control::{Control, ControlError};
use live::Live;
use recorder::Spool;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Ssh(#[from] russh::Error),
    #[error("SSH key: {0}")]
    Key(#[from] russh::keys::ssh_key::Error),
    #[error(transparent)]
    Crypto(#[from] latch_crypto::CryptoError),
    #[error("the OS random generator returned too few bytes")]
    Random,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How the gateway checks the targets' host keys.
#[derive(Clone, Debug)]
pub enum UpstreamHostKeys {
    /// An OpenSSH known_hosts file (`[host]:port` entries for other ports).
    KnownHosts(PathBuf),
    /// Any key: only for labs; a network attacker could then read sessions.
    AcceptAny,
}

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The gateway's own host key.
    pub host_key: PrivateKey,
    /// Where recordings wait until the server has stored them.
    pub spool: PathBuf,
    pub upstream_host_keys: UpstreamHostKeys,
    /// How often the server is asked whether live sessions' grants have ended.
    pub poll_interval: Duration,
    /// How long sessions go on while the server cannot be reached.
    pub max_offline: Duration,
}

pub(crate) struct Shared {
    control: Arc<dyn Control>,
    spool: Spool,
    live: Arc<Live>,
    upstream_keys: UpstreamHostKeys,
    client_config: Arc<russh::client::Config>,
}

/// AES-GCM only, on both sides: ring's hardware-accelerated AEAD. The
/// gateway decrypts and re-encrypts every byte of every session, so the
/// cipher decides its throughput (russh's ChaCha20 is software-only).
fn preferred() -> russh::Preferred {
    use russh::cipher::{AES_128_GCM, AES_256_GCM};
    russh::Preferred { cipher: std::borrow::Cow::Borrowed(&[AES_256_GCM, AES_128_GCM]), ..Default::default() }
}

/// A running gateway: the state its connections share. Several
/// single-threaded runtimes may accept connections for one gateway
/// ([`Gateway::accept`] on each): a connection then stays on one thread,
/// with no wake-ups across threads for every packet it relays — a quarter
/// less CPU per byte than tokio's work-stealing scheduler measured
/// (BENCHMARKS.md).
pub struct Gateway {
    shared: Arc<Shared>,
    server_config: Arc<russh::server::Config>,
}

impl Gateway {
    /// Opens the spool, resumes uploads a previous run left, and starts
    /// watching live sessions' grants, on the runtime it is called in.
    pub fn start(cfg: GatewayConfig, control: Arc<dyn Control>) -> Result<Gateway, GatewayError> {
        let spool = Spool::open(&cfg.spool, control.clone())?;
        let resumed = spool.resume()?;
        if resumed > 0 {
            info!(recordings = resumed, "uploading recordings left in the spool by a previous run");
        }
        let live = Arc::new(Live::default());
        tokio::spawn(live::watch_grants(live.clone(), control.clone(), cfg.poll_interval, cfg.max_offline));
        let client_config = russh::client::Config {
            nodelay: true,
            inactivity_timeout: None,
            preferred: preferred(),
            ..Default::default()
        };
        let shared = Arc::new(Shared {
            control,
            spool,
            live,
            upstream_keys: cfg.upstream_host_keys.clone(),
            client_config: Arc::new(client_config),
        });
        let server_config = Arc::new(russh::server::Config {
            keys: vec![cfg.host_key.clone()],
            methods: russh::MethodSet::from(&[MethodKind::PublicKey][..]),
            auth_rejection_time: Duration::from_millis(500),
            auth_rejection_time_initial: Some(Duration::ZERO),
            // Interactive sessions may sit idle; the grant bounds them instead.
            inactivity_timeout: None,
            nodelay: true,
            preferred: preferred(),
            ..Default::default()
        });
        Ok(Gateway { shared, server_config })
    }

    /// Serves SSH on `listener` until the process ends; each connection runs
    /// on the runtime this is called in.
    pub async fn accept(&self, listener: TcpListener) -> Result<(), GatewayError> {
        loop {
            let (stream, peer) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let handler = session::Conn::new(self.shared.clone(), Some(peer));
            let config = self.server_config.clone();
            tokio::spawn(async move {
                match russh::server::run_stream(config, stream, handler).await {
                    Ok(running) => {
                        if let Err(e) = running.await {
                            info!(%peer, "connection ended: {e}");
                        }
                    }
                    Err(e) => warn!(%peer, "SSH handshake failed: {e}"),
                }
            });
        }
    }
}
