//! What the recording gateway asks of the server: may this certificate open
//! a session to that target as that login (and with which certificate does
//! the gateway reach the target), and which grants have ended since.
//!
//! The decision is the server's, not the gateway's: the gateway only passes
//! on the certificate the user presented. The server checks it was signed by
//! its CA, is one it issued and has not revoked, belongs to a live grant
//! whose role reaches the target with that login. Every refusal is audited
//! with the check that failed. Only principals in the `ssh-gateways` group
//! may ask.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use latch_core::{Principal, Timestamp};
use latch_ssh::{parse_user_key, verify_user_cert};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, Caller, Ctx};
use crate::routes::jit::refused;
use crate::routes::recordings::{host_matches, target_and_login};
use crate::routes::ssh::{Issue, issue_cert};
use crate::state::AppState;

/// Validity of the gateway's certificate to the target: it only has to log
/// in once; the session then lives until the grant ends or is revoked.
const UPSTREAM_VALIDITY: Duration = Duration::from_secs(5 * 60);
/// Most grants one poll may ask about.
const MAX_POLL: usize = 10_000;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeSession {
    /// The certificate the user presented to the gateway, one OpenSSH line.
    pub certificate: String,
    /// The login asked for on the target.
    pub login: String,
    /// The target host (name or address, without port).
    pub target: String,
    /// The gateway's fresh public key for this connection, to be certified for the target.
    pub upstream_key: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AuthorizedSession {
    pub grant_id: String,
    /// The grant's holder, `user:alice`.
    pub user: String,
    pub role: String,
    pub expires_at: String,
    /// The user's certificate serial.
    pub serial: u64,
    /// The gateway's certificate for the target (principal: the login only).
    pub upstream_certificate: String,
    /// Record what the user types too (the role's `record_input`).
    pub record_input: bool,
    /// The role grants `permit-port-forwarding`.
    pub port_forwarding: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantPoll {
    /// Grants of live sessions.
    pub grant_ids: Vec<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EndedGrant {
    pub id: String,
    /// `revoked`, `expired` or `unknown`.
    pub state: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct GrantPollResult {
    /// Of those asked, the grants that are no longer live: end their sessions now.
    pub ended: Vec<EndedGrant>,
}

fn require_gateway(p: &Principal) -> ApiResult<()> {
    if p.is_gateway() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "only members of the {} group run the gateway: add the gateway's service principal to it",
            latch_core::principal::GATEWAY_GROUP
        )))
    }
}

