//! `SecretStore`: the seal configuration and KV v2 secrets, already
//! encrypted by the caller. Version numbering, check-and-set, pruning beyond
//! `max_versions`, soft delete and destroy happen here, each in one
//! transaction with its audit event.

use async_trait::async_trait;
use latch_audit::AuditDraft;

use crate::args;
use crate::model::*;
use crate::sql::{Db, Row, map_opt, map_rows};
use crate::{Result, SecretStore, SqlStore, StoreError, WriteCtx};

/// Versions kept when neither the secret nor its mount says.
pub const DEFAULT_MAX_VERSIONS: i64 = 10;

const META_COLS: &str = "mount, path, current_version, oldest_version, max_versions, cas_required, \
                         delete_version_after_ms, custom_metadata, created_at, updated_at";
const VERSION_COLS: &str = "version, created_at, deleted_at, destroyed, master_version, wrapped_key, ciphertext";
const MOUNT_COLS: &str = "path, description, accessor, max_versions, cas_required, delete_version_after_ms, created_at";

fn meta_from_row(r: &Row) -> Result<KvMeta> {
    Ok(KvMeta {
        mount: r.get(0)?,
        path: r.get(1)?,
        current_version: r.get(2)?,
        oldest_version: r.get(3)?,
        max_versions: r.get(4)?,
        cas_required: r.get(5)?,
        delete_version_after_ms: r.get(6)?,
        custom_metadata: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

fn version_from_row(r: &Row) -> Result<KvVersion> {
    let envelope = match (r.get::<Option<i64>>(4)?, r.get::<Option<String>>(5)?, r.get::<Option<String>>(6)?) {
        (Some(master_version), Some(wrapped_key), Some(ciphertext)) => {
            Some(StoredEnvelope { master_version, wrapped_key, ciphertext })
        }
        _ => None,
    };
    Ok(KvVersion { version: r.get(0)?, created_at: r.get(1)?, deleted_at: r.get(2)?, destroyed: r.get(3)?, envelope })
}

fn mount_from_row(r: &Row) -> Result<KvMount> {
    Ok(KvMount {
        path: r.get(0)?,
        description: r.get(1)?,
        accessor: r.get(2)?,
        max_versions: r.get(3)?,
        cas_required: r.get(4)?,
        delete_version_after_ms: r.get(5)?,
        created_at: r.get(6)?,
    })
}

fn load_mount(db: &dyn Db, path: &str) -> Result<KvMount> {
    map_opt(db, &format!("SELECT {MOUNT_COLS} FROM kv_mounts WHERE path = ?1"), args![path], mount_from_row)?
        .ok_or_else(|| StoreError::not_found("secrets engine", path))
}

fn load_meta(db: &dyn Db, mount: &str, path: &str) -> Result<Option<KvMeta>> {
    map_opt(
        db,
        &format!("SELECT {META_COLS} FROM kv_secrets WHERE mount = ?1 AND path = ?2"),
        args![mount, path],
        meta_from_row,
    )
}

fn must_meta(db: &dyn Db, mount: &str, path: &str) -> Result<KvMeta> {
    load_meta(db, mount, path)?.ok_or_else(|| StoreError::not_found("secret", format!("{mount}/{path}")))
}

/// The metadata row, created empty (from the mount's defaults) if absent.
fn meta_or_new(ctx: &WriteCtx<'_>, mount: &str, path: &str) -> Result<KvMeta> {
    if let Some(m) = load_meta(ctx.db(), mount, path)? {
        return Ok(m);
    }
    load_mount(ctx.db(), mount)?;
    ctx.exec(
        "INSERT INTO kv_secrets (mount, path, current_version, oldest_version, max_versions, cas_required,
             delete_version_after_ms, custom_metadata, created_at, updated_at)
         VALUES (?1, ?2, 0, 0, 0, FALSE, 0, '{}', ?3, ?3)",
        args![mount, path, ctx.now()],
    )?;
    must_meta(ctx.db(), mount, path)
}

/// Versions kept for a secret: its own setting, else its mount's, else the default.
fn max_versions(meta: &KvMeta, mount: &KvMount) -> i64 {
    [meta.max_versions, mount.max_versions].into_iter().find(|&v| v > 0).unwrap_or(DEFAULT_MAX_VERSIONS)
}

/// `versions` that exist for the secret, or `NotFound` naming the first that does not.
fn existing_versions(db: &dyn Db, mount: &str, path: &str, versions: &[i64]) -> Result<Vec<i64>> {
    let have: Vec<i64> =
        map_rows(db, "SELECT version FROM kv_versions WHERE mount = ?1 AND path = ?2", args![mount, path], |r| {
            r.get(0)
        })?;
    Ok(versions.iter().copied().filter(|v| have.contains(v)).collect())
}

#[async_trait]
impl SecretStore for SqlStore {
    async fn seal_config(&self) -> Result<Option<SealConfig>> {
        self.read(|db| {
            map_opt(
                db,
                "SELECT shares, threshold, keyring, active_version, created_at, updated_at FROM seal_config WHERE id = 1",
                args![],
                |r| {
                    Ok(SealConfig {
                        shares: r.get(0)?,
                        threshold: r.get(1)?,
                        keyring: r.get(2)?,
                        active_version: r.get(3)?,
                        created_at: r.get(4)?,
                        updated_at: r.get(5)?,
                    })
                },
            )
        })
        .await
    }

    async fn init_seal(&self, c: SealConfig, audit: AuditDraft) -> Result<()> {
        self.write(move |ctx| {
            let n = ctx.exec(
                "INSERT INTO seal_config (id, shares, threshold, keyring, active_version, created_at, updated_at)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (id) DO NOTHING",
                args![c.shares, c.threshold, c.keyring, c.active_version, ctx.now()],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict("latch is already initialized".into()));
            }
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn set_keyring(&self, keyring: String, active: i64, expect_active: i64, audit: AuditDraft) -> Result<()> {
        self.write(move |ctx| {
            let n = ctx.exec(
                "UPDATE seal_config SET keyring = ?1, active_version = ?2, updated_at = ?3
                 WHERE id = 1 AND active_version = ?4",
                args![keyring, active, ctx.now(), expect_active],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict(
                    "the keyring changed meanwhile (another master-key rotation?): try again".into(),
                ));
            }
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn create_mount(&self, m: KvMount, audit: AuditDraft) -> Result<KvMount> {
        self.write(move |ctx| {
            let n = ctx.exec(
                "INSERT INTO kv_mounts (path, description, accessor, max_versions, cas_required,
                     delete_version_after_ms, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (path) DO NOTHING",
                args![
                    m.path,
                    m.description,
                    m.accessor,
                    m.max_versions,
                    m.cas_required,
                    m.delete_version_after_ms,
                    ctx.now()
                ],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("path is already in use at {}/", m.path)));
            }
            ctx.audit(audit)?;
            load_mount(ctx.db(), &m.path)
        })
        .await
    }

    async fn list_mounts(&self) -> Result<Vec<KvMount>> {
        self.read(|db| {
            map_rows(db, &format!("SELECT {MOUNT_COLS} FROM kv_mounts ORDER BY path"), args![], mount_from_row)
        })
        .await
    }

    async fn tune_mount(&self, path: &str, u: KvMetaUpdate, audit: AuditDraft) -> Result<KvMount> {
        let path = path.to_string();
        self.write(move |ctx| {
            let m = load_mount(ctx.db(), &path)?;
            ctx.exec(
                "UPDATE kv_mounts SET max_versions = ?2, cas_required = ?3, delete_version_after_ms = ?4 WHERE path = ?1",
                args![
                    path,
                    u.max_versions.unwrap_or(m.max_versions),
                    u.cas_required.unwrap_or(m.cas_required),
                    u.delete_version_after_ms.unwrap_or(m.delete_version_after_ms)
                ],
            )?;
            ctx.audit(audit)?;
            load_mount(ctx.db(), &path)
        })
        .await
    }

    async fn delete_mount(&self, path: &str, audit: AuditDraft) -> Result<()> {
        let path = path.to_string();
        self.write(move |ctx| {
            load_mount(ctx.db(), &path)?;
            ctx.exec("DELETE FROM kv_versions WHERE mount = ?1", args![path])?;
            ctx.exec("DELETE FROM kv_secrets WHERE mount = ?1", args![path])?;
            ctx.exec("DELETE FROM kv_mounts WHERE path = ?1", args![path])?;
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn kv_put(&self, w: KvWrite, audit: AuditDraft) -> Result<(KvMeta, KvVersion)> {
        self.write(move |ctx| {
            let mount = load_mount(ctx.db(), &w.mount)?;
            let meta = meta_or_new(ctx, &w.mount, &w.path)?;
            match w.cas {
                None if meta.cas_required || mount.cas_required => {
                    return Err(StoreError::Precondition(
                        "check-and-set parameter required for this call: send options.cas".into(),
                    ));
                }
                Some(cas) if cas != meta.current_version => {
                    return Err(StoreError::Precondition(format!(
                        "check-and-set parameter did not match the current version (cas = {cas}, current version = {})",
                        meta.current_version
                    )));
                }
                _ => {}
            }
            let version = meta.current_version + 1;
            let e = &w.envelope;
            ctx.exec(
                "INSERT INTO kv_versions (mount, path, version, created_at, deleted_at, destroyed, master_version,
                     wrapped_key, ciphertext)
                 VALUES (?1, ?2, ?3, ?4, NULL, FALSE, ?5, ?6, ?7)",
                args![w.mount, w.path, version, ctx.now(), e.master_version, e.wrapped_key, e.ciphertext],
            )?;
            let keep = max_versions(&meta, &mount);
            let oldest = (version - keep + 1).max(meta.oldest_version.max(1));
            ctx.exec(
                "DELETE FROM kv_versions WHERE mount = ?1 AND path = ?2 AND version < ?3",
                args![w.mount, w.path, oldest],
            )?;
            ctx.exec(
                "UPDATE kv_secrets SET current_version = ?3, oldest_version = ?4, updated_at = ?5
                 WHERE mount = ?1 AND path = ?2",
                args![w.mount, w.path, version, oldest, ctx.now()],
            )?;
            ctx.audit(audit.detail("version", version))?;
            let meta = must_meta(ctx.db(), &w.mount, &w.path)?;
            let v = map_opt(
                ctx.db(),
                &format!("SELECT {VERSION_COLS} FROM kv_versions WHERE mount = ?1 AND path = ?2 AND version = ?3"),
                args![w.mount, w.path, version],
                version_from_row,
            )?
            .ok_or_else(|| StoreError::Backend("written version vanished".into()))?;
            Ok((meta, v))
        })
        .await
    }

    async fn kv_get(&self, mount: &str, path: &str) -> Result<Option<(KvMeta, Vec<KvVersion>)>> {
        let (mount, path) = (mount.to_string(), path.to_string());
        self.read(move |db| {
            let Some(meta) = load_meta(db, &mount, &path)? else { return Ok(None) };
            let versions = map_rows(
                db,
                "SELECT version, created_at, deleted_at, destroyed, NULL, NULL, NULL FROM kv_versions
                 WHERE mount = ?1 AND path = ?2 ORDER BY version",
                args![mount, path],
                version_from_row,
            )?;
            Ok(Some((meta, versions)))
        })
        .await
    }

    async fn kv_version(&self, mount: &str, path: &str, version: Option<i64>) -> Result<Option<(KvMeta, KvVersion)>> {
        let (mount, path) = (mount.to_string(), path.to_string());
        self.read(move |db| {
            let Some(meta) = load_meta(db, &mount, &path)? else { return Ok(None) };
            let v = map_opt(
                db,
                &format!("SELECT {VERSION_COLS} FROM kv_versions WHERE mount = ?1 AND path = ?2 AND version = ?3"),
                args![mount, path, version.unwrap_or(meta.current_version)],
                version_from_row,
            )?;
            Ok(v.map(|v| (meta, v)))
        })
        .await
    }

    async fn kv_paths(&self, mount: &str, prefix: &str) -> Result<Vec<String>> {
        let (mount, prefix) = (mount.to_string(), prefix.to_string());
        self.read(move |db| {
            // Prefix match by range, not LIKE: paths may contain `%` and `_`.
            let upper = format!("{prefix}\u{10FFFF}");
            map_rows(
                db,
                "SELECT path FROM kv_secrets WHERE mount = ?1 AND path >= ?2 AND path < ?3 ORDER BY path",
                args![mount, prefix, upper],
                |r| r.get(0),
            )
        })
        .await
    }

    async fn kv_set_deleted(
        &self,
        mount: &str,
        path: &str,
        versions: Vec<i64>,
        deleted: bool,
        audit: AuditDraft,
    ) -> Result<()> {
        let (mount, path) = (mount.to_string(), path.to_string());
        self.write(move |ctx| {
            must_meta(ctx.db(), &mount, &path)?;
            let versions = existing_versions(ctx.db(), &mount, &path, &versions)?;
            for v in &versions {
                if deleted {
                    ctx.exec(
                        "UPDATE kv_versions SET deleted_at = ?4
                         WHERE mount = ?1 AND path = ?2 AND version = ?3 AND deleted_at IS NULL",
                        args![mount, path, v, ctx.now()],
                    )?;
                } else {
                    ctx.exec(
                        "UPDATE kv_versions SET deleted_at = NULL WHERE mount = ?1 AND path = ?2 AND version = ?3",
                        args![mount, path, v],
                    )?;
                }
            }
            ctx.exec(
                "UPDATE kv_secrets SET updated_at = ?3 WHERE mount = ?1 AND path = ?2",
                args![mount, path, ctx.now()],
            )?;
            ctx.audit(audit.detail("versions", versions))?;
            Ok(())
        })
        .await
    }

    async fn kv_destroy(&self, mount: &str, path: &str, versions: Vec<i64>, audit: AuditDraft) -> Result<()> {
        let (mount, path) = (mount.to_string(), path.to_string());
        self.write(move |ctx| {
            must_meta(ctx.db(), &mount, &path)?;
            let versions = existing_versions(ctx.db(), &mount, &path, &versions)?;
            for v in &versions {
                ctx.exec(
                    "UPDATE kv_versions SET destroyed = TRUE, master_version = NULL, wrapped_key = NULL, ciphertext = NULL
                     WHERE mount = ?1 AND path = ?2 AND version = ?3",
                    args![mount, path, v],
                )?;
            }
            ctx.exec("UPDATE kv_secrets SET updated_at = ?3 WHERE mount = ?1 AND path = ?2", args![mount, path, ctx.now()])?;
            ctx.audit(audit.detail("versions", versions))?;
            Ok(())
        })
        .await
    }

    async fn kv_update_meta(&self, mount: &str, path: &str, u: KvMetaUpdate, audit: AuditDraft) -> Result<KvMeta> {
        let (mount, path) = (mount.to_string(), path.to_string());
        self.write(move |ctx| {
            let m = meta_or_new(ctx, &mount, &path)?;
            ctx.exec(
                "UPDATE kv_secrets SET max_versions = ?3, cas_required = ?4, delete_version_after_ms = ?5,
                     custom_metadata = ?6, updated_at = ?7
                 WHERE mount = ?1 AND path = ?2",
                args![
                    mount,
                    path,
                    u.max_versions.unwrap_or(m.max_versions),
                    u.cas_required.unwrap_or(m.cas_required),
                    u.delete_version_after_ms.unwrap_or(m.delete_version_after_ms),
                    u.custom_metadata.as_deref().unwrap_or(&m.custom_metadata),
                    ctx.now()
                ],
            )?;
            ctx.audit(audit)?;
            must_meta(ctx.db(), &mount, &path)
        })
        .await
    }

    async fn kv_delete_all(&self, mount: &str, path: &str, audit: AuditDraft) -> Result<()> {
        let (mount, path) = (mount.to_string(), path.to_string());
        self.write(move |ctx| {
            must_meta(ctx.db(), &mount, &path)?;
            ctx.exec("DELETE FROM kv_versions WHERE mount = ?1 AND path = ?2", args![mount, path])?;
            ctx.exec("DELETE FROM kv_secrets WHERE mount = ?1 AND path = ?2", args![mount, path])?;
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn keys_to_rewrap(&self, active: i64, limit: usize) -> Result<Vec<WrappedKey>> {
        self.read(move |db| {
            map_rows(
                db,
                "SELECT mount, path, version, master_version, wrapped_key, ciphertext FROM kv_versions
                 WHERE master_version < ?1 ORDER BY mount, path, version LIMIT ?2",
                args![active, limit as i64],
                |r| {
                    Ok(WrappedKey {
                        mount: r.get(0)?,
                        path: r.get(1)?,
                        version: r.get(2)?,
                        envelope: StoredEnvelope {
                            master_version: r.get(3)?,
                            wrapped_key: r.get(4)?,
                            ciphertext: r.get(5)?,
                        },
                    })
                },
            )
        })
        .await
    }

    async fn store_rewrapped(&self, keys: Vec<(WrappedKey, StoredEnvelope)>) -> Result<u64> {
        self.write(move |ctx| {
            let mut n = 0;
            for (old, new) in &keys {
                n += ctx.exec(
                    "UPDATE kv_versions SET master_version = ?4, wrapped_key = ?5
                     WHERE mount = ?1 AND path = ?2 AND version = ?3 AND master_version = ?6 AND wrapped_key = ?7",
                    args![
                        old.mount,
                        old.path,
                        old.version,
                        new.master_version,
                        new.wrapped_key,
                        old.envelope.master_version,
                        old.envelope.wrapped_key
                    ],
                )?;
            }
            Ok(n)
        })
        .await
    }
}
