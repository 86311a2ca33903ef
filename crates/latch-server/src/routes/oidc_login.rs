//! People sign in through an OpenID Connect provider (authorization code
//! flow with PKCE; latch is the confidential client):
//!
//! 1. `POST /v1/auth/oidc/{provider}/start {redirect_uri}`: latch makes a
//!    state, a nonce and a PKCE verifier, keeps them for 10 minutes, and
//!    answers the provider's authorization URL. The CLI (`latch login --oidc`)
//!    listens on the loopback `redirect_uri` and has the user open the URL.
//! 2. The provider sends the browser back to `redirect_uri` with a code.
//! 3. `POST /v1/auth/oidc/{provider}/callback {state, code}`: latch redeems
//!    the code at the provider's token endpoint (client secret and PKCE
//!    verifier never leave the server), checks the ID token (signature with
//!    the provider's JWKS, `iss`, `aud`/`azp`, lifetime, `nonce`), provisions
//!    or finds the user by the provider's `sub`, brings the mapped groups in
//!    line with the `groups` claim, marks the session MFA when `amr` says a
//!    second factor was used, and answers a session like password login.
//!
//! Every refusal names its check and is audited (`auth.login`, method `oidc`).

use axum::Json;
use axum::extract::{Path, State};
use latch_audit::Outcome;
use latch_core::federation::parse_url;
use latch_core::{PrincipalKind, Timestamp, validate_name};
use latch_crypto::jose::{self, JoseError};
use latch_crypto::{Secret, new_id, new_token, random_bytes, sha256, token_hash};
use latch_store::{NewSession, OidcSignIn, OidcSignInOutcome, PendingOidcLogin, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, Ctx};
use crate::oidc::{KeyError, form_encode};
use crate::oidc_providers::OidcProvider;
use crate::routes::auth::LoginResponse;
use crate::routes::exchange::{CLOCK_SKEW, audiences, numeric, rfc3339, shown};
use crate::routes::path_name;
use crate::state::AppState;

/// How long a started sign-in may take.
const PENDING_TTL: std::time::Duration = std::time::Duration::from_secs(600);

const B64: data_encoding::Encoding = data_encoding::BASE64URL_NOPAD;

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ProviderView {
    pub name: String,
    pub issuer: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ProviderList {
    pub providers: Vec<ProviderView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// Where the provider sends the browser back: a loopback URL the CLI
    /// listens on, e.g. `http://127.0.0.1:53117/callback`.
    pub redirect_uri: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Started {
    /// Open this in a browser to sign in.
    pub authorization_url: String,
    /// Comes back with the code; send both to the callback.
    pub state: String,
    pub expires_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallbackRequest {
    pub state: String,
    pub code: String,
}

fn provider<'a>(st: &'a AppState, name: &str) -> ApiResult<&'a OidcProvider> {
    path_name("OIDC provider", name)?;
    st.oidc_providers
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no OIDC provider named {name:?}: list them with GET /v1/auth/oidc")))
}

fn random_b64(n: usize) -> ApiResult<String> {
    Ok(B64.encode(&random_bytes(n)?))
}

#[utoipa::path(get, path = "/v1/auth/oidc", tag = "auth", responses((status = 200, body = ProviderList)))]
pub async fn providers(State(st): State<AppState>) -> Json<ProviderList> {
    Json(ProviderList {
        providers: st
            .oidc_providers
            .iter()
            .map(|p| ProviderView { name: p.name.clone(), issuer: p.issuer.clone() })
            .collect(),
    })
}

#[utoipa::path(post, path = "/v1/auth/oidc/{provider}/start", tag = "auth", request_body = StartRequest,
    responses((status = 200, body = Started), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 503, body = ErrorBody)))]
