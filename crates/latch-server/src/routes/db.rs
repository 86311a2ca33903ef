//! Dynamic PostgreSQL credentials over HTTP: target connections (admins),
//! credentials under a grant (its holder), and their leases.
//!
//! Lease ids have Vault's shape, `database/creds/ROLE/ID`, slashes and all,
//! so the lease routes take them in the JSON body (`{"lease_id": …}`), as
//! Vault's own `sys/leases/lookup|renew|revoke` do, rather than in the path.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latch_core::{Timestamp, parse_duration, validate_name};
use latch_policy::pg_template::Values;
use latch_store::{DbConnection, DbCredFilter, DbCredState, DbCredential, LeaseSelector};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::db_creds::{self, TargetError, api_error, ensure_unsealed};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, ApiQuery, Caller, Ctx};
use crate::routes::path_name;
use crate::state::AppState;

// ---- connections -----------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    pub name: String,
    pub host: String,
    /// 5432 when omitted.
    #[serde(default)]
    pub port: Option<u16>,
    pub database: String,
    /// The administrator latch creates and drops roles as (needs CREATEROLE).
    pub username: String,
    /// The administrator's password: stored sealed, never shown again.
    pub password: String,
    /// `disable` (default), `prefer` (TLS when offered), `require` or
    /// `verify-full` (TLS or nothing). TLS is always verified: against
    /// `ca_cert`, else the public roots, and for the host name.
    #[serde(default)]
    pub sslmode: Option<String>,
    /// PEM of the CA that signed the target's certificate.
    #[serde(default)]
    pub ca_cert: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ConnectionView {
    pub name: String,
    pub host: String,
    pub port: i64,
    pub database: String,
    pub username: String,
    pub sslmode: String,
    /// `postgres://USER@HOST:PORT/DB?sslmode=…`, without the password.
    pub url: String,
    pub created_at: String,
    pub created_by: String,
}

