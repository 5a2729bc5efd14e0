//! Backend-independent store tests.

use countersign_core::{
    ActionRecord, ActionSpec, Approvers, Ballot, Decision, DomainError, Effect, Identity,
    IdentityKind, NewAction, Quorum, Requirement, Status, Timestamp,
};
use countersign_store::{InsertRules, Inserted, ListFilter, ReviewQuery, Store, UpdateError};
use std::sync::Arc;
use std::time::Duration;

pub const T0: Timestamp = Timestamp(1_700_000_000_000);

fn bot(id: &str) -> Identity {
    Identity::new(id, IdentityKind::Agent, ["automation"])
}

pub fn review_record(id: &str, requester: &str) -> ActionRecord {
    record(id, requester, Effect::Review, None, T0)
}

pub fn allowed_record(id: &str, requester: &str) -> ActionRecord {
    record(id, requester, Effect::Allow, None, T0)
}

fn record(
    id: &str,
    requester: &str,
    effect: Effect,
    key: Option<&str>,
    at: Timestamp,
) -> ActionRecord {
    let decision = Decision {
        effect,
        policies: vec!["p".into()],
        reason: None,
        requirements: if effect == Effect::Review {
            vec![Requirement {
                policy: "p".into(),
                approvers: "group:sre".parse::<Approvers>().unwrap(),
                quorum: Quorum::ONE,
                require_mfa: false,
            }]
        } else {
            vec![]
        },
        review_ttl: None,
        executors: Vec::new(),
        credentials: Vec::new(),
        reveal: None,
        notify: Vec::new(),
    };
    ActionRecord::submit(
        &bot(requester),
        NewAction {
            id: id.into(),
            grant_jti: format!("jti-{id}"),
            spec: ActionSpec::new("db.export", "pg://x", "prod", None).unwrap(),
            justification: "j".into(),
            on_behalf_of: None,
            idempotency_key: key.map(str::to_string),
            decision,
            default_review_ttl: Duration::from_secs(60),
            grant_ttl: Duration::from_secs(60),
            grant_on_allow: true,
            analysis: None,
        },
        at,
    )
    .unwrap()
    .0
}

fn approve_as(who: &str) -> countersign_store::Transition {
    let voter = Identity::new(who, IdentityKind::Human, ["sre"]);
    Box::new(move |r: &mut ActionRecord| {
        r.vote(
            &voter,
            Ballot::Approve { comment: None },
            T0,
            format!("g-{}", voter.id),
            Duration::from_secs(60),
            |_| Decision::allow(Vec::new()),
        )
    })
}

pub async fn insert_then_get_round_trips(store: Arc<dyn Store>) {
    let rec = review_record("a1", "bot");
    assert!(matches!(
        store.insert(rec.clone(), vec![]).await.unwrap(),
        Inserted::Created(_)
    ));
    assert_eq!(store.get("a1").await.unwrap(), Some(rec));
    assert_eq!(store.get("nope").await.unwrap(), None);
}

pub async fn idempotency_key_returns_the_first_record(store: Arc<dyn Store>) {
    let first = record("k1", "bot", Effect::Review, Some("key"), T0);
    store.insert(first.clone(), vec![]).await.unwrap();
    let again = record("k2", "bot", Effect::Review, Some("key"), T0);
    match store.insert(again, vec![]).await.unwrap() {
        Inserted::Existing(r) => assert_eq!(r, first),
        other => panic!("expected the first record, got {other:?}"),
    }
    // The same key from another requester is another action.
    let other = record("k3", "other-bot", Effect::Review, Some("key"), T0);
    assert!(matches!(
        store.insert(other, vec![]).await.unwrap(),
        Inserted::Created(_)
    ));
    assert_eq!(store.get("k2").await.unwrap(), None);
}

