//! Client commands for authentication and identities.

use std::io::BufRead;

use anyhow::Context;
use serde_json::{Value, json};

use crate::UsageError;
use crate::cli::{Command, Global, GroupCmd, LoginArgs, MemberKind, MfaCmd, SpCmd, UserCmd};
use crate::client::{Client, seg};
use crate::out::{emit, s, table};

pub fn run(cmd: Command, g: &Global) -> anyhow::Result<()> {
    let c = Client::new(g)?;
    match cmd {
        Command::Login(a) => login(&c, g, a),
        Command::Logout => {
            c.call::<Value>("POST", "/v1/auth/logout", None::<&()>)?;
            emit(g, &json!({ "logged_out": true }), |_| println!("logged out: the token no longer works"));
            Ok(())
        }
        Command::Whoami => {
            let v: Value = c.get("/v1/auth/whoami")?;
            emit(g, &v, |v| {
                println!("{} {} ({})", s(v, "kind"), s(v, "name"), s(v, "id"));
                println!("groups: {}", s(v, "groups"));
                println!("mfa: {}  admin: {}", s(v, "mfa"), s(v, "admin"));
            });
            Ok(())
        }
        Command::Mfa(m) => mfa(&c, g, m),
        Command::User(u) => user(&c, g, u),
        Command::Group(gr) => group(&c, g, gr),
        Command::Sp(sp) => service_principal(&c, g, sp),
        _ => Err(anyhow::anyhow!("not an identity command")),
    }
}

/// The first line of stdin, without its line ending.
pub(crate) fn read_secret_line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).with_context(|| format!("cannot read the {what} from stdin"))?;
    let line = line.trim_end_matches(['\n', '\r']).to_string();
    if line.is_empty() {
        return Err(UsageError(format!("no {what} on stdin: pipe it in, e.g. `printf %s \"$PW\" | latch …`")).into());
    }
    Ok(line)
}

fn login(c: &Client, g: &Global, a: LoginArgs) -> anyhow::Result<()> {
    if let Some(provider) = &a.oidc {
        let limit = latch_core::parse_duration(&a.timeout).map_err(|e| UsageError(format!("--timeout: {e}")))?;
        let device = match (a.device, a.no_device) {
            (true, _) => true,
            (_, true) => false,
            _ => crate::oidc_cmd::offers_device_grant(c, provider)?,
        };
        let v = if device {
            crate::oidc_cmd::login_device(c, provider, limit)?
        } else {
            crate::oidc_cmd::login(c, provider, limit)?
        };
        print_session(g, &v);
        return Ok(());
    }
    if !a.password_stdin {
        return Err(UsageError("pass --password-stdin and pipe the password (or client secret) in".into()).into());
    }
    let v: Value = match (&a.user, &a.sp) {
        (Some(user), None) => {
            let password = read_secret_line("password")?;
            c.post("/v1/auth/login", &json!({ "user": user, "password": password, "totp": a.totp }))?
        }
        (None, Some(client_id)) => {
            if a.totp.is_some() {
                return Err(
                    UsageError("--totp is for users; service principals log in with their secret".into()).into()
                );
            }
            let secret = read_secret_line("client secret")?;
            c.post("/v1/auth/sp/login", &json!({ "client_id": client_id, "client_secret": secret }))?
        }
        _ => return Err(UsageError("give exactly one of --user NAME or --sp CLIENT_ID".into()).into()),
    };
    print_session(g, &v);
    Ok(())
}

fn print_session(g: &Global, v: &Value) {
    emit(g, v, |v| {
        println!("LATCH_TOKEN={}", s(v, "token"));
        eprintln!("logged in as {} {} until {} (mfa: {})", s(v, "kind"), s(v, "name"), s(v, "expires_at"), s(v, "mfa"));
    });
}

fn mfa(c: &Client, g: &Global, m: MfaCmd) -> anyhow::Result<()> {
    match m {
        MfaCmd::Enroll => {
            let v: Value = c.call("POST", "/v1/auth/mfa/enroll", None::<&()>)?;
            emit(g, &v, |v| {
                println!("{}", s(v, "otpauth_uri"));
                eprintln!("add this to your authenticator app, then run `latch mfa confirm CODE`");
            });
        }
        MfaCmd::Confirm { code } => {
            c.post::<Value>("/v1/auth/mfa/confirm", &json!({ "code": code }))?;
            emit(g, &json!({ "confirmed": true }), |_| println!("MFA enrolled: log in with --totp CODE from now on"));
        }
    }
    Ok(())
}

fn user_row(v: &Value) -> Vec<String> {
    vec![s(v, "name"), s(v, "id"), s(v, "disabled"), s(v, "mfa_enrolled"), s(v, "groups")]
}

fn print_user(v: &Value) {
    table(&["name", "id", "disabled", "mfa", "groups"], vec![user_row(v)]);
}

