//! KV version 2 secrets engines: `{mount}/data`, `metadata`, `delete`,
//! `undelete`, `destroy` and `config`, in Vault's wire format.
//!
//! Every value is encrypted under its own data key before it reaches the
//! store (see [`crate::barrier`]); a sealed node answers 503. Writes, reads
//! of values, deletions and destructions are audited with the secret's path
//! and, for writes, an HMAC of the value — never the value.
//!
//! Who may do what. A secret covered by a role's `[credentials.secrets]`
//! belongs to that role: reading its value takes an active grant of the role
//! — administrators included, so nobody holds standing access to it
//! (check-out); a role with `access = "read-write"` lets grant holders write
//! new versions. Secrets of no role, listing, deleting, destroying and
//! metadata changes are for latch administrators.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use latch_core::{Principal, Timestamp};
use latch_crypto::keyring::Keyring;
use latch_store::{KvMeta, KvMetaUpdate, KvVersion, KvWrite};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    MaybeCaller, VaultError, VaultResult, admin, body, envelope, go_duration, is_list, no_content, vault_time,
};
use crate::barrier::{from_envelope, kv_context, to_envelope};
use crate::error::ApiError;
use crate::extract::Ctx;
use crate::state::AppState;

/// Longest secret path accepted, in bytes.
const MAX_PATH: usize = 512;
/// Vault's limits on custom metadata.
const MAX_CUSTOM_KEYS: usize = 64;
const MAX_CUSTOM_KEY_LEN: usize = 128;
const MAX_CUSTOM_VALUE_LEN: usize = 512;

type Params = Query<HashMap<String, String>>;

/// A secret's path: non-empty segments of printable text, no `.`/`..`.
pub fn secret_path(raw: &str) -> Result<String, ApiError> {
    let p = raw.trim_start_matches('/');
    let bad =
        |why: &str| ApiError::BadRequest(format!("secret path {:?}: {why}", p.chars().take(80).collect::<String>()));
    if p.is_empty() {
        return Err(bad("is empty"));
    }
    if p.len() > MAX_PATH {
        return Err(bad(&format!("is longer than {MAX_PATH} bytes")));
    }
    if p.chars().any(|c| c.is_control()) {
        return Err(bad("contains control characters"));
    }
    if p.ends_with('/') {
        return Err(bad("ends with `/`, which names a folder: list it through metadata/ instead"));
    }
    if p.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(bad("has an empty, `.` or `..` segment"));
    }
    Ok(p.to_string())
}

fn mount_name(raw: &str) -> Result<String, ApiError> {
    latch_core::validate_name("mount path", raw)?;
    Ok(raw.to_string())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// A value.
    Read,
    /// The metadata of one secret (no values): administrators, or a grant.
    Metadata,
    /// A new version.
    Write,
    /// Delete, undelete, destroy, metadata changes, listing.
    Manage,
}

/// The caller, and the grant it acts under when the secret belongs to a role.
async fn authorize(
    st: &AppState,
    c: MaybeCaller,
    mount: &str,
    path: &str,
    need: Need,
) -> VaultResult<(Principal, Option<String>)> {
    let p = super::caller(c)?;
    let policy = st.policy();
    let roles: Vec<(String, bool)> = policy
        .roles()
        .filter_map(|r| r.secrets.as_ref().filter(|s| s.covers(mount, path)).map(|s| (r.name.clone(), s.write)))
        .collect();
    if roles.is_empty() || need == Need::Manage || (need != Need::Read && p.is_admin()) {
        if p.is_admin() {
            return Ok((p, None));
        }
        let why = if roles.is_empty() {
            format!("secret {mount}/{path} belongs to no role: only latch administrators may use it")
        } else {
            "only latch administrators may list, delete, destroy or change the metadata of secrets".to_string()
        };
        return Err(ApiError::Forbidden(why).into());
    }
    let now = st.clock.now();
    let grants = st.store.list_grants(Some(&p.id), Some(now)).await.map_err(ApiError::from)?;
    let reads = matches!(need, Need::Read | Need::Metadata);
    let usable = grants.iter().find(|g| roles.iter().any(|(r, w)| g.role == *r && (reads || *w)));
    match usable {
        Some(g) => Ok((p, Some(g.id.clone()))),
        None => {
            let names: Vec<&str> = roles.iter().filter(|(_, w)| reads || *w).map(|(r, _)| r.as_str()).collect();
            Err(ApiError::Forbidden(format!(
                "secret {mount}/{path} belongs to role {}: {} it takes an active grant — `latch request {}`",
                names.join(" or "),
                if reads { "reading" } else { "writing" },
                names.first().copied().unwrap_or("ROLE")
            ))
            .into())
        }
    }
}

