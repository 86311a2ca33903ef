//! The web dashboard: executive, on-call and debug pages, server-rendered.
//!
//! Threat model: the pages act with the signed-in user's rights (approve,
//! deny, revoke), so they are a cross-site request forgery target. Controls:
//! the session rides in an `HttpOnly`, `SameSite=Strict` cookie scoped to
//! `/ui` (`Secure` behind TLS); every form carries a CSRF token derived from
//! the session (SHA-256 of a label and the session token: an attacker who
//! cannot read the cookie cannot compute it), checked in constant time, and
//! a cross-origin `Origin` is refused; the login form uses a double-submit
//! cookie. Pages run no script at all and charts are inline SVG drawn on the
//! server, so the Content-Security-Policy is `default-src 'none'` with only
//! our own stylesheet allowed — no CDN, no network at render time. Every
//! value shown is HTML-escaped. Actions call the same handlers as the API,
//! so the same authorization and audit apply.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use latch_audit::{AuditEvent, Outcome};
use latch_core::{Principal, Timestamp};
use latch_store::{AuditQuery, RecordingFilter};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Caller, Ctx};
use crate::routes::oidc_login::{self, Refusal, refuse};
use crate::routes::{auth, exchange, jit};
use crate::state::AppState;

const COOKIE_NAME: &str = "latch_session";
const LOGIN_CSRF: &str = "latch_login_csrf";
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";
const CSS: &str = include_str!("ui.css");

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/ui", get(|| async { redirect("/ui/oncall") }))
        .route("/ui/style.css", get(style))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/oidc/{provider}/start", get(oidc_start))
        .route("/ui/oidc/{provider}/callback", get(oidc_callback))
        .route("/ui/logout", post(logout))
        .route("/ui/executive", get(executive))
        .route("/ui/oncall", get(oncall))
        .route("/ui/debug", get(debug))
        .route("/ui/requests/{id}/approve", post(approve))
        .route("/ui/requests/{id}/deny", post(deny))
        .route("/ui/grants/{id}/revoke", post(revoke))
}

/// Headers on every page: CSP, no framing, no caching, no referrer.
fn page(status: StatusCode, html: String) -> Response {
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    // Not no-referrer: Chromium then sends `Origin: null` on our own form posts.
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

async fn style() -> Response {
    let mut r = CSS.into_response();
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The CSRF token of a session: not stored, derived from the session token.
fn csrf_for(session_token: &str) -> String {
    latch_crypto::hex(&latch_crypto::sha256(format!("latch-ui-csrf\0{session_token}").as_bytes()))
}

/// The signed-in user, from the session cookie.
async fn signed_in(st: &AppState, headers: &HeaderMap) -> Option<(Principal, String)> {
    let token = cookie(headers, COOKIE_NAME)?;
    let p = st.store.authenticate(&latch_crypto::token_hash(&token), st.clock.now()).await.ok()??;
    Some((p, token))
}

/// A form post is ours: same-origin (when the browser says) and carrying the session's CSRF token.
/// On refusal, the reason to show (with 403).
fn check_post(headers: &HeaderMap, token: &str, csrf: &str) -> Result<(), &'static str> {
    if let Some(origin) = headers.get("origin").and_then(|o| o.to_str().ok()) {
        let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("");
        let same = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host);
        if !same {
            return Err("cross-origin form post refused");
        }
    }
    if !latch_crypto::ct_eq(csrf.as_bytes(), csrf_for(token).as_bytes()) {
        return Err("missing or wrong CSRF token: reload the page and try again");
    }
    Ok(())
}

fn error_page(status: StatusCode, message: &str) -> Response {
    page(status, layout("Error", None, "", &format!("<p class=\"error\">{}</p>", esc(message))))
}