fn user(c: &Client, g: &Global, u: UserCmd) -> anyhow::Result<()> {
    match u {
        UserCmd::Create { name, groups, password_stdin } => {
            let password = if password_stdin { Some(read_secret_line("password")?) } else { None };
            let v: Value = c.post("/v1/users", &json!({ "name": name, "groups": groups, "password": password }))?;
            emit(g, &v, print_user);
        }
        UserCmd::List => {
            let v: Value = c.get("/v1/users")?;
            emit(g, &v, |v| {
                let rows = v["users"].as_array().map(|a| a.iter().map(user_row).collect()).unwrap_or_default();
                table(&["name", "id", "disabled", "mfa", "groups"], rows);
            });
        }
        UserCmd::Show { name } => {
            let v: Value = c.get(&format!("/v1/users/{}", seg(&name)))?;
            emit(g, &v, print_user);
        }
        UserCmd::Disable { name } => {
            let v: Value = c.call("POST", &format!("/v1/users/{}/disable", seg(&name)), None::<&()>)?;
            emit(g, &v, |_| println!("user {name} disabled; their sessions are revoked"));
        }
        UserCmd::Enable { name } => {
            let v: Value = c.call("POST", &format!("/v1/users/{}/enable", seg(&name)), None::<&()>)?;
            emit(g, &v, |_| println!("user {name} enabled"));
        }
        UserCmd::Delete { name } => {
            c.delete(&format!("/v1/users/{}", seg(&name)))?;
            emit(g, &json!({ "deleted": name }), |_| println!("user {name} deleted"));
        }
        UserCmd::SetPassword { name } => {
            let password = read_secret_line("password")?;
            c.put::<Value>(&format!("/v1/users/{}/password", seg(&name)), &json!({ "password": password }))?;
            emit(g, &json!({ "password_set": name }), |_| println!("password of {name} set"));
        }
        UserCmd::ResetMfa { name } => {
            c.delete(&format!("/v1/users/{}/mfa", seg(&name)))?;
            emit(g, &json!({ "mfa_reset": name }), |_| println!("MFA of {name} removed; they can enroll again"));
        }
    }
    Ok(())
}

fn kind_str(k: MemberKind) -> &'static str {
    match k {
        MemberKind::User => "user",
        MemberKind::Sp => "service_principal",
    }
}

