//! One user connection: certificate authentication decided by the server,
//! an upstream connection to the target with the gateway's own short-lived
//! certificate, and a recorded proxy for each shell or exec channel.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{Certificate, PrivateKey, PublicKey};
use russh::server::{Auth, Msg as ServerMsg, Session};
use russh::{Channel, ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Pty, client};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::control::{AuthorizeRequest, Authorized, StartRecording};
use crate::live::{Live, Registration};
use crate::recorder::Recorder;
use crate::target::Target;
use crate::{GatewayError, Shared, UpstreamHostKeys};

/// Exit status of a session the gateway refused to start.
const REFUSED_STATUS: u32 = 254;
/// Terminal size recorded for a channel without a pseudo-terminal (asciicast needs one).
const NO_PTY_SIZE: (u32, u32) = (80, 24);

#[derive(Clone, Debug)]
struct PtyRequest {
    term: String,
    cols: u32,
    rows: u32,
    px_w: u32,
    px_h: u32,
    modes: Vec<(Pty, u32)>,
}

struct Authed {
    target: Target,
    grant: Authorized,
    key: Arc<PrivateKey>,
    cert: Certificate,
    /// The certificate the user presented, to ask again for an upstream one.
    user_cert: String,
    at: tokio::time::Instant,
}

/// The server certifies the gateway's key for minutes; past this age a new
/// one is asked for before connecting to the target.
const UPSTREAM_CERT_REUSE: std::time::Duration = std::time::Duration::from_secs(4 * 60);

/// A channel opened by the user, not yet running anything.
struct Opened {
    channel: Channel<ServerMsg>,
    pty: Option<PtyRequest>,
}

pub(crate) struct Conn {
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    authed: Option<Arc<Authed>>,
    upstream: Option<Arc<client::Handle<Upstream>>>,
    opened: HashMap<ChannelId, Opened>,
    registration: Option<Registration>,
    kill: watch::Receiver<Option<String>>,
    kill_tx: Arc<watch::Sender<Option<String>>>,
}

impl Conn {
    pub(crate) fn new(shared: Arc<Shared>, peer: Option<SocketAddr>) -> Conn {
        let (tx, rx) = watch::channel(None);
        Conn {
            shared,
            peer,
            authed: None,
            upstream: None,
            opened: HashMap::new(),
            registration: None,
            kill: rx,
            kill_tx: Arc::new(tx),
        }
    }

    fn live(&self) -> &Live {
        &self.shared.live
    }

    /// The connection to the target, opened on first use.
    async fn upstream(&mut self) -> Result<Arc<client::Handle<Upstream>>, String> {
        if let Some(u) = self.upstream.as_ref().filter(|u| !u.is_closed()) {
            return Ok(u.clone());
        }
        let mut a = self.authed.clone().ok_or("not authenticated")?;
        if a.at.elapsed() > UPSTREAM_CERT_REUSE {
            // Asks the server again: the grant may have ended meanwhile.
            let fresh =
                authorize(&self.shared, a.target.clone(), a.user_cert.clone()).await.map_err(|e| e.to_string())?;
            a = Arc::new(fresh.map_err(|why| format!("no longer authorized: {why}"))?);
            self.authed = Some(a.clone());
        }
        let handler =
            Upstream { host: a.target.host.clone(), port: a.target.port, keys: self.shared.upstream_keys.clone() };
        let addr = (a.target.host.as_str(), a.target.port);
        let mut h = client::connect(self.shared.client_config.clone(), addr, handler)
            .await
            .map_err(|e| format!("cannot reach {}:{}: {e}", a.target.host, a.target.port))?;
        let auth = h
            .authenticate_openssh_cert(a.target.login.clone(), a.key.clone(), a.cert.clone())
            .await
            .map_err(|e| format!("{}:{} refused the gateway: {e}", a.target.host, a.target.port))?;
        if !auth.success() {
            return Err(format!(
                "{}:{} refused the gateway's certificate for {}: does it trust latch's CA (TrustedUserCAKeys)?",
                a.target.host, a.target.port, a.target.login
            ));
        }
        let h = Arc::new(h);
        if let Some(r) = &self.registration {
            self.live().set_upstream(r, h.clone());
        }
        self.upstream = Some(h.clone());
        Ok(h)
    }

