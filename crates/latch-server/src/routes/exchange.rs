//! Token exchange (the shape of RFC 8693): a workload trades a JWT from an
//! external OpenID Connect issuer — a CI job's ID token — for a short-lived
//! latch session of the service principal federated with that issuer.
//!
//! The body is JSON, like the rest of the API (RFC 8693 uses form encoding):
//!
//! ```json
//! { "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
//!   "subject_token": "<JWT>",
//!   "subject_token_type": "urn:ietf:params:oauth:token-type:jwt" }
//! ```
//!
//! Checks, in order; the first that fails names itself in the error (code
//! `invalid_grant`, HTTP 400) and in the audit event (`auth.exchange`,
//! `details.reason`), and the token itself is never echoed:
//!
//! 1. `malformed`, `algorithm` (RS256, ES256, EdDSA only), `missing_kid`;
//! 2. `issuer`: some service principal is federated with the token's `iss`
//!    (compared exactly); no other issuer's keys are ever fetched;
//! 3. `unknown_kid`, then `signature`, with the issuer's JWKS (discovered and
//!    cached, see [`crate::oidc`]); `jwks_unavailable` (HTTP 503) when it
//!    cannot be fetched;
//! 4. `expiry` (`exp` is required), `not_yet_valid` (`nbf`, and an `iat` in
//!    the future), each with [`CLOCK_SKEW`] of leeway, on the server's clock;
//! 5. `audience`: one of the token's `aud` is the federation's audience;
//! 6. `claim_condition`: every condition of the federation holds;
//! 7. `ambiguous` (bindings of several principals match: name one with
//!    `service_principal`), `disabled`, `missing_jti`;
//! 8. `replay`: a token (issuer + `jti`) is exchanged once; it is remembered
//!    until it expires.
//!
//! Failures are audited but not counted towards login lockouts: nothing here
//! can be guessed, and locking a shared CI runner's address out of password
//! login would punish every pipeline behind it for one misconfigured job.
//! They are counted per source address under their own key, with the same
//! store bookkeeping (every node sees them): past
//! `[auth] max_exchange_refusals_per_source` in `failure_window` an address
//! is answered 429 with Retry-After before any check runs (audited as
//! denied, like a login past its lockout), so a flood costs neither JWKS
//! fetches nor signature checks nor store lookups of federations.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use latch_audit::Outcome;
use latch_core::federation::{Claim, evaluate};
use latch_core::{PrincipalKind, Timestamp, validate_name};
use latch_crypto::jose::{self, JoseError};
use latch_crypto::{Secret, new_id, new_token, token_hash};
use latch_store::{ExchangedToken, Federation, NewSession, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, Ctx};
use crate::oidc::KeyError;
use crate::routes::auth::{retry_after, source_key};
use crate::state::AppState;

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Leeway for `exp`, `nbf` and `iat` against clocks that disagree a little.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Longest `jti` remembered.
const MAX_JTI_LEN: usize = 256;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRequest {
    /// `urn:ietf:params:oauth:grant-type:token-exchange`.
    pub grant_type: String,
    /// The external JWT, e.g. the CI job's OIDC ID token.
    pub subject_token: String,
    /// `urn:ietf:params:oauth:token-type:jwt` (or `…:id_token`).
    pub subject_token_type: String,
    /// `urn:ietf:params:oauth:token-type:access_token` if given: a latch session token.
    #[serde(default)]
    pub requested_token_type: Option<String>,
    /// The service principal (name or client id) to become. Needed only when
    /// the token satisfies federations of several principals.
    #[serde(default)]
    pub service_principal: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ExchangeResponse {
    /// A latch session token (use as `Authorization: Bearer` / LATCH_TOKEN).
    /// Shown once; latch keeps only its hash.
    pub access_token: String,
    /// `urn:ietf:params:oauth:token-type:access_token`.
    pub issued_token_type: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds until the session ends.
    pub expires_in: i64,
    pub expires_at: String,
    pub session_id: String,
    /// The service principal the session belongs to.
    pub name: String,
    #[schema(value_type = String)]
    pub kind: PrincipalKind,
    /// The federation whose trust admitted the token.
    pub federation: String,
}

/// A refused exchange: the check that failed (a stable word, audited as
/// `reason`) and what to do about it.
struct Refusal {
    reason: &'static str,
    message: String,
    /// Which principal the token was for, once known.
    target: Option<String>,
    /// Extra audit details (issuer, kid, sub…; never the token).
    details: Map<String, Value>,
    /// The store failed: not a refusal of the token, reported as such.
    cause: Option<StoreError>,
}

impl Refusal {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Refusal { reason, message: message.into(), target: None, details: Map::new(), cause: None }
    }
    fn with(mut self, key: &str, v: impl Into<Value>) -> Self {
        self.details.insert(key.into(), v.into());
        self
    }
    fn error(&self) -> ApiError {
        let check = self.reason.replace('_', " ");
        let message = format!("token exchange refused ({check}): {}", self.message);
        match self.reason {
            "grant_type" | "token_type" | "request" => ApiError::BadRequest(message),
            "jwks_unavailable" => ApiError::Unavailable(message),
            _ => ApiError::InvalidGrant(message),
        }
    }
}