pub async fn concurrent_idempotent_inserts_create_one_record(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let r = record(&format!("c{i}"), "bot", Effect::Review, Some("same"), T0);
                store.insert(r, vec![]).await.unwrap()
            })
        })
        .collect();
    let mut created = 0;
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        match t.await.unwrap() {
            Inserted::Created(r) => {
                created += 1;
                ids.insert(r.id);
            }
            Inserted::Existing(r) => {
                ids.insert(r.id);
            }
            Inserted::Reused(r) => panic!("reuse was not asked for, got {}", r.id),
            Inserted::Refused(e) => panic!("no cap was asked for, got {e}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1, "every caller sees the one record");
}

/// A review of `db.export` with these params by `requester` at `at`, with its events.
pub fn submission(
    id: &str,
    requester: &str,
    params: serde_json::Value,
    at: Timestamp,
) -> (ActionRecord, Vec<countersign_core::Event>) {
    let decision = record(id, requester, Effect::Review, None, at).decision;
    ActionRecord::submit(
        &bot(requester),
        NewAction {
            id: id.into(),
            grant_jti: format!("jti-{id}"),
            spec: ActionSpec::new("db.export", "pg://x", "prod", Some(params)).unwrap(),
            justification: "j".into(),
            on_behalf_of: None,
            idempotency_key: None,
            decision,
            default_review_ttl: Duration::from_secs(60),
            grant_ttl: Duration::from_secs(60),
            grant_on_allow: true,
            analysis: None,
        },
        at,
    )
    .unwrap()
}

/// Inserts with `reuse_open`; the id of the action that answers, and whether it is new.
pub async fn reuse(
    store: &Arc<dyn Store>,
    (rec, events): (ActionRecord, Vec<countersign_core::Event>),
) -> (String, bool) {
    match store.insert_with(rec, events, true).await.unwrap() {
        Inserted::Created(r) => (r.id, true),
        Inserted::Reused(r) => (r.id, false),
        Inserted::Existing(r) => panic!("no idempotency key was given, got {}", r.id),
        Inserted::Refused(e) => panic!("no cap was asked for, got {e}"),
    }
}

fn deny_as(who: &str) -> countersign_store::Transition {
    let voter = Identity::new(who, IdentityKind::Human, ["sre"]);
    Box::new(move |r: &mut ActionRecord| {
        r.vote(
            &voter,
            Ballot::Deny { comment: None },
            T0,
            "unused".into(),
            Duration::from_secs(60),
            |_| Decision::allow(Vec::new()),
        )
    })
}

pub async fn reuse_open_answers_with_an_open_or_approved_action(store: Arc<dyn Store>) {
    let p = || serde_json::json!({"table": "users"});
    assert_eq!(
        reuse(&store, submission("u1", "bot", p(), T0)).await,
        ("u1".into(), true)
    );
    let size = store.audit_size().await.unwrap();
    assert!(size > 0);
    // The same request, still pending: the first action, and nothing written.
    assert_eq!(
        reuse(&store, submission("u2", "bot", p(), T0)).await,
        ("u1".into(), false)
    );
    assert_eq!(store.get("u2").await.unwrap(), None);
    assert_eq!(store.audit_size().await.unwrap(), size);
    // Another requester, or other params: a new action each.
    assert_eq!(
        reuse(&store, submission("u3", "bot-2", p(), T0)).await,
        ("u3".into(), true)
    );
    let other = serde_json::json!({"table": "orders"});
    assert_eq!(
        reuse(&store, submission("u4", "bot", other, T0)).await,
        ("u4".into(), true)
    );
    // Without `reuse_open`, a second review of the same request is opened as before.
    let (plain, events) = submission("u5", "bot", p(), T0);
    assert!(matches!(
        store.insert(plain, events).await.unwrap(),
        Inserted::Created(_)
    ));
    // Approved and unused: it answers, ahead of the open review u5.
    let (approved, _) = store.update("u1", T0, approve_as("alice")).await.unwrap();
    assert_eq!(approved.status, Status::Approved);
    assert_eq!(
        reuse(&store, submission("u6", "bot", p(), T0)).await,
        ("u1".into(), false)
    );
    // Past the grant's deadline (and u5's review deadline) nothing answers.
    let late = T0.plus(Duration::from_secs(61));
    assert_eq!(
        reuse(&store, submission("u7", "bot", p(), late)).await,
        ("u7".into(), true)
    );
    // Redeemed: the approval is used up, so the newest open review (u7) answers; once it is
    // rejected, u5 does; once that is cancelled, nothing.
    let g = approved.grant.clone().unwrap();
    store
        .update(
            "u1",
            T0,
            Box::new(move |r: &mut ActionRecord| r.redeem(&bot("bot"), &g.jti, &g.digest, T0)),
        )
        .await
        .unwrap();
    assert_eq!(
        reuse(&store, submission("u8", "bot", p(), T0)).await,
        ("u7".into(), false)
    );
    store.update("u7", T0, deny_as("alice")).await.unwrap();
    assert_eq!(
        reuse(&store, submission("u9", "bot", p(), T0)).await,
        ("u5".into(), false)
    );
    store
        .update(
            "u5",
            T0,
            Box::new(|r: &mut ActionRecord| r.cancel(&bot("bot"), T0)),
        )
        .await
        .unwrap();
    assert_eq!(
        reuse(&store, submission("u10", "bot", p(), T0)).await,
        ("u10".into(), true)
    );
    // An allowed action with a grant never answers (only reviews and approvals do).
    let allowed = record("u11", "bot-3", Effect::Allow, None, T0);
    store
        .insert_with(allowed.clone(), vec![], true)
        .await
        .unwrap();
    let again = record("u12", "bot-3", Effect::Allow, None, T0);
    assert!(matches!(
        store.insert_with(again, vec![], true).await.unwrap(),
        Inserted::Created(_)
    ));
}

pub async fn concurrent_reuse_open_inserts_open_one_review(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let sub = submission(&format!("s{i}"), "bot", serde_json::json!({"n": 1}), T0);
                reuse(&store, sub).await
            })
        })
        .collect();
    let mut created = 0;
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let (id, new) = t.await.unwrap();
        created += usize::from(new);
        ids.insert(id);
    }
    assert_eq!(created, 1, "one review opened");
    assert_eq!(ids.len(), 1, "every caller sees the one action");
    let all = store
        .list(ListFilter {
            statuses: vec![],
            limit: 100,
            after: None,
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let id = ids.into_iter().next().unwrap();
    let entries = store.audit_entries(0, 100).await.unwrap();
    assert_eq!(
        entries.len(),
        store.action_audit_indexes(&id).await.unwrap().len(),
        "the audit log holds only the one action's entries"
    );
}

pub async fn refused_transition_writes_nothing(store: Arc<dyn Store>) {
    let rec = review_record("r1", "bot");
    store.insert(rec.clone(), vec![]).await.unwrap();
    let before = store.audit_size().await.unwrap();
    let err = store
        .update(
            "r1",
            T0,
            Box::new(|r: &mut ActionRecord| {
                r.vote(
                    &bot("bot2"),
                    Ballot::Approve { comment: None },
                    T0,
                    "g".into(),
                    Duration::from_secs(1),
                    |_| Decision::allow(Vec::new()),
                )
            }),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        UpdateError::Domain(DomainError::AgentsCannotApprove)
    ));
    assert_eq!(store.get("r1").await.unwrap(), Some(rec));
    assert_eq!(store.audit_size().await.unwrap(), before);
}

pub async fn update_of_unknown_id_is_not_found(store: Arc<dyn Store>) {
    let err = store
        .update("missing", T0, approve_as("alice"))
        .await
        .unwrap_err();
    assert!(matches!(err, UpdateError::NotFound));
}

pub async fn concurrent_updates_are_serialised(store: Arc<dyn Store>) {
    // Quorum 1: of many concurrent approvals exactly one gets in; the rest see `approved`.
    store
        .insert(review_record("q1", "bot"), vec![])
        .await
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.update("q1", T0, approve_as(&format!("h{i}"))).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(UpdateError::Domain(DomainError::NotPending(Status::Approved))) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 1);
    let r = store.get("q1").await.unwrap().unwrap();
    assert_eq!(r.status, Status::Approved);
    assert_eq!(r.review.unwrap().votes.len(), 1);
}

