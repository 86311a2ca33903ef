//! `JitStore` for SQLite. Every transition is a compare-and-set on the
//! current state inside the single writer, so racing approvals, revocations
//! and expiries resolve to exactly one outcome.

use std::collections::BTreeMap;

use crate::args;
use crate::sql::{Db, Row, map_opt, map_rows};
use async_trait::async_trait;
use latch_audit::AuditDraft;
use latch_core::{PrincipalKind, RequestState, Timestamp};
use serde_json::json;

use crate::model::*;
use crate::{JitStore, Result, StoreError, SweepAudit};
use crate::{SqlStore, WriteCtx};

const REQ_COLS: &str = "id, requester_id, requester_kind, requester_name, role, reason, ticket, duration_ms, state, \
     breakglass, approvals_required, policy_hash, context, decision, created_at, pending_until, decided_at, decided_by, \
     decision_note, grant_id, reviewed_at, reviewed_by, review_comment";
const GRANT_COLS: &str = "id, request_id, principal_id, principal_kind, principal_name, role, breakglass, starts_at, \
     expires_at, state, ended_at, revoked_by, revoke_reason";
const TOKEN_COLS: &str = "jti, grant_id, kid, audience, issued_at, expires_at, revoked_at";

/// A token joined with its grant, columns in `TOKEN_COLS`, then `GRANT_COLS` order.
static TOKEN_WITH_GRANT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let prefixed = |cols: &str, t: &str| cols.split(", ").map(|c| format!("{t}.{c}")).collect::<Vec<_>>().join(", ");
    format!(
        "SELECT {}, {} FROM tokens t JOIN grants g ON g.id = t.grant_id WHERE t.jti = ?1",
        prefixed(TOKEN_COLS, "t"),
        prefixed(GRANT_COLS, "g")
    )
});

fn conv(i: usize, what: &str) -> StoreError {
    StoreError::Backend(format!("column {i}: bad {what}"))
}

fn kind(r: &Row, i: usize) -> Result<PrincipalKind> {
    PrincipalKind::parse(&r.get::<String>(i)?).ok_or_else(|| conv(i, "principal kind"))
}

fn ts(r: &Row, i: usize) -> Result<Option<Timestamp>> {
    Ok(r.get::<Option<i64>>(i)?.map(Timestamp))
}

fn json_col(r: &Row, i: usize) -> Result<serde_json::Value> {
    let s: String = r.get(i)?;
    serde_json::from_str(&s).map_err(|_| conv(i, "json"))
}

fn request_from_row(r: &Row) -> Result<AccessRequest> {
    Ok(AccessRequest {
        id: r.get(0)?,
        requester_id: r.get(1)?,
        requester_kind: kind(r, 2)?,
        requester_name: r.get(3)?,
        role: r.get(4)?,
        reason: r.get(5)?,
        ticket: r.get(6)?,
        duration_ms: r.get(7)?,
        state: RequestState::parse(&r.get::<String>(8)?).ok_or_else(|| conv(8, "state"))?,
        breakglass: r.get(9)?,
        approvals_required: r.get(10)?,
        policy_hash: r.get(11)?,
        context: json_col(r, 12)?,
        decision: json_col(r, 13)?,
        created_at: Timestamp(r.get(14)?),
        pending_until: Timestamp(r.get(15)?),
        decided_at: ts(r, 16)?,
        decided_by: r.get(17)?,
        decision_note: r.get(18)?,
        grant_id: r.get(19)?,
        reviewed_at: ts(r, 20)?,
        reviewed_by: r.get(21)?,
        review_comment: r.get(22)?,
        approvals: Vec::new(),
    })
}

fn grant_from_row(r: &Row) -> Result<Grant> {
    grant_from_row_at(r, 0)
}

/// A grant whose columns start at index `o` of the row.
fn grant_from_row_at(r: &Row, o: usize) -> Result<Grant> {
    Ok(Grant {
        id: r.get(o)?,
        request_id: r.get(o + 1)?,
        principal_id: r.get(o + 2)?,
        principal_kind: kind(r, o + 3)?,
        principal_name: r.get(o + 4)?,
        role: r.get(o + 5)?,
        breakglass: r.get(o + 6)?,
        starts_at: Timestamp(r.get(o + 7)?),
        expires_at: Timestamp(r.get(o + 8)?),
        state: GrantState::parse(&r.get::<String>(o + 9)?).ok_or_else(|| conv(o + 9, "grant state"))?,
        ended_at: ts(r, o + 10)?,
        revoked_by: r.get(o + 11)?,
        revoke_reason: r.get(o + 12)?,
    })
}