fn layout(title: &str, who: Option<&Principal>, csrf: &str, body: &str) -> String {
    let nav = match who {
        Some(p) => format!(
            "<nav><a href=\"/ui/executive\">Executive</a><a href=\"/ui/oncall\">On-call</a><a href=\"/ui/debug\">Debug</a>\
             <form method=\"post\" action=\"/ui/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <span>{}</span><button>Sign out</button></form></nav>",
            esc(csrf),
            esc(&p.audit_name())
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>latch — {t}</title>\
         <link rel=\"stylesheet\" href=\"/ui/style.css\"><link rel=\"icon\" href=\"data:,\"></head><body><header><h1>latch</h1>{nav}</header>\
         <main><h2>{t}</h2>{body}</main></body></html>",
        t = esc(title)
    )
}

#[derive(Deserialize, Default)]
pub struct Flash {
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    q: Option<String>,
}

async fn login_page(State(st): State<AppState>, Query(f): Query<Flash>) -> Response {
    let nonce = latch_crypto::random_bytes(16).map(|b| latch_crypto::hex(&b)).unwrap_or_default();
    let msg = f.done.map(|d| format!("<p class=\"error\">{}</p>", esc(&d))).unwrap_or_default();
    let providers = oidc_links(&st);
    let body = format!(
        "{msg}<form method=\"post\" action=\"/ui/login\" class=\"login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{nonce}\">\
         <label>User <input name=\"user\" autocomplete=\"username\" required></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <label>TOTP code <input name=\"totp\" inputmode=\"numeric\" autocomplete=\"one-time-code\"></label>\
         <button>Sign in</button></form>{providers}"
    );
    let mut r = page(StatusCode::OK, layout("Sign in", None, "", &body));
    let c = format!("{LOGIN_CSRF}={nonce}; HttpOnly; SameSite=Strict; Path=/ui/login");
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
pub struct LoginForm {
    user: String,
    password: String,
    #[serde(default)]
    totp: String,
    #[serde(default)]
    csrf: String,
}

async fn login(State(st): State<AppState>, ctx: Ctx, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    let expected = cookie(&headers, LOGIN_CSRF).unwrap_or_default();
    if expected.is_empty() || !latch_crypto::ct_eq(expected.as_bytes(), f.csrf.as_bytes()) {
        return error_page(StatusCode::FORBIDDEN, "the sign-in form expired: reload it and sign in again");
    }
    let req = auth::LoginRequest {
        user: f.user,
        password: f.password,
        totp: Some(f.totp.trim().to_string()).filter(|t| !t.is_empty()),
    };
    match auth::login(State(st.clone()), ctx, ApiJson(req)).await {
        Ok(resp) => {
            let mut r = redirect("/ui/oncall");
            set_session_cookie(&st, &mut r, &resp.0.token);
            r
        }
        Err(e) => redirect(&format!("/ui/login?done={}", crate::oidc::form_encode(&e.to_string()))),
    }
}

fn secure_attr(st: &AppState) -> &'static str {
    if st.issuer.starts_with("https://") { "; Secure" } else { "" }
}

fn set_session_cookie(st: &AppState, r: &mut Response, token: &str) {
    let c = format!("{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/ui{}", secure_attr(st));
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(SET_COOKIE, v);
    }
}

// --- Sign-in through an OpenID Connect provider (authorization code + PKCE) ---
//
// The provider sends the browser back to /ui/oidc/{provider}/callback, which
// finishes exactly like the API callback (`oidc_login::finish`: the same
// state, PKCE and ID-token checks, provisioning and audit). The sign-in is
// pinned to the browser that started it: the state is a hash of a secret
// kept in an HttpOnly cookie of that browser, so a callback URL (code and
// state) replayed in another browser is refused before the code is redeemed.
// That cookie is SameSite=Lax: the provider's redirect is a cross-site
// top-level navigation, on which a Strict cookie would not be sent.

const OIDC_BINDING: &str = "latch_oidc";

/// The state of a dashboard sign-in bound to `binding` (the cookie's secret).
fn oidc_state_for(binding: &str) -> String {
    latch_crypto::hex(&latch_crypto::sha256(format!("latch-ui-oidc-state\0{binding}").as_bytes()))
}