pub async fn concurrent_redemption_succeeds_once(store: Arc<dyn Store>) {
    let rec = record("g1", "bot", Effect::Allow, None, T0);
    let g = rec.grant.clone().unwrap();
    store.insert(rec, vec![]).await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            let (jti, digest) = (g.jti.clone(), g.digest);
            tokio::spawn(async move {
                store
                    .update(
                        "g1",
                        T0,
                        Box::new(move |r: &mut ActionRecord| {
                            r.redeem(&bot("bot"), &jti, &digest, T0)
                        }),
                    )
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(UpdateError::Domain(DomainError::GrantAlreadyUsed)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 1);
}

pub async fn list_filters_by_status_oldest_first(store: Arc<dyn Store>) {
    for i in 0..5 {
        let effect = if i % 2 == 0 {
            Effect::Review
        } else {
            Effect::Allow
        };
        store
            .insert(
                record(
                    &format!("l{i}"),
                    "bot",
                    effect,
                    None,
                    Timestamp(T0.millis() + i),
                ),
                vec![],
            )
            .await
            .unwrap();
    }
    let pending = store
        .list(ListFilter {
            statuses: vec![Status::Pending],
            limit: 10,
            after: None,
        })
        .await
        .unwrap();
    let ids: Vec<_> = pending.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["l0", "l2", "l4"]);
    let all = store
        .list(ListFilter {
            statuses: vec![],
            limit: 2,
            after: None,
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
}

pub async fn expiry_queries_find_due_reviews(store: Arc<dyn Store>) {
    assert_eq!(store.next_expiry().await.unwrap(), None);
    assert_eq!(store.open_reviews().await.unwrap(), 0);
    store
        .insert(review_record("e1", "bot"), vec![])
        .await
        .unwrap();
    assert_eq!(store.open_reviews().await.unwrap(), 1);
    let deadline = Timestamp(T0.millis() + 60_000);
    assert_eq!(store.next_expiry().await.unwrap(), Some(deadline));
    assert!(store
        .due_for_expiry(Timestamp(deadline.millis() - 1), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.due_for_expiry(deadline, 10).await.unwrap(),
        vec!["e1".to_string()]
    );
    store
        .update(
            "e1",
            deadline,
            Box::new(move |r: &mut ActionRecord| Ok(r.expire(deadline))),
        )
        .await
        .unwrap();
    assert!(store.due_for_expiry(deadline, 10).await.unwrap().is_empty());
    assert_eq!(
        store.get("e1").await.unwrap().unwrap().status,
        Status::Expired
    );
    assert_eq!(store.next_expiry().await.unwrap(), None);
    assert_eq!(store.open_reviews().await.unwrap(), 0);
}

pub async fn audit_log_is_gap_free_canonical_and_hashed(store: Arc<dyn Store>) {
    let rec = review_record("v1", "bot");
    let (_, events) = ActionRecord::submit(
        &bot("bot"),
        NewAction {
            id: "unused".into(),
            grant_jti: "g".into(),
            spec: ActionSpec::new("db.export", "pg://x", "prod", None).unwrap(),
            justification: String::new(),
            on_behalf_of: None,
            idempotency_key: None,
            decision: rec.decision.clone(),
            default_review_ttl: Duration::from_secs(60),
            grant_ttl: Duration::from_secs(60),
            grant_on_allow: false,
            analysis: None,
        },
        T0,
    )
    .unwrap();
    store.insert(rec, events).await.unwrap();
    store.update("v1", T0, approve_as("alice")).await.unwrap();
    // Concurrent writers interleave, but the log stays gap-free.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let r = record(&format!("w{i}"), "bot", Effect::Allow, None, T0);
                store
                    .insert(r, vec![countersign_core::Event::Expired])
                    .await
                    .unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let size = store.audit_size().await.unwrap();
    let entries = store.audit_entries(0, 1000).await.unwrap();
    assert_eq!(entries.len() as u64, size);
    assert!(
        size >= 2 + 3 + 20,
        "submitted, review opened, voted, approved, grant issued, 20 more"
    );
    let mut tree = countersign_audit::MemoryHashes::new();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.index, i as u64);
        let v: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(v["index"], i as u64);
        assert_eq!(
            serde_jcs::to_vec(&v).unwrap(),
            e.body,
            "entries are canonical"
        );
        tree.append(&e.body).unwrap();
    }
    let first: Vec<&str> = entries[..5]
        .iter()
        .map(|e| e.action_id.as_deref().unwrap())
        .collect();
    assert_eq!(first, ["v1"; 5]);
    let kinds: Vec<String> = entries[..5]
        .iter()
        .map(|e| {
            serde_json::from_slice::<serde_json::Value>(&e.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "submitted",
            "review_opened",
            "voted",
            "approved",
            "grant_issued"
        ]
    );
    // Every stored interior hash is what a recomputation from the entries gives.
    let all: Vec<u64> = (0..tree.hashes().len() as u64).collect();
    assert_eq!(store.audit_hashes(&all).await.unwrap(), tree.hashes());
    assert_eq!(
        store.action_audit_indexes("v1").await.unwrap(),
        vec![0, 1, 2, 3, 4]
    );
}

pub async fn checkpoints_are_append_only(store: Arc<dyn Store>) {
    assert_eq!(store.latest_checkpoint().await.unwrap(), None);
    let cp = |size, note: &str| countersign_store::StoredCheckpoint {
        size,
        at: T0,
        note: note.into(),
    };
    store.add_checkpoint(cp(3, "three")).await.unwrap();
    store.add_checkpoint(cp(5, "five")).await.unwrap();
    store.add_checkpoint(cp(5, "five again")).await.unwrap();
    assert_eq!(
        store.latest_checkpoint().await.unwrap(),
        Some(cp(5, "five"))
    );
}

pub async fn many_concurrent_inserts_all_commit(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .insert(
                        record(&format!("m{i}"), "bot", Effect::Allow, None, T0),
                        vec![],
                    )
                    .await
                    .unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let all = store
        .list(ListFilter {
            statuses: vec![Status::Allowed],
            limit: 10_000,
            after: None,
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 500);
}

fn managed_key(id: &str, byte: u8) -> countersign_store::ManagedKey {
    countersign_store::ManagedKey {
        id: id.into(),
        hash: [byte; 32],
        identity: "deploy-bot".into(),
        kind: IdentityKind::Service,
        groups: ["automation".to_string(), "deployers".to_string()].into(),
        created_by: "operator:root".into(),
        created_at: T0,
        expires_at: Some(Timestamp(T0.millis() + 1000)),
        revoked_at: None,
        sponsor: Some("alice".into()),
    }
}

fn key_created(k: &countersign_store::ManagedKey) -> countersign_core::Event {
    countersign_core::Event::KeyCreated {
        by: k.created_by.clone(),
        key_id: k.id.clone(),
        identity: k.identity.clone(),
        kind: k.kind,
        groups: k.groups.iter().cloned().collect(),
        expires_at: k.expires_at,
    }
}

fn key_revoked(by: &str) -> countersign_store::KeyEvent {
    let by = by.to_string();
    Box::new(move |k| countersign_core::Event::KeyRevoked {
        by,
        key_id: k.id.clone(),
        identity: k.identity.clone(),
    })
}

async fn create(store: &Arc<dyn Store>, k: countersign_store::ManagedKey) -> bool {
    let event = key_created(&k);
    store.create_key(k, event).await.is_ok()
}

/// The types of the audit log's entries, in order.
async fn entry_types(store: &Arc<dyn Store>) -> Vec<String> {
    store
        .audit_entries(0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
            v["type"].as_str().unwrap().to_string()
        })
        .collect()
}

pub async fn managed_keys_round_trip_and_revoke_once(store: Arc<dyn Store>) {
    let k1 = managed_key("key_1", 1);
    assert!(create(&store, k1.clone()).await);
    assert!(create(&store, managed_key("key_2", 2)).await);
    assert!(
        !create(&store, managed_key("key_3", 1)).await,
        "duplicate hash"
    );
    assert!(
        !create(&store, managed_key("key_1", 4)).await,
        "duplicate id"
    );
    assert_eq!(store.key_by_hash(&[1; 32]).await.unwrap(), Some(k1.clone()));
    assert_eq!(store.key_by_hash(&[9; 32]).await.unwrap(), None);
    let at = Timestamp(T0.millis() + 5);
    let revoked = store
        .revoke_key("key_1", at, key_revoked("root"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(at));
    assert!(store
        .revoke_key("key_1", Timestamp(T0.millis() + 9), key_revoked("root"))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .revoke_key("key_404", at, key_revoked("root"))
        .await
        .unwrap()
        .is_none());
    let got = store.key_by_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(got, revoked);
    let ids: Vec<String> = store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, ["key_1", "key_2"]);
    // Each change that happened has its entry, written with it; the refused ones have none.
    assert_eq!(
        entry_types(&store).await,
        ["key_created", "key_created", "key_revoked"]
    );
    let entries = store.audit_entries(0, 10).await.unwrap();
    let revoked: serde_json::Value = serde_json::from_slice(&entries[2].body).unwrap();
    assert_eq!(revoked["event"]["key_id"], "key_1");
    assert_eq!(revoked["actor"], "root");
}

/// Racing key changes (one batch or several): one creation per secret and one revocation per
/// key win, and the log has exactly one entry for each change that happened.
pub async fn concurrent_key_changes_write_one_entry_each(store: Arc<dyn Store>) {
    let creates: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { create(&store, managed_key(&format!("key_{i}"), 7)).await })
        })
        .collect();
    let mut won = 0;
    for t in creates {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1, "one key per secret");
    let id = store.list_keys().await.unwrap()[0].id.clone();
    let revokes: Vec<_> = (0..16)
        .map(|i| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                store
                    .revoke_key(&id, Timestamp(T0.millis() + i), key_revoked("root"))
                    .await
                    .unwrap()
                    .is_some()
            })
        })
        .collect();
    let mut revoked = 0;
    for t in revokes {
        revoked += usize::from(t.await.unwrap());
    }
    assert_eq!(revoked, 1, "a key is revoked once");
    assert_eq!(entry_types(&store).await, ["key_created", "key_revoked"]);
}