pub async fn start(
    State(st): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<StartRequest>,
) -> ApiResult<Json<Started>> {
    let p = provider(&st, &name)?;
    let url = parse_url("redirect_uri", &req.redirect_uri).map_err(|e| ApiError::BadRequest(e.0))?;
    if url.https || !url.is_loopback() {
        return Err(ApiError::BadRequest(
            "redirect_uri must be a loopback URL such as http://127.0.0.1:PORT/callback, where `latch login --oidc` \
             listens (sign-in through a browser-based dashboard is not built yet)"
                .into(),
        ));
    }
    let now = st.clock.now();
    let discovery = st.oidc_keys.discovery(&p.issuer, now).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let endpoint = discovery.authorization_endpoint.ok_or_else(|| {
        ApiError::Unavailable(format!("the discovery document of {} names no authorization_endpoint", p.issuer))
    })?;
    let (state, nonce, verifier) = (random_b64(32)?, random_b64(32)?, random_b64(32)?);
    let challenge = B64.encode(&sha256(verifier.as_bytes()));
    let params = [
        ("response_type", "code"),
        ("client_id", p.client_id.as_str()),
        ("redirect_uri", req.redirect_uri.as_str()),
        ("scope", &p.scopes.join(" ")),
        ("state", state.as_str()),
        ("nonce", nonce.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", form_encode(v))).collect();
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    let expires_at = now.plus(PENDING_TTL);
    st.store
        .begin_oidc_login(PendingOidcLogin {
            state: state.clone(),
            provider: p.name.clone(),
            nonce,
            code_verifier: verifier,
            redirect_uri: req.redirect_uri,
            expires_at,
        })
        .await?;
    Ok(Json(Started {
        authorization_url: format!("{endpoint}{sep}{}", query.join("&")),
        state,
        expires_at: expires_at.to_rfc3339(),
    }))
}

/// A refused sign-in: the check (audited as `reason`) and what to do.
struct Refusal {
    reason: &'static str,
    message: String,
    target: Option<String>,
    details: Map<String, Value>,
}

impl Refusal {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Refusal { reason, message: message.into(), target: None, details: Map::new() }
    }
    fn with(mut self, key: &str, v: impl Into<Value>) -> Self {
        self.details.insert(key.into(), v.into());
        self
    }
}

async fn refuse(st: &AppState, ctx: &Ctx, provider: &str, r: Refusal) -> ApiError {
    let message = format!("sign-in through {provider} refused ({}): {}", r.reason.replace('_', " "), r.message);
    let err = match r.reason {
        "provider_unavailable" => ApiError::Unavailable(message),
        "account" => ApiError::Forbidden(message),
        _ => ApiError::InvalidGrant(message),
    };
    let mut details = r.details;
    details.insert("method".into(), "oidc".into());
    details.insert("provider".into(), provider.into());
    details.insert("reason".into(), r.reason.into());
    details.insert("message".into(), r.message.into());
    let target = r.target.unwrap_or_else(|| format!("oidc:{provider}"));
    let ev = ctx.audit("anonymous", "auth.login", target).outcome(Outcome::Failure).details(Value::Object(details));
    match st.store.append_audit(ev).await {
        Ok(_) => err,
        Err(e) => ApiError::from(e),
    }
}

/// What the ID token says, once every check passed.
struct Identity {
    subject: String,
    username: String,
    idp_groups: Vec<String>,
    amr: Vec<String>,
    acr: Option<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

async fn redeem(
    st: &AppState,
    p: &OidcProvider,
    pending: &PendingOidcLogin,
    code: &str,
    now: Timestamp,
) -> Result<Identity, Refusal> {
    let unavailable = |m: String| Refusal::new("provider_unavailable", m);
    let discovery = st.oidc_keys.discovery(&p.issuer, now).await.map_err(|e| unavailable(e.to_string()))?;
    let token_endpoint = discovery
        .token_endpoint
        .ok_or_else(|| unavailable(format!("the discovery document of {} names no token_endpoint", p.issuer)))?;
    let form = vec![
        ("grant_type".to_string(), "authorization_code".to_string()),
        ("code".to_string(), code.to_string()),
        ("redirect_uri".to_string(), pending.redirect_uri.clone()),
        ("code_verifier".to_string(), pending.code_verifier.clone()),
        ("client_id".to_string(), p.client_id.clone()),
    ];
    let basic = p.client_secret.as_ref().map(|s| (p.client_id.clone(), s.expose().to_string()));
    let (status, answer) = st.oidc_keys.post_form(&token_endpoint, form, basic).await.map_err(unavailable)?;
    if status != 200 {
        let what = |k: &str| answer.get(k).and_then(Value::as_str).map(shown).unwrap_or_default();
        return Err(Refusal::new(
            "code",
            format!(
                "the provider did not redeem the code (HTTP {status}): {} {}",
                what("error"),
                what("error_description")
            ),
        ));
    }
    let id_token = answer.get("id_token").and_then(Value::as_str).ok_or_else(|| {
        Refusal::new("id_token", "the provider's answer has no id_token: is the openid scope granted?")
    })?;

    let jws = jose::parse(id_token).map_err(|e| match e {
        JoseError::Algorithm(_) => Refusal::new("algorithm", e.to_string()),
        JoseError::MissingKid => Refusal::new("missing_kid", e.to_string()),
        _ => Refusal::new("malformed", e.to_string()),
    })?;
    let claims = &jws.claims;
    if claims.get("iss").and_then(Value::as_str) != Some(p.issuer.as_str()) {
        return Err(Refusal::new("issuer", format!("the ID token's iss is not {:?}", p.issuer)));
    }
    let key = st.oidc_keys.key(&p.issuer, &jws.kid, now).await.map_err(|e| match &e {
        KeyError::Unavailable { .. } => unavailable(e.to_string()),
        KeyError::UnknownKid { .. } => Refusal::new("unknown_kid", e.to_string()),
    })?;
    jws.verify(&key).map_err(|e| match e {
        JoseError::KeyMismatch { .. } => Refusal::new("algorithm", e.to_string()),
        _ => Refusal::new("signature", e.to_string()),
    })?;
    // From here on, the claims are the provider's word.
    let auds = audiences(claims).map_err(|m| Refusal::new("audience", m))?;
    if !auds.contains(&p.client_id) {
        return Err(Refusal::new("audience", format!("the ID token is not for client {:?}", p.client_id)));
    }
    if auds.len() > 1 && claims.get("azp").and_then(Value::as_str) != Some(p.client_id.as_str()) {
        return Err(Refusal::new(
            "audience",
            "the ID token has several audiences and its azp is not latch's client id",
        ));
    }
    let (now_s, skew) = (now.secs(), i64::try_from(CLOCK_SKEW.as_secs()).unwrap_or(60));
    match numeric(claims, "exp") {
        Ok(Some(exp)) if now_s < exp.saturating_add(skew) => {}
        Ok(Some(exp)) => return Err(Refusal::new("expiry", format!("the ID token expired at {}", rfc3339(exp)))),
        Ok(None) => return Err(Refusal::new("expiry", "the ID token has no exp claim")),
        Err(m) => return Err(Refusal::new("expiry", m)),
    }
    match numeric(claims, "iat") {
        Ok(Some(iat)) if now_s.saturating_add(skew) < iat => {
            return Err(Refusal::new(
                "not_yet_valid",
                format!("the ID token was issued in the future, at {}", rfc3339(iat)),
            ));
        }
        Err(m) => return Err(Refusal::new("not_yet_valid", m)),
        _ => {}
    }
    let nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or_default();
    if !latch_crypto::ct_eq(nonce.as_bytes(), pending.nonce.as_bytes()) {
        return Err(Refusal::new("nonce", "the ID token's nonce is not the one of this sign-in"));
    }
    let subject = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => s.clone(),
        _ => return Err(Refusal::new("subject", "the ID token has no usable sub claim")),
    };
    let username = claims.get(&p.username_claim).and_then(Value::as_str).unwrap_or_default().to_string();
    if let Err(e) = validate_name("user", &username) {
        return Err(Refusal::new(
            "username",
            format!("claim {} ({:?}) is not a latch user name: {e}", p.username_claim, shown(&username)),
        )
        .with("sub", shown(&subject)));
    }
    Ok(Identity {
        subject,
        username,
        idp_groups: strings(claims.get(&p.groups_claim)),
        amr: strings(claims.get("amr")),
        acr: claims.get("acr").and_then(Value::as_str).map(shown),
    })
}

#[utoipa::path(post, path = "/v1/auth/oidc/{provider}/callback", tag = "auth", request_body = CallbackRequest,
    responses((status = 200, body = LoginResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn callback(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<CallbackRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let p = provider(&st, &name)?.clone();
    let now = st.clock.now();
    // Single use: taken whatever happens next.
    let pending = match st.store.take_oidc_login(&req.state).await? {
        Some(l) if l.provider == p.name && now < l.expires_at => l,
        Some(l) if l.provider != p.name => {
            return Err(refuse(
                &st,
                &ctx,
                &p.name,
                Refusal::new("state", "this sign-in was started with another provider"),
            )
            .await);
        }
        Some(_) => {
            let r = Refusal::new("state", "the sign-in took longer than 10 minutes: start again");
            return Err(refuse(&st, &ctx, &p.name, r).await);
        }
        None => {
            let r = Refusal::new("state", "unknown or already used state: start the sign-in again");
            return Err(refuse(&st, &ctx, &p.name, r).await);
        }
    };
    let who = match redeem(&st, &p, &pending, &req.code, now).await {
        Ok(who) => who,
        Err(r) => return Err(refuse(&st, &ctx, &p.name, r).await),
    };
    let mfa = who.amr.iter().any(|a| p.mfa_amr.contains(a));
    let mut member_of: Vec<String> = who.idp_groups.iter().filter_map(|g| p.groups.get(g)).cloned().collect();
    member_of.sort();
    member_of.dedup();
    let token: Secret = new_token("lts")?;
    let session = NewSession {
        id: new_id("ses")?,
        token_hash: token_hash(token.expose()),
        principal_id: String::new(), // the store fills in the user
        principal_kind: PrincipalKind::User,
        mfa,
        source: ctx.source.clone(),
        expires_at: now.plus(st.auth.session_ttl),
        clears_failures: None,
    };
    let sign_in = OidcSignIn {
        provider: p.name.clone(),
        subject: who.subject.clone(),
        username: who.username.clone(),
        member_of,
        managed: p.managed_groups(),
    };
    let (ctx2, provider_name, subject, amr, acr, session_id) =
        (ctx.clone(), p.name.clone(), who.subject.clone(), who.amr.clone(), who.acr.clone(), session.id.clone());
    let audit = Box::new(move |o: &OidcSignInOutcome| {
        let target = format!("user:{}", o.user_name);
        ctx2.audit(target.clone(), "auth.login", target).details(json!({
            "session_id": session_id, "method": "oidc", "provider": provider_name, "subject": subject,
            "mfa": mfa, "amr": amr, "acr": acr, "provisioned": o.provisioned,
            "groups_added": o.groups_added, "groups_removed": o.groups_removed, "groups_missing": o.groups_missing,
        }))
    });
    match st.store.oidc_sign_in(sign_in, session, audit).await {
        Ok((o, s)) => Ok(Json(LoginResponse {
            token: token.expose().to_string(),
            session_id: s.id,
            expires_at: s.expires_at.to_rfc3339(),
            mfa: s.mfa,
            name: o.user_name,
            kind: PrincipalKind::User,
        })),
        Err(StoreError::Precondition(m)) => {
            let mut r = Refusal::new("account", m).with("sub", shown(&who.subject));
            r.target = Some(format!("user:{}", who.username));
            Err(refuse(&st, &ctx, &p.name, r).await)
        }
        Err(e) => Err(e.into()),
    }
}