fn oidc_links(st: &AppState) -> String {
    if st.oidc_providers.is_empty() {
        return String::new();
    }
    let links: String = st
        .oidc_providers
        .iter()
        .map(|p| format!("<a class=\"button\" href=\"/ui/oidc/{n}/start\">Sign in with {n}</a> ", n = esc(&p.name)))
        .collect();
    format!("<p class=\"oidc\">Or: {links}</p>")
}

fn binding_cookie(st: &AppState, provider: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
    let c = format!(
        "{OIDC_BINDING}={value}; HttpOnly; SameSite=Lax; Path=/ui/oidc/{provider}/callback; Max-Age={max_age}{}",
        secure_attr(st)
    );
    HeaderValue::from_str(&c).ok()
}

async fn oidc_start(State(st): State<AppState>, ctx: Ctx, Path(name): Path<String>) -> Response {
    let p = match oidc_login::provider(&st, &name) {
        Ok(p) => p.clone(),
        Err(e) => return error_page(e.status(), &e.to_string()),
    };
    let Ok(binding) = latch_crypto::random_bytes(32).map(|b| latch_crypto::hex(&b)) else {
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, "cannot draw random bytes");
    };
    let redirect_uri = format!("{}/ui/oidc/{}/callback", st.issuer.trim_end_matches('/'), p.name);
    match oidc_login::begin(&st, &ctx, &p, redirect_uri, oidc_state_for(&binding)).await {
        Ok(started) => {
            let mut r = redirect(&started.authorization_url);
            if let Some(c) = binding_cookie(&st, &p.name, &binding, 600) {
                r.headers_mut().append(SET_COOKIE, c);
            }
            r
        }
        Err(e) => {
            let mut r = error_page(e.status(), &e.to_string());
            if let ApiError::RateLimited { retry_after_secs, .. } = e
                && let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string())
            {
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
            r
        }
    }
}