pub async fn recorded_events_join_the_log_without_a_record(store: Arc<dyn Store>) {
    use countersign_core::Event;
    store
        .insert(review_record("r1", "bot"), vec![Event::Expired])
        .await
        .unwrap();
    store
        .record_events(
            T0,
            vec![
                (
                    Some("r1".into()),
                    Event::Refused {
                        by: "bot".into(),
                        attempted: "vote".into(),
                        code: "agents_cannot_approve".into(),
                    },
                ),
                (
                    None,
                    Event::PolicyLoaded {
                        hash: "ab".repeat(32),
                        policies: 3,
                    },
                ),
            ],
        )
        .await
        .unwrap();
    let entries = store.audit_entries(0, 10).await.unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[1].action_id.as_deref(), Some("r1"));
    assert_eq!(entries[2].action_id, None);
    let refused: serde_json::Value = serde_json::from_slice(&entries[1].body).unwrap();
    assert_eq!(refused["type"], "refused");
    assert_eq!(refused["actor"], "bot");
    assert_eq!(refused["index"], 1);
    assert_eq!(refused["event"]["code"], "agents_cannot_approve");
    let loaded: serde_json::Value = serde_json::from_slice(&entries[2].body).unwrap();
    assert_eq!(loaded["type"], "policy_loaded");
    assert_eq!(loaded["action_id"], serde_json::Value::Null);
    assert_eq!(
        store.action_audit_indexes("r1").await.unwrap(),
        vec![0, 1],
        "a refusal about an action is listed with it"
    );
    // The Merkle hashes cover them like any other entry.
    let mut tree = countersign_audit::MemoryHashes::new();
    for e in &entries {
        tree.append(&e.body).unwrap();
    }
    let all: Vec<u64> = (0..tree.hashes().len() as u64).collect();
    assert_eq!(store.audit_hashes(&all).await.unwrap(), tree.hashes());
    // The record itself did not change.
    assert_eq!(
        store.get("r1").await.unwrap().unwrap(),
        review_record("r1", "bot")
    );
}

pub async fn stored_hashes_match_a_recomputation_after_many_appends(store: Arc<dyn Store>) {
    use countersign_core::Event;
    // 40 concurrent writers × 25 appends of 1-3 entries: batches of every shape, 8+ tree levels.
    let tasks: Vec<_> = (0..40)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let events = (0..=(t + i) % 3)
                        .map(|_| (None, Event::Expired))
                        .collect::<Vec<_>>();
                    store.record_events(T0, events).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let size = store.audit_size().await.unwrap();
    assert!(size >= 1000);
    let entries = store.audit_entries(0, size as usize).await.unwrap();
    let mut tree = countersign_audit::MemoryHashes::new();
    for e in &entries {
        tree.append(&e.body).unwrap();
    }
    let all: Vec<u64> = (0..tree.hashes().len() as u64).collect();
    assert_eq!(store.audit_hashes(&all).await.unwrap(), tree.hashes());
}

