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
//! The dashboard runs the same flow (`crate::ui`: its own callback, the
//! state pinned to the browser) through `begin` and `finish`. Where the
//! provider offers it, the CLI uses the device authorization grant instead
//! (RFC 8628: `POST …/device`, then `POST …/device/poll` until the user
//! approved at the provider). Every ID token passes `check_id_token`.
//! Starts are anonymous and store a row, so they are counted per source.
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
use crate::routes::auth::{LoginResponse, retry_after, source_key};
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
    /// Whether the provider offers the device authorization grant (its
    /// discovery names a device_authorization_endpoint); absent when its
    /// discovery document cannot be fetched now.
    pub device_grant: Option<bool>,
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

pub(crate) fn provider<'a>(st: &'a AppState, name: &str) -> ApiResult<&'a OidcProvider> {
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
    let now = st.clock.now();
    let mut providers = Vec::new();
    for p in st.oidc_providers.iter() {
        let discovery = st.oidc_keys.discovery(&p.issuer, now).await.ok();
        providers.push(ProviderView {
            name: p.name.clone(),
            issuer: p.issuer.clone(),
            device_grant: discovery.map(|d| d.device_authorization_endpoint.is_some()),
        });
    }
    Json(ProviderList { providers })
}

#[utoipa::path(post, path = "/v1/auth/oidc/{provider}/start", tag = "auth", request_body = StartRequest,
    responses((status = 200, body = Started), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn start(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<StartRequest>,
) -> ApiResult<Json<Started>> {
    let p = provider(&st, &name)?;
    let url = parse_url("redirect_uri", &req.redirect_uri).map_err(|e| ApiError::BadRequest(e.0))?;
    if url.https || !url.is_loopback() {
        return Err(ApiError::BadRequest(
            "redirect_uri must be a loopback URL such as http://127.0.0.1:PORT/callback, where `latch login --oidc` \
             listens (the dashboard signs in at /ui/login)"
                .into(),
        ));
    }
    let state = random_b64(32)?;
    begin(&st, &ctx, p, req.redirect_uri, state).await.map(Json)
}

/// Starts a sign-in at `p` that comes back to `redirect_uri` with `state`:
/// keeps the nonce and PKCE verifier for [`PENDING_TTL`] and answers the
/// provider's authorization URL. Anonymous, so throttled per source.
pub(crate) async fn begin(
    st: &AppState,
    ctx: &Ctx,
    p: &OidcProvider,
    redirect_uri: String,
    state: String,
) -> ApiResult<Started> {
    let now = st.clock.now();
    count_start(st, ctx, p, now).await?;
    let discovery = st.oidc_keys.discovery(&p.issuer, now).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let endpoint = discovery.authorization_endpoint.ok_or_else(|| {
        ApiError::Unavailable(format!("the discovery document of {} names no authorization_endpoint", p.issuer))
    })?;
    let (nonce, verifier) = (random_b64(32)?, random_b64(32)?);
    let challenge = B64.encode(&sha256(verifier.as_bytes()));
    let params = [
        ("response_type", "code"),
        ("client_id", p.client_id.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
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
            redirect_uri,
            expires_at,
        })
        .await?;
    Ok(Started {
        authorization_url: format!("{endpoint}{sep}{}", query.join("&")),
        state,
        expires_at: expires_at.to_rfc3339(),
    })
}

/// A refused sign-in: the check (audited as `reason`) and what to do.
pub(crate) struct Refusal {
    reason: &'static str,
    message: String,
    target: Option<String>,
    details: Map<String, Value>,
}

impl Refusal {
    pub(crate) fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Refusal { reason, message: message.into(), target: None, details: Map::new() }
    }
    pub(crate) fn with(mut self, key: &str, v: impl Into<Value>) -> Self {
        self.details.insert(key.into(), v.into());
        self
    }
}