/// What the provider puts on the redirect back (RFC 6749 4.1.2; `iss` of RFC 9207 is ignored).
#[derive(Deserialize)]
pub struct OidcCallback {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

async fn oidc_callback(
    State(st): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<OidcCallback>,
) -> Response {
    let p = match oidc_login::provider(&st, &name) {
        Ok(p) => p.clone(),
        Err(e) => return error_page(e.status(), &e.to_string()),
    };
    let state = q.state.unwrap_or_default();
    let binding = cookie(&headers, OIDC_BINDING).unwrap_or_default();
    let failed = |e: ApiError| {
        let mut r = redirect(&format!("/ui/login?done={}", crate::oidc::form_encode(&e.to_string())));
        if let Some(c) = binding_cookie(&st, &p.name, "", 0) {
            r.headers_mut().append(SET_COOKIE, c);
        }
        r
    };
    if binding.is_empty() || !latch_crypto::ct_eq(oidc_state_for(&binding).as_bytes(), state.as_bytes()) {
        // Not this browser's sign-in; the pending one stays for its owner.
        let r = Refusal::new(
            "state",
            "this sign-in was not started in this browser (its sign-in cookie is missing or belongs to another \
             sign-in): start again from the sign-in page",
        )
        .with("binding", if binding.is_empty() { "missing" } else { "mismatch" });
        return failed(refuse(&st, &ctx, &p.name, r).await);
    }
    let code = match (q.code, q.error) {
        (Some(code), None) => code,
        (_, error) => {
            // The provider ended the sign-in: spend it and say why.
            if let Err(e) = oidc_login::take_pending(&st, &ctx, &p, &state, false).await {
                return failed(e);
            }
            let error = error.map(|e| exchange::shown(&e)).unwrap_or_else(|| "no code".into());
            let description = q.error_description.map(|d| exchange::shown(&d)).unwrap_or_default();
            let reason = if error == "access_denied" { "access_denied" } else { "provider_error" };
            let r = Refusal::new(reason, format!("the provider answered {error}: {description}"));
            return failed(refuse(&st, &ctx, &p.name, r).await);
        }
    };
    match oidc_login::finish(&st, &ctx, &p, &state, &code).await {
        Ok(resp) => {
            // A page of ours, not a redirect: the navigation to the dashboard
            // then starts on our site, so the SameSite=Strict session cookie
            // is sent even when the provider is on another site.
            let body = format!(
                "<p>Signed in as {}. <a href=\"/ui/oncall\">Continue to the dashboard</a>.</p>",
                esc(&resp.name)
            );
            let html = layout("Signed in", None, "", &body).replacen(
                "<head>",
                "<head><meta http-equiv=\"refresh\" content=\"0;url=/ui/oncall\">",
                1,
            );
            let mut r = page(StatusCode::OK, html);
            set_session_cookie(&st, &mut r, &resp.token);
            if let Some(c) = binding_cookie(&st, &p.name, "", 0) {
                r.headers_mut().append(SET_COOKIE, c);
            }
            r
        }
        Err(e) => failed(e),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
}

async fn logout(State(st): State<AppState>, ctx: Ctx, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    if let Some((p, token)) = signed_in(&st, &headers).await {
        if let Err(why) = check_post(&headers, &token, &f.csrf) {
            return error_page(StatusCode::FORBIDDEN, why);
        }
        let _ = auth::logout(State(st.clone()), ctx, Caller(p)).await;
    }
    let mut r = redirect("/ui/login");
    r.headers_mut()
        .append(SET_COOKIE, HeaderValue::from_static("latch_session=; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0"));
    r
}

/// Acts as the signed-in user through the API's own handler; back to on-call with what happened.
async fn act<F, Fut, T>(st: AppState, headers: HeaderMap, csrf: &str, done: &str, f: F) -> Response
where
    F: FnOnce(Principal) -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let Some((p, token)) = signed_in(&st, &headers).await else { return redirect("/ui/login") };
    if let Err(why) = check_post(&headers, &token, csrf) {
        return error_page(StatusCode::FORBIDDEN, why);
    }
    match f(p).await {
        Ok(_) => redirect(&format!("/ui/oncall?done={}", crate::oidc::form_encode(done))),
        Err(e) => redirect(&format!("/ui/oncall?done={}", crate::oidc::form_encode(&format!("refused: {e}")))),
    }
}

async fn approve(
    State(st): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let done = format!("approved {id}");
    let s2 = st.clone();
    act(st, headers, &f.csrf, &done, move |p| async move {
        jit::approve(State(s2), ctx, Caller(p), Path(id), Some(ApiJson(jit::Comment { comment: f.text }))).await
    })
    .await
}

async fn deny(
    State(st): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let done = format!("denied {id}");
    let s2 = st.clone();
    let reason = if f.text.trim().is_empty() { "denied from the dashboard".to_string() } else { f.text };
    act(st, headers, &f.csrf, &done, move |p| async move {
        jit::deny(State(s2), ctx, Caller(p), Path(id), ApiJson(jit::Reason { reason })).await
    })
    .await
}

async fn revoke(
    State(st): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let done = format!("revoked {id}");
    let s2 = st.clone();
    let reason = if f.text.trim().is_empty() { "revoked from the dashboard".to_string() } else { f.text };
    act(st, headers, &f.csrf, &done, move |p| async move {
        jit::revoke(State(s2), ctx, Caller(p), Path(id), Some(ApiJson(jit::OptionalReason { reason }))).await
    })
    .await
}

/// Renders a page for the signed-in user, or sends them to sign in.
async fn render<F, Fut>(st: &AppState, headers: &HeaderMap, title: &str, body: F) -> Response
where
    F: FnOnce(Principal, String) -> Fut,
    Fut: std::future::Future<Output = Result<String, ApiError>>,
{
    let Some((p, token)) = signed_in(st, headers).await else { return redirect("/ui/login") };
    let csrf = csrf_for(&token);
    match body(p.clone(), csrf.clone()).await {
        Ok(html) => page(StatusCode::OK, layout(title, Some(&p), &csrf, &html)),
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn table(headers: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\">{}</p>", esc(empty));
    }
    let mut t = String::from("<table><thead><tr>");
    for h in headers {
        let _ = write!(t, "<th>{}</th>", esc(h));
    }
    t.push_str("</tr></thead><tbody>");
    for r in rows {
        t.push_str("<tr>");
        for c in r {
            // Cells are HTML already: every value in them was escaped by the caller.
            let _ = write!(t, "<td>{c}</td>");
        }
        t.push_str("</tr>");
    }
    t.push_str("</tbody></table>");
    t
}

fn button(action: &str, label: &str, csrf: &str, with_text: bool) -> String {
    let text = if with_text { "<input name=\"text\" placeholder=\"comment\" maxlength=\"500\">" } else { "" };
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">{text}<button>{}</button></form>",
        esc(action),
        esc(csrf),
        esc(label)
    )
}