fn token_from_row(r: &Row) -> Result<IssuedToken> {
    Ok(IssuedToken {
        jti: r.get(0)?,
        grant_id: r.get(1)?,
        kid: r.get(2)?,
        audience: r.get(3)?,
        issued_at: Timestamp(r.get(4)?),
        expires_at: Timestamp(r.get(5)?),
        revoked_at: ts(r, 6)?,
    })
}

fn approvals_of(c: &dyn Db, id: &str) -> Result<Vec<Approval>> {
    map_rows(
        c,
        "SELECT approver_id, approver_name, comment, created_at FROM approvals WHERE request_id = ?1
         ORDER BY created_at, approver_name",
        args![id],
        |r| {
            Ok(Approval {
                approver_id: r.get(0)?,
                approver_name: r.get(1)?,
                comment: r.get(2)?,
                created_at: Timestamp(r.get(3)?),
            })
        },
    )
}

fn load_request(c: &dyn Db, id: &str) -> Result<AccessRequest> {
    let sql = format!("SELECT {REQ_COLS} FROM access_requests WHERE id = ?1");
    let mut req = map_opt(c, &sql, args![id], request_from_row)?.ok_or_else(|| StoreError::not_found("request", id))?;
    req.approvals = approvals_of(c, id)?;
    Ok(req)
}

fn load_grant(c: &dyn Db, id: &str) -> Result<Option<Grant>> {
    let sql = format!("SELECT {GRANT_COLS} FROM grants WHERE id = ?1");
    map_opt(c, &sql, args![id], grant_from_row)
}

fn insert_grant(ctx: &WriteCtx<'_>, g: &Grant) -> Result<()> {
    ctx.exec(
        &format!(
            "INSERT INTO grants ({GRANT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, NULL, NULL)"
        ),
        args![
            g.id,
            g.request_id,
            g.principal_id,
            g.principal_kind.as_str(),
            g.principal_name,
            g.role,
            g.breakglass,
            g.starts_at,
            g.expires_at,
            GrantState::Active.as_str()
        ],
    )?;
    Ok(())
}

/// Moves a request from `from` to `to`, failing if another transition won.
fn transition(ctx: &WriteCtx<'_>, id: &str, from: RequestState, to: RequestState, by: &str, note: &str) -> Result<()> {
    if !from.can_become(to) {
        return Err(StoreError::Precondition(format!("a request cannot go from {} to {}", from.as_str(), to.as_str())));
    }
    let n = ctx.exec(
        "UPDATE access_requests SET state = ?3, decided_at = ?4, decided_by = ?5, decision_note = ?6
             WHERE id = ?1 AND state = ?2",
        args![id, from.as_str(), to.as_str(), ctx.now(), by, note],
    )?;
    if n == 0 {
        return Err(StoreError::Conflict(format!("request {id} is no longer {}", from.as_str())));
    }
    Ok(())
}

fn require_pending(req: &AccessRequest, now: Timestamp) -> Result<()> {
    if req.state != RequestState::Pending {
        return Err(StoreError::Conflict(format!("request {} is {}, not pending", req.id, req.state.as_str())));
    }
    if now >= req.pending_until {
        return Err(StoreError::Conflict(format!("request {} has timed out waiting for approval", req.id)));
    }
    Ok(())
}

#[async_trait]
impl JitStore for SqlStore {
    async fn active_policy(&self) -> Result<Option<PolicyVersion>> {
        self.read(|c| {
            map_opt(
                c,
                "SELECT hash, files, created_at, created_by FROM policy_versions WHERE active = TRUE",
                args![],
                |r| {
                    let files: String = r.get(1)?;
                    Ok(PolicyVersion {
                        hash: r.get(0)?,
                        files: serde_json::from_str::<BTreeMap<String, String>>(&files)
                            .map_err(|_| conv(1, "files"))?,
                        created_at: Timestamp(r.get(2)?),
                        created_by: r.get(3)?,
                    })
                },
            )
        })
        .await
    }

