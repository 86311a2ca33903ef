//! latch as an OpenSSH user-certificate authority.
//!
//! A grant that allows SSH gets a short-lived OpenSSH user certificate:
//! signed by latch's Ed25519 CA, valid for the role's login names only, never
//! past the grant's end, its key id naming the user and the grant, its serial
//! unique. Stock `sshd` trusts the CA (`TrustedUserCAKeys`) and refuses
//! revoked certificates through a Key Revocation List (`RevokedKeys`) in
//! OpenSSH's binary format, which this crate writes.
//!
//! Threat model: the CA key is the most valuable key latch holds — whoever
//! has it can log in anywhere it is trusted. It arrives here as a seed the
//! caller unsealed (it is stored encrypted) and never leaves as bytes. Keys
//! presented by clients are parsed strictly: certificates, private keys,
//! weak RSA and oversized input are refused. No IO: certificates and KRLs
//! are returned as bytes or text for the caller to store and serve.
#![forbid(unsafe_code)]

pub mod ca;
pub mod krl;

pub use ca::{CertRequest, SignedCert, UserCa, VerifiedCert, parse_user_key, user_key_pair, verify_user_cert};
pub use krl::encode_krl;
pub use russh::keys::ssh_key::PublicKey;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("the public key is not valid OpenSSH public-key text: {0}")]
    BadKey(String),
    #[error("{0}")]
    Refused(String),
    #[error("cannot sign the certificate: {0}")]
    Sign(String),
}
