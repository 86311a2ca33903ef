//! A stock OpenSSH `sshd` on a loopback port, trusting latch's user CA and
//! reading its KRL, and the local login the certificates are for.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The login the certificates are for (created by the test when missing).
pub const LOGIN: &str = "latchssh";

pub fn ensure_login_user() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if !Command::new("id").arg(LOGIN).output().unwrap().status.success() {
            let out = Command::new("useradd").args(["-m", "-s", "/bin/sh", LOGIN]).output().unwrap();
            let exists = Command::new("id").arg(LOGIN).output().unwrap().status.success();
            assert!(exists, "cannot create user {LOGIN} (run the tests as root): {out:?}");
        }
        // No password, but not locked: sshd without PAM refuses locked ("!") accounts.
        let out = Command::new("usermod").args(["-p", "*", LOGIN]).output().unwrap();
        assert!(out.status.success(), "cannot unlock {LOGIN}: {out:?}");
    });
}

pub struct Sshd {
    child: Child,
    pub port: u16,
    log: PathBuf,
    /// The host key's public half, for known_hosts files.
    pub host_pub: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    /// A stock sshd trusting `ca_pub` and reading `krl` on every login.
    pub fn start(dir: &Path, ca_pub: &Path, krl: &Path) -> Sshd {
        ensure_login_user();
        let _ = std::fs::create_dir_all("/run/sshd");
        let host = dir.join("host_ed25519");
        let out = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&host).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile none\n\
                 TrustedUserCAKeys {}\nRevokedKeys {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nPermitRootLogin no\nStrictModes no\nLogLevel VERBOSE\n",
                host.display(),
                dir.join("sshd.pid").display(),
                ca_pub.display(),
                krl.display()
            ),
        )
        .unwrap();
        let log = dir.join("sshd.log");
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start /usr/sbin/sshd (apt-get install -y openssh-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start: {}", std::fs::read_to_string(&log).unwrap());
            std::thread::park_timeout(Duration::from_millis(20));
        }
        Sshd { child, port, log, host_pub: host.with_extension("pub") }
    }

    /// `ssh` as `login` with `key` and its certificate; returns (exit code, stdout).
    pub fn run(&self, login: &str, key: &Path, command: &str) -> (i32, String) {
        let cert = format!("{}-cert.pub", key.display());
        let out = Command::new("ssh")
            .args(["-F", "/dev/null", "-p", &self.port.to_string()])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes"])
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"])
            .arg("-i")
            .arg(key)
            .args(["-o", &format!("CertificateFile={cert}")])
            .arg(format!("{login}@127.0.0.1"))
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// A known_hosts line for this sshd.
    pub fn known_hosts_line(&self) -> String {
        let key = std::fs::read_to_string(&self.host_pub).unwrap();
        let mut parts = key.split_whitespace();
        format!("[127.0.0.1]:{} {} {}\n", self.port, parts.next().unwrap(), parts.next().unwrap())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