fn age(now: Timestamp, t: Timestamp) -> String {
    latch_core::format_duration(std::time::Duration::from_secs(u64::try_from((now.0 - t.0) / 1000).unwrap_or(0).max(1)))
}

/// The last `n` audit events, newest first, that `keep` accepts.
async fn recent(st: &AppState, n: usize, keep: impl Fn(&AuditEvent) -> bool) -> Result<Vec<AuditEvent>, ApiError> {
    let head = st.store.audit_head().await?.0;
    let since = (head - 5000).max(0);
    let mut evs: Vec<AuditEvent> = st
        .store
        .list_audit(AuditQuery { since, limit: 5000, ..Default::default() })
        .await?
        .into_iter()
        .filter(keep)
        .collect();
    evs.reverse();
    evs.truncate(n);
    Ok(evs)
}

fn event_rows(evs: &[AuditEvent]) -> Vec<Vec<String>> {
    evs.iter()
        .map(|e| {
            let msg = e.details["message"].as_str().or(e.details["reason"].as_str()).unwrap_or("");
            vec![
                e.seq.to_string(),
                esc(&e.time.to_rfc3339()),
                esc(&e.actor),
                esc(&e.action),
                esc(&e.target),
                esc(e.outcome.as_str()),
                esc(msg),
            ]
        })
        .collect()
}

