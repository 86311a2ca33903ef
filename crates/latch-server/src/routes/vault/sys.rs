//! `sys/…`: the seal (init, unseal, seal, status, master key rotation) and
//! secrets engine mounts.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::IntoResponse;
use latch_store::{KvMetaUpdate, KvMount};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{MaybeCaller, RESERVED_MOUNTS, VaultError, VaultResult, admin, body, envelope, no_content};
use crate::barrier::{SealStatus, decode_share};
use crate::error::ApiError;
use crate::extract::Ctx;
use crate::state::AppState;

fn status_json(st: &AppState, s: &SealStatus) -> Value {
    json!({
        "type": "shamir",
        "initialized": s.initialized,
        "sealed": s.sealed,
        "t": s.threshold,
        "n": s.shares,
        "progress": s.progress,
        "nonce": s.nonce,
        "version": env!("CARGO_PKG_VERSION"),
        "build_date": "",
        "migration": false,
        "recovery_seal": false,
        "storage_type": st.store.backend_name(),
        "cluster_name": "latch",
        "cluster_id": "",
    })
}

/// Whether this node is initialized and sealed; anyone may ask (as in Vault).
pub async fn seal_status(State(st): State<AppState>) -> VaultResult {
    let s = st.barrier.status(st.store.as_ref()).await?;
    Ok(axum::Json(status_json(&st, &s)).into_response())
}

/// latch nodes are all active (no standby forwarding): each is its own leader here.
pub async fn leader(State(st): State<AppState>) -> VaultResult {
    Ok(axum::Json(json!({
        "ha_enabled": false,
        "is_self": true,
        "active_time": "0001-01-01T00:00:00Z",
        "leader_address": st.issuer,
        "leader_cluster_address": "",
        "performance_standby": false,
        "performance_standby_last_remote_wal": 0,
    }))
    .into_response())
}

pub async fn init_status(State(st): State<AppState>) -> VaultResult {
    let s = st.barrier.status(st.store.as_ref()).await?;
    Ok(axum::Json(json!({ "initialized": s.initialized })).into_response())
}

/// Vault's `sys/init` body. PGP-encrypted shares and recovery keys are not
/// supported; they are accepted only empty.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitBody {
    #[serde(default)]
    secret_shares: Option<usize>,
    #[serde(default)]
    secret_threshold: Option<usize>,
    #[serde(default)]
    pgp_keys: Option<Vec<String>>,
    #[serde(default)]
    root_token_pgp_key: Option<String>,
    #[serde(default)]
    stored_shares: Option<usize>,
    #[serde(default)]
    recovery_shares: Option<usize>,
    #[serde(default)]
    recovery_threshold: Option<usize>,
    #[serde(default)]
    recovery_pgp_keys: Option<Vec<String>>,
}