/// Caller-controlled text, made safe and short for messages and audit events.
pub(crate) fn shown(s: &str) -> String {
    let short: String = s.chars().filter(|c| !c.is_control()).take(200).collect();
    if short.len() < s.len() { format!("{short}…") } else { short }
}

/// A NumericDate claim: absent, or seconds since the epoch.
pub(crate) fn numeric(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite() && f.abs() < 1e15).map(|f| f.floor() as i64))
            .map(Some)
            .ok_or_else(|| format!("the {name} claim is not a time in seconds")),
        Some(_) => Err(format!("the {name} claim is not a number")),
    }
}

pub(crate) fn rfc3339(secs: i64) -> String {
    Timestamp(secs.saturating_mul(1000)).to_rfc3339()
}

/// The token's audiences: `aud` as a string or an array of strings.
pub(crate) fn audiences(claims: &Map<String, Value>) -> Result<Vec<String>, String> {
    match claims.get("aud") {
        Some(Value::String(a)) => Ok(vec![a.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| "the aud claim has a value that is not a string".into())
            })
            .collect(),
        Some(_) => Err("the aud claim is neither a string nor an array of strings".into()),
        None => Err("the token has no aud claim".into()),
    }
}

/// What passed every check: who, by which federation, and the token's id.
struct Admitted {
    federation: Federation,
    issuer: String,
    jti: String,
    exp: i64,
    sub: Option<String>,
}