    /// Starts a shell (`command` None) or a command on the target, recorded.
    async fn start(&mut self, id: ChannelId, command: Option<Vec<u8>>, session: &mut Session) -> Result<(), String> {
        let a = self.authed.clone().ok_or("not authenticated")?;
        let opened = self.opened.remove(&id).ok_or("unknown channel")?;
        let up = self.upstream().await?;
        let (cols, rows) = opened.pty.as_ref().map_or(NO_PTY_SIZE, |p| (p.cols.max(1), p.rows.max(1)));
        let kind = if command.is_some() { "exec" } else { "shell" };
        let start = StartRecording {
            grant_id: a.grant.grant_id.clone(),
            target: a.target.host.clone(),
            login: a.target.login.clone(),
            kind: kind.into(),
            width: i64::from(cols),
            height: i64::from(rows),
            term: opened.pty.as_ref().map(|p| p.term.clone()).filter(|t| !t.is_empty()),
        };
        // No recording, no session.
        let recording = self
            .shared
            .control
            .start_recording(start)
            .await
            .map_err(|e| format!("the session cannot be recorded, so it is refused: {e}"))?;
        let recorder = match self.shared.spool.begin(&recording, a.grant.record_input) {
            Ok(r) => r,
            Err(e) => {
                let control = self.shared.control.clone();
                tokio::spawn(async move { control.end_recording(&recording).await });
                return Err(format!("the session cannot be recorded (spool: {e}), so it is refused"));
            }
        };
        let mut ch = up.channel_open_session().await.map_err(|e| format!("the target refused a session: {e}"))?;
        let mut early = Vec::new();
        if let Some(p) = &opened.pty {
            ch.request_pty(true, &p.term, p.cols, p.rows, p.px_w, p.px_h, &p.modes).await.map_err(|e| e.to_string())?;
            reply(&mut ch, &mut early, "a terminal").await?;
        }
        match &command {
            Some(c) => ch.exec(true, c.clone()).await.map_err(|e| e.to_string())?,
            None => ch.request_shell(true).await.map_err(|e| e.to_string())?,
        }
        reply(&mut ch, &mut early, kind).await?;
        info!(recording = %recording, user = %a.grant.user, grant = %a.grant.grant_id, login = %a.target.login,
              target = %a.target.host, kind, "session started");
        let (down_r, down_w) = opened.channel.split();
        let (up_r, up_w) = ch.split();
        let handle = session.handle();
        tokio::spawn(to_user(up_r, early, down_w, handle, recorder.clone(), self.kill.clone()));
        tokio::spawn(to_target(down_r, up_w, recorder));
        Ok(())
    }
}

/// Waits for the target's answer to a channel request; data arriving first is kept.
async fn reply(ch: &mut Channel<client::Msg>, early: &mut Vec<ChannelMsg>, what: &str) -> Result<(), String> {
    loop {
        match ch.wait().await {
            Some(ChannelMsg::Success) => return Ok(()),
            Some(ChannelMsg::Failure) => return Err(format!("the target refused {what}")),
            Some(ChannelMsg::Close) | None => {
                return Err(format!("the target closed the channel before starting {what}"));
            }
            Some(other) => early.push(other),
        }
    }
}

/// A channel's data writer, kept for the channel's life.
///
/// Why not `ChannelWriteHalf::data`: it copies through `tokio::io::copy`'s
/// 8 KiB buffer, so every 32 KiB packet from the target left as four SSH
/// packets, each encrypted, framed and parsed by the user's client on its
/// own; measured, the client then spent most of a bulk transfer in the
/// kernel. Writing whole buffers sends packets as large as the peer allows.
fn writer<S>(ch: &ChannelWriteHalf<S>, ext: Option<u32>) -> std::pin::Pin<Box<dyn AsyncWrite + Send>>
where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    Box::pin(ch.make_writer_ext(ext))
}

/// Target → user: everything recorded before it is shown.
async fn to_user(
    mut up: ChannelReadHalf,
    early: Vec<ChannelMsg>,
    down: ChannelWriteHalf<ServerMsg>,
    handle: russh::server::Handle,
    recorder: Recorder,
    mut kill: watch::Receiver<Option<String>>,
) {
    let mut early = early.into_iter();
    let (mut out, mut err) = (writer(&down, None), writer(&down, Some(1)));
    loop {
        let msg = match early.next() {
            Some(m) => Some(m),
            None => tokio::select! {
                m = up.wait() => m,
                _ = kill.changed() => {
                    let why = kill.borrow().clone().unwrap_or_default();
                    let _ = down.extended_data(1, format!("\r\nlatch gateway: {why}; session closed\r\n").as_bytes()).await;
                    let _ = down.exit_status(255).await;
                    break;
                }
            },
        };
        let result = match msg {
            Some(ChannelMsg::Data { data }) => forward(&recorder, &data, &mut out).await,
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => forward(&recorder, &data, &mut err).await,
            Some(ChannelMsg::ExtendedData { data, ext }) => {
                forward(&recorder, &data, &mut writer(&down, Some(ext))).await
            }
            Some(ChannelMsg::Eof) => down.eof().await.map_err(|e| e.to_string()),
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                down.exit_status(exit_status).await.map_err(|e| e.to_string())
            }
            Some(ChannelMsg::ExitSignal { signal_name, core_dumped, error_message, lang_tag }) => handle
                .exit_signal_request(down.id(), signal_name, core_dumped, error_message, lang_tag)
                .await
                .map_err(|()| "the user's connection is gone".to_string()),
            Some(ChannelMsg::Close) | None => break,
            Some(_) => Ok(()),
        };
        if let Err(why) = result {
            let _ = down.extended_data(1, format!("\r\nlatch gateway: {why}; session closed\r\n").as_bytes()).await;
            break;
        }
    }
    let _ = down.eof().await;
    let _ = down.close().await;
    // Dropping the recorder (here and in `to_target`) ends the recording.
}

