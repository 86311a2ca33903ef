//! latch-server: the HTTP API of latch.
//!
//! Threat model at this edge: every byte of a request is hostile until
//! validated. Bodies are size-limited and parsed strictly (unknown fields are
//! errors); names are checked against a small alphabet; every caller is
//! re-resolved from the store per request so revocation is immediate; every
//! state change commits together with its audit event; and errors carry
//! neither secrets nor internals.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod barrier;
pub mod checkin;
pub mod config;
pub mod db_creds;
pub mod error;
pub mod extract;
pub mod issuer_keys;
pub mod jobs;
pub mod keys;
pub mod metrics;
pub mod oidc;
pub mod oidc_providers;
pub mod routes;
pub mod serve;
pub mod siem;
pub mod slo;
pub mod state;
pub mod ui;
pub mod verified;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::extract::RequestId;
use crate::routes::{
    audit, auth, db, exchange, federations, gateway, groups, jit, metrics as metrics_route, oidc_login, policy,
    recordings, slo as slo_route, sps, ssh, sys, tokens, users,
};
use crate::state::AppState;

/// Largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "latch", description = "Just-in-time privileged access: identities, policy, requests and grants, signed tokens, audit."),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The whole API and its OpenAPI document, built from the same route list so
/// neither can drift from the other.
pub fn api(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let metrics = state.metrics.clone();
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(sys::health))
        .routes(routes!(metrics_route::metrics))
        .routes(routes!(slo_route::slo))
        .routes(routes!(slo_route::inventory))
        .routes(routes!(sys::advance_clock))
        .routes(routes!(auth::login))
        .routes(routes!(auth::sp_login))
        .routes(routes!(exchange::exchange))
        .routes(routes!(oidc_login::providers))
        .routes(routes!(oidc_login::start))
        .routes(routes!(oidc_login::callback))
        .routes(routes!(oidc_login::device_start))
        .routes(routes!(oidc_login::device_poll))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::whoami))
        .routes(routes!(auth::mfa_enroll))
        .routes(routes!(auth::mfa_confirm))
        .routes(routes!(users::create, users::list))
        .routes(routes!(users::show, users::delete))
        .routes(routes!(users::disable))
        .routes(routes!(users::enable))
        .routes(routes!(users::set_password))
        .routes(routes!(users::reset_mfa))
        .routes(routes!(groups::create, groups::list))
        .routes(routes!(groups::show, groups::delete))
        .routes(routes!(groups::add_member))
        .routes(routes!(groups::remove_member))
        .routes(routes!(sps::create, sps::list))
        .routes(routes!(sps::show, sps::delete))
        .routes(routes!(sps::rotate_secret))
        .routes(routes!(sps::disable))
        .routes(routes!(sps::enable))
        .routes(routes!(federations::create, federations::list))
        .routes(routes!(federations::delete))
        .routes(routes!(audit::events))
        .routes(routes!(audit::checkpoints))
        .routes(routes!(audit::key))
        .routes(routes!(sys::notifications))
        .routes(routes!(policy::apply))
        .routes(routes!(policy::show))
        .routes(routes!(policy::simulate))
        .routes(routes!(policy::replay))
        .routes(routes!(jit::create, jit::list))
        .routes(routes!(jit::show))
        .routes(routes!(jit::approve))
        .routes(routes!(jit::deny))
        .routes(routes!(jit::cancel))
        .routes(routes!(jit::review))
        .routes(routes!(jit::breakglass))
        .routes(routes!(jit::grants))
        .routes(routes!(jit::grant))
        .routes(routes!(ssh::sign))
        .routes(routes!(ssh::ca))
        .routes(routes!(ssh::krl))
        .routes(routes!(gateway::authorize))
        .routes(routes!(gateway::poll))
        .routes(routes!(jit::revoke))
        .routes(routes!(db::issue))
        .routes(routes!(db::create_connection, db::list_connections))
        .routes(routes!(db::show_connection, db::delete_connection))
        .routes(routes!(db::list_creds))
        .routes(routes!(db::lookup))
        .routes(routes!(db::renew))
        .routes(routes!(db::revoke))
        .routes(routes!(db::revoke_prefix))
        .routes(routes!(recordings::start, recordings::list))
        .routes(routes!(recordings::show))
        .routes(routes!(recordings::end))
        .routes(routes!(recordings::cast))
        // Chunks of a session recording are the one body allowed past BODY_LIMIT.
        .merge(
            OpenApiRouter::new()
                .routes(routes!(recordings::append))
                .layer(DefaultBodyLimit::max(recordings::CHUNK_LIMIT)),
        )
        .routes(routes!(tokens::issue))
        .routes(routes!(tokens::jwks))
        .routes(routes!(tokens::openid_configuration))
        .routes(routes!(tokens::introspect))
        .routes(routes!(tokens::revoked))
        .routes(routes!(tokens::rotate_key))
        .with_state(state.clone())
        .split_for_parts();
    let doc_json = doc.clone();
    let router = router
        .route("/v1/openapi.json", axum::routing::get(move || async move { axum::Json(doc_json) }))
        // The dashboard: HTML pages, not part of the API document.
        .merge(ui::router().with_state(state.clone()))
        // Vault's API subset, for Vault clients: its own dialect, outside latch's API document.
        .merge(routes::vault::router().with_state(state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(metrics, request_context));
    (router, doc)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    let path: String = uri.path().chars().take(200).collect();
    ApiError::NotFound(format!("no route for {method} {path}: see /v1/openapi.json"))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let path: String = uri.path().chars().take(200).collect();
    let body = error::ErrorBody {
        error: error::ErrorDetail {
            code: "method_not_allowed",
            message: format!("{method} is not supported on {path}: see /v1/openapi.json"),
        },
    };
    (axum::http::StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

/// A caller-supplied `X-Request-Id` is kept when it is short and plain, so
/// clients can correlate; anything else is replaced with a fresh id.
fn request_id_from(req: &Request) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .or_else(|| latch_crypto::new_id("req").ok())
        .unwrap_or_else(|| "req_unknown".into())
}

async fn request_context(
    axum::extract::State(metrics): axum::extract::State<std::sync::Arc<crate::metrics::Metrics>>,
    mut req: Request,
    next: Next,
) -> Response {
    let rid = request_id_from(&req);
    req.extensions_mut().insert(RequestId(rid.clone()));
    let method = req.method().clone();
    // Log the route template, not the raw path: raw paths carry caller-chosen text.
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let started = std::time::Instant::now();
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let elapsed = started.elapsed();
    metrics.http_request(method.as_str(), route.as_deref().unwrap_or("unmatched"), resp.status().as_u16(), elapsed);
    tracing::info!(
        request_id = %rid,
        method = %method,
        route = route.as_deref().unwrap_or("<unmatched>"),
        status = resp.status().as_u16(),
        latency_us = elapsed.as_micros() as u64,
        "request"
    );
    resp
}
