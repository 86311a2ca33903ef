//! A throwaway PostgreSQL cluster for the tests of one test binary: started
//! on first use on a free loopback port in a temp dir, one database per
//! test, stopped (and deleted) by a watchdog when the test process exits.
//! No mocks: the server binaries come from Debian's `postgresql` package.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Cluster {
    pub port: u16,
    pub dir: PathBuf,
    bin: PathBuf,
    password: String,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The cluster of this test process, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(Cluster::start)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Runs a PostgreSQL server binary as the `postgres` user when we are root
/// (PostgreSQL refuses to run as root).
fn pg_cmd(bin: &Path, tool: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn server_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries not found in /usr/lib/postgresql: apt-get install -y postgresql")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("no /usr/lib/postgresql/*/bin/initdb: apt-get install -y postgresql")
}

/// A throwaway CA and a server certificate it signed for 127.0.0.1 and
/// localhost, made with the stock `openssl`, in `dir`.
fn make_tls_files(dir: &Path) {
    // Arguments as one line each (no value has a space).
    let openssl = |args: &str| {
        let args: Vec<&str> = args.split_whitespace().collect();
        let out = Command::new("openssl").args(&args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    openssl(&format!(
        "req -x509 {ec} -days 2 -subj /CN=latch-test-CA -keyout ca.key -out ca.crt \
         -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
    ));
    openssl(&format!("req {ec} -subj /CN=127.0.0.1 -keyout server.key -out server.csr"));
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        .unwrap();
    openssl(
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.crt",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    if is_root() {
        let key = dir.join("server.key");
        assert!(Command::new("chown").args(["postgres:postgres"]).arg(&key).status().unwrap().success());
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Cluster {
    fn start() -> Cluster {
        let bin = server_bin();
        let dir = PathBuf::from(format!("/tmp/latch-test-pg-{}-{}", std::process::id(), free_port()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            assert!(Command::new("chown").args(["postgres:postgres"]).arg(&dir).status().unwrap().success());
        }
        let password = latch_crypto::new_token("pgpw").unwrap().expose().replace(['_', '-'], "x");
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, &password).unwrap();
        if is_root() {
            assert!(Command::new("chown").args(["postgres:postgres"]).arg(&pwfile).status().unwrap().success());
        }
        let out = pg_cmd(&bin, "initdb")
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        make_tls_files(&dir);
        let port = free_port();
        let c = Cluster { port, dir, bin, password };
        c.pg_ctl_start();
        c.watchdog();
        c
    }

    fn pg_ctl_start(&self) {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=300 -c fsync=on -c shared_buffers=64MB \
             -c ssl=on -c ssl_cert_file={d}/server.crt -c ssl_key_file={d}/server.key",
            self.port,
            self.dir.display(),
            d = self.dir.display()
        );
        let out = pg_cmd(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-o", &opts, "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// The PEM of the CA that signed the server's certificate (for 127.0.0.1):
    /// clients may use TLS (`sslmode=verify-full`) or not.
    pub fn ca_cert(&self) -> String {
        std::fs::read_to_string(self.dir.join("ca.crt")).unwrap()
    }

    /// Stops the server at once (as a crash would), for fail-closed tests.
    pub fn kill(&self) {
        let out = pg_cmd(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts it again after [`Cluster::kill`].
    pub fn restart(&self) {
        self.pg_ctl_start();
    }

    /// When this process is gone, stop the cluster and delete its files.
    fn watchdog(&self) {
        let stop = format!(
            "{} -D {} -m immediate -w stop",
            self.bin.join("pg_ctl").display(),
            self.dir.join("data").display()
        );
        let stop = if is_root() { format!("runuser -u postgres -- {stop}") } else { stop };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        // Deliberately never waited for: the watchdog must outlive this process.
        #[allow(clippy::zombie_processes)]
        Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the PostgreSQL watchdog");
    }

    /// The URL of database `db`, over TLS verified against the cluster's CA
    /// (the password is a throwaway of this cluster): latch's storage and
    /// `psql` both connect this way.
    pub fn dsn(&self, db: &str) -> String {
        format!("{}?sslmode=verify-full&sslrootcert={}", self.plain_dsn(db), self.dir.join("ca.crt").display())
    }

    /// The URL of database `db` without TLS options.
    pub fn plain_dsn(&self, db: &str) -> String {
        format!("postgres://postgres:{}@127.0.0.1:{}/{db}", self.password, self.port)
    }

    /// Runs SQL through `psql` on `db`; returns rows with fields joined by `|`.
    pub fn psql(&self, db: &str, sql: &str) -> Vec<String> {
        let out = Command::new("psql")
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", &self.dsn(db), "-c", sql])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "psql failed on {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }

    /// [`Cluster::psql`] that answers `None` instead of failing (for checks
    /// that must not panic, such as the harness's at drop).
    pub fn try_psql(&self, db: &str, sql: &str) -> Option<Vec<String>> {
        let out = Command::new("psql")
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", &self.dsn(db), "-c", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect())
    }

    /// A new, empty database; returns its name.
    pub fn fresh_db(&self) -> String {
        let name = format!("latch_{}", NEXT_DB.fetch_add(1, Ordering::SeqCst));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// The database belonging to a data directory: created on first use, so a
    /// restarted server finds its state again.
    pub fn db_for(&self, data: &Path) -> String {
        let marker = data.with_extension("pgdb");
        if let Ok(name) = std::fs::read_to_string(&marker) {
            return name;
        }
        let name = self.fresh_db();
        std::fs::write(&marker, &name).unwrap();
        name
    }
}
