//! `latch db …`: dynamic PostgreSQL credentials.

use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::UsageError;
use crate::cli::{DbCmd, DbConnectionCmd, DbCredsCmd, DbLeaseCmd, Global, Output};
use crate::client::{Client, seg};
use crate::out::{emit, s, table};

pub fn run(cmd: DbCmd, g: &Global) -> anyhow::Result<()> {
    let c = Client::new(g)?;
    match cmd {
        DbCmd::Connection(DbConnectionCmd::Add { name, url, password_file, ca_cert }) => {
            let target = parse_url(&url)?;
            let password = read_password(&password_file)?;
            let mut body = json!({ "name": name, "host": target.host, "port": target.port, "database": target.database,
                                   "username": target.username, "password": password.as_str() });
            if let Some(m) = target.sslmode {
                body["sslmode"] = json!(m);
            }
            if let Some(path) = ca_cert {
                let pem = std::fs::read_to_string(&path)
                    .map_err(|e| UsageError(format!("--ca-cert {}: {e}", path.display())))?;
                body["ca_cert"] = json!(pem);
            }
            let v: Value = c.post("/v1/db/connections", &body)?;
            emit(g, &v, |v| println!("registered database connection {} ({})", s(v, "name"), s(v, "url")));
            Ok(())
        }
        DbCmd::Connection(DbConnectionCmd::Show { name }) => {
            let v: Value = c.get(&format!("/v1/db/connections/{}", seg(&name)))?;
            emit(g, &v, |v| {
                println!("{}  {}", s(v, "name"), s(v, "url"));
                println!("added {} by {}", s(v, "created_at"), s(v, "created_by"));
            });
            Ok(())
        }
        DbCmd::Connection(DbConnectionCmd::Rm { name }) => {
            c.delete(&format!("/v1/db/connections/{}", seg(&name)))?;
            emit(g, &json!({ "deleted": name }), |_| println!("removed database connection {name}"));
            Ok(())
        }
        DbCmd::Connections => {
            let v: Value = c.get("/v1/db/connections")?;
            emit(g, &v, |v| {
                let rows = v["connections"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| vec![s(r, "name"), s(r, "url"), s(r, "created_at"), s(r, "created_by")])
                    .collect();
                table(&["name", "url", "added", "by"], rows);
            });
            Ok(())
        }
        DbCmd::Creds(a) => match a.cmd {
            Some(DbCredsCmd::List { state, grant }) => {
                let mut q = Vec::new();
                if let Some(st) = state {
                    q.push(format!("state={}", seg(&st)));
                }
                if let Some(gr) = grant {
                    q.push(format!("grant={}", seg(&gr)));
                }
                let path =
                    if q.is_empty() { "/v1/db/creds".to_string() } else { format!("/v1/db/creds?{}", q.join("&")) };
                let v: Value = c.get(&path)?;
                emit(g, &v, |v| {
                    let rows = v["credentials"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| {
                            vec![
                                s(r, "lease_id"),
                                s(r, "principal"),
                                s(r, "username"),
                                s(r, "state"),
                                s(r, "expires_at"),
                                s(r, "revoke_attempts"),
                                s(r, "last_error"),
                            ]
                        })
                        .collect();
                    table(&["lease", "user", "role", "state", "expires", "attempts", "last error"], rows);
                });
                Ok(())
            }
            None => {
                let grant = a.grant.ok_or_else(|| {
                    UsageError("name the grant: latch db creds --grant GRANT_ID (or `latch db creds list`)".into())
                })?;
                let mut body = json!({});
                if let Some(t) = a.ttl {
                    body["ttl"] = json!(t);
                }
                let v: Value = c.post(&format!("/v1/grants/{}/db-creds", seg(&grant)), &body)?;
                if a.json || g.output == Output::Json {
                    crate::out::json(&v);
                    return Ok(());
                }
                println!("username        {}", s(&v, "username"));
                println!("password        {}", s(&v, "password"));
                println!("lease_id        {}", s(&v, "lease_id"));
                println!("lease_duration  {}s", s(&v, "lease_duration"));
                println!("expires_at      {}", s(&v, "expires_at"));
                println!("database        {}:{}/{}", s(&v, "host"), s(&v, "port"), s(&v, "database"));
                eprintln!(
                    "connect: PGPASSWORD=… psql \"host={} port={} dbname={} user={}\"",
                    s(&v, "host"),
                    s(&v, "port"),
                    s(&v, "database"),
                    s(&v, "username")
                );
                Ok(())
            }
        },
        DbCmd::Lease(DbLeaseCmd::Show { lease_id }) => {
            let v: Value = c.post("/v1/db/leases/lookup", &json!({ "lease_id": lease_id }))?;
            emit(g, &v, print_lease);
            Ok(())
        }
        DbCmd::Lease(DbLeaseCmd::Renew { lease_id, increment }) => {
            let mut body = json!({ "lease_id": lease_id });
            if let Some(i) = increment {
                body["increment"] = json!(i);
            }
            let v: Value = c.post("/v1/db/leases/renew", &body)?;
            emit(g, &v, print_lease);
            Ok(())
        }
        DbCmd::Lease(DbLeaseCmd::Revoke { lease_id, wait }) => {
            let v: Value = c.post("/v1/db/leases/revoke", &json!({ "lease_id": lease_id }))?;
            if wait {
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let l: Value = c.post("/v1/db/leases/lookup", &json!({ "lease_id": lease_id }))?;
                    if l["state"] == "revoked" {
                        emit(g, &l, |_| println!("revoked {lease_id}: its role is dropped"));
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        anyhow::bail!(
                            "lease {lease_id} is still {} after 30 s: see its last error with `latch db creds list --state revoking`",
                            s(&l, "state")
                        );
                    }
                    std::thread::park_timeout(Duration::from_millis(100));
                }
            }
            emit(g, &v, |_| println!("revoking {lease_id}: its role is dropped within about a second"));
            Ok(())
        }
        DbCmd::Lease(DbLeaseCmd::RevokePrefix { prefix }) => {
            let v: Value = c.post("/v1/db/leases/revoke-prefix", &json!({ "prefix": prefix }))?;
            emit(g, &v, |v| {
                let n = v["revoking"].as_array().map_or(0, Vec::len);
                println!("revoking {n} lease(s) under {prefix}");
            });
            Ok(())
        }
    }
}

