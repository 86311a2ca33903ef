//! TLS to PostgreSQL — latch's own storage and the target databases of
//! dynamic credentials — on the rustls (ring) stack latch already uses.
//!
//! latch never connects with a certificate it has not verified: the chain
//! must lead to the CA certificate given (PEM: a target connection's
//! `ca_cert`, the storage URL's `sslrootcert`) or, without one, to a public
//! root (Mozilla's list), and the certificate must name the host latch
//! dialled. So `require` and `verify-full` mean the same here — unlike
//! libpq, where `require` checks nothing — because passwords and every
//! secret latch stores are sent over it.

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

/// Makes verified TLS connections to one PostgreSQL server.
#[derive(Clone)]
pub struct VerifiedTls {
    config: Arc<rustls::ClientConfig>,
}

impl VerifiedTls {
    /// Trusting `ca_pem` (one or more PEM certificates), or the public roots;
    /// errors name `option`, where the certificate came from.
    pub fn new(ca_pem: Option<&str>, option: &str) -> Result<VerifiedTls, String> {
        let mut roots = rustls::RootCertStore::empty();
        match ca_pem {
            Some(pem) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("{option} is not PEM certificates: {e}"))?;
                if certs.is_empty() {
                    return Err(format!("{option} holds no certificate (expected -----BEGIN CERTIFICATE-----)"));
                }
                for c in certs {
                    roots.add(c).map_err(|e| format!("{option}: {e}"))?;
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
        Ok(VerifiedTls { config: Arc::new(config) })
    }
}

/// Why a TLS handshake refused the server's certificate, when that is what
/// made `e` fail: rustls's error, which the driver keeps inside an
/// `io::Error` (whose `source` skips it, so the chain is searched by hand).
pub fn refused_certificate(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        let tls =
            c.downcast_ref::<io::Error>().and_then(io::Error::get_ref).and_then(|i| i.downcast_ref::<rustls::Error>());
        if let Some(tls @ rustls::Error::InvalidCertificate(_)) = tls {
            return Some(tls.to_string());
        }
        cause = c.source();
    }
    None
}

impl MakeTlsConnect<Socket> for VerifiedTls {
    type Stream = VerifiedTlsStream;
    type TlsConnect = VerifiedTlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<VerifiedTlsConnect, Self::Error> {
        Ok(VerifiedTlsConnect { config: self.config.clone(), name: ServerName::try_from(host.to_string())? })
    }
}

pub struct VerifiedTlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl TlsConnect<Socket> for VerifiedTlsConnect {
    type Stream = VerifiedTlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<VerifiedTlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { Ok(VerifiedTlsStream(connector.connect(self.name, stream).await?)) })
    }
}

/// A verified TLS stream (no channel binding: SCRAM runs without it).
pub struct VerifiedTlsStream(tokio_rustls::client::TlsStream<Socket>);

impl TlsStream for VerifiedTlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for VerifiedTlsStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for VerifiedTlsStream {
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
        assert!(VerifiedTls::new(None, "ca_cert").is_ok(), "the public roots");
        let e = VerifiedTls::new(Some("not a certificate"), "ca_cert").err().unwrap();
        assert!(e.contains("ca_cert holds no certificate"), "{e}");
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = VerifiedTls::new(Some(bad), "sslrootcert /etc/ca.pem").err().unwrap();
        assert!(e.contains("sslrootcert /etc/ca.pem"), "{e}");
    }

    #[test]
    fn a_refused_certificate_is_found_inside_the_io_error() {
        let bad = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let e = io::Error::new(io::ErrorKind::InvalidData, bad);
        assert!(refused_certificate(&e).is_some_and(|why| why.contains("UnknownIssuer")));
        assert!(refused_certificate(&io::Error::new(io::ErrorKind::ConnectionRefused, "refused")).is_none());
    }
}