/// Audits a refused sign-in (`auth.login`, method `oidc`) and answers its error.
pub(crate) async fn refuse(st: &AppState, ctx: &Ctx, provider: &str, r: Refusal) -> ApiError {
    let message = format!("sign-in through {provider} refused ({}): {}", r.reason.replace('_', " "), r.message);
    let err = match r.reason {
        "provider_unavailable" => ApiError::Unavailable(message),
        "account" | "access_denied" => ApiError::Forbidden(message),
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

fn unavailable(m: String) -> Refusal {
    Refusal::new("provider_unavailable", m)
}

/// POSTs `form` to the provider's token endpoint with latch's client
/// credentials; answers the HTTP status and the JSON body.
async fn token_request(
    st: &AppState,
    p: &OidcProvider,
    mut form: Vec<(String, String)>,
    now: Timestamp,
) -> Result<(u16, Value), Refusal> {
    let discovery = st.oidc_keys.discovery(&p.issuer, now).await.map_err(|e| unavailable(e.to_string()))?;
    let token_endpoint = discovery
        .token_endpoint
        .ok_or_else(|| unavailable(format!("the discovery document of {} names no token_endpoint", p.issuer)))?;
    form.push(("client_id".to_string(), p.client_id.clone()));
    let basic = p.client_secret.as_ref().map(|s| (p.client_id.clone(), s.expose().to_string()));
    st.oidc_keys.post_form(&token_endpoint, form, basic).await.map_err(unavailable)
}

/// The provider's `error` and `error_description`, made safe to show.
fn oauth_error(answer: &Value) -> (String, String) {
    let what = |k: &str| answer.get(k).and_then(Value::as_str).map(shown).unwrap_or_default();
    (what("error"), what("error_description"))
}

/// The `id_token` of a token endpoint's answer.
fn id_token_of(answer: &Value) -> Option<&str> {
    answer.get("id_token").and_then(Value::as_str)
}

fn no_id_token() -> Refusal {
    Refusal::new("id_token", "the provider's answer has no id_token: is the openid scope granted?")
}

/// Redeems an authorization code (with the PKCE verifier) and checks the ID token.
async fn redeem(
    st: &AppState,
    p: &OidcProvider,
    pending: &PendingOidcLogin,
    code: &str,
    now: Timestamp,
) -> Result<Identity, Refusal> {
    let form = vec![
        ("grant_type".to_string(), "authorization_code".to_string()),
        ("code".to_string(), code.to_string()),
        ("redirect_uri".to_string(), pending.redirect_uri.clone()),
        ("code_verifier".to_string(), pending.code_verifier.clone()),
    ];
    let (status, answer) = token_request(st, p, form, now).await?;
    if status != 200 {
        let (error, description) = oauth_error(&answer);
        return Err(Refusal::new(
            "code",
            format!("the provider did not redeem the code (HTTP {status}): {error} {description}"),
        ));
    }
    let id_token = id_token_of(&answer).ok_or_else(no_id_token)?;
    check_id_token(st, p, id_token, Nonce::Required(&pending.nonce), now).await
}

/// The nonce an ID token must carry.
#[derive(Clone, Copy)]
enum Nonce<'a> {
    /// The code flow: the ID token comes back through the browser's
    /// redirect, so the nonce of the sign-in binds it to this sign-in.
    Required(&'a str),
    /// The device grant: the ID token comes straight from the token endpoint
    /// in answer to latch's own device code (RFC 8628 has no nonce, and
    /// oidc-provider omits it); one that is present must still match.
    IfPresent(&'a str),
}

/// Every check of an ID token, for every way of signing in (code flow from
/// the CLI or the dashboard, device grant): signature with the provider's
/// JWKS, `iss`, `aud`/`azp`, lifetime, `nonce`, `sub`, the user name claim.
async fn check_id_token(
    st: &AppState,
    p: &OidcProvider,
    id_token: &str,
    expected_nonce: Nonce<'_>,
    now: Timestamp,
) -> Result<Identity, Refusal> {
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
    let (expected, required) = match expected_nonce {
        Nonce::Required(n) => (n, true),
        Nonce::IfPresent(n) => (n, false),
    };
    let nonce = claims.get("nonce").and_then(Value::as_str);
    let matches = nonce.is_some_and(|n| latch_crypto::ct_eq(n.as_bytes(), expected.as_bytes()));
    if !matches && (required || nonce.is_some()) {
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
        // Kept space-separated with the session: only RFC 8176-like tokens.
        amr: strings(claims.get("amr"))
            .into_iter()
            .filter(|a| !a.is_empty() && a.len() <= 64 && a.bytes().all(|b| b.is_ascii_graphic()))
            .collect(),
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
    finish(&st, &ctx, &p, &req.state, &req.code).await.map(Json)
}

/// Takes the pending sign-in of `state` (single use, whatever happens next)
/// if it is a code-flow sign-in of `p` that has not expired.
pub(crate) async fn take_pending(
    st: &AppState,
    ctx: &Ctx,
    p: &OidcProvider,
    state: &str,
    device: bool,
) -> ApiResult<PendingOidcLogin> {
    let now = st.clock.now();
    let why = match st.store.take_oidc_login(state).await? {
        Some(l) if l.provider == p.name && (l.redirect_uri == DEVICE_GRANT) == device && now < l.expires_at => {
            return Ok(l);
        }
        Some(l) if l.provider != p.name => "this sign-in was started with another provider",
        Some(l) if (l.redirect_uri == DEVICE_GRANT) != device => {
            "this state belongs to another kind of sign-in (device code vs browser redirect)"
        }
        Some(_) if device => "the device code expired before it was approved: run `latch login --oidc` again",
        Some(_) => "the sign-in took longer than 10 minutes: start again",
        None => "unknown or already used state: start the sign-in again",
    };
    Err(refuse(st, ctx, &p.name, Refusal::new("state", why)).await)
}

/// The second half of the code flow: the state's pending sign-in, the code
/// redeemed, the ID token checked, the user provisioned and a session opened.
pub(crate) async fn finish(
    st: &AppState,
    ctx: &Ctx,
    p: &OidcProvider,
    state: &str,
    code: &str,
) -> ApiResult<LoginResponse> {
    let pending = take_pending(st, ctx, p, state, false).await?;
    let who = match redeem(st, p, &pending, code, st.clock.now()).await {
        Ok(who) => who,
        Err(r) => return Err(refuse(st, ctx, &p.name, r).await),
    };
    open_session(st, ctx, p, who).await
}

/// Provisions or finds the user, syncs the mapped groups and opens a session.
async fn open_session(st: &AppState, ctx: &Ctx, p: &OidcProvider, who: Identity) -> ApiResult<LoginResponse> {
    let now = st.clock.now();
    let mfa = who.amr.iter().any(|a| p.mfa_amr.contains(a)) || who.acr.as_ref().is_some_and(|a| p.mfa_acr.contains(a));
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
        acr: who.acr.clone().unwrap_or_default(),
        amr: who.amr.clone(),
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
        Ok((o, s)) => Ok(LoginResponse {
            token: token.expose().to_string(),
            session_id: s.id,
            expires_at: s.expires_at.to_rfc3339(),
            mfa: s.mfa,
            name: o.user_name,
            kind: PrincipalKind::User,
        }),
        Err(StoreError::Precondition(m)) => {
            let mut r = Refusal::new("account", m).with("sub", shown(&who.subject));
            r.target = Some(format!("user:{}", who.username));
            Err(refuse(st, ctx, &p.name, r).await)
        }
        Err(e) => Err(e.into()),
    }
}

/// What a throttled start answers.
const TOO_MANY_STARTS: &str = "too many OIDC sign-ins started from this address";

/// Counts an anonymous sign-in start against the caller's address (each
/// start stores a pending row), with the login-failure bookkeeping shared by
/// every node, and audits it (`auth.oidc_start`); past
/// `[auth] max_oidc_starts_per_source` in `failure_window`, refuses (429,
/// audited as denied) until the oldest counted start leaves the window.
async fn count_start(st: &AppState, ctx: &Ctx, p: &OidcProvider, now: Timestamp) -> ApiResult<()> {
    let key = format!("oidc_start:{}", source_key(&ctx.source));
    let details = json!({ "method": "oidc", "provider": p.name });
    let target = format!("oidc:{}", p.name);
    if let Some(secs) = retry_after(st, &[(&key, st.auth.oidc_starts_per_source)], now).await? {
        let mut d = details;
        d["reason"] = "rate_limited".into();
        let ev = ctx.audit("anonymous", "auth.oidc_start", target).outcome(Outcome::Denied).details(d);
        st.store.append_audit(ev).await?;
        return Err(ApiError::RateLimited { what: TOO_MANY_STARTS, retry_after_secs: secs });
    }
    let ev = ctx.audit("anonymous", "auth.oidc_start", target).details(details);
    st.store.record_login_failure(vec![key], ev).await?;
    Ok(())
}

// --- The device authorization grant (RFC 8628), for a CLI without a browser at hand ---

/// The `redirect_uri` of a pending device-grant sign-in (it has none); its
/// `code_verifier` then holds the provider's `device_code`, which like the
/// PKCE verifier never leaves the server.
pub(crate) const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The polling interval when the provider names none (RFC 8628 3.2).
const DEFAULT_INTERVAL_SECS: u64 = 5;

#[derive(Serialize, Deserialize, ToSchema)]
pub struct DeviceStarted {
    /// Poll `/device/poll` with this. A secret of the caller: whoever holds
    /// it receives the session once the user approves.
    pub handle: String,
    /// The code the user types at the provider.
    pub user_code: String,
    pub verification_uri: String,
    /// The verification URI with the code filled in, when the provider gives one.
    pub verification_uri_complete: Option<String>,
    /// Poll no more often than this.
    pub interval_secs: u64,
    pub expires_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicePollRequest {
    pub handle: String,
}

/// Not approved yet (HTTP 202): poll again after `interval_secs`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct DevicePending {
    /// `authorization_pending`, or `slow_down` (poll less often).
    pub status: String,
    /// With `slow_down`: add this many seconds to the polling interval.
    pub slow_down_secs: u64,
    pub message: String,
}

fn device_endpoint(d: &crate::oidc::Discovery, issuer: &str) -> ApiResult<String> {
    d.device_authorization_endpoint.clone().ok_or_else(|| {
        ApiError::Conflict(format!(
            "provider {issuer} offers no device authorization grant (its discovery names no \
             device_authorization_endpoint): sign in with the browser redirect (latch login --oidc NAME --no-device)"
        ))
    })
}

#[utoipa::path(post, path = "/v1/auth/oidc/{provider}/device", tag = "auth",
    responses((status = 200, body = DeviceStarted), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
    (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn device_start(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> ApiResult<Json<DeviceStarted>> {
    let p = provider(&st, &name)?;
    let now = st.clock.now();
    let discovery = st.oidc_keys.discovery(&p.issuer, now).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let endpoint = device_endpoint(&discovery, &p.issuer)?;
    count_start(&st, &ctx, p, now).await?;
    let nonce = random_b64(32)?;
    let form = vec![
        ("client_id".to_string(), p.client_id.clone()),
        ("scope".to_string(), p.scopes.join(" ")),
        ("nonce".to_string(), nonce.clone()),
    ];
    let basic = p.client_secret.as_ref().map(|s| (p.client_id.clone(), s.expose().to_string()));
    let (status, answer) =
        st.oidc_keys.post_form(&endpoint, form, basic).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let field = |k: &str| answer.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(device_code), Some(user_code), Some(verification_uri), 200) =
        (field("device_code"), field("user_code"), field("verification_uri"), status)
    else {
        let (error, description) = oauth_error(&answer);
        return Err(ApiError::Unavailable(format!(
            "provider {} did not start a device sign-in (HTTP {status}): {error} {description}",
            p.issuer
        )));
    };
    let lifetime = answer.get("expires_in").and_then(Value::as_u64).unwrap_or(PENDING_TTL.as_secs());
    let expires_at = now.plus(std::time::Duration::from_secs(lifetime).min(PENDING_TTL));
    let handle = random_b64(32)?;
    st.store
        .begin_oidc_login(PendingOidcLogin {
            state: handle.clone(),
            provider: p.name.clone(),
            nonce,
            code_verifier: device_code,
            redirect_uri: DEVICE_GRANT.into(),
            expires_at,
        })
        .await?;
    Ok(Json(DeviceStarted {
        handle,
        user_code: shown(&user_code),
        verification_uri: shown(&verification_uri),
        verification_uri_complete: field("verification_uri_complete").map(|u| shown(&u)),
        interval_secs: answer.get("interval").and_then(Value::as_u64).unwrap_or(DEFAULT_INTERVAL_SECS).clamp(1, 60),
        expires_at: expires_at.to_rfc3339(),
    }))
}

#[utoipa::path(post, path = "/v1/auth/oidc/{provider}/device/poll", tag = "auth", request_body = DevicePollRequest,
    responses((status = 200, body = LoginResponse), (status = 202, body = DevicePending),
    (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn device_poll(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<DevicePollRequest>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let p = provider(&st, &name)?.clone();
    let pending = take_pending(&st, &ctx, &p, &req.handle, true).await?;
    let now = st.clock.now();
    let form = vec![
        ("grant_type".to_string(), DEVICE_GRANT.to_string()),
        ("device_code".to_string(), pending.code_verifier.clone()),
    ];
    let (status, answer) = match token_request(&st, &p, form, now).await {
        Ok(a) => a,
        Err(r) => {
            // The provider is unreachable: the user may still approve; keep the sign-in.
            st.store.begin_oidc_login(pending).await?;
            return Err(refuse(&st, &ctx, &p.name, r).await);
        }
    };
    if status == 200 {
        let checked = match id_token_of(&answer) {
            Some(id_token) => check_id_token(&st, &p, id_token, Nonce::IfPresent(&pending.nonce), now).await,
            None => Err(no_id_token()),
        };
        let who = match checked {
            Ok(who) => who,
            Err(r) => return Err(refuse(&st, &ctx, &p.name, r).await),
        };
        return open_session(&st, &ctx, &p, who).await.map(|r| Json(r).into_response());
    }
    let (error, description) = oauth_error(&answer);
    let refusal = match error.as_str() {
        "authorization_pending" | "slow_down" => {
            // Not answered yet: the sign-in stays pending, under the same handle.
            st.store.begin_oidc_login(pending).await?;
            let slow = error == "slow_down";
            let body = DevicePending {
                message: if slow {
                    "the provider asks to poll less often: wait 5 s more between polls".into()
                } else {
                    "waiting for the user to approve the sign-in at the provider".into()
                },
                slow_down_secs: if slow { DEFAULT_INTERVAL_SECS } else { 0 },
                status: error,
            };
            return Ok((axum::http::StatusCode::ACCEPTED, Json(body)).into_response());
        }
        "expired_token" => Refusal::new(
            "expired",
            "the device code expired before the sign-in was approved: run `latch login --oidc` again",
        ),
        "access_denied" => Refusal::new("access_denied", "the sign-in was denied at the provider"),
        _ => Refusal::new(
            "device_code",
            format!("the provider did not redeem the device code (HTTP {status}): {error} {description}"),
        ),
    };
    Err(refuse(&st, &ctx, &p.name, refusal).await)
}