/// Creates the unseal key and keyring; returns the shares, once. Only a
/// latch administrator may initialize (Vault lets anyone: latch already has
/// administrators when its seal is first set up).
pub async fn init(State(st): State<AppState>, ctx: Ctx, caller: MaybeCaller, bytes: Bytes) -> VaultResult {
    let p = admin(caller)?;
    let b: InitBody = body(&bytes)?;
    if b.pgp_keys.as_ref().is_some_and(|k| !k.is_empty())
        || b.recovery_pgp_keys.as_ref().is_some_and(|k| !k.is_empty())
        || b.root_token_pgp_key.as_ref().is_some_and(|k| !k.is_empty())
    {
        return Err(ApiError::BadRequest(
            "PGP-encrypted unseal shares are not supported by latch: omit pgp_keys".into(),
        )
        .into());
    }
    if b.stored_shares.unwrap_or(0) > 0 || b.recovery_shares.unwrap_or(0) > 0 || b.recovery_threshold.unwrap_or(0) > 0 {
        return Err(ApiError::BadRequest(
            "latch uses Shamir shares only: stored_shares and recovery keys must be 0".into(),
        )
        .into());
    }
    let shares = b.secret_shares.unwrap_or(5);
    let threshold = b.secret_threshold.unwrap_or(3);
    let parts = st
        .barrier
        .init(
            st.store.as_ref(),
            shares,
            threshold,
            st.clock.now(),
            ctx.audit(p.audit_name(), "seal.init", "system:seal"),
        )
        .await?;
    st.reload_issuers().await?;
    let hex: Vec<String> = parts.iter().map(|s| latch_crypto::hex(s)).collect();
    let b64: Vec<String> = parts.iter().map(|s| data_encoding::BASE64.encode(s)).collect();
    Ok(axum::Json(json!({ "keys": hex, "keys_base64": b64, "root_token": "" })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsealBody {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    reset: Option<bool>,
    #[serde(default)]
    migrate: Option<bool>,
}

/// Takes one unseal share. As in Vault no token is needed: the shares are
/// the credential. Unsealing is audited.
pub async fn unseal(State(st): State<AppState>, ctx: Ctx, bytes: Bytes) -> VaultResult {
    let b: UnsealBody = body(&bytes)?;
    if b.migrate == Some(true) {
        return Err(ApiError::BadRequest("seal migration is not supported by latch".into()).into());
    }
    let reset = b.reset.unwrap_or(false);
    if b.key.is_none() && !reset {
        return Err(ApiError::BadRequest("send `key` (an unseal share) or `reset: true`".into()).into());
    }
    let share = b.key.as_deref().map(decode_share).transpose()?;
    let was_sealed = st.barrier.is_sealed();
    let result = st.barrier.submit_share(st.store.as_ref(), share.as_deref().map(|s| s.as_slice()), reset).await;
    match &result {
        Ok(s) if was_sealed && !s.sealed => {
            st.store.append_audit(ctx.audit("system", "seal.unseal", "system:seal")).await.map_err(ApiError::from)?;
            // The signing keys open now (and are created or migrated on the first unseal).
            st.reload_issuers().await?;
        }
        Err(ApiError::BadRequest(m)) if m.contains("combine") => {
            let ev = ctx
                .audit("system", "seal.unseal", "system:seal")
                .outcome(latch_audit::Outcome::Failure)
                .detail("reason", "the shares did not combine into the unseal key");
            st.store.append_audit(ev).await.map_err(ApiError::from)?;
        }
        _ => {}
    }
    let s = result?;
    Ok(axum::Json(status_json(&st, &s)).into_response())
}

/// Seals this node: the keys leave its memory. Administrators only.
pub async fn seal(State(st): State<AppState>, ctx: Ctx, caller: MaybeCaller) -> VaultResult {
    let p = admin(caller)?;
    if !st.barrier.is_sealed() {
        st.barrier.seal();
        st.issuer_keys.drop_private();
        st.store.append_audit(ctx.audit(p.audit_name(), "seal.seal", "system:seal")).await.map_err(ApiError::from)?;
    }
    Ok(no_content())
}

/// The active master key version (Vault's "term") and how many wrapped keys
/// still wait to be re-wrapped under it: secrets' data keys, issuer keys
/// and database connection passwords (`pending_rewrap` is their sum).
pub async fn key_status(State(st): State<AppState>, caller: MaybeCaller) -> VaultResult {
    admin(caller)?;
    let ring = st.barrier.keyring(st.store.as_ref(), Instant::now()).await?;
    let active = ring.active();
    let installed = ring.versions().iter().find(|(v, _)| *v == active).map(|(_, t)| *t).unwrap_or(0);
    let pending = crate::barrier::Barrier::pending_rewrap(st.store.as_ref(), active).await?;
    Ok(envelope(json!({
        "term": active,
        "install_time": latch_core::Timestamp(installed).to_rfc3339(),
        "encryptions": null,
        "versions": ring.versions().iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        "pending_rewrap": pending.secrets + pending.issuer_keys + pending.db_passwords,
        "pending_rewrap_by_kind": {
            "secrets": pending.secrets, "issuer_keys": pending.issuer_keys, "db_passwords": pending.db_passwords,
        },
    })))
}

/// Rotates the master key: a new version becomes active at once, and the
/// data keys are re-wrapped under it in the background (reads and writes go
/// on meanwhile). Administrators only.
pub async fn rotate(State(st): State<AppState>, ctx: Ctx, caller: MaybeCaller) -> VaultResult {
    let p = admin(caller)?;
    let version = st
        .barrier
        .rotate(st.store.as_ref(), st.clock.now(), ctx.audit(p.audit_name(), "seal.rotate_master", "system:seal"))
        .await?;
    let bg = st.clone();
    let ev = ctx.audit("system", "seal.rewrap", "system:seal");
    tokio::spawn(async move {
        match bg.barrier.rewrap(bg.store.as_ref()).await {
            Ok(r) => {
                let ev = ev
                    .detail("version", version)
                    .detail("rewrapped", r.secrets)
                    .detail("issuer_keys", r.issuer_keys)
                    .detail("db_passwords", r.db_passwords);
                if let Err(e) = bg.store.append_audit(ev).await {
                    tracing::error!(error = %e, "cannot audit the end of a master key re-wrap");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "master key re-wrap stopped: run `latch operator rotate-master` again")
            }
        }
    });
    Ok(no_content())
}

fn mount_json(m: &KvMount) -> Value {
    json!({
        "type": "kv",
        "description": m.description,
        "accessor": m.accessor,
        "options": { "version": "2" },
        "config": {
            "default_lease_ttl": 0,
            "max_lease_ttl": 0,
            "force_no_cache": false,
        },
        "local": false,
        "seal_wrap": false,
        "external_entropy_access": false,
        "uuid": m.accessor,
        "plugin_version": "",
        "running_plugin_version": "",
        "running_sha256": "",
    })
}

/// Every mounted secrets engine, keyed `path/` as Vault does.
pub async fn list_mounts(State(st): State<AppState>, caller: MaybeCaller) -> VaultResult {
    admin(caller)?;
    let mut data = Map::new();
    for m in st.store.list_mounts().await.map_err(ApiError::from)? {
        data.insert(format!("{}/", m.path), mount_json(&m));
    }
    Ok(envelope(Value::Object(data)))
}

/// A mount path from the URL: one name, no slashes at either end.
fn mount_path(raw: &str) -> Result<String, ApiError> {
    let p = raw.trim_matches('/');
    latch_core::validate_name("mount path", p)?;
    if RESERVED_MOUNTS.contains(&p) {
        return Err(ApiError::BadRequest(format!("{p:?} is reserved: mount the secrets engine at another path")));
    }
    Ok(p.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    local: Option<bool>,
    #[serde(default)]
    seal_wrap: Option<bool>,
    #[serde(default)]
    external_entropy_access: Option<bool>,
    #[serde(default)]
    plugin_name: Option<String>,
    #[serde(default)]
    plugin_version: Option<String>,
}

/// `sys/mounts/PATH`: enable (POST/PUT), disable (DELETE) or read (GET) a
/// KV version 2 engine. Administrators only.
pub async fn mount(
    State(st): State<AppState>,
    ctx: Ctx,
    caller: MaybeCaller,
    method: Method,
    Path(raw): Path<String>,
    bytes: Bytes,
) -> VaultResult {
    let p = admin(caller)?;
    if let Some(base) = raw.strip_suffix("/tune").or_else(|| raw.strip_suffix("/tune/")) {
        let path = mount_path(base)?;
        let m = find_mount(&st, &path).await?;
        return Ok(envelope(json!({
            "default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false,
            "description": m.description, "options": { "version": "2" },
        })));
    }
    let path = mount_path(&raw)?;
    match method {
        Method::POST | Method::PUT => {
            let b: MountBody = body(&bytes)?;
            let version = b.options.as_ref().and_then(|o| o.get("version")).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
            let v2 = match (b.kind.as_str(), version.as_deref()) {
                ("kv-v2", None | Some("2")) | ("kv", Some("2")) => true,
                ("kv", None | Some("1")) => false,
                _ => false,
            };
            if !v2 {
                return Err(ApiError::BadRequest(format!(
                    "latch mounts key/value version 2 engines only: send type \"kv\" with options.version \"2\" \
                     (got type {:?}{})",
                    b.kind,
                    version.map(|v| format!(", version {v}")).unwrap_or_default()
                ))
                .into());
            }
            let _ = (b.config, b.local, b.seal_wrap, b.external_entropy_access, b.plugin_name, b.plugin_version);
            let description = b.description.unwrap_or_default();
            if description.chars().count() > 256 || description.chars().any(char::is_control) {
                return Err(ApiError::BadRequest("description: at most 256 printable characters".into()).into());
            }
            let m = KvMount {
                path: path.clone(),
                description,
                accessor: latch_crypto::new_id("kv")?,
                max_versions: 0,
                cas_required: false,
                delete_version_after_ms: 0,
                created_at: st.clock.now(),
            };
            st.store
                .create_mount(m, ctx.audit(p.audit_name(), "secrets.mount", format!("mount:{path}")))
                .await
                .map_err(|e| match e {
                    latch_store::StoreError::Conflict(m) => ApiError::BadRequest(m),
                    other => other.into(),
                })?;
            Ok(no_content())
        }
        Method::DELETE => {
            match st
                .store
                .delete_mount(&path, ctx.audit(p.audit_name(), "secrets.unmount", format!("mount:{path}")))
                .await
            {
                Ok(()) | Err(latch_store::StoreError::NotFound { .. }) => Ok(no_content()),
                Err(e) => Err(ApiError::from(e).into()),
            }
        }
        Method::GET => {
            let m = find_mount(&st, &path).await?;
            Ok(envelope(mount_json(&m)))
        }
        other => Err(super::method_not_allowed(&other, "sys/mounts")),
    }
}

pub(super) async fn find_mount(st: &AppState, path: &str) -> Result<KvMount, ApiError> {
    st.store
        .list_mounts()
        .await?
        .into_iter()
        .find(|m| m.path == path)
        .ok_or_else(|| ApiError::NotFound(format!("no secrets engine is mounted at {path}/: see `GET /v1/sys/mounts`")))
}

/// What the CLIs ask before a `kv` command: which mount a path is under and
/// its KV version. Any signed-in caller may ask (no secret is revealed).
pub async fn ui_mount(State(st): State<AppState>, caller: MaybeCaller, Path(raw): Path<String>) -> VaultResult {
    super::caller(caller)?;
    let first = raw.trim_start_matches('/').split('/').next().unwrap_or("");
    let m = find_mount(&st, first).await.map_err(VaultError)?;
    let mut v = mount_json(&m);
    if let Value::Object(o) = &mut v {
        o.insert("path".into(), json!(format!("{}/", m.path)));
    }
    Ok(envelope(v))
}

/// Mount defaults from `{mount}/config`.
pub fn mount_update(b: &Map<String, Value>) -> Result<KvMetaUpdate, ApiError> {
    let mut u = KvMetaUpdate::default();
    for (k, v) in b {
        match k.as_str() {
            "max_versions" => {
                u.max_versions = Some(
                    v.as_i64()
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| ApiError::BadRequest("max_versions must be a number ≥ 0".into()))?,
                )
            }
            "cas_required" => {
                u.cas_required =
                    Some(v.as_bool().ok_or_else(|| ApiError::BadRequest("cas_required must be true or false".into()))?)
            }
            "delete_version_after" => u.delete_version_after_ms = Some(super::parse_vault_duration(k, v)?),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown field {other:?}: expected max_versions, cas_required or delete_version_after"
                )));
            }
        }
    }
    Ok(u)
}