/// A review asking `approvers`, requested by `requester` (for `for_human`), at `at`.
fn review_asking(
    id: &str,
    requester: &str,
    approvers: &str,
    for_human: Option<&str>,
    at: Timestamp,
) -> ActionRecord {
    let mut r = record(id, requester, Effect::Review, None, at);
    let review = r.review.as_mut().unwrap();
    review.requirements[0].approvers = approvers.parse().unwrap();
    r.decision.requirements[0].approvers = approvers.parse().unwrap();
    r.on_behalf_of = for_human.map(str::to_string);
    r
}

fn page_query(who: &Identity, statuses: Vec<Status>, limit: usize) -> ReviewQuery {
    ReviewQuery {
        approver_keys: Approvers::keys_of(who),
        statuses,
        reviewer: who.id.clone(),
        before: None,
        limit,
    }
}

fn ids(records: &[ActionRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

/// A reviewer's page holds the reviews naming one of their entries, newest first, never their
/// own, and pages on by keyset; another group's flood does not hide them.
pub async fn reviews_for_pages_a_reviewers_reviews_newest_first(store: Arc<dyn Store>) {
    let alice = Identity::new("alice", IdentityKind::Human, ["sre", "dba"]);
    let at = |n: i64| Timestamp(T0.0 + n);
    // A flood for another group, older and newer than alice's reviews.
    for n in 0..30 {
        let r = review_asking(
            &format!("flood{n:02}"),
            "spam",
            "group:web",
            None,
            at(n * 10),
        );
        store.insert(r, vec![]).await.unwrap();
    }
    let mine = [
        ("r1", "group:sre", None, 1),
        ("r2", "human:alice", None, 2),
        ("r3", "group:dba, group:sre", None, 3),
        ("r4", "group:sre", Some("alice"), 4), // for alice: not hers to review
        ("r5", "group:sre", None, 5),
        ("r6", "group:ops", None, 6), // not her group
    ];
    for (id, approvers, for_human, n) in mine {
        let r = review_asking(id, "bot", approvers, for_human, at(100 + n));
        store.insert(r, vec![]).await.unwrap();
    }
    // Her own request.
    let own = review_asking("r7", "alice", "group:sre", None, at(107));
    store.insert(own, vec![]).await.unwrap();

    let all = store
        .reviews_for(page_query(&alice, vec![Status::Pending], 100))
        .await
        .unwrap();
    assert_eq!(ids(&all), ["r5", "r3", "r2", "r1"]);

    let mut q = page_query(&alice, vec![Status::Pending], 2);
    let first = store.reviews_for(q.clone()).await.unwrap();
    assert_eq!(ids(&first), ["r5", "r3"]);
    let last = first.last().unwrap();
    q.before = Some((last.created_at, last.id.clone()));
    let second = store.reviews_for(q.clone()).await.unwrap();
    assert_eq!(ids(&second), ["r2", "r1"]);
    let last = second.last().unwrap();
    q.before = Some((last.created_at, last.id.clone()));
    assert!(store.reviews_for(q).await.unwrap().is_empty());

    // Decided, it leaves the pending list and joins the approved one.
    store.update("r3", T0, approve_as("bob")).await.unwrap();
    let pending = store
        .reviews_for(page_query(&alice, vec![Status::Pending], 100))
        .await
        .unwrap();
    assert_eq!(ids(&pending), ["r5", "r2", "r1"]);
    let approved = store
        .reviews_for(page_query(&alice, vec![Status::Approved], 100))
        .await
        .unwrap();
    assert_eq!(ids(&approved), ["r3"]);
    let both = store
        .reviews_for(page_query(
            &alice,
            vec![Status::Pending, Status::Approved],
            100,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&both), ["r5", "r3", "r2", "r1"]);
    // An agent has no entries and no page.
    let agent = page_query(&bot("bot"), vec![Status::Pending], 100);
    assert!(store.reviews_for(agent).await.unwrap().is_empty());
}

/// Concurrent submissions by one requester never open more reviews than the cap; others'
/// submissions, and actions that open no review, are not counted or refused.
pub async fn concurrent_inserts_respect_the_open_review_cap(store: Arc<dyn Store>) {
    let capped = InsertRules {
        reuse_open: false,
        max_open_reviews: Some(5),
    };
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let r = review_record(&format!("cap{i}"), "flooder");
                store.insert_ruled(r, vec![], capped).await.unwrap()
            })
        })
        .collect();
    let (mut created, mut refused) = (0, 0);
    let mut first_created = None;
    for t in tasks {
        match t.await.unwrap() {
            Inserted::Created(r) => {
                created += 1;
                first_created.get_or_insert(r.id);
            }
            Inserted::Refused(DomainError::TooManyOpenReviews(5)) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((created, refused), (5, 19));
    assert_eq!(store.open_reviews().await.unwrap(), 5);
    // Another requester has its own allowance; an allowed action opens no review.
    let other = review_record("other", "someone-else");
    assert!(matches!(
        store.insert_ruled(other, vec![], capped).await.unwrap(),
        Inserted::Created(_)
    ));
    let allowed = record("allowed", "flooder", Effect::Allow, None, T0);
    assert!(matches!(
        store.insert_ruled(allowed, vec![], capped).await.unwrap(),
        Inserted::Created(_)
    ));
    // A decided review frees a place.
    // Which five won the race is up to the scheduler (and, on PostgreSQL, the head lock).
    let decided = first_created.unwrap();
    store
        .update(&decided, T0, approve_as("bob"))
        .await
        .unwrap_or_else(|_| panic!("{decided} was not created"));
    let again = review_record("again", "flooder");
    let got = store.insert_ruled(again, vec![], capped).await.unwrap();
    assert!(matches!(got, Inserted::Created(_)), "{got:?}");
    let over = review_record("over", "flooder");
    let got = store.insert_ruled(over, vec![], capped).await.unwrap();
    assert!(matches!(got, Inserted::Refused(_)), "{got:?}");
    assert_eq!(store.get("over").await.unwrap(), None);
    // At the cap, allowed actions and reviews of the requester racing (so sharing batches): the
    // allowed ones are all created, the reviews all refused (the count is read for any batch
    // with an insert that opens a review, whatever else the batch holds).
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let r = if i % 2 == 0 {
                    record(&format!("mix{i}"), "flooder", Effect::Allow, None, T0)
                } else {
                    review_record(&format!("mix{i}"), "flooder")
                };
                (i, store.insert_ruled(r, vec![], capped).await.unwrap())
            })
        })
        .collect();
    for t in tasks {
        match t.await.unwrap() {
            (i, Inserted::Created(_)) if i % 2 == 0 => {}
            (i, Inserted::Refused(DomainError::TooManyOpenReviews(5))) if i % 2 == 1 => {}
            (i, other) => panic!("mix{i}: {other:?}"),
        }
    }
    // The flooder's five, and the other requester's one.
    assert_eq!(store.open_reviews().await.unwrap(), 6);
}