async fn oncall(State(st): State<AppState>, headers: HeaderMap, Query(f): Query<Flash>) -> Response {
    let s = st.clone();
    render(&st, &headers, "On-call", move |p, csrf| async move {
        let now = s.clock.now();
        let mut html = f.done.map(|d| format!("<p class=\"flash\">{}</p>", esc(&d))).unwrap_or_default();
        let q = jit::RequestsQuery { state: None, mine: false, to_review: true, limit: Some(200) };
        let pending = jit::list(State(s.clone()), Caller(p.clone()), ApiQuery(q)).await?.0.requests;
        let rows: Vec<Vec<String>> = pending
            .iter()
            .map(|r| {
                let created = Timestamp::parse_rfc3339(&r.created_at).unwrap_or(now);
                vec![
                    esc(&r.id),
                    esc(&r.requester),
                    esc(&r.role),
                    esc(&r.duration),
                    esc(&r.reason),
                    format!("{}/{}", r.approvals.len(), r.approvals_required),
                    esc(&age(now, created)),
                    button(&format!("/ui/requests/{}/approve", r.id), "Approve", &csrf, true)
                        + &button(&format!("/ui/requests/{}/deny", r.id), "Deny", &csrf, true),
                ]
            })
            .collect();
        html.push_str("<h3>Pending approvals</h3>");
        html.push_str(&table(
            &["request", "requester", "role", "for", "reason", "approvals", "waiting", ""],
            &rows,
            "Nothing waits for your approval.",
        ));
        let gq = jit::GrantsQuery { all: p.is_admin(), active: true };
        let grants = jit::grants(State(s.clone()), Caller(p.clone()), ApiQuery(gq)).await?.0.grants;
        let rows: Vec<Vec<String>> = grants
            .iter()
            .map(|g| {
                vec![
                    esc(&g.id),
                    esc(&g.principal),
                    esc(&g.role),
                    if g.breakglass { "<strong>break-glass</strong>".into() } else { String::new() },
                    esc(&g.expires_at),
                    button(&format!("/ui/grants/{}/revoke", g.id), "Revoke", &csrf, false),
                ]
            })
            .collect();
        html.push_str("<h3>Active grants</h3>");
        html.push_str(&table(&["grant", "holder", "role", "", "until", ""], &rows, "No active grants."));
        let filter = RecordingFilter { principal_id: (!p.is_admin()).then(|| p.id.clone()), active: true, limit: 200 };
        let sessions = s.store.list_recordings(filter).await?;
        let rows: Vec<Vec<String>> = sessions
            .iter()
            .map(|r| {
                vec![
                    esc(&r.id),
                    esc(&r.principal_name),
                    esc(&format!("{}@{}", r.login, r.target)),
                    esc(&r.kind),
                    esc(&age(now, r.started_at)),
                    r.bytes.to_string(),
                ]
            })
            .collect();
        html.push_str("<h3>Live sessions</h3>");
        html.push_str(&table(&["recording", "user", "target", "kind", "running", "bytes"], &rows, "No live sessions."));
        let failed = recent(&s, 20, |e| {
            e.outcome != Outcome::Success && (e.action.starts_with("request.") || e.action.starts_with("breakglass."))
        })
        .await?;
        html.push_str("<h3>Recent failed elevations</h3>");
        html.push_str(&table(
            &["seq", "time", "actor", "action", "target", "outcome", "why"],
            &event_rows(&failed),
            "None.",
        ));
        let alerts = recent(&s, 20, |e| e.action == crate::alerts::ACTION).await?;
        let rows: Vec<Vec<String>> = alerts
            .iter()
            .map(|e| {
                let d = &e.details;
                vec![
                    esc(&e.time.to_rfc3339()),
                    esc(d["severity"].as_str().unwrap_or("")),
                    esc(d["rule"].as_str().unwrap_or("")),
                    esc(d["message"].as_str().unwrap_or("")),
                ]
            })
            .collect();
        html.push_str("<h3>Alerts</h3>");
        html.push_str(&table(&["time", "severity", "rule", "message"], &rows, "No alerts."));
        Ok(html)
    })
    .await
}

/// Bars for counts by day, as inline SVG (no script, no network).
pub fn bar_chart(title: &str, series: &[(String, i64)]) -> String {
    let max = series.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let (w, h, bar) = (560, 160, 560 / series.len().max(1));
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg role=\"img\" viewBox=\"0 0 {w} {}\" width=\"{w}\" height=\"{}\">",
        esc(title),
        h + 20,
        h + 20
    );
    for (i, (label, v)) in series.iter().enumerate() {
        let bh = (*v as f64 / max as f64 * (h - 20) as f64).round() as i64;
        let x = i * bar;
        let _ = write!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{bh}\" class=\"bar\"><title>{}: {v}</title></rect>\
             <text x=\"{}\" y=\"{}\" class=\"label\">{}</text>",
            x + 2,
            h - bh,
            bar.saturating_sub(4),
            esc(label),
            x + 2,
            h + 14,
            esc(label.get(5..).unwrap_or(label))
        );
        if *v > 0 {
            let _ = write!(svg, "<text x=\"{}\" y=\"{}\" class=\"value\">{v}</text>", x + 2, (h - bh - 4).max(10));
        }
    }
    svg.push_str("</svg></figure>");
    svg
}

