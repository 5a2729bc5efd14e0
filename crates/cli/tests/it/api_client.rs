//! `countersign_api::Client` against the real server: every endpoint's answer reads back into
//! the shared wire types, and refusals carry the server's stable code.

use countersign_api::{
    Client, ClientError, ConsistencyQuery, CreateKeyRequest, EntriesQuery, ErrorCode,
    InclusionQuery, ResultRequest, ReviewsQuery, SubmitRequest, Timeouts,
};
use countersign_core::{IdentityKind, Outcome, Status};
use serde_json::json;
use std::time::{Duration, Instant};

use crate::support::Gw;

fn client(gw: &Gw, who: &str) -> Client {
    Client::new(&gw.url, &format!("tok-{who}"), Timeouts::default()).unwrap()
}

fn deploy(resource: &str) -> SubmitRequest {
    SubmitRequest {
        action: "deploy".into(),
        resource: resource.into(),
        environment: Some("production".into()),
        params: Some(json!({"v": 1})),
        justification: Some("fix".into()),
        ..SubmitRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_reads_back_into_the_wire_types() {
    let gw = Gw::start_with("admin_group = \"sec\"").await;
    let (bot, alice, bob, erin) = (
        client(&gw, "bot"),
        client(&gw, "alice"),
        client(&gw, "bob"),
        client(&gw, "erin"),
    );
    assert_eq!(bot.health().await.unwrap().status, "ok");
    assert_eq!(bot.ready().await.unwrap().status, "ready");
    assert!(bot.authenticates().await);
    assert!(
        !Client::new(&gw.url, "nope", Timeouts::default())
            .unwrap()
            .authenticates()
            .await
    );
    assert!(bot.grant_keys().await.unwrap()["keys"].is_array());
    // Who a credential is: its id, kind and groups; an unknown one is a 401 like any call.
    let me = bot.whoami().await.unwrap();
    assert_eq!((me.id.as_str(), me.kind), ("bot", IdentityKind::Agent));
    assert_eq!(alice.whoami().await.unwrap().id, "alice");
    match Client::new(&gw.url, "nope", Timeouts::default())
        .unwrap()
        .whoami()
        .await
    {
        Err(countersign_api::ClientError::Api { status, code, .. }) => {
            assert_eq!((status.as_u16(), code.as_str()), (401, "unauthenticated"));
        }
        other => panic!("{other:?}"),
    }

    // Submit with an idempotency key; the retry is a replay of the same action.
    let first = bot.submit(&deploy("k8s://a"), Some("k1")).await.unwrap();
    assert!(!first.replayed && !first.reused);
    let id = first.submitted.id().to_string();
    assert_eq!(first.submitted.status(), Status::Pending);
    let again = bot.submit(&deploy("k8s://a"), Some("k1")).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.submitted.id(), id);

    // A question, its answer, then approval released to a long poll.
    let asked = alice.clarify(&id, "why?".into()).await.unwrap();
    assert_eq!(asked.status(), Status::NeedsClarification);
    let answered = bot.answer(&id, "a fix".into()).await.unwrap();
    assert_eq!(
        answered.review().unwrap().clarifications()[0].answer(),
        Some("a fix")
    );
    let page = alice.reviews(&ReviewsQuery::default()).await.unwrap();
    assert!(page.reviews.iter().any(|a| a.id() == id));
    let waiter = {
        let bot = bot.clone();
        let id = id.clone();
        tokio::spawn(async move { bot.wait(&id, Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    alice.approve(&id, Some("go".into())).await.unwrap();
    let approved = waiter.await.unwrap().unwrap();
    assert_eq!(approved.status(), Status::Approved);
    assert_eq!(approved.environment(), "production");
    let token = approved.grant().unwrap().token().unwrap().to_string();

    // A second vote is refused with its code; redeem once, then report.
    let err = bob.deny(&id, None).await.unwrap_err();
    assert_eq!(err.error_code(), Some(ErrorCode::NotPending), "{err}");
    let redeemed = bot.redeem(&token).await.unwrap();
    assert_eq!(
        (redeemed.action_id.as_str(), redeemed.params["v"].as_i64()),
        (id.as_str(), Some(1))
    );
    let err = bot.redeem(&token).await.unwrap_err();
    assert_eq!(err.error_code(), Some(ErrorCode::GrantAlreadyUsed), "{err}");
    let report = ResultRequest {
        outcome: Outcome::Succeeded,
        exit_code: Some(0),
        output_sha256: None,
        detail: Some("done".into()),
    };
    let done = bot.report(&id, &report).await.unwrap();
    assert_eq!(done.status(), Status::Succeeded);
    assert_eq!(done.result().unwrap().detail(), Some("done"));

    // Modify and cancel.
    let other = bot.submit(&deploy("k8s://b"), None).await.unwrap();
    let other_id = other.submitted.id().to_string();
    let modified = alice
        .modify(&other_id, json!({"v": 2}), None)
        .await
        .unwrap();
    assert_eq!(modified.params()["v"], 2);
    let third = bot.submit(&deploy("k8s://c"), None).await.unwrap();
    let cancelled = bot.cancel(third.submitted.id()).await.unwrap();
    assert_eq!(cancelled.status(), Status::Cancelled);
    let err = alice.cancel(&other_id).await.unwrap_err();
    assert!(matches!(err, ClientError::Api { .. }), "{err}");

    // The audit log: entries, the action's own entries, and proofs once a checkpoint covers them.
    let entries = alice.audit_entries(&EntriesQuery::default()).await.unwrap();
    assert!(entries.entries.len() > 5);
    assert!(!alice.audit_public_key().await.unwrap().is_empty());
    let started = Instant::now();
    let note = loop {
        match alice.checkpoint().await {
            Ok(note) => break note,
            Err(e) => {
                assert_eq!(e.error_code(), Some(ErrorCode::NotFound), "{e}");
                assert!(started.elapsed() < Duration::from_secs(10), "no checkpoint");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(!note.is_empty());
    let shown = bot.get(&id).await.unwrap();
    assert!(!shown.audit().unwrap().indexes.is_empty());
    let inclusion = alice
        .inclusion(&InclusionQuery {
            index: 0,
            tree_size: 2,
        })
        .await
        .unwrap();
    assert_eq!(inclusion.hashes.len(), 1);
    let consistency = alice
        .consistency(&ConsistencyQuery {
            first: 1,
            second: 2,
        })
        .await
        .unwrap();
    assert_eq!(consistency.second, 2);

    // Managed keys: create (the secret once), list, revoke.
    let created = erin
        .create_key(&CreateKeyRequest {
            identity: "keybot".into(),
            kind: IdentityKind::Agent,
            groups: vec!["automation".into()],
            expires: Some("90d".into()),
        })
        .await
        .unwrap();
    assert!(created.secret.starts_with("csk_"));
    assert!(created.key.expires_at.is_some() && created.key.revoked_at.is_none());
    let listed = erin.list_keys().await.unwrap();
    assert!(listed.keys.iter().any(|k| k.id == created.key.id));
    let revoked = erin.revoke_key(&created.key.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    let err = bot.list_keys().await.unwrap_err();
    assert_eq!(err.error_code(), Some(ErrorCode::Forbidden), "{err}");
}