fn binding(key: &str, source: &str, id: &str) -> countersign_store::IdentityBinding {
    countersign_store::IdentityBinding {
        id_key: key.into(),
        source: source.into(),
        id: id.into(),
        kind: IdentityKind::Human,
        first_seen: T0,
    }
}

/// The identity registry: the first source to claim an id keeps it, also when many claim it at
/// once (on PostgreSQL, through several replicas); a binding never changes.
pub async fn identity_bindings_first_claim_wins(store: Arc<dyn Store>) {
    assert_eq!(store.identity_binding("alice").await.unwrap(), None);
    let first = binding("alice", "oidc:https://idp#1", "alice");
    assert_eq!(store.bind_identity(first.clone()).await.unwrap(), first);
    // The same source again: the same binding.
    assert_eq!(store.bind_identity(first.clone()).await.unwrap(), first);
    // Another source: refused (the first binding comes back), nothing changes.
    let other = binding("alice", "managed:Alice", "Alice");
    assert_eq!(store.bind_identity(other).await.unwrap(), first);
    assert_eq!(store.identity_binding("alice").await.unwrap(), Some(first));

    let claims = (0..16).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .bind_identity(binding("bob", &format!("oidc:https://idp#{i}"), "bob"))
                .await
                .unwrap()
        })
    });
    let held: std::collections::BTreeSet<String> = futures_join(claims)
        .await
        .into_iter()
        .map(|b| b.source)
        .collect();
    assert_eq!(held.len(), 1, "one winner for all: {held:?}");
    let stored = store.identity_binding("bob").await.unwrap().unwrap();
    assert!(held.contains(&stored.source));
}

/// Console sessions: a started session is found by its hash on every store sharing the
/// database (a replica, a restarted process), an ended one stays ended, and starting a session
/// deletes rows ended or expired more than a day before.
pub async fn console_sessions_start_end_and_expire(store: Arc<dyn Store>) {
    let day = countersign_store::sessions_keep_millis();
    let session = |byte: u8, at: i64| countersign_store::ConsoleSession {
        hash: [byte; 32],
        identity: Identity::new("alice", IdentityKind::Human, ["sre"]),
        mfa: byte % 2 == 1,
        created_at: Timestamp(at),
        expires_at: Timestamp(at + 3_600_000),
        ended_at: None,
    };
    assert_eq!(store.session_by_hash(&[1; 32]).await.unwrap(), None);
    store.start_session(session(1, 1_000)).await.unwrap();
    store.start_session(session(2, 1_000)).await.unwrap();
    let found = store.session_by_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(found, session(1, 1_000));
    assert!(found.mfa && found.live_at(Timestamp(2_000)));
    assert!(!found.live_at(Timestamp(1_000 + 3_600_000)));
    store.end_session([1; 32], Timestamp(5_000)).await.unwrap();
    // Ending again keeps the first end; an unknown hash is nothing.
    store.end_session([1; 32], Timestamp(9_000)).await.unwrap();
    store.end_session([9; 32], Timestamp(9_000)).await.unwrap();
    let ended = store.session_by_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(ended.ended_at, Some(Timestamp(5_000)));
    assert!(!ended.live_at(Timestamp(6_000)));
    // A day and more later, a new session's write removes both old rows.
    store
        .start_session(session(3, 1_000 + 3_600_000 + day + 1))
        .await
        .unwrap();
    assert_eq!(store.session_by_hash(&[1; 32]).await.unwrap(), None);
    assert_eq!(store.session_by_hash(&[2; 32]).await.unwrap(), None);
    assert!(store.session_by_hash(&[3; 32]).await.unwrap().is_some());
}

