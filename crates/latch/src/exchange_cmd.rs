//! `latch exchange`: a CI job's OIDC token → a latch session → (with --role)
//! an auto-approved grant → a signed latch token, in one step, so pipelines
//! hold no static deploy secret.

use std::io::Read;

use anyhow::Context;
use serde_json::{Value, json};

use crate::UsageError;
use crate::cli::{ExchangeArgs, Global};
use crate::client::{ApiFailure, Client, seg};
use crate::out::{emit, s};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

fn read_token(a: &ExchangeArgs) -> anyhow::Result<String> {
    let text = if a.token_file.as_os_str() == "-" {
        let mut t = String::new();
        std::io::stdin().read_to_string(&mut t).context("cannot read the token from stdin")?;
        t
    } else {
        std::fs::read_to_string(&a.token_file)
            .with_context(|| format!("cannot read the token file {}", a.token_file.display()))?
    };
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(UsageError(format!("the token file {} is empty", a.token_file.display())).into());
    }
    Ok(token)
}

pub fn run(a: ExchangeArgs, g: &Global) -> anyhow::Result<()> {
    let token = read_token(&a)?;
    // The exchange authenticates by the token alone: no LATCH_TOKEN is sent.
    let anon = Client::new(&Global { token: None, ..g.clone() })?;
    let session: Value = anon.post(
        "/v1/auth/exchange",
        &json!({
            "grant_type": GRANT_TYPE,
            "subject_token": token,
            "subject_token_type": TOKEN_TYPE_JWT,
            "service_principal": a.sp,
        }),
    )?;
    let Some(role) = a.role.clone() else {
        emit(g, &session, |v| {
            println!("LATCH_TOKEN={}", s(v, "access_token"));
            eprintln!(
                "exchanged for a session of service principal {} (federation {}) until {}",
                s(v, "name"),
                s(v, "federation"),
                s(v, "expires_at")
            );
        });
        return Ok(());
    };
    let c = Client::new(&Global { token: Some(s(&session, "access_token")), ..g.clone() })?;
    let result = with_role(&c, &a, &role, &session);
    // The session's work is done: end it, whatever happened (best effort).
    let _ = c.call::<Value>("POST", "/v1/auth/logout", None::<&()>);
    let out = result?;
    emit(g, &out, |v| {
        println!("{}", s(v, "token"));
        eprintln!(
            "latch token for role {} (grant {}) as service principal {}, audience {}, until {}",
            s(v, "role"),
            s(v, "grant_id"),
            s(v, "service_principal"),
            s(v, "audience"),
            s(v, "expires_at")
        );
    });
    Ok(())
}

/// Requests `role`; an active grant yields a token, anything else an error.
fn with_role(c: &Client, a: &ExchangeArgs, role: &str, session: &Value) -> anyhow::Result<Value> {
    let v: Value = c.post(
        "/v1/requests",
        &json!({ "role": role, "duration": a.duration, "reason": a.reason, "ticket": a.ticket }),
    )?;
    let request = &v["request"];
    let id = s(request, "id");
    if s(request, "state") != "active" {
        let state = s(request, "state");
        let mut note = String::new();
        if state == "pending" {
            // Nobody will be there to use an approval later: withdraw it.
            let cancelled = c.call::<Value>("POST", &format!("/v1/requests/{}/cancel", seg(&id)), None::<&()>);
            note = if cancelled.is_ok() { " (the request was cancelled)" } else { " (cancelling it failed)" }.into();
        }
        return Err(ApiFailure {
            status: 403,
            code: "not_auto_approved".into(),
            message: format!(
                "request {id} for role {role} is {state}, not active: `latch exchange` needs a role that policy \
                 activates for service principal {} without approval{note}",
                s(session, "name")
            ),
        }
        .into());
    }
    let grant = s(&v["grant"], "id");
    let t: Value =
        c.post(&format!("/v1/grants/{}/token", seg(&grant)), &json!({ "audience": a.audience, "ttl": a.duration }))?;
    Ok(json!({
        "token": t["token"],
        "jti": t["jti"],
        "audience": t["audience"],
        "expires_at": t["expires_at"],
        "grant_id": grant,
        "role": role,
        "request_id": id,
        "grant_expires_at": v["grant"]["expires_at"],
        "service_principal": session["name"],
        "federation": session["federation"],
    }))
}
