//! SSH certificates under a grant, the CA that signs them, and the Key
//! Revocation List that takes them back.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use latch_core::{Timestamp, parse_duration};
use latch_ssh::{CertRequest, encode_krl, parse_user_key};
use latch_store::{IssuedSshCert, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, Caller, Ctx};
use crate::state::AppState;

/// Default certificate validity when neither caller nor role says otherwise.
const DEFAULT_VALIDITY: Duration = Duration::from_secs(60 * 60);
/// Certificates start this long before they are signed, for clock skew between latch and hosts.
const BACKDATE_SECS: i64 = 30;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignSsh {
    /// The user's public key, one OpenSSH line (the `.pub` file).
    pub public_key: String,
    /// Login names, a subset of the role's; all of the role's when omitted.
    #[serde(default)]
    pub principals: Option<Vec<String>>,
    /// Validity, e.g. `15m`; capped by the role and the grant's end.
    #[serde(default)]
    pub ttl: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SshCertView {
    /// The certificate, one line, for `KEY-cert.pub`.
    pub certificate: String,
    pub serial: u64,
    pub key_id: String,
    pub principals: Vec<String>,
    pub valid_after: String,
    pub valid_before: String,
    /// SHA-256 fingerprint of the certified key.
    pub fingerprint: String,
    pub grant_id: String,
}

/// A fresh serial in 1..2^63 from the OS CSPRNG (0 cannot be revoked by a KRL).
fn new_serial() -> ApiResult<u64> {
    let b = latch_crypto::random_bytes(8)?;
    let mut v = [0u8; 8];
    v.copy_from_slice(&b);
    Ok((u64::from_be_bytes(v) & (i64::MAX as u64)).max(1))
}

#[utoipa::path(post, path = "/v1/grants/{id}/ssh", tag = "ssh", request_body = SignSsh,
    responses((status = 200, body = SshCertView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)), security(("bearer" = [])))]
pub async fn sign(
    State(st): State<AppState>,
    ctx: Ctx,
    Caller(p): Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SignSsh>,
) -> ApiResult<Json<SshCertView>> {
    latch_core::validate_name("grant id", &id)?;
    let grant = st.store.get_grant(&id).await?.ok_or_else(|| ApiError::NotFound(format!("grant {id:?} not found")))?;
    if grant.principal_id != p.id {
        return Err(ApiError::Forbidden(format!("grant {id} belongs to {}, not to you", grant.principal_name)));
    }
    let now = st.clock.now();
    if !grant.is_live(now) {
        return Err(ApiError::Conflict(format!("grant {id} is no longer active: request the role again")));
    }
    let policy = st.policy();
    let role =
        policy.role(&grant.role).ok_or_else(|| ApiError::Conflict(format!("role {} no longer exists", grant.role)))?;
    let spec = role
        .ssh
        .as_ref()
        .ok_or_else(|| ApiError::BadRequest(format!("role {} does not allow SSH certificates", role.name)))?;
    let subject = parse_user_key(&req.public_key).map_err(|e| ApiError::BadRequest(format!("public_key: {e}")))?;
    let principals = match req.principals {
        None => spec.principals.clone(),
        Some(asked) => {
            if asked.is_empty() {
                return Err(ApiError::BadRequest("principals is empty: name at least one login".into()));
            }
            if let Some(bad) = asked.iter().find(|a| !spec.principals.contains(a)) {
                return Err(ApiError::BadRequest(format!(
                    "principal {bad:?} is not allowed for role {}: use some of {:?}",
                    role.name, spec.principals
                )));
            }
            asked
        }
    };
    let ttl = match &req.ttl {
        Some(t) => parse_duration(t).map_err(|e| ApiError::BadRequest(format!("ttl: {e}")))?,
        None => DEFAULT_VALIDITY,
    };
    let issue = Issue {
        subject: &subject,
        principals,
        ttl,
        key_id: format!("{} grant={} role={}", grant.principal_name, grant.id, grant.role),
        actor: p.audit_name(),
        action: "ssh.sign",
    };
    Ok(Json(issue_cert(&st, &ctx, &grant, spec, issue).await?))
}

/// One certificate to sign under a grant.
pub(crate) struct Issue<'a> {
    pub subject: &'a latch_ssh::PublicKey,
    pub principals: Vec<String>,
    /// Asked validity; capped by the role and the grant's end.
    pub ttl: Duration,
    pub key_id: String,
    pub actor: String,
    /// The audit action: `ssh.sign` for a user, `ssh.gateway.upstream` for the gateway's own.
    pub action: &'static str,
}