/// Contact facts (issue #15): found by email and by Entra object id (compared lowercase), one
/// row per source replaced by newer facts and never by older ones, cleared facts no longer
/// found, and two sources sharing an email both returned (the caller refuses the ambiguity).
pub async fn contact_facts_are_replaced_by_newer_ones_only(store: Arc<dyn Store>) {
    use countersign_store::{ContactQuery, IdentityContact};
    let contact =
        |source: &str, id: &str, email: Option<&str>, oid: Option<&str>, at: i64| IdentityContact {
            source: source.into(),
            identity: Identity::new(id, IdentityKind::Human, ["sre"]),
            email: email.map(str::to_string),
            entra_oid: oid.map(str::to_string),
            entra_tid: oid.map(|_| "TENANT-1".to_string()),
            recorded_at: Timestamp(at),
        };
    let by_email = |e: &str| {
        let store = store.clone();
        let e = e.to_string();
        async move { store.contacts(&ContactQuery::Email(e)).await.unwrap() }
    };
    assert!(by_email("dave@example.com").await.is_empty());
    store
        .record_contact(contact(
            "oidc:https://idp#dave",
            "dave",
            Some("Dave@Example.com"),
            Some("0A-B"),
            1_000,
        ))
        .await
        .unwrap();
    let found = by_email("DAVE@example.COM").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].identity.id, "dave");
    assert_eq!(found[0].identity.groups.len(), 1);
    assert_eq!(found[0].email.as_deref(), Some("dave@example.com"));
    assert_eq!(found[0].entra_tid.as_deref(), Some("tenant-1"));
    let by_oid = store
        .contacts(&ContactQuery::EntraObject("0a-b".into()))
        .await
        .unwrap();
    assert_eq!(by_oid.len(), 1);
    assert_eq!(by_oid[0].entra_oid.as_deref(), Some("0a-b"));
    // Older facts (a slower replica) do not replace newer ones.
    store
        .record_contact(contact(
            "oidc:https://idp#dave",
            "dave",
            Some("old@example.com"),
            None,
            500,
        ))
        .await
        .unwrap();
    assert_eq!(by_email("dave@example.com").await.len(), 1);
    assert!(by_email("old@example.com").await.is_empty());
    // Newer ones do: the email changed, the object id is gone.
    store
        .record_contact(contact(
            "oidc:https://idp#dave",
            "dave",
            Some("d2@example.com"),
            None,
            2_000,
        ))
        .await
        .unwrap();
    assert!(by_email("dave@example.com").await.is_empty());
    assert_eq!(by_email("d2@example.com").await.len(), 1);
    assert!(store
        .contacts(&ContactQuery::EntraObject("0a-b".into()))
        .await
        .unwrap()
        .is_empty());
    // A second person with the same email: both are returned.
    store
        .record_contact(contact(
            "oidc:https://other#x",
            "dave2",
            Some("D2@example.com"),
            None,
            3_000,
        ))
        .await
        .unwrap();
    let both: Vec<String> = by_email("d2@example.com")
        .await
        .into_iter()
        .map(|c| c.identity.id)
        .collect();
    assert_eq!(both, ["dave", "dave2"]);
    // A quote in a query is a value, not SQL.
    assert!(by_email("x' OR '1'='1").await.is_empty());
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Two stores writing one database in turn, as two processes would (a gateway and
/// `countersign keys create --config` on one SQLite file; two replicas on PostgreSQL): every
/// write lands after what the other wrote, and the log stays gap-free and verifies.
pub async fn writers_sharing_a_database_extend_one_log(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    use countersign_core::Event;
    for i in 0..24u8 {
        let (w, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        match i % 4 {
            0 | 1 => {
                let (rec, events) =
                    submission(&format!("s{i}"), "bot", serde_json::json!({"i": i}), T0);
                assert!(matches!(
                    w.insert(rec, events).await.unwrap(),
                    Inserted::Created(_)
                ));
            }
            2 => assert!(create(w, managed_key(&format!("key_{i}"), i)).await),
            _ => w
                .record_events(T0, vec![(None, Event::Expired)])
                .await
                .unwrap(),
        }
        // The other writer changes what this one wrote (a record written by another process
        // is updated on the log's new end).
        if i % 4 == 1 {
            let (voted, _) = other
                .update(&format!("s{i}"), T0, approve_as("alice"))
                .await
                .unwrap();
            assert_eq!(voted.status, Status::Approved);
        }
    }
    let size = a.audit_size().await.unwrap();
    assert_eq!(size, b.audit_size().await.unwrap());
    let entries = a.audit_entries(0, size as usize + 1).await.unwrap();
    assert_eq!(entries.len() as u64, size);
    let mut tree = countersign_audit::MemoryHashes::new();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.index, i as u64, "the log has a gap");
        tree.append(&e.body).unwrap();
    }
    let all: Vec<u64> = (0..tree.hashes().len() as u64).collect();
    assert_eq!(a.audit_hashes(&all).await.unwrap(), tree.hashes());
    assert_eq!(b.audit_hashes(&all).await.unwrap(), tree.hashes());
    assert_eq!(a.write_failure(), None);
    assert_eq!(b.write_failure(), None);
}