async fn forward(recorder: &Recorder, data: &Bytes, to: &mut (impl AsyncWrite + Unpin)) -> Result<(), String> {
    recorder.output(data.clone()).await.map_err(|e| e.to_string())?;
    to.write_all(data).await.map_err(|e| format!("cannot write to the user: {e}"))
}

/// User → target.
async fn to_target(mut down: ChannelReadHalf, up: ChannelWriteHalf<client::Msg>, recorder: Recorder) {
    let mut to = writer(&up, None);
    while let Some(msg) = down.wait().await {
        let ok = match msg {
            ChannelMsg::Data { data } => {
                recorder.input(data.clone()).await.is_ok() && to.write_all(&data).await.is_ok()
            }
            ChannelMsg::Eof => up.eof().await.is_ok(),
            ChannelMsg::WindowChange { col_width, row_height, pix_width, pix_height } => {
                recorder.resize(col_width.max(1), row_height.max(1)).await.is_ok()
                    && up.window_change(col_width, row_height, pix_width, pix_height).await.is_ok()
            }
            ChannelMsg::Signal { signal } => up.signal(signal).await.is_ok(),
            ChannelMsg::Close => break,
            _ => true,
        };
        if !ok {
            break;
        }
    }
    let _ = up.close().await;
}

/// Bytes both ways between two channels, for a port forwarded where the role allows it.
async fn splice(down: Channel<ServerMsg>, up: Channel<client::Msg>) {
    let (mut dr, dw) = down.split();
    let (mut ur, uw) = up.split();
    let a = async move {
        let mut to = writer(&uw, None);
        while let Some(m) = dr.wait().await {
            match m {
                ChannelMsg::Data { data } if to.write_all(&data).await.is_ok() => {}
                ChannelMsg::Eof => {
                    let _ = uw.eof().await;
                }
                ChannelMsg::Data { .. } | ChannelMsg::Close => break,
                _ => {}
            }
        }
        let _ = uw.close().await;
    };
    let b = async move {
        let mut to = writer(&dw, None);
        while let Some(m) = ur.wait().await {
            match m {
                ChannelMsg::Data { data } if to.write_all(&data).await.is_ok() => {}
                ChannelMsg::Eof => {
                    let _ = dw.eof().await;
                }
                ChannelMsg::Data { .. } | ChannelMsg::Close => break,
                _ => {}
            }
        }
        let _ = dw.close().await;
    };
    tokio::join!(a, b);
}

impl russh::server::Handler for Conn {
    type Error = GatewayError;