/// Signs and records a certificate under `grant`: validity capped by the
/// role and the grant's end, a fresh serial, the role's options, audited in
/// the same transaction that records it (so the KRL can take it back).
pub(crate) async fn issue_cert(
    st: &AppState,
    ctx: &crate::extract::Ctx,
    grant: &latch_store::Grant,
    spec: &latch_policy::role::SshSpec,
    issue: Issue<'_>,
) -> ApiResult<SshCertView> {
    // 503 while sealed: the CA's private key is only in memory then.
    let ca = st.issuers().ssh_ca()?;
    let now = st.clock.now();
    let mut ttl = issue.ttl;
    if let Some(max) = spec.max_validity {
        ttl = ttl.min(max);
    }
    // A credential never outlives its grant.
    let valid_before = now.plus(ttl).min(grant.expires_at).secs();
    let valid_after = now.secs() - BACKDATE_SECS;
    let nonce: [u8; 32] = latch_crypto::random_bytes(32)?
        .try_into()
        .map_err(|_| ApiError::internal("the CSPRNG returned a short read"))?;
    let Issue { subject, principals, key_id, actor, action, .. } = issue;
    // A serial collision (1 in 2^63) fails the insert; try again with another.
    for _ in 0..3 {
        let serial = new_serial()?;
        let cert_req = CertRequest {
            serial,
            key_id: key_id.clone(),
            principals: principals.clone(),
            valid_after: u64::try_from(valid_after).unwrap_or(0),
            valid_before: u64::try_from(valid_before).unwrap_or(0),
            force_command: spec.force_command.clone(),
            source_address: spec.source_address.clone(),
            extensions: spec.extensions.clone(),
            nonce,
        };
        let signed = ca.sign(subject, &cert_req).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let record = IssuedSshCert {
            serial: i64::try_from(serial).unwrap_or(i64::MAX),
            grant_id: grant.id.clone(),
            key_id: key_id.clone(),
            principals: principals.clone(),
            fingerprint: signed.fingerprint.clone(),
            valid_after,
            valid_before,
            issued_at: now,
            revoked_at: None,
        };
        let ev = ctx.audit(actor.clone(), action, format!("grant:{}", grant.id)).details(json!({
            "serial": serial, "key_id": key_id, "principals": principals, "fingerprint": signed.fingerprint,
            "valid_before": Timestamp(valid_before * 1000).to_rfc3339(), "role": grant.role, "breakglass": grant.breakglass,
        }));
        match st.store.record_ssh_cert(record, ev).await {
            Err(StoreError::Conflict(m)) if m == "already exists" => continue,
            Err(e) => return Err(e.into()),
            Ok(()) => {
                return Ok(SshCertView {
                    certificate: signed.certificate,
                    serial,
                    key_id,
                    principals,
                    valid_after: Timestamp(valid_after * 1000).to_rfc3339(),
                    valid_before: Timestamp(valid_before * 1000).to_rfc3339(),
                    fingerprint: signed.fingerprint,
                    grant_id: grant.id.clone(),
                });
            }
        }
    }
    Err(ApiError::internal("could not allocate a certificate serial"))
}

/// The CA's public key, one line, as `TrustedUserCAKeys` reads it. Public.
#[utoipa::path(get, path = "/v1/ssh/ca", tag = "ssh",
    responses((status = 200, body = String, content_type = "text/plain"), (status = 503, body = ErrorBody)))]
pub async fn ca(State(st): State<AppState>) -> ApiResult<impl IntoResponse> {
    let issuers = st.issuers();
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{}\n", issuers.ssh_ca_line()?)))
}

/// The Key Revocation List for `RevokedKeys`, in OpenSSH's binary format:
/// every revoked certificate still inside its validity. Public, like a CRL.
#[utoipa::path(get, path = "/v1/ssh/krl", tag = "ssh",
    responses((status = 200, body = Vec<u8>, content_type = "application/octet-stream")))]
pub async fn krl(State(st): State<AppState>) -> ApiResult<impl IntoResponse> {
    let now = st.clock.now();
    let revoked = st.store.revoked_ssh_serials(now.secs()).await?;
    let serials: Vec<u64> = revoked.serials.iter().filter_map(|s| u64::try_from(*s).ok()).collect();
    let issuers = st.issuers();
    let body = encode_krl(
        issuers.ssh_ca_public()?,
        &serials,
        u64::try_from(revoked.version).unwrap_or(0),
        u64::try_from(now.secs()).unwrap_or(0),
        "latch",
    );
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body))
}
