//! The user CA: parse a client's public key, sign a certificate for it.

use russh::keys::ssh_key;
use russh::keys::ssh_key::Certificate;
use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::ssh_key::{HashAlg, PrivateKey, PublicKey};

use crate::SshError;

/// Longest public-key line accepted (an RSA-16384 key is ~2.8 KiB).
pub const MAX_KEY_LEN: usize = 8 * 1024;
/// Shortest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Parses one OpenSSH public-key line (`ssh-ed25519 AAAA… comment`) as a
/// certificate subject. Refuses certificates, private keys, weak RSA and
/// anything that is not exactly one key.
pub fn parse_user_key(text: &str) -> Result<PublicKey, SshError> {
    let line = text.trim();
    if line.len() > MAX_KEY_LEN {
        return Err(SshError::BadKey(format!("longer than {MAX_KEY_LEN} bytes")));
    }
    if line.contains("PRIVATE KEY") {
        return Err(SshError::Refused("that is a private key: send the .pub file, never the private key".into()));
    }
    if line.lines().count() != 1 {
        return Err(SshError::BadKey("expected exactly one line".into()));
    }
    if line.split_whitespace().next().is_some_and(|alg| alg.contains("-cert-v01@openssh.com")) {
        return Err(SshError::Refused("that is a certificate: send the plain public key".into()));
    }
    let key = PublicKey::from_openssh(line).map_err(|e| SshError::BadKey(e.to_string()))?;
    match key.key_data() {
        KeyData::Rsa(rsa) => {
            let bits = rsa.n.as_positive_bytes().map_or(0, |b| b.len() * 8);
            if bits < MIN_RSA_BITS {
                return Err(SshError::Refused(format!(
                    "RSA keys need at least {MIN_RSA_BITS} bits (this one has {bits}): use ssh-keygen -t ed25519"
                )));
            }
        }
        KeyData::Dsa(_) => return Err(SshError::Refused("DSA keys are refused: use ssh-keygen -t ed25519".into())),
        _ => {}
    }
    Ok(key)
}

/// What to certify.
#[derive(Clone, Debug)]
pub struct CertRequest {
    pub serial: u64,
    /// Names the user and the grant, e.g. `alice@latch grant=grt_…`; shown in sshd's log.
    pub key_id: String,
    pub principals: Vec<String>,
    /// Unix seconds.
    pub valid_after: u64,
    pub valid_before: u64,
    pub force_command: Option<String>,
    pub source_address: Option<String>,
    pub extensions: Vec<String>,
    /// Random, from the OS CSPRNG (the certificate's nonce).
    pub nonce: [u8; 32],
}

/// A signed certificate.
#[derive(Clone, Debug)]
pub struct SignedCert {
    /// One line, as `ssh` reads it from `KEY-cert.pub`.
    pub certificate: String,
    /// SHA-256 fingerprint of the certified key.
    pub fingerprint: String,
}

/// The user-certificate authority.
pub struct UserCa {
    key: PrivateKey,
}

impl std::fmt::Debug for UserCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCa").field("public", &self.public_line()).finish_non_exhaustive()
    }
}