    async fn apply_policy(&self, v: PolicyVersion, audit: AuditDraft) -> Result<()> {
        self.write(move |ctx| {
            let files = serde_json::to_string(&v.files).map_err(|e| StoreError::Backend(e.to_string()))?;
            ctx.exec("UPDATE policy_versions SET active = FALSE WHERE active = TRUE", args![])?;
            ctx.exec(
                    "INSERT INTO policy_versions (hash, files, created_at, created_by, active) VALUES (?1, ?2, ?3, ?4, TRUE)
                     ON CONFLICT (hash) DO UPDATE SET active = TRUE",
                    args![v.hash, files, v.created_at, v.created_by],
                )?;
            // Other nodes reload the policy when they hear of this.
            ctx.invalidate()?;
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn create_request(
        &self,
        req: AccessRequest,
        grant: Option<Grant>,
        audit: AuditDraft,
    ) -> Result<AccessRequest> {
        self.write(move |ctx| {
            let state = req.state;
            if (state == RequestState::Active) != grant.is_some() {
                return Err(StoreError::Precondition("an active request is created with its grant, and only then".into()));
            }
            let decided = state != RequestState::Pending;
            ctx.exec(
                    &format!(
                        "INSERT INTO access_requests ({REQ_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
                         ?14, ?15, ?16, ?17, ?18, NULL, ?19, NULL, NULL, NULL)"
                    ),
                    args![
                        req.id,
                        req.requester_id,
                        req.requester_kind.as_str(),
                        req.requester_name,
                        req.role,
                        req.reason,
                        req.ticket,
                        req.duration_ms,
                        state.as_str(),
                        req.breakglass,
                        req.approvals_required,
                        req.policy_hash,
                        req.context.to_string(),
                        req.decision.to_string(),
                        req.created_at,
                        req.pending_until,
                        decided.then(|| ctx.now().millis()),
                        decided.then_some("policy"),
                        grant.as_ref().map(|g| g.id.clone()),
                    ],
                )
                ?;
            if let Some(g) = &grant {
                insert_grant(ctx, g)?;
            }
            ctx.audit(audit)?;
            // Return what was written rather than reading it back: the writer
            // thread is the bottleneck of the request path.
            let now = ctx.now();
            Ok(AccessRequest {
                decided_at: decided.then_some(now),
                decided_by: decided.then(|| "policy".to_string()),
                grant_id: grant.as_ref().map(|g| g.id.clone()),
                ..req
            })
        })
        .await
    }

    async fn get_request(&self, id: &str) -> Result<Option<AccessRequest>> {
        let id = id.to_string();
        self.read(move |c| match load_request(c, &id) {
            Ok(r) => Ok(Some(r)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn list_requests(&self, f: RequestFilter) -> Result<Vec<AccessRequest>> {
        self.scan(move |c| {
            let sql = format!(
                "SELECT {REQ_COLS} FROM access_requests WHERE (CAST(?1 AS TEXT) IS NULL OR state = ?1) AND (CAST(?2 AS TEXT) IS NULL OR requester_id = ?2)
                 ORDER BY created_at DESC, id LIMIT ?3"
            );
            let limit = i64::try_from(f.limit.clamp(1, 10_000)).unwrap_or(10_000);
            let rows = map_rows(c, &sql, args![f.state.map(|s| s.as_str()), f.requester_id, limit], request_from_row)?;
            let mut out = Vec::new();
            for mut r in rows {
                if f.roles.as_ref().is_some_and(|roles| !roles.contains(&r.role)) {
                    continue;
                }
                r.approvals = approvals_of(c, &r.id)?;
                out.push(r);
            }
            Ok(out)
        })
        .await
    }

    async fn approve_request(
        &self,
        id: &str,
        approval: Approval,
        grant_id: String,
        max_duration_ms: i64,
        audit: AuditDraft,
        grant_audit: AuditDraft,
    ) -> Result<ApprovalOutcome> {
        let id = id.to_string();
        self.write(move |ctx| {
            let req = load_request(ctx.db(), &id)?;
            require_pending(&req, ctx.now())?;
            if approval.approver_id == req.requester_id {
                return Err(StoreError::Precondition("the requester cannot approve their own request".into()));
            }
            ctx.exec(
                    "INSERT INTO approvals (request_id, approver_id, approver_name, comment, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    args![id, approval.approver_id, approval.approver_name, approval.comment, ctx.now()],
                )
                .map_err(|e| match e {
                    StoreError::Conflict(_) => StoreError::Conflict(format!("you already approved request {id}")),
                    other => other,
                })?;
            let have: i64 = ctx
                .db()
                .query_opt("SELECT COUNT(*) FROM approvals WHERE request_id = ?1", args![&id])?
                .map_or(Ok(0), |r| r.get(0))?;
            let need = req.approvals_required;
            let mut details = audit.details.clone();
            if let Some(m) = details.as_object_mut() {
                m.insert("approvals".into(), json!(have));
                m.insert("required".into(), json!(need));
            }
            ctx.audit(audit.details(details))?;
            if have < need {
                return Ok(ApprovalOutcome::Recorded { have, need });
            }
            transition(ctx, &id, RequestState::Pending, RequestState::Active, &approval.approver_name, "approved")?;
            ctx.exec("UPDATE access_requests SET grant_id = ?2 WHERE id = ?1", args![id, grant_id])?;
            let now = ctx.now();
            // Never longer than the role's maximum in force now (it may have been lowered since the request).
            let duration_ms = req.duration_ms.min(max_duration_ms);
            let format_ms =
                |ms: i64| latch_core::format_duration(std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
            let grant = Grant {
                id: grant_id,
                request_id: req.id.clone(),
                principal_id: req.requester_id.clone(),
                principal_kind: req.requester_kind,
                principal_name: req.requester_name.clone(),
                role: req.role.clone(),
                breakglass: false,
                starts_at: now,
                expires_at: Timestamp(now.millis().saturating_add(duration_ms)),
                state: GrantState::Active,
                ended_at: None,
                revoked_by: None,
                revoke_reason: None,
            };
            insert_grant(ctx, &grant)?;
            let mut details = grant_audit.details.clone();
            if let Some(m) = details.as_object_mut() {
                m.insert("grant_id".into(), json!(grant.id));
                m.insert("expires_at".into(), json!(grant.expires_at.to_rfc3339()));
                m.insert("duration".into(), json!(format_ms(duration_ms)));
                if duration_ms < req.duration_ms {
                    m.insert("clipped".into(), json!(true));
                    m.insert("requested_duration".into(), json!(format_ms(req.duration_ms)));
                    m.insert("max_duration".into(), json!(format_ms(max_duration_ms)));
                }
            }
            ctx.audit(grant_audit.details(details))?;
            Ok(ApprovalOutcome::Granted(grant))
        })
        .await
    }

    async fn close_request(
        &self,
        id: &str,
        to: RequestState,
        by: &str,
        note: &str,
        audit: AuditDraft,
    ) -> Result<AccessRequest> {
        let (id, by, note) = (id.to_string(), by.to_string(), note.to_string());
        self.write(move |ctx| {
            let req = load_request(ctx.db(), &id)?;
            if req.state != RequestState::Pending {
                return Err(StoreError::Conflict(format!("request {id} is {}, not pending", req.state.as_str())));
            }
            transition(ctx, &id, RequestState::Pending, to, &by, &note)?;
            ctx.audit(audit)?;
            load_request(ctx.db(), &id)
        })
        .await
    }

    async fn review_request(&self, id: &str, by: &str, comment: &str, audit: AuditDraft) -> Result<AccessRequest> {
        let (id, by, comment) = (id.to_string(), by.to_string(), comment.to_string());
        self.write(move |ctx| {
            let req = load_request(ctx.db(), &id)?;
            if !req.breakglass {
                return Err(StoreError::Precondition(format!("request {id} is not a break-glass request")));
            }
            let n = ctx.exec(
                "UPDATE access_requests SET reviewed_at = ?2, reviewed_by = ?3, review_comment = ?4
                     WHERE id = ?1 AND reviewed_at IS NULL",
                args![id, ctx.now(), by, comment],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("request {id} was already reviewed")));
            }
            ctx.audit(audit)?;
            load_request(ctx.db(), &id)
        })
        .await
    }

    async fn get_grant(&self, id: &str) -> Result<Option<Grant>> {
        let id = id.to_string();
        self.read(move |c| load_grant(c, &id)).await
    }

    async fn list_grants(&self, principal_id: Option<&str>, live_at: Option<Timestamp>) -> Result<Vec<Grant>> {
        let principal_id = principal_id.map(str::to_string);
        self.scan(move |c| {
            let sql = format!(
                "SELECT {GRANT_COLS} FROM grants WHERE (CAST(?1 AS TEXT) IS NULL OR principal_id = ?1)
                 AND (CAST(?2 AS BIGINT) IS NULL OR (state = 'active' AND expires_at > ?2)) ORDER BY starts_at DESC, id LIMIT 10000"
            );
            map_rows(c, &sql, args![principal_id, live_at], grant_from_row)
        })
        .await
    }

    async fn revoke_grant(&self, id: &str, by: &str, reason: &str, audit: AuditDraft) -> Result<(Grant, Vec<String>)> {
        let (id, by, reason) = (id.to_string(), by.to_string(), reason.to_string());
        self.write(move |ctx| {
            let g = load_grant(ctx.db(), &id)?.ok_or_else(|| StoreError::not_found("grant", &id))?;
            if g.state != GrantState::Active {
                return Err(StoreError::Conflict(format!("grant {id} is already {}", g.state.as_str())));
            }
            let now = ctx.now().millis();
            ctx.exec(
                "UPDATE grants SET state = 'revoked', ended_at = ?2, revoked_by = ?3, revoke_reason = ?4
                     WHERE id = ?1 AND state = 'active'",
                args![id, now, by, reason],
            )?;
            transition(ctx, &g.request_id, RequestState::Active, RequestState::Revoked, &by, &reason)?;
            let jtis: Vec<String> = map_rows(
                ctx.db(),
                "SELECT jti FROM tokens WHERE grant_id = ?1 AND revoked_at IS NULL ORDER BY jti",
                args![&id],
                |r| r.get(0),
            )?;
            ctx.exec("UPDATE tokens SET revoked_at = ?2 WHERE grant_id = ?1 AND revoked_at IS NULL", args![id, now])?;
            let serials = crate::ops::ssh::revoke_certs_of_grant(ctx, &id)?;
            let leases = crate::ops::db_creds::revoke_db_creds_of_grant(ctx, &id)?;
            let mut details = audit.details.clone();
            if let Some(m) = details.as_object_mut() {
                m.insert("tokens_revoked".into(), json!(jtis));
                m.insert("ssh_certs_revoked".into(), json!(serials));
                if !leases.is_empty() {
                    m.insert("db_leases_revoking".into(), json!(leases));
                }
            }
            ctx.invalidate()?;
            ctx.audit(audit.details(details))?;
            let g = load_grant(ctx.db(), &id)?.ok_or_else(|| StoreError::not_found("grant", &id))?;
            Ok((g, jtis))
        })
        .await
    }

    async fn sweep(
        &self,
        now: Timestamp,
        expire: SweepAudit<Grant>,
        timeout: SweepAudit<AccessRequest>,
    ) -> Result<Swept> {
        self.write(move |ctx| {
            let due: Vec<Grant> = {
                let sql =
                    format!("SELECT {GRANT_COLS} FROM grants WHERE state = 'active' AND expires_at <= ?1 LIMIT 1000");
                map_rows(ctx.db(), &sql, args![now], grant_from_row)?
            };
            let mut swept = Swept::default();
            if !due.is_empty() {
                ctx.invalidate()?;
            }
            for g in due {
                ctx.exec(
                    "UPDATE grants SET state = 'expired', ended_at = ?2 WHERE id = ?1 AND state = 'active'",
                    args![g.id, now],
                )?;
                // Its certificates join the revocation list, as on revocation.
                crate::ops::ssh::revoke_certs_of_grant(ctx, &g.id)?;
                // Its database roles are queued for dropping.
                let leases = crate::ops::db_creds::revoke_db_creds_of_grant(ctx, &g.id)?;
                transition(ctx, &g.request_id, RequestState::Active, RequestState::Expired, "system", "expired")?;
                let mut ev = expire(&g);
                if !leases.is_empty() {
                    let mut details = ev.details.clone();
                    if let Some(m) = details.as_object_mut() {
                        m.insert("db_leases_revoking".into(), json!(leases));
                    }
                    ev = ev.details(details);
                }
                ctx.audit(ev)?;
                swept.expired.push(g);
            }
            let stale: Vec<AccessRequest> = {
                let sql = format!(
                    "SELECT {REQ_COLS} FROM access_requests WHERE state = 'pending' AND pending_until <= ?1 LIMIT 1000"
                );
                map_rows(ctx.db(), &sql, args![now], request_from_row)?
            };
            for r in stale {
                transition(ctx, &r.id, RequestState::Pending, RequestState::TimedOut, "system", "no decision in time")?;
                ctx.audit(timeout(&r))?;
                swept.timed_out.push(r);
            }
            Ok(swept)
        })
        .await
    }

    async fn record_token(&self, t: IssuedToken, audit: AuditDraft) -> Result<()> {
        self.write(move |ctx| {
            let g = load_grant(ctx.db(), &t.grant_id)?.ok_or_else(|| StoreError::not_found("grant", &t.grant_id))?;
            // Checked in the same transaction as the insert: a revocation
            // committed a moment earlier cannot be missed.
            if !g.is_live(ctx.now()) {
                return Err(StoreError::Conflict(format!("grant {} is not active", g.id)));
            }
            if t.expires_at > g.expires_at {
                return Err(StoreError::Precondition("a token cannot outlive its grant".into()));
            }
            ctx.exec(
                &format!("INSERT INTO tokens ({TOKEN_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)"),
                args![t.jti, t.grant_id, t.kid, t.audience, t.issued_at, t.expires_at],
            )?;
            ctx.audit(audit)?;
            Ok(())
        })
        .await
    }

    async fn get_token(&self, jti: &str) -> Result<Option<(IssuedToken, Grant)>> {
        let ticket = match &self.cache {
            Some(cache) => {
                if let Some(hit) = cache.token(jti) {
                    return Ok(Some(hit));
                }
                cache.ticket()
            }
            None => None,
        };
        let key = jti.to_string();
        // One query on the introspection hot path: the token with its grant.
        let found = self
            .read(move |c| {
                map_opt(c, &TOKEN_WITH_GRANT, args![&key], |r| {
                    let t = token_from_row(r)?;
                    let g = grant_from_row_at(r, TOKEN_COLS.split(", ").count())?;
                    Ok((t, g))
                })
            })
            .await?;
        if let (Some(cache), Some(ticket), Some(v)) = (&self.cache, ticket, &found) {
            cache.put_token(jti, ticket, v.clone());
        }
        Ok(found)
    }

    async fn revoked_tokens(&self, now: Timestamp) -> Result<Vec<IssuedToken>> {
        self.scan(move |c| {
            let sql = format!(
                "SELECT {TOKEN_COLS} FROM tokens WHERE revoked_at IS NOT NULL AND expires_at > ?1 ORDER BY revoked_at, jti"
            );
            map_rows(c, &sql, args![now], token_from_row)
        })
        .await
    }

    async fn key_in_use(&self, kid: &str, now: Timestamp) -> Result<bool> {
        let kid = kid.to_string();
        self.read(move |c| {
            Ok(c.query_opt("SELECT 1 FROM tokens WHERE kid = ?1 AND expires_at > ?2 LIMIT 1", args![kid, now])?
                .is_some())
        })
        .await
    }

    async fn cursor(&self, name: &str) -> Result<i64> {
        let name = name.to_string();
        self.read(move |c| {
            Ok(map_opt(c, "SELECT seq FROM delivery_cursors WHERE name = ?1", args![&name], |r| r.get(0))?.unwrap_or(0))
        })
        .await
    }

    async fn set_cursor(&self, name: &str, seq: i64) -> Result<()> {
        let name = name.to_string();
        self.write(move |ctx| {
            ctx.exec(
                    "INSERT INTO delivery_cursors (name, seq) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
                    args![name, seq],
                )?;
            Ok(())
        })
        .await
    }
}