/// Checks a user's certificate for a session to `target` as `login`; on
/// success certifies the gateway's `upstream_key` for that login, under the
/// same grant (so revoking the grant puts it on the KRL too).
#[utoipa::path(post, path = "/v1/gateway/authorize", tag = "gateway", request_body = AuthorizeSession,
    responses((status = 200, body = AuthorizedSession), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn authorize(
    State(st): State<AppState>,
    ctx: Ctx,
    Caller(p): Caller,
    ApiJson(req): ApiJson<AuthorizeSession>,
) -> ApiResult<Json<AuthorizedSession>> {
    require_gateway(&p)?;
    let target = target_and_login(&req.target, &req.login)?;
    let upstream = parse_user_key(&req.upstream_key).map_err(|e| ApiError::BadRequest(format!("upstream_key: {e}")))?;
    let mut details = json!({ "target": target, "login": req.login });
    let deny = |why: String| ApiError::Forbidden(format!("session to {}@{target} refused: {why}", req.login));
    let now = st.clock.now();
    let issuers = st.issuers();
    let cert =
        match verify_user_cert(issuers.ssh_ca_public()?, &req.certificate, u64::try_from(now.secs()).unwrap_or(0)) {
            Ok(c) => c,
            Err(e) => {
                return Err(refused(
                    &st,
                    &ctx,
                    &p,
                    "ssh.gateway.refuse",
                    "ssh:gateway".into(),
                    details,
                    deny(e.to_string()),
                )
                .await);
            }
        };
    if let Some(m) = details.as_object_mut() {
        m.insert("serial".into(), json!(cert.serial));
        m.insert("key_id".into(), json!(cert.key_id));
        m.insert("fingerprint".into(), json!(cert.fingerprint));
    }
    let issued = match i64::try_from(cert.serial) {
        Ok(s) => st.store.ssh_cert(s).await?,
        Err(_) => None,
    };
    let Some(issued) = issued.filter(|c| c.fingerprint == cert.fingerprint) else {
        let err = deny("latch has no record of issuing this certificate".into());
        return Err(refused(&st, &ctx, &p, "ssh.gateway.refuse", "ssh:gateway".into(), details, err).await);
    };
    let target_ref = format!("grant:{}", issued.grant_id);
    let checked = check_grant(&st, &issued, &cert.principals, &req.login, &target, now).await;
    let (grant, spec) = match checked {
        Ok(v) => v,
        Err(why) => return Err(refused(&st, &ctx, &p, "ssh.gateway.refuse", target_ref, details, deny(why)).await),
    };
    let issue = Issue {
        subject: &upstream,
        principals: vec![req.login.clone()],
        ttl: UPSTREAM_VALIDITY,
        key_id: format!("gateway={} user={} grant={} role={}", p.name, grant.principal_name, grant.id, grant.role),
        actor: p.audit_name(),
        action: "ssh.gateway.authorize",
    };
    let upstream_cert = issue_cert(&st, &ctx, &grant, &spec, issue).await?;
    Ok(Json(AuthorizedSession {
        grant_id: grant.id.clone(),
        user: format!("{}:{}", grant.principal_kind.as_str(), grant.principal_name),
        role: grant.role.clone(),
        expires_at: grant.expires_at.to_rfc3339(),
        serial: cert.serial,
        upstream_certificate: upstream_cert.certificate,
        record_input: spec.record_input,
        port_forwarding: spec.allows_port_forwarding(),
    }))
}

/// The grant behind an issued certificate, if it still covers `login` on `target`.
async fn check_grant(
    st: &AppState,
    issued: &latch_store::IssuedSshCert,
    cert_principals: &[String],
    login: &str,
    target: &str,
    now: Timestamp,
) -> Result<(latch_store::Grant, latch_policy::role::SshSpec), String> {
    if issued.revoked_at.is_some() {
        return Err(format!("certificate {} was revoked with its grant", issued.serial));
    }
    let grant = match st.store.get_grant(&issued.grant_id).await {
        Ok(Some(g)) => g,
        Ok(None) => return Err(format!("grant {} does not exist", issued.grant_id)),
        Err(e) => return Err(format!("the store could not be read: {e}")),
    };
    if !grant.is_live(now) {
        return Err(format!("grant {} is no longer active: request the role again", grant.id));
    }
    if !cert_principals.iter().any(|p| p == login) {
        return Err(format!("the certificate is not valid for login {login:?} (it names {cert_principals:?})"));
    }
    let policy = st.policy();
    let Some(spec) = policy.role(&grant.role).and_then(|r| r.ssh.clone()) else {
        return Err(format!("role {} no longer allows SSH", grant.role));
    };
    if !spec.principals.iter().any(|p| p == login) {
        return Err(format!("role {} does not allow login {login:?}", grant.role));
    }
    if spec.hosts.is_empty() {
        return Err(format!("role {} lists no hosts the gateway may reach", grant.role));
    }
    if !spec.hosts.iter().any(|h| host_matches(h, target)) {
        return Err(format!("role {} does not reach host {target} (it reaches {:?})", grant.role, spec.hosts));
    }
    Ok((grant, spec))
}

/// Which of these grants have ended: the gateway polls it to close the
/// sessions of revoked or expired grants.
#[utoipa::path(post, path = "/v1/gateway/grants", tag = "gateway", request_body = GrantPoll,
    responses((status = 200, body = GrantPollResult), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn poll(
    State(st): State<AppState>,
    Caller(p): Caller,
    ApiJson(req): ApiJson<GrantPoll>,
) -> ApiResult<Json<GrantPollResult>> {
    require_gateway(&p)?;
    if req.grant_ids.len() > MAX_POLL {
        return Err(ApiError::BadRequest(format!("ask about at most {MAX_POLL} grants at a time")));
    }
    let now = st.clock.now();
    let mut ended = Vec::new();
    for id in &req.grant_ids {
        latch_core::validate_name("grant id", id)?;
        let state = match st.store.get_grant(id).await? {
            Some(g) if g.is_live(now) => continue,
            Some(g) if g.state == latch_store::GrantState::Active => "expired".to_string(),
            Some(g) => g.state.as_str().to_string(),
            None => "unknown".to_string(),
        };
        ended.push(EndedGrant { id: id.clone(), state });
    }
    Ok(Json(GrantPollResult { ended }))
}
