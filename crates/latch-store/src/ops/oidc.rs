//! `OidcStore`: pending sign-ins through OpenID Connect providers, external
//! identities linked to users, and just-in-time provisioning.

use async_trait::async_trait;
use latch_core::{PrincipalKind, Timestamp};

use crate::args;
use crate::model::*;
use crate::ops::identity::{find_user, groups_of, insert_session};
use crate::sql::{Row, map_opt};
use crate::{OidcSignInAudit, OidcStore, Result, SqlStore, StoreError};

fn pending_from_row(r: &Row) -> Result<PendingOidcLogin> {
    Ok(PendingOidcLogin {
        state: r.get(0)?,
        provider: r.get(1)?,
        nonce: r.get(2)?,
        code_verifier: r.get(3)?,
        redirect_uri: r.get(4)?,
        expires_at: r.get::<Timestamp>(5)?,
    })
}

#[async_trait]
impl OidcStore for SqlStore {
    async fn begin_oidc_login(&self, l: PendingOidcLogin) -> Result<()> {
        self.write(move |ctx| {
            ctx.exec("DELETE FROM oidc_logins WHERE expires_at < ?1", args![ctx.now()])?;
            ctx.exec(
                "INSERT INTO oidc_logins (state, provider, nonce, code_verifier, redirect_uri, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                args![l.state, l.provider, l.nonce, l.code_verifier, l.redirect_uri, ctx.now(), l.expires_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn take_oidc_login(&self, state: &str) -> Result<Option<PendingOidcLogin>> {
        let state = state.to_string();
        self.write(move |ctx| {
            let found = map_opt(
                ctx.db(),
                "SELECT state, provider, nonce, code_verifier, redirect_uri, expires_at FROM oidc_logins WHERE state = ?1",
                args![state],
                pending_from_row,
            )?;
            if found.is_some() {
                ctx.exec("DELETE FROM oidc_logins WHERE state = ?1", args![state])?;
            }
            Ok(found)
        })
        .await
    }

    async fn oidc_sign_in(
        &self,
        who: OidcSignIn,
        session: NewSession,
        audit: OidcSignInAudit,
    ) -> Result<(OidcSignInOutcome, Session)> {
        self.write(move |ctx| {
            let now = ctx.now();
            let linked: Option<String> = map_opt(
                ctx.db(),
                "SELECT user_id FROM external_identities WHERE provider = ?1 AND subject = ?2",
                args![who.provider, who.subject],
                |r| r.get(0),
            )?;
            let mut out = OidcSignInOutcome::default();
            let (user_id, user_name, disabled) = match linked {
                Some(id) => {
                    let row = map_opt(ctx.db(), "SELECT name, disabled FROM users WHERE id = ?1", args![id], |r| {
                        Ok((r.get::<String>(0)?, r.get::<bool>(1)?))
                    })?
                    .ok_or_else(|| StoreError::Backend(format!("external identity linked to missing user {id}")))?;
                    ctx.exec(
                        "UPDATE external_identities SET last_login_at = ?3 WHERE provider = ?1 AND subject = ?2",
                        args![who.provider, who.subject, now],
                    )?;
                    (id, row.0, row.1)
                }
                None => {
                    if let Some(existing) = find_user(ctx.db(), &who.username)? {
                        let how = map_opt(
                            ctx.db(),
                            "SELECT provider FROM external_identities WHERE user_id = ?1",
                            args![existing.id],
                            |r| r.get::<String>(0),
                        )?
                        .map_or_else(|| "a local user".to_string(), |p| format!("a user from provider {p}"));
                        return Err(StoreError::Precondition(format!(
                            "the name {:?} belongs to {how}, not to this {} identity: an administrator must rename or \
                             remove that user first",
                            who.username, who.provider
                        )));
                    }
                    let id = latch_crypto::new_id("usr").map_err(|e| StoreError::Backend(e.to_string()))?;
                    ctx.exec(
                        "INSERT INTO users (id, name, password_hash, created_at, updated_at) VALUES (?1, ?2, NULL, ?3, ?3)",
                        args![id, who.username, now],
                    )?;
                    ctx.exec(
                        "INSERT INTO external_identities (provider, subject, user_id, created_at, last_login_at)
                         VALUES (?1, ?2, ?3, ?4, ?4)",
                        args![who.provider, who.subject, id, now],
                    )?;
                    out.provisioned = true;
                    (id, who.username.clone(), false)
                }
            };
            if disabled {
                return Err(StoreError::Precondition(format!("user {user_name} is disabled")));
            }
            // The managed groups follow the provider; any other membership is latch's own.
            let current = groups_of(ctx.db(), &user_id)?;
            let mut changed = false;
            for g in &who.managed {
                let gid: Option<String> =
                    map_opt(ctx.db(), "SELECT id FROM groups WHERE name = ?1", args![g], |r| r.get(0))?;
                let want = who.member_of.contains(g);
                let Some(gid) = gid else {
                    if want {
                        out.groups_missing.push(g.clone());
                    }
                    continue;
                };
                let has = current.contains(g);
                if want && !has {
                    ctx.exec(
                        "INSERT INTO group_members (group_id, principal_id, principal_kind, added_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (group_id, principal_id) DO NOTHING",
                        args![gid, user_id, PrincipalKind::User.as_str(), now],
                    )?;
                    out.groups_added.push(g.clone());
                    changed = true;
                } else if !want && has {
                    ctx.exec(
                        "DELETE FROM group_members WHERE group_id = ?1 AND principal_id = ?2",
                        args![gid, user_id],
                    )?;
                    out.groups_removed.push(g.clone());
                    changed = true;
                }
            }
            if changed {
                // Memberships changed: every node's cached principals are stale.
                ctx.invalidate()?;
            }
            out.user_id = user_id.clone();
            out.user_name = user_name;
            let session = NewSession { principal_id: user_id, principal_kind: PrincipalKind::User, ..session };
            let s = insert_session(ctx, &session)?;
            ctx.exec(
                "UPDATE sessions SET acr = ?1, amr = ?2 WHERE id = ?3",
                args![who.acr.clone(), who.amr.join(" "), s.id.clone()],
            )?;
            ctx.audit(audit(&out))?;
            Ok((out, s))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use latch_audit::AuditDraft;
    use latch_core::Clock;

    use super::*;
    use crate::Store;

    use crate::ops::test_support::open;

    fn session(id: &str, now: Timestamp) -> NewSession {
        NewSession {
            id: id.into(),
            token_hash: format!("h-{id}"),
            principal_id: String::new(),
            principal_kind: PrincipalKind::User,
            mfa: true,
            source: "127.0.0.1".into(),
            expires_at: now.plus(Duration::from_secs(3600)),
            clears_failures: None,
        }
    }

    fn who(sub: &str, name: &str, groups: &[&str]) -> OidcSignIn {
        OidcSignIn {
            provider: "corp".into(),
            subject: sub.into(),
            username: name.into(),
            member_of: groups.iter().map(|g| g.to_string()).collect(),
            managed: vec!["eng".into(), "admins".into(), "ghost".into()],
            acr: "urn:example:loa2".into(),
            amr: vec!["pwd".into(), "otp".into()],
        }
    }

    fn ev() -> OidcSignInAudit {
        Box::new(|o: &OidcSignInOutcome| AuditDraft::new("user", "auth.login", format!("user:{}", o.user_name)))
    }

    #[tokio::test]
    async fn first_sign_in_provisions_later_ones_sync_managed_groups_only() {
        let (_d, store, clock) = open();
        let now = clock.now();
        for g in ["eng", "admins", "ops"] {
            store.create_group(g, "", AuditDraft::new("t", "group.create", g)).await.unwrap();
        }
        let (o, s) =
            store.oidc_sign_in(who("sub-1", "alice", &["eng", "ghost"]), session("s1", now), ev()).await.unwrap();
        assert!(o.provisioned);
        assert_eq!(
            (o.groups_added.clone(), o.groups_missing.clone()),
            (vec!["eng".to_string()], vec!["ghost".to_string()])
        );
        assert_eq!(s.principal_id, o.user_id);
        // The provider's acr and amr stay with the session, for policy.
        let p = store.authenticate("h-s1", now).await.unwrap().unwrap();
        assert_eq!((p.acr.as_str(), p.amr.clone()), ("urn:example:loa2", vec!["pwd".to_string(), "otp".to_string()]));
        let alice = store.get_user("alice").await.unwrap().unwrap();
        assert!(alice.password_hash.is_none());
        // A group latch manages by hand stays; managed ones follow the IdP.
        store.add_member("ops", PrincipalKind::User, "alice", AuditDraft::new("t", "group.add", "ops")).await.unwrap();
        let (o, _) =
            store.oidc_sign_in(who("sub-1", "ignored-now", &["admins"]), session("s2", now), ev()).await.unwrap();
        assert!(!o.provisioned);
        assert_eq!(o.user_name, "alice", "the link decides, not the name");
        assert_eq!((o.groups_added, o.groups_removed), (vec!["admins".to_string()], vec!["eng".to_string()]));
        assert_eq!(store.get_user("alice").await.unwrap().unwrap().groups, ["admins", "ops"]);
        // Another subject claiming the same name, and a local user's name: refused.
        let e = store.oidc_sign_in(who("sub-2", "alice", &[]), session("s3", now), ev()).await.unwrap_err();
        assert!(matches!(&e, StoreError::Precondition(m) if m.contains("belongs to a user from provider corp")), "{e}");
        store
            .create_user(
                NewUser { id: "usr_b".into(), name: "bob".into(), password_hash: None },
                vec![],
                AuditDraft::new("t", "user.create", "bob"),
            )
            .await
            .unwrap();
        let e = store.oidc_sign_in(who("sub-3", "bob", &[]), session("s4", now), ev()).await.unwrap_err();
        assert!(matches!(&e, StoreError::Precondition(m) if m.contains("belongs to a local user")), "{e}");
        // Disabled: refused; deleting the user unlinks the identity.
        store.set_user_disabled("alice", true, AuditDraft::new("t", "user.disable", "alice")).await.unwrap();
        let e = store.oidc_sign_in(who("sub-1", "alice", &[]), session("s5", now), ev()).await.unwrap_err();
        assert!(matches!(&e, StoreError::Precondition(m) if m.contains("disabled")), "{e}");
        store.delete_user("alice", AuditDraft::new("t", "user.delete", "alice")).await.unwrap();
        let (o, _) = store.oidc_sign_in(who("sub-1", "alice", &[]), session("s6", now), ev()).await.unwrap();
        assert!(o.provisioned);
    }

    #[tokio::test]
    async fn pending_logins_are_taken_once() {
        let (_d, store, clock) = open();
        let p = PendingOidcLogin {
            state: "st".into(),
            provider: "corp".into(),
            nonce: "n".into(),
            code_verifier: "v".into(),
            redirect_uri: "http://127.0.0.1:1/callback".into(),
            expires_at: clock.now().plus(Duration::from_secs(600)),
        };
        store.begin_oidc_login(p).await.unwrap();
        assert_eq!(store.take_oidc_login("st").await.unwrap().unwrap().nonce, "n");
        assert!(store.take_oidc_login("st").await.unwrap().is_none());
    }
}