/// `list` pages with a keyset cursor, oldest first, filtered in the database.
pub async fn list_pages_with_a_cursor(store: Arc<dyn Store>) {
    for i in 0..7 {
        let rec = record(
            &format!("p{i}"),
            "bot",
            Effect::Review,
            None,
            Timestamp(T0.millis() + i),
        );
        store.insert(rec, vec![]).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list(ListFilter {
                statuses: vec![Status::Pending],
                limit: 3,
                after: after.clone(),
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().map(|r| (r.created_at, r.id.clone()));
        seen.extend(page.into_iter().map(|r| r.id));
    }
    let want: Vec<String> = (0..7).map(|i| format!("p{i}")).collect();
    assert_eq!(seen, want);
    let none = store
        .list(ListFilter {
            statuses: vec![Status::Allowed],
            limit: 10,
            after: None,
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// A static secret is stored sealed (opaque bytes), replaced by a later set of the same name,
/// each set with its audit entry in the same transaction; the entry never holds the bytes.
pub async fn static_secrets_are_set_replaced_and_audited(store: Arc<dyn Store>) {
    use countersign_store::StoredSecret;
    assert_eq!(store.stored_secret("api").await.unwrap(), None);
    let secret = |sealed: &[u8], at: i64| StoredSecret {
        name: "api".into(),
        sealed: sealed.to_vec(),
        set_by: "operator:ops".into(),
        set_at: countersign_core::Timestamp(at),
    };
    let event = || countersign_core::Event::SecretSet {
        by: "operator:ops".into(),
        credential: "api".into(),
        key_id: "k1".into(),
    };
    let before = store.audit_size().await.unwrap();
    store
        .set_secret(secret(b"sealed-one\x00\xff", 1), event())
        .await
        .unwrap();
    assert_eq!(
        store.stored_secret("api").await.unwrap(),
        Some(secret(b"sealed-one\x00\xff", 1))
    );
    store
        .set_secret(secret(b"sealed-two", 2), event())
        .await
        .unwrap();
    assert_eq!(
        store.stored_secret("api").await.unwrap(),
        Some(secret(b"sealed-two", 2))
    );
    assert_eq!(store.stored_secret("other").await.unwrap(), None);
    assert_eq!(store.audit_size().await.unwrap(), before + 2);
    let entries = store.audit_entries(before, 10).await.unwrap();
    for e in &entries {
        let text = String::from_utf8_lossy(&e.body);
        assert!(text.contains("\"type\":\"secret_set\""), "{text}");
        assert!(!text.contains("sealed-"), "{text}");
        assert_eq!(e.action_id, None);
    }
    // Debug shows no bytes.
    let shown = format!("{:?}", secret(b"sealed-two", 2));
    assert!(
        !shown.contains("115") && shown.contains("10 bytes"),
        "{shown}"
    );
}

/// A review routed to two channels (one wanting only `decided`), with its events.
fn routed(id: &str, effect: Effect) -> (ActionRecord, Vec<countersign_core::Event>) {
    let mut decision = record(id, "bot", effect, None, T0).decision;
    decision.notify = vec![
        countersign_core::Route::all("webhook:ops"),
        countersign_core::Route {
            channel: "webhook:pager".into(),
            events: vec!["decided".into()],
        },
    ];
    ActionRecord::submit(
        &bot("bot"),
        NewAction {
            id: id.into(),
            grant_jti: format!("jti-{id}"),
            spec: ActionSpec::new("db.export", "pg://x", "prod", None).unwrap(),
            justification: "j".into(),
            on_behalf_of: None,
            idempotency_key: None,
            decision,
            default_review_ttl: Duration::from_secs(60),
            grant_ttl: Duration::from_secs(60),
            grant_on_allow: true,
            analysis: None,
        },
        T0,
    )
    .unwrap()
}

/// The outbox is written by the write path, in the transaction of the change: a review opened
/// and decided queues one row per event and route that wants it, each naming its audit entry; a
/// refused transition and an allowed action queue nothing; delivery outcomes, the message id and
/// a requeue are recorded through the writer; due rows come one per action and channel, in order.
pub async fn outbox_rows_are_written_with_the_change(store: Arc<dyn Store>) {
    use countersign_store::{OutboxChange, OutboxFilter, OutboxState};
    let all = |store: Arc<dyn Store>| async move {
        store
            .outbox_list(OutboxFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
    };
    let (allowed, events) = routed("o-allow", Effect::Allow);
    store.insert(allowed, events).await.unwrap();
    assert!(
        all(store.clone()).await.is_empty(),
        "an allowed action notifies nobody"
    );

    let (rec, events) = routed("o1", Effect::Review);
    store.insert(rec, events).await.unwrap();
    let rows = all(store.clone()).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (
            rows[0].channel.as_str(),
            rows[0].kind.as_str(),
            rows[0].state
        ),
        ("webhook:ops", "review_opened", OutboxState::Queued)
    );
    let entry = store
        .audit_entries(rows[0].audit_index, 1)
        .await
        .unwrap()
        .remove(0);
    assert!(String::from_utf8(entry.body)
        .unwrap()
        .contains("\"type\":\"review_opened\""));

    // A refused vote writes no row.
    let refused = store
        .update(
            "o1",
            T0,
            Box::new(|r: &mut ActionRecord| {
                r.vote(
                    &bot("bot2"),
                    Ballot::Approve { comment: None },
                    T0,
                    "g".into(),
                    Duration::from_secs(1),
                    |_| Decision::allow(Vec::new()),
                )
            }),
        )
        .await;
    assert!(refused.is_err());
    assert_eq!(all(store.clone()).await.len(), 1);

    store.update("o1", T0, approve_as("alice")).await.unwrap();
    let rows = all(store.clone()).await;
    let kinds: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.channel.as_str(), r.kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("webhook:ops", "review_opened"),
            ("webhook:ops", "voted"),
            ("webhook:ops", "decided"),
            ("webhook:pager", "decided"),
        ]
    );
    // One due per action and channel, the oldest first.
    let due = store.outbox_due(T0, 10).await.unwrap();
    let due_ids: Vec<i64> = due.iter().map(|n| n.id).collect();
    assert_eq!(due_ids, [rows[0].id, rows[3].id]);
    assert!(store
        .outbox_due(Timestamp(T0.millis() - 1), 10)
        .await
        .unwrap()
        .is_empty());
    store
        .outbox_record(vec![
            OutboxChange::Delivered {
                id: rows[0].id,
                at: T0,
                message: Some("m-1".into()),
            },
            OutboxChange::Retry {
                id: rows[3].id,
                next_at: Timestamp(T0.millis() + 5_000),
                error: "500".into(),
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        store.channel_message("o1", "webhook:ops").await.unwrap(),
        Some("m-1".into())
    );
    let due: Vec<i64> = store
        .outbox_due(T0, 10)
        .await
        .unwrap()
        .iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(due, [rows[1].id], "the retried row waits for its backoff");
    assert_eq!(
        store.outbox_next_due().await.unwrap(),
        Some(T0),
        "the ops channel's next row"
    );
    store
        .outbox_record(vec![OutboxChange::Dead {
            id: rows[3].id,
            error: "gone".into(),
        }])
        .await
        .unwrap();
    let dead = store.outbox_get(rows[3].id).await.unwrap().unwrap();
    assert_eq!((dead.state, dead.attempts), (OutboxState::Dead, 2));
    assert_eq!(dead.last_error.as_deref(), Some("gone"));
    store
        .outbox_record(vec![OutboxChange::Requeue {
            id: rows[3].id,
            at: T0,
        }])
        .await
        .unwrap();
    let again = store.outbox_get(rows[3].id).await.unwrap().unwrap();
    assert_eq!((again.state, again.attempts), (OutboxState::Queued, 0));
    // Claims: of concurrent claims of the same due rows each row goes to one; a claimed row
    // is not due again before the claim's end, a row not due is not claimed.
    let due: Vec<i64> = store
        .outbox_due(T0, 10)
        .await
        .unwrap()
        .iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(due.len(), 2, "{due:?}");
    let until = Timestamp(T0.millis() + 10_000);
    let (a, b) = tokio::join!(
        store.outbox_claim(due.clone(), T0, until),
        store.outbox_claim(due.clone(), T0, until)
    );
    let (mut a, b) = (a.unwrap(), b.unwrap());
    assert!(a.iter().all(|id| !b.contains(id)), "{a:?} {b:?}");
    a.extend(b);
    a.sort();
    assert_eq!(a, due);
    assert!(store.outbox_due(T0, 10).await.unwrap().is_empty());
    assert!(store
        .outbox_claim(due.clone(), T0, until)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.outbox_due(until, 10).await.unwrap().len(), 2);
    let counts = store.outbox_counts().await.unwrap();
    assert!(counts.contains(&(OutboxState::Delivered, "webhook:ops".into(), 1)));
    assert!(counts.contains(&(OutboxState::Queued, "webhook:ops".into(), 2)));
}
