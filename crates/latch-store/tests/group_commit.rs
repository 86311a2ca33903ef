//! The writer's group commit: many concurrent writers, one chain, and a
//! failing write rolled back alone without a hole in the chain.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use latch_audit::AuditDraft;
use latch_core::{ManualClock, PrincipalKind, Timestamp};
use latch_crypto::SigningKey;
use latch_store::sqlite::verify::verify_file;
use latch_store::{AuditQuery, NewUser, SqlStore, Store, StoreError};

fn open() -> (tempfile::TempDir, Arc<SqlStore>, ManualClock) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let store = SqlStore::open_sqlite(&dir.path().join("t.db"), Arc::new(clock.clone())).unwrap();
    (dir, Arc::new(store), clock)
}

fn draft(i: usize) -> AuditDraft {
    AuditDraft::new("system", "test.append", format!("t:{i}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_form_one_gapless_chain() {
    let (_dir, store, _) = open();
    let mut tasks = Vec::new();
    for w in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                store.append_audit(draft(w * 1000 + i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (seq, _) = store.audit_head().await.unwrap();
    assert_eq!(seq, 32 * 50);
    let key = Arc::new(SigningKey::generate().unwrap());
    store.write_checkpoint(key.clone()).await.unwrap().unwrap();
    assert!(store.write_checkpoint(key.clone()).await.unwrap().is_none(), "one checkpoint per head");
    let path = store.path().expect("a SQLite store").to_path_buf();
    store.close();
    let report = verify_file(&path, key.verifying_key()).unwrap();
    assert_eq!(report.events, 1600);
    assert_eq!(report.checkpoints, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_rolls_back_alone_with_its_audit_event() {
    let (_dir, store, _) = open();
    let user = |name: &str| NewUser { id: format!("usr_{name}"), name: name.into(), password_hash: None };
    store.create_user(user("alice"), vec![], draft(1)).await.unwrap();
    // Interleave successful writes with ones that fail inside the transaction
    // after appending their audit event: the event must vanish with the change.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                store
                    .write(move |ctx| {
                        ctx.audit(draft(i))?;
                        Err::<(), _>(StoreError::Conflict("deliberate failure after the audit append".into()))
                    })
                    .await
            } else {
                store.append_audit(draft(i)).await.map(|_| ())
            }
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Err(StoreError::Conflict(_)) => conflicts += 1,
            Err(e) => panic!("{e}"),
            Ok(()) => {}
        }
    }
    let dup = store.create_user(
        NewUser { id: "usr_dup".into(), name: "alice".into(), password_hash: None },
        vec![],
        draft(50),
    );
    assert!(matches!(dup.await, Err(StoreError::Conflict(m)) if m.contains("already exists")));
    assert_eq!(conflicts, 20);
    let events = store.list_audit(AuditQuery { limit: 1000, ..Default::default() }).await.unwrap();
    assert_eq!(events.len(), 21, "only the successful writes left events");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "no holes in the chain");
    }
    // Unknown group: the user is not created and no event is written.
    let err = store.create_user(user("bob"), vec!["nope".into()], draft(99)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { kind: "group", .. }), "{err}");
    assert!(store.get_user("bob").await.unwrap().is_none());
    assert_eq!(store.audit_head().await.unwrap().0, 21);
}

#[tokio::test]
async fn sessions_resolve_until_expiry_revocation_or_disable() {
    let (_dir, store, clock) = open();
    store
        .create_user(NewUser { id: "usr_a".into(), name: "a".into(), password_hash: None }, vec![], draft(0))
        .await
        .unwrap();
    let session = |id: &str, hash: &str| latch_store::NewSession {
        id: id.into(),
        token_hash: hash.into(),
        principal_id: "usr_a".into(),
        principal_kind: PrincipalKind::User,
        mfa: true,
        source: "127.0.0.1".into(),
        expires_at: clock.now_plus_secs(60),
        clears_failures: None,
    };
    store.login(session("ses_1", "h1"), Some(100), draft(1)).await.unwrap();
    let p = store.authenticate("h1", clock_now(&clock)).await.unwrap().unwrap();
    assert_eq!((p.name.as_str(), p.mfa), ("a", true));
    // The TOTP step is consumed: the same or an older step fails and changes nothing.
    let replay = store.login(session("ses_2", "h2"), Some(100), draft(2)).await.unwrap_err();
    assert!(matches!(replay, StoreError::Precondition(_)));
    assert!(store.authenticate("h2", clock_now(&clock)).await.unwrap().is_none());
    clock.advance(std::time::Duration::from_secs(61));
    assert!(store.authenticate("h1", clock_now(&clock)).await.unwrap().is_none(), "expired");
    store.login(session("ses_3", "h3"), None, draft(3)).await.unwrap();
    store.set_user_disabled("a", true, draft(4)).await.unwrap();
    store.set_user_disabled("a", false, draft(5)).await.unwrap();
    assert!(store.authenticate("h3", clock_now(&clock)).await.unwrap().is_none(), "disable revoked it");
}

trait NowPlus {
    fn now_plus_secs(&self, s: u64) -> Timestamp;
}

impl NowPlus for ManualClock {
    fn now_plus_secs(&self, s: u64) -> Timestamp {
        clock_now(self).plus(std::time::Duration::from_secs(s))
    }
}

fn clock_now(c: &ManualClock) -> Timestamp {
    latch_core::Clock::now(c)
}