fn print_lease(v: &Value) {
    println!("{}  {}", s(v, "id"), s(v, "state"));
    println!(
        "issued {}  expires {}  ttl {}s  renewable {}",
        s(v, "issue_time"),
        s(v, "expire_time"),
        s(v, "ttl"),
        s(v, "renewable")
    );
}

/// A connection URL, split into what the API takes.
#[derive(Debug, PartialEq)]
pub struct TargetUrl {
    pub username: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub sslmode: Option<String>,
}

/// Parses `postgres://USER@HOST[:PORT]/DB[?sslmode=MODE]` (also
/// `postgresql://`, and `[v6addr]` hosts). A password in the URL is refused:
/// URLs end up in shell history and process lists.
pub fn parse_url(url: &str) -> Result<TargetUrl, UsageError> {
    let bad = |why: &str| {
        UsageError(format!("--url {why}: write postgres://USER@HOST:PORT/DB (the password goes in --password-file)"))
    };
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| bad("must start with postgres://"))?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (auth, rest) = rest.rsplit_once('@').ok_or_else(|| bad("names no user (USER@…)"))?;
    if auth.contains(':') {
        return Err(UsageError(
            "--url must not contain the password: put it in a file and pass --password-file FILE".into(),
        ));
    }
    if auth.is_empty() || auth.contains('%') {
        return Err(bad("has an empty or percent-encoded user"));
    }
    let (hostport, database) = rest.split_once('/').ok_or_else(|| bad("names no database (…/DB)"))?;
    if database.is_empty() || database.contains('/') || database.contains('%') {
        return Err(bad("has an empty or malformed database name"));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("has an unclosed [ in the host"))?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(bad("names no host"));
    }
    let port = match port {
        None => 5432,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("has a port that is not 1-65535"))?,
    };
    let mut sslmode = None;
    for kv in query.into_iter().flat_map(|q| q.split('&')).filter(|kv| !kv.is_empty()) {
        match kv.split_once('=') {
            Some(("sslmode", v)) => sslmode = Some(v.to_string()),
            Some(("password", _)) => {
                return Err(UsageError(
                    "--url must not contain the password: put it in a file and pass --password-file FILE".into(),
                ));
            }
            _ => return Err(bad(&format!("has parameter {kv:?}; only sslmode is understood"))),
        }
    }
    Ok(TargetUrl { username: auth.to_string(), host, port, database: database.to_string(), sslmode })
}

/// The password in FILE (`-`: stdin), without its trailing newline.
fn read_password(path: &std::path::Path) -> Result<Zeroizing<String>, UsageError> {
    let mut raw = Zeroizing::new(String::new());
    let read = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut raw).map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut raw)).map(|_| ())
    };
    read.map_err(|e| UsageError(format!("--password-file {}: {e}", path.display())))?;
    let pw = Zeroizing::new(raw.trim_end_matches(['\n', '\r']).to_string());
    if pw.is_empty() {
        return Err(UsageError(format!(
            "--password-file {} is empty: put the database user's password in it",
            path.display()
        )));
    }
    if pw.contains('\n') {
        return Err(UsageError(format!(
            "--password-file {} holds several lines: put only the password in it",
            path.display()
        )));
    }
    Ok(pw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_passwords_in_them_are_refused() {
        let t = parse_url("postgres://admin@db.internal:6543/app?sslmode=disable").unwrap();
        assert_eq!(
            t,
            TargetUrl {
                username: "admin".into(),
                host: "db.internal".into(),
                port: 6543,
                database: "app".into(),
                sslmode: Some("disable".into())
            }
        );
        let t = parse_url("postgresql://u@[::1]/d").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 5432));
        for (bad, needle) in [
            ("mysql://u@h/d", "must start with postgres://"),
            ("postgres://u:secret@h/d", "must not contain the password"),
            ("postgres://u@h/d?password=x", "must not contain the password"),
            ("postgres://h/d", "names no user"),
            ("postgres://u@h", "names no database"),
            ("postgres://u@h:99999/d", "port"),
            ("postgres://u@h/d?application_name=x", "only sslmode"),
        ] {
            let e = parse_url(bad).unwrap_err().0;
            assert!(e.contains(needle), "{bad}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }
}