async fn check(st: &AppState, req: &ExchangeRequest, now: Timestamp) -> Result<Admitted, Refusal> {
    if req.grant_type != GRANT_TYPE {
        return Err(Refusal::new("grant_type", format!("grant_type must be {GRANT_TYPE}")));
    }
    if req.subject_token_type != TOKEN_TYPE_JWT && req.subject_token_type != TOKEN_TYPE_ID_TOKEN {
        return Err(Refusal::new(
            "token_type",
            format!("subject_token_type must be {TOKEN_TYPE_JWT} (or {TOKEN_TYPE_ID_TOKEN})"),
        ));
    }
    if let Some(t) = &req.requested_token_type
        && t != TOKEN_TYPE_ACCESS_TOKEN
    {
        return Err(Refusal::new(
            "token_type",
            format!("requested_token_type can only be {TOKEN_TYPE_ACCESS_TOKEN} (a latch session)"),
        ));
    }
    if let Some(sp) = &req.service_principal {
        validate_name("service principal", sp).map_err(|e| Refusal::new("request", e.to_string()))?;
    }

    // 1. Shape and header, before anything is looked up.
    let jws = jose::parse(req.subject_token.trim()).map_err(|e| match e {
        JoseError::Algorithm(_) => Refusal::new("algorithm", e.to_string()),
        JoseError::MissingKid => Refusal::new("missing_kid", e.to_string()),
        _ => Refusal::new("malformed", e.to_string()),
    })?;
    let kid = shown(&jws.kid);
    let claims = &jws.claims;

    // 2. Issuer: only one some principal trusts (its keys are the only ones fetched).
    let Some(issuer) = claims.get("iss").and_then(Value::as_str).map(str::to_string) else {
        return Err(Refusal::new("issuer", "the token has no iss claim").with("kid", kid));
    };
    let untrusted = |msg: String| Refusal::new("issuer", msg).with("issuer", shown(&issuer)).with("kid", kid.clone());
    let mut candidates = st
        .store
        .federations_by_issuer(&issuer)
        .await
        .map_err(|e| Refusal { cause: Some(e), ..Refusal::new("store", "cannot read federations") })?;
    if let Some(sp) = &req.service_principal {
        candidates.retain(|f| &f.sp_name == sp || &f.sp_id == sp);
        if candidates.is_empty() {
            return Err(untrusted(format!(
                "service principal {sp:?} is not federated with issuer {:?}",
                shown(&issuer)
            )));
        }
    }
    if candidates.is_empty() {
        return Err(untrusted(format!(
            "issuer {:?} is not trusted: no service principal is federated with it",
            shown(&issuer)
        )));
    }
    let with_iss = |r: Refusal| r.with("issuer", issuer.clone()).with("kid", kid.clone());

    // 3. Key and signature.
    let key = st.oidc_keys.key(&issuer, &jws.kid, now).await.map_err(|e| match &e {
        KeyError::Unavailable { .. } => with_iss(Refusal::new("jwks_unavailable", e.to_string())),
        KeyError::UnknownKid { .. } => with_iss(Refusal::new("unknown_kid", e.to_string())),
    })?;
    jws.verify(&key).map_err(|e| match e {
        JoseError::KeyMismatch { .. } => with_iss(Refusal::new("algorithm", e.to_string())),
        _ => with_iss(Refusal::new("signature", e.to_string())),
    })?;
    // Claims are the issuer's word from here on.
    let sub = claims.get("sub").and_then(Value::as_str).map(shown);
    let with_sub = |r: Refusal| match &sub {
        Some(s) => with_iss(r).with("sub", s.clone()),
        None => with_iss(r),
    };

    // 4. Lifetime, on the server's clock, with a little leeway.
    let (now_s, skew) = (now.secs(), i64::try_from(CLOCK_SKEW.as_secs()).unwrap_or(60));
    let exp = match numeric(claims, "exp") {
        Ok(Some(exp)) => exp,
        Ok(None) => return Err(with_sub(Refusal::new("expiry", "the token has no exp claim"))),
        Err(m) => return Err(with_sub(Refusal::new("expiry", m))),
    };
    if now_s >= exp.saturating_add(skew) {
        return Err(with_sub(Refusal::new(
            "expiry",
            format!("the token expired at {} (now {})", rfc3339(exp), now.to_rfc3339()),
        )));
    }
    match numeric(claims, "nbf") {
        Ok(Some(nbf)) if now_s.saturating_add(skew) < nbf => {
            return Err(with_sub(Refusal::new(
                "not_yet_valid",
                format!("the token is not valid before {} (now {})", rfc3339(nbf), now.to_rfc3339()),
            )));
        }
        Err(m) => return Err(with_sub(Refusal::new("not_yet_valid", m))),
        _ => {}
    }
    match numeric(claims, "iat") {
        Ok(Some(iat)) if now_s.saturating_add(skew) < iat => {
            return Err(with_sub(Refusal::new(
                "not_yet_valid",
                format!("the token was issued in the future, at {} (now {})", rfc3339(iat), now.to_rfc3339()),
            )));
        }
        Err(m) => return Err(with_sub(Refusal::new("not_yet_valid", m))),
        _ => {}
    }

    // 5. Audience.
    let auds = audiences(claims).map_err(|m| with_sub(Refusal::new("audience", m)))?;
    candidates.retain(|f| auds.contains(&f.audience));
    if candidates.is_empty() {
        let shown_auds: Vec<String> = auds.iter().take(10).map(|a| shown(a)).collect();
        return Err(with_sub(Refusal::new(
            "audience",
            format!("the token's audience {shown_auds:?} is not one latch trusts for this issuer"),
        ))
        .with("aud", shown_auds));
    }

    // 6. Claim conditions: the federations whose every condition holds.
    let claim = |name: &str| match claims.get(name) {
        None => Claim::Missing,
        Some(Value::String(s)) => Claim::Str(s.as_str()),
        Some(_) => Claim::NotString,
    };
    let mut unmet = Vec::new();
    let mut admitted = Vec::new();
    for f in candidates {
        match evaluate(&f.conditions, claim) {
            Ok(()) => admitted.push(f),
            Err(u) => unmet.push((f, u)),
        }
    }
    if admitted.is_empty() {
        let said: Vec<String> = unmet.iter().take(5).map(|(f, u)| format!("{}/{}: {u}", f.sp_name, f.name)).collect();
        let audited: Vec<Value> = unmet
            .iter()
            .take(5)
            .map(|(f, u)| json!({ "service_principal": f.sp_name, "federation": f.name, "claim": u.claim, "found": u.found, "wanted": u.wanted }))
            .collect();
        let mut r =
            with_sub(Refusal::new("claim_condition", format!("no federation's conditions hold: {}", said.join("; "))))
                .with("unmet", audited);
        if let [(f, _)] = unmet.as_slice() {
            r.target = Some(format!("service_principal:{}", f.sp_name));
        }
        return Err(r);
    }

    // 7. One principal; enabled; a jti to remember.
    let mut principals: Vec<&str> = admitted.iter().map(|f| f.sp_name.as_str()).collect();
    principals.sort_unstable();
    principals.dedup();
    if principals.len() > 1 {
        return Err(with_sub(Refusal::new(
            "ambiguous",
            format!(
                "the token satisfies federations of several service principals ({}): name one with service_principal (latch exchange --sp NAME)",
                principals.join(", ")
            ),
        )));
    }
    let federation = admitted.swap_remove(0);
    let target = format!("service_principal:{}", federation.sp_name);
    let at = |r: Refusal| {
        let mut r = with_sub(r).with("federation", federation.name.clone());
        r.target = Some(target.clone());
        r
    };
    if federation.sp_disabled {
        return Err(at(Refusal::new("disabled", format!("service principal {} is disabled", federation.sp_name))));
    }
    let jti = match claims.get("jti") {
        Some(Value::String(j)) if !j.is_empty() && j.len() <= MAX_JTI_LEN => j.clone(),
        _ => {
            return Err(at(Refusal::new(
                "missing_jti",
                format!("the token has no jti (of at most {MAX_JTI_LEN} bytes): latch remembers it to refuse replays"),
            )));
        }
    };
    Ok(Admitted { federation, issuer, jti, exp, sub })
}