/// Only administrators (engine-wide operations).
fn admin_only(c: MaybeCaller) -> VaultResult<Principal> {
    admin(c)
}

async fn keyring(st: &AppState) -> VaultResult<std::sync::Arc<Keyring>> {
    Ok(st.barrier.keyring(st.store.as_ref(), Instant::now()).await?)
}

/// When a version stops being readable: its soft deletion, or its automatic
/// deletion `delete_version_after` its creation.
fn deletion_time(meta: &KvMeta, mount_default_ms: i64, v: &KvVersion) -> Option<Timestamp> {
    let after = if meta.delete_version_after_ms > 0 { meta.delete_version_after_ms } else { mount_default_ms };
    let auto = (after > 0).then(|| Timestamp(v.created_at.0.saturating_add(after)));
    match (v.deleted_at, auto) {
        (Some(d), Some(a)) => Some(Timestamp(d.0.min(a.0))),
        (d, a) => d.or(a),
    }
}

fn version_json(meta: &KvMeta, mount_default_ms: i64, v: &KvVersion) -> Value {
    json!({
        "created_time": vault_time(Some(v.created_at)),
        "custom_metadata": custom_metadata(meta),
        "deletion_time": vault_time(deletion_time(meta, mount_default_ms, v)),
        "destroyed": v.destroyed,
        "version": v.version,
    })
}

fn custom_metadata(meta: &KvMeta) -> Value {
    match serde_json::from_str::<Value>(&meta.custom_metadata) {
        Ok(Value::Object(m)) if !m.is_empty() => Value::Object(m),
        _ => Value::Null,
    }
}

fn not_found() -> Response {
    use axum::response::IntoResponse;
    (axum::http::StatusCode::NOT_FOUND, axum::Json(json!({ "errors": [] }))).into_response()
}

async fn mount_default_ms(st: &AppState, mount: &str) -> VaultResult<i64> {
    Ok(super::sys::find_mount(st, mount).await?.delete_version_after_ms)
}