    async fn auth_openssh_certificate(&mut self, user: &str, certificate: &Certificate) -> Result<Auth, Self::Error> {
        let target = match Target::parse(user) {
            Ok(t) => t,
            Err(why) => {
                info!(peer = ?self.peer, user, "refused: {why}");
                return Ok(Auth::reject());
            }
        };
        match authorize(&self.shared, target, certificate.to_openssh()?).await? {
            Ok(a) => {
                info!(peer = ?self.peer, user = %a.grant.user, grant = %a.grant.grant_id, login = %a.target.login,
                      target = %a.target.host, "authorized");
                self.authed = Some(Arc::new(a));
                Ok(Auth::Accept)
            }
            Err(why) => {
                info!(peer = ?self.peer, user, "refused: {why}");
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        if let Some(a) = &self.authed {
            let reg = self.live().register(a.grant.grant_id.clone(), session.handle(), self.kill_tx.clone());
            self.registration = Some(reg);
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<ServerMsg>,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        if self.authed.is_none() {
            return Ok(false);
        }
        self.opened.insert(channel.id(), Opened { channel, pty: None });
        Ok(true)
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<ServerMsg>,
        host: &str,
        port: u32,
        originator_address: &str,
        originator_port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Some(a) = self.authed.clone() else { return Ok(false) };
        if !a.grant.port_forwarding {
            info!(user = %a.grant.user, grant = %a.grant.grant_id, host, port,
                  "port forwarding refused: the role does not grant permit-port-forwarding");
            return Ok(false);
        }
        let up = match self.upstream().await {
            Ok(u) => u,
            Err(e) => {
                warn!("port forwarding: {e}");
                return Ok(false);
            }
        };
        match up.channel_open_direct_tcpip(host, port, originator_address, originator_port).await {
            Ok(upc) => {
                info!(user = %a.grant.user, grant = %a.grant.grant_id, host, port, "port forwarded");
                tokio::spawn(splice(channel, upc));
                Ok(true)
            }
            Err(e) => {
                info!(host, port, "the target refused to forward: {e}");
                Ok(false)
            }
        }
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        px_w: u32,
        px_h: u32,
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.opened.get_mut(&channel) {
            Some(o) => {
                o.pty = Some(PtyRequest { term: term.to_string(), cols, rows, px_w, px_h, modes: modes.to_vec() });
                session.channel_success(channel)?;
            }
            None => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        cols: u32,
        rows: u32,
        px_w: u32,
        px_h: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Before the shell starts; afterwards the proxy forwards it.
        if let Some(p) = self.opened.get_mut(&channel).and_then(|o| o.pty.as_mut()) {
            (p.cols, p.rows, p.px_w, p.px_h) = (cols, rows, px_w, px_h);
        }
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        self.run(channel, None, session).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.run(channel, Some(data.to_vec()), session).await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // sftp and friends would move files unrecorded.
        info!(subsystem = name, "refused: the gateway records shells and commands only");
        session.channel_failure(channel)?;
        Ok(())
    }
}

impl Conn {
    async fn run(
        &mut self,
        channel: ChannelId,
        command: Option<Vec<u8>>,
        session: &mut Session,
    ) -> Result<(), GatewayError> {
        match self.start(channel, command, session).await {
            Ok(()) => session.channel_success(channel)?,
            Err(why) => {
                // Accepted only to tell the user why: OpenSSH shows no text
                // that comes with a refused request. Nothing runs.
                warn!(peer = ?self.peer, "session refused: {why}");
                session.channel_success(channel)?;
                session.extended_data(channel, 1, Bytes::from(format!("latch gateway: {why}\r\n")))?;
                session.exit_status_request(channel, REFUSED_STATUS)?;
                session.eof(channel)?;
                session.close(channel)?;
            }
        }
        Ok(())
    }
}

/// Asks the server whether `user_cert` may reach `target`; on yes, holds a
/// fresh key for the target and its certificate. The inner error is the
/// server's refusal (or its unavailability).
async fn authorize(shared: &Shared, target: Target, user_cert: String) -> Result<Result<Authed, String>, GatewayError> {
    let seed: [u8; 32] = latch_crypto::random_bytes(32)?.try_into().map_err(|_| GatewayError::Random)?;
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    let req = AuthorizeRequest {
        certificate: user_cert.clone(),
        login: target.login.clone(),
        target: target.host.clone(),
        upstream_key: key.public_key().to_openssh()?,
    };
    match shared.control.authorize(req).await {
        Ok(grant) => {
            let cert = Certificate::from_openssh(&grant.upstream_certificate)?;
            let at = tokio::time::Instant::now();
            Ok(Ok(Authed { target, grant, key: Arc::new(key), cert, user_cert, at }))
        }
        Err(e) => Ok(Err(e.to_string())),
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(r) = self.registration.take() {
            self.shared.live.unregister(r);
        }
    }
}

/// The gateway as an SSH client of the target.
pub(crate) struct Upstream {
    host: String,
    port: u16,
    keys: UpstreamHostKeys,
}

impl client::Handler for Upstream {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKey) -> Result<bool, Self::Error> {
        match &self.keys {
            UpstreamHostKeys::AcceptAny => Ok(true),
            UpstreamHostKeys::KnownHosts(path) => {
                match russh::keys::check_known_hosts_path(&self.host, self.port, key, path) {
                    Ok(true) => Ok(true),
                    Ok(false) => {
                        warn!(host = %self.host, port = self.port, file = %path.display(),
                              "the target's host key is not in the known-hosts file: refusing to connect");
                        Ok(false)
                    }
                    Err(e) => {
                        warn!(host = %self.host, port = self.port, "host key check failed: {e}");
                        Ok(false)
                    }
                }
            }
        }
    }
}