async fn executive(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let s = st.clone();
    render(&st, &headers, "Executive", move |p, _csrf| async move {
        let now = s.clock.now();
        let day = 86_400_000;
        let grants = s.store.list_grants((!p.is_admin()).then_some(p.id.as_str()), None).await?;
        let mut by_day: BTreeMap<String, i64> = BTreeMap::new();
        for d in (0..14).rev() {
            by_day.insert(Timestamp(now.0 - d * day).to_rfc3339()[..10].to_string(), 0);
        }
        let month_ago = now.0 - 30 * day;
        let (mut breakglass, mut month) = (0, 0);
        for g in &grants {
            if let Some(n) = by_day.get_mut(&g.starts_at.to_rfc3339()[..10]) {
                *n += 1;
            }
            if g.starts_at.0 >= month_ago {
                month += 1;
                breakglass += i64::from(g.breakglass);
            }
        }
        let series: Vec<(String, i64)> = by_day.into_iter().collect();
        let mut html = bar_chart("Privileged access granted per day (14 days)", &series);
        let recordings = s
            .store
            .list_recordings(RecordingFilter {
                principal_id: (!p.is_admin()).then(|| p.id.clone()),
                active: false,
                limit: 100_000,
            })
            .await?;
        let recorded_month = recordings.iter().filter(|r| r.started_at.0 >= month_ago).count();
        let stats = s.store.stats(now).await?;
        let sps = s.store.list_sps().await?;
        let stale: Vec<String> =
            sps.iter().filter(|sp| sp.secret_rotated_at.0 < now.0 - 90 * day).map(|sp| esc(&sp.name)).collect();
        let rate = if month > 0 { format!("{:.1} %", 100.0 * breakglass as f64 / month as f64) } else { "—".into() };
        let _ = write!(
            html,
            "<div class=\"tiles\">\
             <div class=\"tile\"><b>{month}</b><span>grants in 30 days</span></div>\
             <div class=\"tile\"><b>{breakglass}</b><span>break-glass uses in 30 days ({rate} of grants)</span></div>\
             <div class=\"tile\"><b>{}</b><span>break-glass uses awaiting review</span></div>\
             <div class=\"tile\"><b>{recorded_month}</b><span>sessions recorded in 30 days</span></div>\
             <div class=\"tile\"><b>{}</b><span>SSH certificates issued, {} revoked</span></div>\
             <div class=\"tile\"><b>{}</b><span>long-lived service-principal secrets (over 90 days)</span></div>\
             </div>",
            stats.breakglass_unreviewed,
            stats.ssh_certs_issued,
            stats.ssh_certs_revoked,
            stale.len()
        );
        if !stale.is_empty() {
            let _ = write!(html, "<p>Rotate: {}</p>", stale.join(", "));
        }
        if crate::routes::metrics::is_metrics_reader(&p) {
            let r = crate::routes::slo::compute(&s, Some("30d")).await?;
            let rows: Vec<Vec<String>> = r
                .objectives
                .iter()
                .map(|o| {
                    vec![
                        esc(&o.sli),
                        esc(&o.name),
                        esc(&o.value),
                        esc(&o.target),
                        if o.met {
                            "<span class=\"ok\">met</span>".into()
                        } else {
                            "<span class=\"error\">missed</span>".into()
                        },
                        o.error_budget_remaining.map(|b| format!("{:.0} %", b * 100.0)).unwrap_or_else(|| "—".into()),
                    ]
                })
                .collect();
            html.push_str("<h3>Service levels, last 30 days</h3>");
            html.push_str(&table(&["SLI", "objective", "value", "target", "", "budget left"], &rows, "No objectives."));
        }
        Ok(html)
    })
    .await
}

