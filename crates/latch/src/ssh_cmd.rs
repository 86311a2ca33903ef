//! `latch ssh …`: certificates for OpenSSH, and the revocation list for sshd.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::UsageError;
use crate::cli::{Global, SshCmd};
use crate::client::{Client, seg};
use crate::out::{emit, s};

pub fn run(cmd: SshCmd, g: &Global) -> anyhow::Result<()> {
    let c = Client::new(g)?;
    match cmd {
        SshCmd::Ca => {
            let line = String::from_utf8(c.get_bytes("/v1/ssh/ca")?).context("the CA key is not text")?;
            emit(g, &json!({ "public_key": line.trim() }), |_| print!("{line}"));
            Ok(())
        }
        SshCmd::Sign { grant, pubkey, principals, ttl, stdout } => {
            let public_key = std::fs::read_to_string(&pubkey)
                .map_err(|e| UsageError(format!("--pubkey {}: {e}", pubkey.display())))?;
            let v = sign(&c, &grant, &public_key, principals, ttl)?;
            if stdout || g.output == crate::cli::Output::Json {
                emit(g, &v, |v| println!("{}", s(v, "certificate")));
                return Ok(());
            }
            let cert_path = cert_path_for(&pubkey);
            write_file(&cert_path, s(&v, "certificate").as_bytes(), 0o644)?;
            describe(&v, &cert_path);
            Ok(())
        }
        SshCmd::Login { grant, key, principals, ttl } => {
            let key = match key {
                Some(k) => k,
                None => default_key_path(&grant)?,
            };
            let seed: [u8; 32] = latch_crypto::random_bytes(32)?
                .try_into()
                .map_err(|_| anyhow::anyhow!("the OS random number generator returned a short read"))?;
            let (private, public) = latch_ssh::user_key_pair(&seed, &format!("latch {grant}"))?;
            let v = sign(&c, &grant, &public, principals, ttl)?;
            write_file(&key, private.as_bytes(), 0o600)?;
            let pub_path = PathBuf::from(format!("{}.pub", key.display()));
            write_file(&pub_path, format!("{public}\n").as_bytes(), 0o644)?;
            let cert_path = cert_path_for(&pub_path);
            write_file(&cert_path, s(&v, "certificate").as_bytes(), 0o644)?;
            emit(g, &json!({ "key": key, "certificate_file": cert_path, "certificate": v }), |_| {
                describe(&v, &cert_path);
                println!("ssh -i {} USER@HOST", key.display());
            });
            Ok(())
        }
        SshCmd::Krl { out, watch, interval } => {
            let mut last: Option<Vec<u8>> = None;
            loop {
                let krl = c.get_bytes("/v1/ssh/krl")?;
                if last.as_ref() != Some(&krl) {
                    replace_file(&out, &krl)?;
                    if g.output == crate::cli::Output::Text {
                        eprintln!("wrote {} ({} bytes)", out.display(), krl.len());
                    }
                    last = Some(krl);
                }
                if !watch {
                    return Ok(());
                }
                wait(Duration::from_secs(interval.max(1)));
            }
        }
    }
}

fn sign(
    c: &Client,
    grant: &str,
    public_key: &str,
    principals: Vec<String>,
    ttl: Option<String>,
) -> anyhow::Result<Value> {
    let principals = (!principals.is_empty()).then_some(principals);
    let body = json!({ "public_key": public_key.trim(), "principals": principals, "ttl": ttl });
    Ok(c.post(&format!("/v1/grants/{}/ssh", seg(grant)), &body)?)
}

fn describe(v: &Value, cert_path: &Path) {
    println!("wrote {}", cert_path.display());
    eprintln!(
        "serial {} for {} until {} (key id: {})",
        v["serial"],
        v["principals"].as_array().map_or(String::new(), |p| p
            .iter()
            .map(|x| x.as_str().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(",")),
        s(v, "valid_before"),
        s(v, "key_id")
    );
}

/// `id_ed25519.pub` → `id_ed25519-cert.pub`, where `ssh` looks for it.
fn cert_path_for(pubkey: &Path) -> PathBuf {
    let text = pubkey.display().to_string();
    PathBuf::from(format!("{}-cert.pub", text.strip_suffix(".pub").unwrap_or(&text)))
}

fn default_key_path(grant: &str) -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").ok_or_else(|| UsageError("HOME is not set: give --key PATH".into()))?;
    let dir = PathBuf::from(home).join(".ssh");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir.join(format!("latch_{}", grant.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_"))))
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    // Replace, never append to, whatever was there; private keys get 0600 from the start.
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Writes `bytes` beside `path` and renames it over: sshd never reads half a KRL.
fn replace_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = PathBuf::from(format!("{}.latch-tmp", path.display()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// The --watch loop waits on wall time: it polls a server, it decides nothing.
#[allow(clippy::disallowed_methods)]
fn wait(d: Duration) {
    std::thread::sleep(d);
}