impl From<DbConnection> for ConnectionView {
    fn from(c: DbConnection) -> Self {
        let host = if c.host.contains(':') { format!("[{}]", c.host) } else { c.host.clone() };
        ConnectionView {
            url: format!("postgres://{}@{host}:{}/{}?sslmode={}", c.username, c.port, c.database, c.sslmode),
            name: c.name,
            host: c.host,
            port: c.port,
            database: c.database,
            username: c.username,
            sslmode: c.sslmode,
            created_at: c.created_at.to_rfc3339(),
            created_by: c.created_by,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ConnectionList {
    pub connections: Vec<ConnectionView>,
}

/// A PostgreSQL identifier-ish value: printable, no quotes or NULs, short.
fn check_field(field: &str, v: &str, max: usize) -> ApiResult<()> {
    if v.is_empty() || v.len() > max || v.chars().any(|c| c.is_control() || c == '"' || c == '\'') {
        return Err(ApiError::BadRequest(format!("{field} must be 1 to {max} bytes of printable text without quotes")));
    }
    Ok(())
}

fn check_host(host: &str) -> ApiResult<()> {
    if host.is_empty() || host.len() > 253 || !host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:_".contains(c)) {
        return Err(ApiError::BadRequest(format!(
            "host {:?} must be a host name or IP address (letters, digits, '.', '-', ':')",
            host.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/db/connections", tag = "db", request_body = CreateConnection,
    responses((status = 201, body = ConnectionView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_connection(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(p): Admin,
    ApiJson(req): ApiJson<CreateConnection>,
) -> ApiResult<(StatusCode, Json<ConnectionView>)> {
    ensure_unsealed(&st)?;
    validate_name("connection", &req.name)?;
    check_host(&req.host)?;
    check_field("database", &req.database, 63)?;
    check_field("username", &req.username, 63)?;
    if req.password.is_empty() || req.password.len() > 1024 || req.password.contains('\0') {
        return Err(ApiError::BadRequest("password must be 1 to 1024 bytes without NUL characters".into()));
    }
    let sslmode = req.sslmode.clone().unwrap_or_else(|| "disable".into());
    match sslmode.as_str() {
        "disable" | "prefer" | "require" | "verify-full" => {}
        "allow" | "verify-ca" => {
            return Err(ApiError::BadRequest(format!(
                "sslmode={sslmode} is not supported: latch always verifies the target's certificate and host \
                 name, so use verify-full (with ca_cert for a private CA), or disable on a trusted network"
            )));
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "sslmode {:?} is not one of disable, prefer, require, verify-full",
                other.chars().take(32).collect::<String>()
            )));
        }
    }
    if let Some(pem) = &req.ca_cert {
        if sslmode == "disable" {
            return Err(ApiError::BadRequest("ca_cert is for TLS: give sslmode=verify-full (or require)".into()));
        }
        if pem.len() > 64 * 1024 {
            return Err(ApiError::BadRequest("ca_cert is longer than 64 KiB".into()));
        }
        latch_store::pg_tls::VerifiedTls::new(Some(pem), "ca_cert").map_err(ApiError::BadRequest)?;
    }
    if st.store.db_connection(&req.name).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "database connection {:?} already exists: remove it first (`latch db connection rm {}`)",
            req.name, req.name
        )));
    }
    let mut conn = DbConnection {
        name: req.name.clone(),
        host: req.host.clone(),
        port: i64::from(req.port.unwrap_or(5432)),
        database: req.database.clone(),
        username: req.username.clone(),
        sslmode,
        ca_cert: req.ca_cert.clone(),
        sealed_password: String::new(),
        created_at: st.clock.now(),
        created_by: p.audit_name(),
    };
    // Connect once: a connection that cannot work is refused now, not at the first issue.
    let version = db_creds::check_connection(&conn, &req.password).await.map_err(|e| {
        let m = match e {
            TargetError::Unreachable(m)
            | TargetError::Refused(m)
            | TargetError::Transient(m)
            | TargetError::Config(m) => m,
        };
        ApiError::BadRequest(format!(
            "database connection {:?} does not work: {m}: check the host, port, database, user and password",
            req.name
        ))
    })?;
    conn.sealed_password = st.db.sealer.seal(&conn.name, &req.password).await?;
    let ev = ctx.audit(p.audit_name(), "db.connection.create", format!("db-connection:{}", conn.name)).details(json!({
        "host": conn.host, "port": conn.port, "database": conn.database, "username": conn.username,
        "sslmode": conn.sslmode, "ca_cert": conn.ca_cert.is_some(), "server_version": version,
    }));
    let made = st.store.create_db_connection(conn, ev).await?;
    st.db.forget(&made.name);
    Ok((StatusCode::CREATED, Json(made.into())))
}

#[utoipa::path(get, path = "/v1/db/connections", tag = "db",
    responses((status = 200, body = ConnectionList), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_connections(State(st): State<AppState>, Admin(_): Admin) -> ApiResult<Json<ConnectionList>> {
    let connections = st.store.list_db_connections().await?.into_iter().map(Into::into).collect();
    Ok(Json(ConnectionList { connections }))
}

#[utoipa::path(get, path = "/v1/db/connections/{name}", tag = "db",
    responses((status = 200, body = ConnectionView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show_connection(
    State(st): State<AppState>,
    Admin(_): Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<ConnectionView>> {
    path_name("connection", &name)?;
    let c = st.store.db_connection(&name).await?.ok_or_else(|| {
        ApiError::NotFound(format!("database connection {name:?} not found: see `latch db connections`"))
    })?;
    Ok(Json(c.into()))
}

#[utoipa::path(delete, path = "/v1/db/connections/{name}", tag = "db",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_connection(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(p): Admin,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    ensure_unsealed(&st)?;
    path_name("connection", &name)?;
    let ev = ctx.audit(p.audit_name(), "db.connection.delete", format!("db-connection:{name}"));
    st.store.delete_db_connection(&name, ev).await?;
    st.db.forget(&name);
    Ok(StatusCode::NO_CONTENT)
}

// ---- credentials -----------------------------------------------------------

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct IssueDbCreds {
    /// Lease duration, e.g. `15m`; capped by the role's `max_ttl` and the
    /// grant's end (the default: until the grant ends).
    #[serde(default)]
    pub ttl: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct DbCredsIssued {
    /// The PostgreSQL role to log in as.
    pub username: String,
    /// Shown once; latch keeps no copy.
    pub password: String,
    pub lease_id: String,
    /// Seconds until the lease (and the role's `VALID UNTIL`) ends.
    pub lease_duration: i64,
    pub renewable: bool,
    pub expires_at: String,
    pub grant_id: String,
    pub connection: String,
    pub host: String,
    pub port: i64,
    pub database: String,
}

#[utoipa::path(post, path = "/v1/grants/{id}/db-creds", tag = "db", request_body = IssueDbCreds,
    responses((status = 200, body = DbCredsIssued), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)), security(("bearer" = [])))]
pub async fn issue(
    State(st): State<AppState>,
    ctx: Ctx,
    Caller(p): Caller,
    Path(id): Path<String>,
    body: Option<ApiJson<IssueDbCreds>>,
) -> ApiResult<Json<DbCredsIssued>> {
    ensure_unsealed(&st)?;
    let req = body.map(|ApiJson(b)| b).unwrap_or_default();
    validate_name("grant id", &id)?;
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
    let spec = role.postgres.as_ref().ok_or_else(|| {
        ApiError::BadRequest(format!(
            "role {} does not issue database credentials (it has no [credentials.postgres] section)",
            role.name
        ))
    })?;
    let mut until = grant.expires_at;
    if let Some(t) = &req.ttl {
        let d = parse_duration(t).map_err(|e| ApiError::BadRequest(format!("ttl: {e}")))?;
        until = until.min(now.plus(d));
    }
    if let Some(max) = spec.max_ttl {
        until = until.min(now.plus(max));
    }
    let conn = st.store.db_connection(&spec.connection).await?.ok_or_else(|| {
        ApiError::Conflict(format!(
            "role {} uses database connection {:?}, which is not registered: an administrator adds it with \
             `latch db connection add {} --url postgres://USER@HOST:PORT/DB --password-file FILE`",
            role.name, spec.connection, spec.connection
        ))
    })?;
    let username = db_creds::role_name(&grant.principal_name)?;
    let password = db_creds::new_password()?;
    let lease_id = db_creds::lease_id(&grant.role)?;
    let revocation = spec.revocation_statements.iter().map(|t| t.source().to_string()).collect();
    let cred = DbCredential {
        lease_id: lease_id.clone(),
        grant_id: grant.id.clone(),
        principal_id: grant.principal_id.clone(),
        principal_name: grant.principal_name.clone(),
        role: grant.role.clone(),
        connection: conn.name.clone(),
        username: username.clone(),
        revocation,
        issued_at: now,
        expires_at: until,
        state: DbCredState::Issuing,
        revoke_requested_at: None,
        revoked_at: None,
        revoke_attempts: 0,
        last_error: None,
        next_attempt_at: None,
    };
    let ev = ctx.audit(p.audit_name(), "db.creds.issue", format!("grant:{}", grant.id)).details(json!({
        "lease_id": lease_id, "username": username, "connection": conn.name, "role": grant.role,
        "expires_at": until.to_rfc3339(), "breakglass": grant.breakglass,
    }));
    // Recorded first: a role never exists that no row will drop.
    st.store.record_db_credential(cred, ev).await?;
    let exp = db_creds::expiration(until);
    let values = Values { name: &username, password: &password, expiration: &exp };
    if let Err(e) = db_creds::create_role(&st, &conn, &spec.creation_statements, &values).await {
        // The transaction rolled back; have the revoker confirm the role is absent and close the lease.
        let reason = json!({ "lease_id": lease_id, "reason": "creation failed", "error": e.to_string() });
        let ev = ctx.audit(p.audit_name(), "db.lease.revoke", format!("lease:{lease_id}")).details(reason);
        if let Err(re) = db_creds::request_revocation(&st, LeaseSelector::One(lease_id.clone()), ev).await {
            tracing::error!(error = %re, lease_id = %lease_id, "cannot close the lease of a failed creation");
        }
        return Err(api_error(
            &format!(
                "creating the PostgreSQL role on connection {:?} failed (check the creation_statements of role {})",
                conn.name, role.name
            ),
            e,
        ));
    }
    if !st.store.activate_db_credential(&lease_id).await? {
        // The grant ended while the role was being created: nothing will
        // come back for this role, so drop it here.
        if let Some(cred) = st.store.db_credential(&lease_id).await? {
            match db_creds::drop_role(&st, &cred).await {
                Ok(_) => {
                    let ev = ctx
                        .audit("system", "db.creds.revoked", format!("lease:{lease_id}"))
                        .details(json!({ "lease_id": lease_id, "username": username, "grant_id": grant.id }));
                    st.store.finish_db_revocation(&lease_id, ev).await?;
                }
                Err(_) => st.db.wake_revoker(),
            }
        }
        return Err(ApiError::Conflict(format!("grant {id} ended while the credential was being issued")));
    }
    Ok(Json(DbCredsIssued {
        username,
        password: password.to_string(),
        lease_id,
        lease_duration: (until.millis() - now.millis()) / 1000,
        renewable: true,
        expires_at: until.to_rfc3339(),
        grant_id: grant.id,
        connection: conn.name,
        host: conn.host,
        port: conn.port,
        database: conn.database,
    }))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct DbCredView {
    pub lease_id: String,
    pub grant_id: String,
    pub principal: String,
    pub role: String,
    pub connection: String,
    pub username: String,
    /// issuing | active | revoking | revoked
    pub state: String,
    pub issued_at: String,
    pub expires_at: String,
    pub revoke_requested_at: Option<String>,
    pub revoked_at: Option<String>,
    /// Failed attempts to drop the role so far.
    pub revoke_attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub next_attempt_at: Option<String>,
}

impl From<DbCredential> for DbCredView {
    fn from(c: DbCredential) -> Self {
        DbCredView {
            lease_id: c.lease_id,
            grant_id: c.grant_id,
            principal: c.principal_name,
            role: c.role,
            connection: c.connection,
            username: c.username,
            state: c.state.as_str().into(),
            issued_at: c.issued_at.to_rfc3339(),
            expires_at: c.expires_at.to_rfc3339(),
            revoke_requested_at: c.revoke_requested_at.map(Timestamp::to_rfc3339),
            revoked_at: c.revoked_at.map(Timestamp::to_rfc3339),
            revoke_attempts: c.revoke_attempts,
            last_error: c.last_error,
            next_attempt_at: c.next_attempt_at.map(Timestamp::to_rfc3339),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct DbCredList {
    pub credentials: Vec<DbCredView>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CredsQuery {
    /// issuing | active | revoking | revoked
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub grant: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Every credential (administrators): what is live, and what is still
/// being revoked with the last error — so a failing drop is never silent.
#[utoipa::path(get, path = "/v1/db/creds", tag = "db", params(CredsQuery),
    responses((status = 200, body = DbCredList), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_creds(
    State(st): State<AppState>,
    Admin(_): Admin,
    ApiQuery(q): ApiQuery<CredsQuery>,
) -> ApiResult<Json<DbCredList>> {
    let state =
        match &q.state {
            None => None,
            Some(s) => Some(DbCredState::parse(s).ok_or_else(|| {
                ApiError::BadRequest("state must be one of issuing, active, revoking, revoked".into())
            })?),
        };
    if let Some(g) = &q.grant {
        validate_name("grant id", g)?;
    }
    let f = DbCredFilter { state, grant_id: q.grant, limit: q.limit.unwrap_or(1000) };
    let credentials = st.store.list_db_credentials(f).await?.into_iter().map(Into::into).collect();
    Ok(Json(DbCredList { credentials }))
}

// ---- leases ----------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRef {
    /// `database/creds/ROLE/ID`.
    pub lease_id: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewLease {
    pub lease_id: String,
    /// How long from now, e.g. `30m`; never past the grant's end (the
    /// default: until the grant ends, within the role's `max_ttl`).
    #[serde(default)]
    pub increment: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokePrefix {
    /// E.g. `database/creds/app-read/`; must start with `database/creds/`.
    pub prefix: String,
}

/// A lease as Vault's `sys/leases/lookup` shows it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct LeaseView {
    pub id: String,
    pub issue_time: String,
    pub expire_time: String,
    /// Seconds left (0 once ended).
    pub ttl: i64,
    pub renewable: bool,
    pub state: String,
    pub grant_id: String,
    pub username: String,
}

fn lease_view(c: &DbCredential, now: Timestamp) -> LeaseView {
    let live = c.state == DbCredState::Active;
    LeaseView {
        id: c.lease_id.clone(),
        issue_time: c.issued_at.to_rfc3339(),
        expire_time: c.expires_at.to_rfc3339(),
        ttl: if live { ((c.expires_at.millis() - now.millis()) / 1000).max(0) } else { 0 },
        renewable: live,
        state: c.state.as_str().into(),
        grant_id: c.grant_id.clone(),
        username: c.username.clone(),
    }
}

fn check_lease_id(id: &str) -> ApiResult<()> {
    let ok = id.len() <= 256
        && id.strip_prefix("database/creds/").is_some_and(|rest| {
            let mut parts = rest.split('/');
            let (role, rand) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            validate_name("role", role).is_ok()
                && !rand.is_empty()
                && rand.chars().all(|c| c.is_ascii_alphanumeric())
                && parts.next().is_none()
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest("lease_id must look like database/creds/ROLE/ID (see `latch db creds list`)".into()))
    }
}

/// The lease, if the caller may see it (its grant's holder, or an
/// administrator); anyone else gets the same 404 as for a lease that does
/// not exist.
async fn visible_lease(st: &AppState, p: &latch_core::Principal, id: &str) -> ApiResult<DbCredential> {
    check_lease_id(id)?;
    let not_found = || ApiError::NotFound(format!("lease {id:?} not found"));
    let c = st.store.db_credential(id).await?.ok_or_else(not_found)?;
    if c.principal_id != p.id && !p.is_admin() {
        return Err(not_found());
    }
    Ok(c)
}

#[utoipa::path(post, path = "/v1/db/leases/lookup", tag = "db", request_body = LeaseRef,
    responses((status = 200, body = LeaseView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn lookup(
    State(st): State<AppState>,
    Caller(p): Caller,
    ApiJson(req): ApiJson<LeaseRef>,
) -> ApiResult<Json<LeaseView>> {
    let c = visible_lease(&st, &p, &req.lease_id).await?;
    Ok(Json(lease_view(&c, st.clock.now())))
}

#[utoipa::path(post, path = "/v1/db/leases/renew", tag = "db", request_body = RenewLease,
    responses((status = 200, body = LeaseView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn renew(
    State(st): State<AppState>,
    ctx: Ctx,
    Caller(p): Caller,
    ApiJson(req): ApiJson<RenewLease>,
) -> ApiResult<Json<LeaseView>> {
    ensure_unsealed(&st)?;
    let c = visible_lease(&st, &p, &req.lease_id).await?;
    if c.principal_id != p.id {
        return Err(ApiError::Forbidden("only the holder of the grant can renew its leases".into()));
    }
    if c.state != DbCredState::Active {
        return Err(ApiError::Conflict(format!(
            "lease {} is {}: only an active lease renews",
            c.lease_id,
            c.state.as_str()
        )));
    }
    let grant = st
        .store
        .get_grant(&c.grant_id)
        .await?
        .ok_or_else(|| ApiError::Conflict(format!("grant {} no longer exists", c.grant_id)))?;
    let now = st.clock.now();
    if !grant.is_live(now) {
        return Err(ApiError::Conflict(format!("grant {} is no longer active: request the role again", grant.id)));
    }
    let mut until = grant.expires_at;
    if let Some(inc) = &req.increment {
        let d = parse_duration(inc).map_err(|e| ApiError::BadRequest(format!("increment: {e}")))?;
        until = until.min(now.plus(d));
    }
    let max_ttl = st.policy().role(&c.role).and_then(|r| r.postgres.as_ref().and_then(|s| s.max_ttl));
    if let Some(max) = max_ttl {
        until = until.min(now.plus(max));
    }
    let conn = st
        .store
        .db_connection(&c.connection)
        .await?
        .ok_or_else(|| ApiError::Conflict(format!("database connection {:?} no longer exists", c.connection)))?;
    db_creds::set_valid_until(&st, &conn, &c.username, until)
        .await
        .map_err(|e| api_error(&format!("extending role {} on connection {:?}", c.username, c.connection), e))?;
    let ev = ctx.audit(p.audit_name(), "db.lease.renew", format!("lease:{}", c.lease_id)).details(json!({
        "lease_id": c.lease_id, "grant_id": c.grant_id, "username": c.username,
        "previous_expires_at": c.expires_at.to_rfc3339(), "expires_at": until.to_rfc3339(),
    }));
    let renewed = st.store.renew_db_credential(&c.lease_id, until, ev).await?;
    Ok(Json(lease_view(&renewed, now)))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RevokeOutcome {
    /// Leases now being revoked (the roles are dropped within about a second).
    pub revoking: Vec<String>,
}

#[utoipa::path(post, path = "/v1/db/leases/revoke", tag = "db", request_body = LeaseRef,
    responses((status = 200, body = RevokeOutcome), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn revoke(
    State(st): State<AppState>,
    ctx: Ctx,
    Caller(p): Caller,
    ApiJson(req): ApiJson<LeaseRef>,
) -> ApiResult<Json<RevokeOutcome>> {
    ensure_unsealed(&st)?;
    let c = visible_lease(&st, &p, &req.lease_id).await?;
    let ev = ctx
        .audit(p.audit_name(), "db.lease.revoke", format!("lease:{}", c.lease_id))
        .details(json!({ "lease_id": c.lease_id, "grant_id": c.grant_id, "username": c.username }));
    let revoking = db_creds::request_revocation(&st, LeaseSelector::One(c.lease_id), ev).await?;
    Ok(Json(RevokeOutcome { revoking }))
}

#[utoipa::path(post, path = "/v1/db/leases/revoke-prefix", tag = "db", request_body = RevokePrefix,
    responses((status = 200, body = RevokeOutcome), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_prefix(
    State(st): State<AppState>,
    ctx: Ctx,
    Admin(p): Admin,
    ApiJson(req): ApiJson<RevokePrefix>,
) -> ApiResult<Json<RevokeOutcome>> {
    ensure_unsealed(&st)?;
    let prefix = req.prefix;
    if !prefix.starts_with("database/creds/")
        || prefix.len() > 256
        || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c))
    {
        return Err(ApiError::BadRequest(
            "prefix must start with database/creds/ (e.g. database/creds/ROLE/) and hold only letters, digits, '/', '-', '_', '.'".into(),
        ));
    }
    let ev = ctx
        .audit(p.audit_name(), "db.lease.revoke_prefix", format!("lease-prefix:{prefix}"))
        .details(json!({ "prefix": prefix }));
    let revoking = db_creds::request_revocation(&st, LeaseSelector::Prefix(prefix), ev).await?;
    Ok(Json(RevokeOutcome { revoking }))
}