impl UserCa {
    /// The CA whose Ed25519 private key is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let mut key = PrivateKey::from(Ed25519Keypair::from_seed(seed));
        key.set_comment("latch-user-ca");
        UserCa { key }
    }

    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// The line `TrustedUserCAKeys` reads.
    pub fn public_line(&self) -> String {
        self.key.public_key().to_openssh().unwrap_or_default()
    }

    /// Signs a user certificate for `subject`.
    pub fn sign(&self, subject: &PublicKey, req: &CertRequest) -> Result<SignedCert, SshError> {
        if req.principals.is_empty() {
            // An empty principal list would make the certificate valid for every login.
            return Err(SshError::Refused("a certificate needs at least one principal".into()));
        }
        if req.serial == 0 {
            return Err(SshError::Sign("serial 0 cannot be revoked by a KRL".into()));
        }
        let e = |e: russh::keys::ssh_key::Error| SshError::Sign(e.to_string());
        let mut b = Builder::new(req.nonce.to_vec(), subject.key_data().clone(), req.valid_after, req.valid_before)
            .map_err(e)?;
        b.serial(req.serial).map_err(e)?;
        b.cert_type(CertType::User).map_err(e)?;
        b.key_id(req.key_id.clone()).map_err(e)?;
        for p in &req.principals {
            b.valid_principal(p.clone()).map_err(e)?;
        }
        if let Some(c) = &req.force_command {
            b.critical_option("force-command", c.clone()).map_err(e)?;
        }
        if let Some(a) = &req.source_address {
            b.critical_option("source-address", a.clone()).map_err(e)?;
        }
        for x in &req.extensions {
            b.extension(x.clone(), "").map_err(e)?;
        }
        b.comment(req.key_id.clone()).map_err(e)?;
        let cert = b.sign(&self.key).map_err(e)?;
        Ok(SignedCert {
            certificate: cert.to_openssh().map_err(e)?,
            fingerprint: subject.fingerprint(HashAlg::Sha256).to_string(),
        })
    }
}

/// What a verified user certificate says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCert {
    pub serial: u64,
    pub key_id: String,
    pub principals: Vec<String>,
    pub valid_after: u64,
    pub valid_before: u64,
    /// SHA-256 fingerprint of the certified key.
    pub fingerprint: String,
}

/// Checks a user certificate presented to the gateway: one OpenSSH
/// certificate line, signed by `ca` (and only `ca`), a user certificate,
/// valid at `now_unix`. The caller checks the serial against what latch
/// issued and revoked.
pub fn verify_user_cert(ca: &PublicKey, text: &str, now_unix: u64) -> Result<VerifiedCert, SshError> {
    let line = text.trim();
    if line.len() > MAX_KEY_LEN {
        return Err(SshError::BadKey(format!("longer than {MAX_KEY_LEN} bytes")));
    }
    let cert = Certificate::from_openssh(line).map_err(|e| SshError::BadKey(format!("not a certificate: {e}")))?;
    if cert.cert_type() != CertType::User {
        return Err(SshError::Refused("a host certificate cannot log in".into()));
    }
    let ca_fp = ca.fingerprint(HashAlg::Sha256);
    cert.validate_at(now_unix, [&ca_fp]).map_err(|e| match e {
        ssh_key::Error::CertificateValidation if cert.signature_key() != ca.key_data() => {
            SshError::Refused("the certificate is not signed by latch's CA".into())
        }
        ssh_key::Error::CertificateValidation => {
            SshError::Refused("the certificate is expired, not yet valid or its signature is bad".into())
        }
        other => SshError::Refused(format!("the certificate does not verify: {other}")),
    })?;
    Ok(VerifiedCert {
        serial: cert.serial(),
        key_id: cert.key_id().to_string(),
        principals: cert.valid_principals().to_vec(),
        valid_after: cert.valid_after(),
        valid_before: cert.valid_before(),
        fingerprint: PublicKey::from(cert.public_key().clone()).fingerprint(HashAlg::Sha256).to_string(),
    })
}