async fn debug(State(st): State<AppState>, headers: HeaderMap, Query(f): Query<Flash>) -> Response {
    let s = st.clone();
    render(&st, &headers, "Debug", move |p, _csrf| async move {
        if !p.is_admin() {
            return Ok("<p class=\"error\">The debug page is for administrators.</p>".into());
        }
        let mut html = String::new();
        let tokens = recent(&s, 30, |e| e.action == "token.issue" || e.action == "ssh.sign").await?;
        html.push_str("<h3>Credential issuance</h3>");
        html.push_str(&table(
            &["seq", "time", "actor", "action", "target", "outcome", ""],
            &event_rows(&tokens),
            "None yet.",
        ));
        let failed = recent(&s, 30, |e| e.action == "request.create" && e.outcome != Outcome::Success).await?;
        let rows: Vec<Vec<String>> = failed
            .iter()
            .map(|e| {
                let d = &e.details;
                vec![
                    esc(&e.time.to_rfc3339()),
                    esc(&e.actor),
                    esc(d["role"].as_str().unwrap_or(&e.target)),
                    esc(&d["policies"].to_string()),
                    esc(d["message"].as_str().unwrap_or("")),
                ]
            })
            .collect();
        html.push_str("<h3>Policy decisions of failed requests</h3>");
        html.push_str(&table(&["time", "who", "role", "determining policies", "message"], &rows, "None."));
        let q = f.q.unwrap_or_default();
        let _ = write!(
            html,
            "<h3>Audit search</h3><form method=\"get\" action=\"/ui/debug\"><input name=\"q\" value=\"{}\" \
             placeholder=\"action, actor or target contains…\"><button>Search</button></form>",
            esc(&q)
        );
        let found =
            recent(&s, 100, |e| q.is_empty() || e.action.contains(&q) || e.actor.contains(&q) || e.target.contains(&q))
                .await?;
        html.push_str(&table(
            &["seq", "time", "actor", "action", "target", "outcome", "why"],
            &event_rows(&found),
            "No match.",
        ));
        html.push_str(&chain_status(&s).await);
        Ok(html)
    })
    .await
}

/// Verifies the whole chain against the signed checkpoints, here and now.
async fn chain_status(st: &AppState) -> String {
    let run = async {
        let checkpoints = st.store.list_checkpoints().await?;
        let mut v = latch_audit::ChainVerifier::new(st.audit_key.verifying_key(), checkpoints)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let mut since = 0;
        loop {
            let page = st.store.list_audit(AuditQuery { since, limit: 10_000, ..Default::default() }).await?;
            let Some(last) = page.last().map(|e| e.seq) else { break };
            for e in &page {
                v.push(e).map_err(|e| ApiError::internal(e.to_string()))?;
            }
            since = last;
        }
        v.finish().map_err(|e| ApiError::internal(e.to_string()))
    };
    match run.await {
        Ok(r) => format!(
            "<p class=\"ok\">Audit chain verified: {} events, {} signed checkpoints, head seq {} hash <code>{}</code>.</p>",
            r.events,
            r.checkpoints,
            r.head_seq,
            esc(&r.head_hash)
        ),
        Err(e) => format!("<p class=\"error\">Audit chain does NOT verify: {}</p>", esc(&e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_charts_carry_no_markup_from_data() {
        assert_eq!(esc("<script>\"x\"&'"), "&lt;script&gt;&quot;x&quot;&amp;&#39;");
        let svg = bar_chart("<b>", &[("2026-11-24".into(), 3), ("<img>".into(), 0)]);
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<img>") && svg.contains("class=\"bar\""));
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("a=1; latch_session=tok; b=2"));
        assert_eq!(cookie(&h, COOKIE_NAME).as_deref(), Some("tok"));
        assert_ne!(csrf_for("tok"), csrf_for("tok2"));
        assert!(check_post(&h, "tok", &csrf_for("tok")).is_ok());
        assert!(check_post(&h, "tok", "nope").is_err());
        h.insert("origin", HeaderValue::from_static("https://evil.example"));
        h.insert("host", HeaderValue::from_static("latch.example"));
        assert!(check_post(&h, "tok", &csrf_for("tok")).is_err());
    }
}