/// Audits a refusal; the refusal is reported only once its event is stored
/// (a failing store is a 5xx, not a silent refusal).
async fn refuse(st: &AppState, ctx: &Ctx, r: Refusal) -> ApiError {
    let err = r.error();
    let mut details = r.details;
    details.insert("reason".into(), r.reason.into());
    details.insert("message".into(), r.message.into());
    let target = r.target.unwrap_or_else(|| "token_exchange".into());
    let ev = ctx.audit("anonymous", "auth.exchange", target).outcome(Outcome::Failure).details(Value::Object(details));
    match st.store.record_login_failure(vec![refusals_key(ctx)], ev).await {
        Ok(_) => err,
        Err(e) => ApiError::from(e),
    }
}

/// The throttling key of refused exchanges from the caller's address.
fn refusals_key(ctx: &Ctx) -> String {
    format!("exchange:{}", source_key(&ctx.source))
}

const TOO_MANY_REFUSALS: &str = "too many refused token exchanges from this address";

#[utoipa::path(post, path = "/v1/auth/exchange", tag = "auth", request_body = ExchangeRequest,
    responses((status = 200, body = ExchangeResponse), (status = 400, body = ErrorBody), (status = 429, body = ErrorBody),
    (status = 503, body = ErrorBody)))]
pub async fn exchange(
    State(st): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<ExchangeRequest>,
) -> ApiResult<Json<ExchangeResponse>> {
    let now = st.clock.now();
    let key = refusals_key(&ctx);
    if let Some(secs) = retry_after(&st, &[(&key, st.auth.exchange_refusals_per_source)], now).await? {
        let ev = ctx
            .audit("anonymous", "auth.exchange", "token_exchange")
            .outcome(Outcome::Denied)
            .details(json!({ "reason": "rate_limited", "retry_after_secs": secs }));
        st.store.append_audit(ev).await?;
        return Err(ApiError::RateLimited { what: TOO_MANY_REFUSALS, retry_after_secs: secs });
    }
    let ok = match check(&st, &req, now).await {
        Ok(ok) => ok,
        Err(Refusal { cause: Some(e), .. }) => return Err(e.into()),
        Err(r) => return Err(refuse(&st, &ctx, r).await),
    };
    let f = &ok.federation;
    let token: Secret = new_token("lts")?;
    let session = NewSession {
        id: new_id("ses")?,
        token_hash: token_hash(token.expose()),
        principal_id: f.sp_id.clone(),
        principal_kind: PrincipalKind::ServicePrincipal,
        mfa: false,
        source: ctx.source.clone(),
        expires_at: now.plus(st.auth.exchange_session_ttl),
        clears_failures: None,
    };
    let remembered = ExchangedToken {
        issuer: ok.issuer.clone(),
        jti: ok.jti.clone(),
        expires_at: Timestamp(ok.exp.saturating_mul(1000)).plus(CLOCK_SKEW),
    };
    let target = format!("service_principal:{}", f.sp_name);
    let ev = ctx.audit(target.clone(), "auth.exchange", target.clone()).details(json!({
        "session_id": session.id, "method": "token_exchange", "issuer": ok.issuer, "federation": f.name,
        "sub": ok.sub, "jti": shown(&ok.jti), "expires_at": session.expires_at.to_rfc3339(),
    }));
    match st.store.exchange(session, remembered, ev).await {
        Ok(s) => Ok(Json(ExchangeResponse {
            access_token: token.expose().to_string(),
            issued_token_type: TOKEN_TYPE_ACCESS_TOKEN.into(),
            token_type: "Bearer".into(),
            expires_in: (s.expires_at.millis() - now.millis()) / 1000,
            expires_at: s.expires_at.to_rfc3339(),
            session_id: s.id,
            name: f.sp_name.clone(),
            kind: PrincipalKind::ServicePrincipal,
            federation: f.name.clone(),
        })),
        Err(StoreError::Precondition(_)) => {
            let mut r = Refusal::new(
                "replay",
                "this token (its issuer and jti) was already exchanged: get a fresh token from the issuer",
            )
            .with("issuer", ok.issuer.clone())
            .with("federation", f.name.clone())
            .with("jti", shown(&ok.jti));
            if let Some(sub) = &ok.sub {
                r = r.with("sub", sub.clone());
            }
            r.target = Some(target);
            Err(refuse(&st, &ctx, r).await)
        }
        Err(e) => Err(e.into()),
    }
}