fn members(v: &Value) -> String {
    v["members"]
        .as_array()
        .map(|a| a.iter().map(|m| format!("{}:{}", s(m, "kind"), s(m, "name"))).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn group(c: &Client, g: &Global, cmd: GroupCmd) -> anyhow::Result<()> {
    match cmd {
        GroupCmd::Create { name, description } => {
            let v: Value = c.post("/v1/groups", &json!({ "name": name, "description": description }))?;
            emit(g, &v, |v| println!("created group {} ({})", s(v, "name"), s(v, "id")));
        }
        GroupCmd::List => {
            let v: Value = c.get("/v1/groups")?;
            emit(g, &v, |v| {
                let rows = v["groups"]
                    .as_array()
                    .map(|a| a.iter().map(|gr| vec![s(gr, "name"), s(gr, "description"), members(gr)]).collect())
                    .unwrap_or_default();
                table(&["name", "description", "members"], rows);
            });
        }
        GroupCmd::Show { name } => {
            let v: Value = c.get(&format!("/v1/groups/{}", seg(&name)))?;
            emit(g, &v, |v| {
                table(&["name", "description", "members"], vec![vec![s(v, "name"), s(v, "description"), members(v)]])
            });
        }
        GroupCmd::Delete { name } => {
            c.delete(&format!("/v1/groups/{}", seg(&name)))?;
            emit(g, &json!({ "deleted": name }), |_| println!("group {name} deleted"));
        }
        GroupCmd::Add { group, member, kind } => {
            c.post::<Value>(
                &format!("/v1/groups/{}/members", seg(&group)),
                &json!({ "kind": kind_str(kind), "name": member }),
            )?;
            emit(g, &json!({ "added": member, "group": group }), |_| println!("{member} added to {group}"));
        }
        GroupCmd::Remove { group, member, kind } => {
            c.delete(&format!("/v1/groups/{}/members/{}/{}", seg(&group), kind_str(kind), seg(&member)))?;
            emit(g, &json!({ "removed": member, "group": group }), |_| println!("{member} removed from {group}"));
        }
    }
    Ok(())
}

fn sp_row(v: &Value) -> Vec<String> {
    let expires = v["secret_expires_at"].as_str().unwrap_or("never").to_string();
    vec![s(v, "name"), s(v, "id"), s(v, "disabled"), s(v, "groups"), s(v, "secret_rotated_at"), expires]
}

const SP_COLUMNS: [&str; 6] = ["name", "client_id", "disabled", "groups", "secret_rotated_at", "secret_expires_at"];

fn print_credentials(g: &Global, v: &Value) {
    emit(g, v, |v| {
        println!("client_id={}", s(v, "client_id"));
        println!("client_secret={}", s(v, "client_secret"));
        let sp = &v["service_principal"];
        if let Some(e) = sp["secret_expires_at"].as_str() {
            eprintln!("the secret expires at {e}");
        }
        if let Some(p) = sp["previous_secret_expires_at"].as_str() {
            eprintln!("the previous secret keeps working until {p}: switch the pipeline before then");
        }
        eprintln!("the secret is shown only now: store it in your pipeline's secret store");
    });
}

/// `repository = "org/app", ref ~ "refs/tags/v*"`.
fn conditions_text(f: &Value) -> String {
    let items: Vec<String> = f["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| match (c["equals"].as_str(), c["glob"].as_str()) {
            (Some(v), _) => format!("{} = {v:?}", s(c, "claim")),
            (_, Some(p)) => format!("{} ~ {p:?}", s(c, "claim")),
            _ => s(c, "claim"),
        })
        .collect();
    if items.is_empty() { "(none: issuer and audience alone)".into() } else { items.join(", ") }
}

fn service_principal(c: &Client, g: &Global, cmd: SpCmd) -> anyhow::Result<()> {
    let path = |name: &str| format!("/v1/service-principals/{}", seg(name));
    match cmd {
        SpCmd::Create { name, groups, description, secret_lifetime } => {
            let v: Value = c.post(
                "/v1/service-principals",
                &json!({ "name": name, "groups": groups, "description": description, "secret_lifetime": secret_lifetime }),
            )?;
            print_credentials(g, &v);
        }
        SpCmd::Rotate { name, overlap, secret_lifetime } => {
            let body = json!({ "overlap": overlap, "secret_lifetime": secret_lifetime });
            let v: Value = c.post(&format!("{}/rotate-secret", path(&name)), &body)?;
            print_credentials(g, &v);
        }
        SpCmd::List => {
            let v: Value = c.get("/v1/service-principals")?;
            emit(g, &v, |v| {
                let rows =
                    v["service_principals"].as_array().map(|a| a.iter().map(sp_row).collect()).unwrap_or_default();
                table(&SP_COLUMNS, rows);
            });
        }
        SpCmd::Show { name } => {
            let v: Value = c.get(&path(&name))?;
            emit(g, &v, |v| table(&SP_COLUMNS, vec![sp_row(v)]));
        }
        SpCmd::RotateSecret { name } => {
            let v: Value = c.call("POST", &format!("{}/rotate-secret", path(&name)), None::<&()>)?;
            print_credentials(g, &v);
        }
        SpCmd::Disable { name } => {
            let v: Value = c.call("POST", &format!("{}/disable", path(&name)), None::<&()>)?;
            emit(g, &v, |_| println!("service principal {name} disabled; its sessions are revoked"));
        }
        SpCmd::Enable { name } => {
            let v: Value = c.call("POST", &format!("{}/enable", path(&name)), None::<&()>)?;
            emit(g, &v, |_| println!("service principal {name} enabled"));
        }
        SpCmd::Delete { name } => {
            c.delete(&path(&name))?;
            emit(g, &json!({ "deleted": name }), |_| println!("service principal {name} deleted"));
        }
        SpCmd::Federate { name, issuer, audience, claims, globs, federation } => {
            let mut conditions = Vec::new();
            for (flag, op, items) in [("--claim", "equals", &claims), ("--claim-glob", "glob", &globs)] {
                for kv in items {
                    let (k, v) = kv.split_once('=').ok_or_else(|| {
                        UsageError(format!("{flag} {kv:?}: write CLAIM=VALUE, e.g. {flag} ref=refs/heads/main"))
                    })?;
                    conditions.push(json!({ "claim": k, op: v }));
                }
            }
            let v: Value = c.post(
                &format!("{}/federations", path(&name)),
                &json!({ "name": federation, "issuer": issuer, "audience": audience, "conditions": conditions }),
            )?;
            emit(g, &v, |v| {
                println!("service principal {name} trusts {} for audience {}", s(v, "issuer"), s(v, "audience"));
                println!("federation {}: {}", s(v, "name"), conditions_text(v));
            });
        }
        SpCmd::Federations { name } => {
            let v: Value = c.get(&format!("{}/federations", path(&name)))?;
            emit(g, &v, |v| {
                let rows = v["federations"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|f| vec![s(f, "name"), s(f, "issuer"), s(f, "audience"), conditions_text(f)])
                            .collect()
                    })
                    .unwrap_or_default();
                table(&["federation", "issuer", "audience", "conditions"], rows);
            });
        }
        SpCmd::Unfederate { name, federation } => {
            c.delete(&format!("{}/federations/{}", path(&name), seg(&federation)))?;
            emit(g, &json!({ "deleted": federation, "service_principal": name }), |_| {
                println!("federation {federation} of {name} removed: its tokens are no longer exchanged")
            });
        }
    }
    Ok(())
}
