//! TLS to target databases, on the rustls (ring) stack latch already uses.
//!
//! latch never connects with a certificate it has not verified: the chain
//! must lead to the connection's own CA certificate (PEM, given when it is
//! registered) or, without one, to a public root (Mozilla's list), and the
//! certificate must name the host latch dialled. So `require` and
//! `verify-full` mean the same here — unlike libpq, where `require` checks
//! nothing — because the administrator password is sent over it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::Socket;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// Makes verified TLS connections to one target.
#[derive(Clone)]
pub struct TargetTls {
    config: Arc<rustls::ClientConfig>,
}

impl TargetTls {
    /// Trusting `ca_pem` (one or more PEM certificates), or the public roots.
    pub fn new(ca_pem: Option<&str>) -> Result<TargetTls, String> {
        let mut roots = rustls::RootCertStore::empty();
        match ca_pem {
            Some(pem) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("ca_cert is not PEM certificates: {e}"))?;
                if certs.is_empty() {
                    return Err("ca_cert holds no certificate (expected -----BEGIN CERTIFICATE-----)".into());
                }
                for c in certs {
                    roots.add(c).map_err(|e| format!("ca_cert: {e}"))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TargetTls { config: Arc::new(config) })
    }
}

impl MakeTlsConnect<Socket> for TargetTls {
    type Stream = TargetTlsStream;
    type TlsConnect = TargetTlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<TargetTlsConnect, Self::Error> {
        Ok(TargetTlsConnect { config: self.config.clone(), name: ServerName::try_from(host.to_string())? })
    }
}

pub struct TargetTlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl TlsConnect<Socket> for TargetTlsConnect {
    type Stream = TargetTlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TargetTlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { Ok(TargetTlsStream(connector.connect(self.name, stream).await?)) })
    }
}

/// A TLS stream to a target (no channel binding: SCRAM runs without it).
pub struct TargetTlsStream(tokio_rustls::client::TlsStream<Socket>);

impl TlsStream for TargetTlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for TargetTlsStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TargetTlsStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_certificate_must_be_pem() {
        assert!(TargetTls::new(None).is_ok(), "the public roots");
        let e = TargetTls::new(Some("not a certificate")).err().unwrap();
        assert!(e.contains("no certificate"), "{e}");
        let e = TargetTls::new(Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")).err().unwrap();
        assert!(e.contains("ca_cert"), "{e}");
    }
}