/// `{mount}/data/{path}`: read (GET, `?version=`), write (POST/PUT), patch
/// (PATCH, JSON merge patch) and soft-delete the latest version (DELETE).
#[allow(clippy::too_many_arguments)]
pub async fn data(
    State(st): State<AppState>,
    ctx: Ctx,
    caller: MaybeCaller,
    method: Method,
    headers: HeaderMap,
    Path((mount, raw)): Path<(String, String)>,
    Query(q): Params,
    bytes: Bytes,
) -> VaultResult {
    let ring = keyring(&st).await?;
    let mount = mount_name(&mount)?;
    let path = secret_path(&raw)?;
    let need = match method {
        Method::GET => Need::Read,
        Method::DELETE => Need::Manage,
        _ => Need::Write,
    };
    let (p, grant) = authorize(&st, caller, &mount, &path, need).await?;
    match method {
        Method::GET => read(&st, &ctx, &p, grant.as_deref(), &ring, &mount, &path, &q).await,
        Method::POST | Method::PUT => {
            let b: WriteBody = body(&bytes)?;
            let data = b.data.ok_or_else(|| ApiError::BadRequest("no data provided: send {\"data\": {…}}".into()))?;
            write(&st, &ctx, &p, &ring, &mount, &path, data, b.options.and_then(|o| o.cas)).await
        }
        Method::PATCH => {
            if !super::content_type(&headers).starts_with("application/merge-patch+json") {
                return Err(ApiError::UnsupportedMediaType {
                    message: "PATCH takes a JSON merge patch: send Content-Type: application/merge-patch+json".into(),
                }
                .into());
            }
            let b: WriteBody = body(&bytes)?;
            let patch = b.data.ok_or_else(|| ApiError::BadRequest("no data provided: send {\"data\": {…}}".into()))?;
            let Some((meta, current)) = current_value(&st, &ring, &mount, &path).await? else {
                return Ok(not_found());
            };
            let mut merged = Value::Object(current);
            merge_patch(&mut merged, &Value::Object(patch));
            let Value::Object(merged) = merged else { return Err(ApiError::internal("merge result").into()) };
            let cas = b.options.and_then(|o| o.cas).unwrap_or(meta.current_version);
            write(&st, &ctx, &p, &ring, &mount, &path, merged, Some(cas)).await
        }
        Method::DELETE => {
            let Some((meta, _)) = st.store.kv_get(&mount, &path).await.map_err(ApiError::from)? else {
                return Ok(no_content());
            };
            let audit = ctx.audit(p.audit_name(), "secret.delete", format!("secret:{mount}/{path}"));
            st.store
                .kv_set_deleted(&mount, &path, vec![meta.current_version], true, audit)
                .await
                .map_err(ApiError::from)?;
            Ok(no_content())
        }
        other => Err(super::method_not_allowed(&other, "a KV data path")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteBody {
    #[serde(default)]
    data: Option<Map<String, Value>>,
    #[serde(default)]
    options: Option<WriteOptions>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteOptions {
    #[serde(default)]
    cas: Option<i64>,
}

#[allow(clippy::too_many_arguments)]
async fn write(
    st: &AppState,
    ctx: &Ctx,
    p: &Principal,
    ring: &Keyring,
    mount: &str,
    path: &str,
    data: Map<String, Value>,
    cas: Option<i64>,
) -> VaultResult {
    if cas.is_some_and(|c| c < 0) {
        return Err(ApiError::BadRequest("options.cas must be ≥ 0".into()).into());
    }
    let plain = zeroize::Zeroizing::new(serde_json::to_vec(&Value::Object(data)).map_err(ApiError::internal)?);
    let env = ring.encrypt(&kv_context(mount, path), &plain).map_err(ApiError::from)?;
    let audit = ctx
        .audit(p.audit_name(), "secret.write", format!("secret:{mount}/{path}"))
        .detail("value_hmac", ring.hmac(&plain));
    let w = KvWrite { mount: mount.into(), path: path.into(), cas, envelope: from_envelope(&env) };
    let (meta, v) = st.store.kv_put(w, audit).await.map_err(kv_write_error)?;
    Ok(envelope(version_json(&meta, 0, &v)))
}

/// Vault answers a failed check-and-set with 400.
fn kv_write_error(e: latch_store::StoreError) -> VaultError {
    match e {
        latch_store::StoreError::Precondition(m) => VaultError(ApiError::BadRequest(m)),
        latch_store::StoreError::NotFound { kind: "secrets engine", name } => VaultError(ApiError::NotFound(format!(
            "no secrets engine is mounted at {name}/: enable one with `latch secrets enable` or `sys/mounts`"
        ))),
        other => VaultError(other.into()),
    }
}

/// The current, readable value of a secret, or `None`.
async fn current_value(
    st: &AppState,
    ring: &Keyring,
    mount: &str,
    path: &str,
) -> VaultResult<Option<(KvMeta, Map<String, Value>)>> {
    let Some((meta, v)) = st.store.kv_version(mount, path, None).await.map_err(ApiError::from)? else {
        return Ok(None);
    };
    let dflt = mount_default_ms(st, mount).await?;
    if v.destroyed || deletion_time(&meta, dflt, &v).is_some_and(|t| t <= st.clock.now()) {
        return Ok(None);
    }
    let data = open_value(ring, mount, path, &v)?;
    Ok(Some((meta, data)))
}

fn open_value(ring: &Keyring, mount: &str, path: &str, v: &KvVersion) -> VaultResult<Map<String, Value>> {
    let stored = v.envelope.as_ref().ok_or_else(|| ApiError::internal("version without ciphertext"))?;
    let plain = ring.decrypt(&kv_context(mount, path), &to_envelope(stored)?).map_err(ApiError::from)?;
    match serde_json::from_slice::<Value>(&plain) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::internal("stored value is not a JSON object").into()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn read(
    st: &AppState,
    ctx: &Ctx,
    p: &Principal,
    grant: Option<&str>,
    ring: &Keyring,
    mount: &str,
    path: &str,
    q: &HashMap<String, String>,
) -> VaultResult {
    let version = match q.get("version").map(|v| v.trim()) {
        None | Some("") | Some("0") => None,
        Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "version must be a positive number, not {:?}",
                v.chars().take(20).collect::<String>()
            ))
        })?),
    };
    let Some((meta, v)) = st.store.kv_version(mount, path, version).await.map_err(ApiError::from)? else {
        return Ok(not_found());
    };
    let dflt = mount_default_ms(st, mount).await?;
    let metadata = version_json(&meta, dflt, &v);
    if v.destroyed || deletion_time(&meta, dflt, &v).is_some_and(|t| t <= st.clock.now()) {
        use axum::response::IntoResponse;
        let body = json!({ "request_id": "", "data": { "data": null, "metadata": metadata }, "errors": [] });
        return Ok((axum::http::StatusCode::NOT_FOUND, axum::Json(body)).into_response());
    }
    let data = open_value(ring, mount, path, &v)?;
    let mut audit =
        ctx.audit(p.audit_name(), "secret.read", format!("secret:{mount}/{path}")).detail("version", v.version);
    if let Some(g) = grant {
        audit = audit.detail("grant", g);
    }
    st.store.append_audit(audit).await.map_err(ApiError::from)?;
    Ok(envelope(json!({ "data": data, "metadata": metadata })))
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// `{mount}/metadata` and `{mount}/metadata/`: the listing of the engine's root.
pub async fn metadata_root(
    State(st): State<AppState>,
    caller: MaybeCaller,
    method: Method,
    Path(mount): Path<String>,
    Query(q): Params,
) -> VaultResult {
    keyring(&st).await?;
    admin_only(caller)?;
    let mount = mount_name(&mount)?;
    if !is_list(&method, q.get("list").map(String::as_str)) {
        return Err(super::method_not_allowed(&method, "the metadata root (LIST it)"));
    }
    list(&st, &mount, "").await
}

async fn list(st: &AppState, mount: &str, prefix: &str) -> VaultResult {
    let paths = st.store.kv_paths(mount, prefix).await.map_err(ApiError::from)?;
    let mut keys: Vec<String> = paths
        .iter()
        .filter_map(|p| p.strip_prefix(prefix))
        .map(|rest| match rest.split_once('/') {
            Some((dir, _)) => format!("{dir}/"),
            None => rest.to_string(),
        })
        .collect();
    keys.dedup();
    if keys.is_empty() {
        return Ok(not_found());
    }
    Ok(envelope(json!({ "keys": keys })))
}

/// `{mount}/metadata/{path}`: read (GET), list (LIST or `?list=true`),
/// update (POST/PUT), patch (PATCH) and delete everything (DELETE).
#[allow(clippy::too_many_arguments)]
pub async fn metadata(
    State(st): State<AppState>,
    ctx: Ctx,
    caller: MaybeCaller,
    method: Method,
    headers: HeaderMap,
    Path((mount, raw)): Path<(String, String)>,
    Query(q): Params,
    bytes: Bytes,
) -> VaultResult {
    keyring(&st).await?;
    let mount = mount_name(&mount)?;
    if is_list(&method, q.get("list").map(String::as_str)) {
        admin_only(caller)?;
        let dir = raw.trim_start_matches('/').trim_end_matches('/');
        let prefix = if dir.is_empty() { String::new() } else { format!("{}/", secret_path(dir)?) };
        return list(&st, &mount, &prefix).await;
    }
    let path = secret_path(&raw)?;
    let need = if method == Method::GET { Need::Metadata } else { Need::Manage };
    let (p, _) = authorize(&st, caller, &mount, &path, need).await?;
    let target = format!("secret:{mount}/{path}");
    match method {
        Method::GET => {
            let Some((meta, versions)) = st.store.kv_get(&mount, &path).await.map_err(ApiError::from)? else {
                return Ok(not_found());
            };
            let dflt = mount_default_ms(&st, &mount).await?;
            let vs: Map<String, Value> = versions
                .iter()
                .map(|v| {
                    let j = json!({
                        "created_time": vault_time(Some(v.created_at)),
                        "deletion_time": vault_time(deletion_time(&meta, dflt, v)),
                        "destroyed": v.destroyed,
                    });
                    (v.version.to_string(), j)
                })
                .collect();
            Ok(envelope(json!({
                "cas_required": meta.cas_required,
                "created_time": vault_time(Some(meta.created_at)),
                "current_version": meta.current_version,
                "custom_metadata": custom_metadata(&meta),
                "delete_version_after": go_duration(meta.delete_version_after_ms),
                "max_versions": meta.max_versions,
                "oldest_version": meta.oldest_version,
                "updated_time": vault_time(Some(meta.updated_at)),
                "versions": vs,
            })))
        }
        Method::POST | Method::PUT | Method::PATCH => {
            let patch = method == Method::PATCH;
            if patch && !super::content_type(&headers).starts_with("application/merge-patch+json") {
                return Err(ApiError::UnsupportedMediaType {
                    message: "PATCH takes a JSON merge patch: send Content-Type: application/merge-patch+json".into(),
                }
                .into());
            }
            let b: Map<String, Value> = body(&bytes)?;
            let existing = if patch { st.store.kv_get(&mount, &path).await.map_err(ApiError::from)? } else { None };
            if patch && existing.is_none() {
                return Ok(not_found());
            }
            let u = meta_update(&b, existing.as_ref().map(|(m, _)| m))?;
            let audit = ctx.audit(p.audit_name(), "secret.metadata", target);
            st.store.kv_update_meta(&mount, &path, u, audit).await.map_err(kv_write_error)?;
            Ok(no_content())
        }
        Method::DELETE => {
            let audit = ctx.audit(p.audit_name(), "secret.delete_all", target);
            match st.store.kv_delete_all(&mount, &path, audit).await {
                Ok(()) | Err(latch_store::StoreError::NotFound { .. }) => Ok(no_content()),
                Err(e) => Err(ApiError::from(e).into()),
            }
        }
        other => Err(super::method_not_allowed(&other, "a KV metadata path")),
    }
}

/// A metadata update from a request body; with `patch_of`, custom metadata
/// is merged into what is there (a `null` value removes a key).
pub fn meta_update(b: &Map<String, Value>, patch_of: Option<&KvMeta>) -> Result<KvMetaUpdate, ApiError> {
    let mut u = KvMetaUpdate::default();
    let mut rest = Map::new();
    for (k, v) in b {
        if k == "custom_metadata" {
            let mut merged: BTreeMap<String, Value> = match patch_of {
                Some(m) => serde_json::from_str(&m.custom_metadata).unwrap_or_default(),
                None => BTreeMap::new(),
            };
            match v {
                Value::Null => {}
                Value::Object(o) => {
                    for (ck, cv) in o {
                        match cv {
                            Value::Null if patch_of.is_some() => {
                                merged.remove(ck);
                            }
                            Value::String(s) => {
                                if ck.is_empty() || ck.len() > MAX_CUSTOM_KEY_LEN || s.len() > MAX_CUSTOM_VALUE_LEN {
                                    return Err(ApiError::BadRequest(format!(
                                        "custom_metadata: keys are 1–{MAX_CUSTOM_KEY_LEN} bytes and values at most \
                                         {MAX_CUSTOM_VALUE_LEN} bytes"
                                    )));
                                }
                                merged.insert(ck.clone(), Value::String(s.clone()));
                            }
                            _ => {
                                return Err(ApiError::BadRequest(format!(
                                    "custom_metadata.{}: values must be strings",
                                    ck.chars().take(40).collect::<String>()
                                )));
                            }
                        }
                    }
                }
                _ => return Err(ApiError::BadRequest("custom_metadata must be an object of strings".into())),
            }
            if merged.len() > MAX_CUSTOM_KEYS {
                return Err(ApiError::BadRequest(format!("custom_metadata: at most {MAX_CUSTOM_KEYS} keys")));
            }
            u.custom_metadata = Some(serde_json::to_string(&merged).map_err(ApiError::internal)?);
        } else {
            rest.insert(k.clone(), v.clone());
        }
    }
    let m = super::sys::mount_update(&rest)?;
    u.max_versions = m.max_versions;
    u.cas_required = m.cas_required;
    u.delete_version_after_ms = m.delete_version_after_ms;
    Ok(u)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionsBody {
    #[serde(default)]
    versions: Vec<Value>,
}

/// The `versions` of a delete/undelete/destroy body: numbers, or numbers
/// as strings (what the CLIs send).
pub fn versions_of(bytes: &[u8]) -> VaultResult<Vec<i64>> {
    let b: VersionsBody = body(bytes)?;
    if b.versions.is_empty() {
        return Err(ApiError::BadRequest("no versions provided: send {\"versions\": [1, 2]}".into()).into());
    }
    b.versions
        .iter()
        .map(|v| match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
        .map(|v| {
            v.filter(|n| *n > 0).ok_or_else(|| ApiError::BadRequest("versions are positive numbers".into()).into())
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn set_versions(
    st: AppState,
    ctx: Ctx,
    caller: MaybeCaller,
    method: Method,
    mount: String,
    raw: String,
    bytes: Bytes,
    action: &str,
) -> VaultResult {
    keyring(&st).await?;
    if !matches!(method, Method::POST | Method::PUT) {
        return Err(super::method_not_allowed(&method, action));
    }
    let mount = mount_name(&mount)?;
    let path = secret_path(&raw)?;
    let (p, _) = authorize(&st, caller, &mount, &path, Need::Manage).await?;
    let versions = versions_of(&bytes)?;
    let audit = ctx.audit(p.audit_name(), action, format!("secret:{mount}/{path}"));
    let r = match action {
        "secret.destroy" => st.store.kv_destroy(&mount, &path, versions, audit).await,
        _ => st.store.kv_set_deleted(&mount, &path, versions, action == "secret.delete", audit).await,
    };
    match r {
        // Vault answers 204 for a path with nothing in it.
        Ok(()) | Err(latch_store::StoreError::NotFound { .. }) => Ok(no_content()),
        Err(e) => Err(ApiError::from(e).into()),
    }
}

pub async fn delete_versions(
    State(st): State<AppState>,
    ctx: Ctx,
    caller: MaybeCaller,
    method: Method,
    Path((mount, raw)): Path<(String, String)>,
    bytes: Bytes,
) -> VaultResult {
    set_versions(st, ctx, caller, method, mount, raw, bytes, "secret.delete").await
}

pub async fn undelete_versions(
    State(st): State<AppState>,
    ctx: Ctx,
    caller: MaybeCaller,
    method: Method,
    Path((mount, raw)): Path<(String, String)>,
    bytes: Bytes,
) -> VaultResult {
    set_versions(st, ctx, caller, method, mount, raw, bytes, "secret.undelete").await
}

pub async fn destroy_versions(
    State(st): State<AppState>,
    ctx: Ctx,
    caller: MaybeCaller,
    method: Method,
    Path((mount, raw)): Path<(String, String)>,
    bytes: Bytes,
) -> VaultResult {
    set_versions(st, ctx, caller, method, mount, raw, bytes, "secret.destroy").await
}

/// `{mount}/config`: the engine's defaults.
pub async fn config(
    State(st): State<AppState>,
    ctx: Ctx,
    caller: MaybeCaller,
    method: Method,
    Path(mount): Path<String>,
    bytes: Bytes,
) -> VaultResult {
    let p = admin_only(caller)?;
    let mount = mount_name(&mount)?;
    match method {
        Method::GET => {
            let m = super::sys::find_mount(&st, &mount).await?;
            Ok(envelope(json!({
                "max_versions": m.max_versions,
                "cas_required": m.cas_required,
                "delete_version_after": go_duration(m.delete_version_after_ms),
            })))
        }
        Method::POST | Method::PUT => {
            let b: Map<String, Value> = body(&bytes)?;
            let u = super::sys::mount_update(&b)?;
            let audit = ctx.audit(p.audit_name(), "secrets.tune", format!("mount:{mount}"));
            st.store.tune_mount(&mount, u, audit).await.map_err(kv_write_error)?;
            Ok(no_content())
        }
        other => Err(super::method_not_allowed(&other, "a KV config path")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn secret_paths_are_checked() {
        assert_eq!(secret_path("a/b").unwrap(), "a/b");
        assert_eq!(secret_path("/a").unwrap(), "a");
        for bad in ["", "a/", "a//b", "a/../b", "./a", "a\nb", &"x".repeat(600)] {
            assert!(secret_path(bad).is_err(), "{bad:?}");
        }
    }
}