/// A new Ed25519 user key pair from `seed` (32 bytes from the OS CSPRNG):
/// the private key in OpenSSH format and the public-key line.
pub fn user_key_pair(seed: &[u8; 32], comment: &str) -> Result<(zeroize::Zeroizing<String>, String), SshError> {
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(seed));
    key.set_comment(comment);
    let e = |e: russh::keys::ssh_key::Error| SshError::Sign(e.to_string());
    let private = key.to_openssh(russh::keys::ssh_key::LineEnding::LF).map_err(e)?;
    let public = key.public_key().to_openssh().map_err(e)?;
    Ok((private, public))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";

    fn request() -> CertRequest {
        CertRequest {
            serial: 42,
            key_id: "alice@latch grant=grt_1".into(),
            principals: vec!["root".into(), "deploy".into()],
            valid_after: 1_700_000_000,
            valid_before: 1_700_003_600,
            force_command: Some("/usr/bin/psql".into()),
            source_address: Some("10.0.0.0/8".into()),
            extensions: vec!["permit-pty".into()],
            nonce: [7; 32],
        }
    }

    #[test]
    fn signs_what_was_asked_and_verifies_under_the_ca() {
        let ca = UserCa::from_seed(&[1; 32]);
        let subject = parse_user_key(ED).unwrap();
        let signed = ca.sign(&subject, &request()).unwrap();
        let cert = Certificate::from_openssh(&signed.certificate).unwrap();
        assert_eq!(cert.serial(), 42);
        assert_eq!(cert.key_id(), "alice@latch grant=grt_1");
        assert_eq!(cert.valid_principals(), ["root", "deploy"]);
        assert_eq!((cert.valid_after(), cert.valid_before()), (1_700_000_000, 1_700_003_600));
        assert_eq!(cert.critical_options().get("force-command").map(String::as_str), Some("/usr/bin/psql"));
        assert!(cert.extensions().contains_key("permit-pty"));
        assert_eq!(cert.signature_key(), ca.public_key().key_data());
        let fp = ca.public_key().fingerprint(HashAlg::Sha256);
        cert.validate_at(1_700_000_100, [&fp]).unwrap();
        assert!(cert.validate_at(1_700_003_601, [&fp]).is_err(), "expired");
        assert!(signed.fingerprint.starts_with("SHA256:"));
        assert!(ca.public_line().starts_with("ssh-ed25519 AAAA") && ca.public_line().ends_with("latch-user-ca"));
    }

    #[test]
    fn gateway_verifies_certificates_of_this_ca_only() {
        let ca = UserCa::from_seed(&[1; 32]);
        let other = UserCa::from_seed(&[2; 32]);
        let subject = parse_user_key(ED).unwrap();
        let signed = ca.sign(&subject, &request()).unwrap();
        let v = verify_user_cert(ca.public_key(), &signed.certificate, 1_700_000_100).unwrap();
        assert_eq!((v.serial, v.principals.len(), v.fingerprint.clone()), (42, 2, signed.fingerprint.clone()));
        let err = |t: &str, now| verify_user_cert(ca.public_key(), t, now).unwrap_err().to_string();
        assert!(err(&signed.certificate, 1_700_003_601).contains("expired"));
        let forged = other.sign(&subject, &request()).unwrap();
        assert!(err(&forged.certificate, 1_700_000_100).contains("not signed by latch"));
        assert!(err(ED, 1_700_000_100).contains("not a certificate"));
        // A signature from latch's CA over different content: flip one byte of the body.
        let mut bytes = Certificate::from_openssh(&signed.certificate).unwrap().to_bytes().unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 1;
        if let Ok(c) = Certificate::from_bytes(&bytes) {
            assert!(verify_user_cert(ca.public_key(), &c.to_openssh().unwrap(), 1_700_000_100).is_err());
        }
    }

    #[test]
    fn no_golden_tickets_and_no_serial_zero() {
        let ca = UserCa::from_seed(&[1; 32]);
        let subject = parse_user_key(ED).unwrap();
        assert!(ca.sign(&subject, &CertRequest { principals: vec![], ..request() }).is_err());
        assert!(ca.sign(&subject, &CertRequest { serial: 0, ..request() }).is_err());
    }

    #[test]
    fn hostile_keys_are_refused() {
        for (bad, needle) in [
            ("", "not valid"),
            ("ssh-ed25519 not-base64!!", "not valid"),
            ("-----BEGIN OPENSSH PRIVATE KEY-----", "private key"),
            ("ssh-ed25519-cert-v01@openssh.com AAAA", "certificate"),
            (&format!("{ED}\n{ED}"), "exactly one line"),
            (&"A".repeat(MAX_KEY_LEN + 1), "longer than"),
        ] {
            let e = parse_user_key(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad:.40}: {e}");
        }
    }
}
