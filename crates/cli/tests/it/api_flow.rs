//! The main flows through the API: allow, deny, review → vote → grant → redeem → result.

use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

use crate::support::{code, id, Gw};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_action_gets_a_single_use_grant_and_a_result() {
    let gw = Gw::start().await;
    let v = gw
        .submit("bot", json!({"action": "logs.read", "resource": "app://web", "environment": "prod", "params": {"lines": 10}}))
        .await;
    assert_eq!(v["status"], "allowed");
    assert_eq!(v["decision"]["effect"], "allow");
    assert_eq!(v["decision"]["policies"], json!(["reads"]));
    let digest = v["digest"].as_str().unwrap();
    assert!(digest.starts_with("sha256:") && digest.len() == 71);
    let token = v["grant"]["token"].as_str().unwrap().to_string();

    let (s, r) = gw
        .post("bot", "/v1/grants/redeem", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["action_id"], v["id"]);
    assert_eq!(r["digest"], v["digest"]);
    assert_eq!(r["params"], json!({"lines": 10}));
    let (s, r) = gw
        .post("bot", "/v1/grants/redeem", json!({"token": token}))
        .await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "grant_already_used"));

    let path = format!("/v1/actions/{}/result", id(&v));
    let (s, r) = gw
        .post(
            "bot",
            &path,
            json!({"outcome": "succeeded", "exit_code": 0, "output_sha256": "ab".repeat(32)}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["result"]["exit_code"], 0);
    let (s, r) = gw.post("bot", &path, json!({"outcome": "failed"})).await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::CONFLICT, "result_already_reported")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_allowed_actions_need_no_grant() {
    let gw = Gw::start_with("grants_for_allowed = false").await;
    let v = gw
        .submit("bot", json!({"action": "logs.read", "resource": "r"}))
        .await;
    assert_eq!(v["status"], "allowed");
    assert!(v.get("grant").is_none());
    let (s, r) = gw
        .post(
            "bot",
            &format!("/v1/actions/{}/result", id(&v)),
            json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!(
        (s, r["status"].as_str()),
        (StatusCode::OK, Some("succeeded"))
    );
    // Reviewed actions still get theirs.
    let v = gw
        .submit("bot", json!({"action": "deploy", "resource": "r"}))
        .await;
    gw.vote("alice", &id(&v), json!({"verdict": "approve"}))
        .await;
    let (_, r) = gw.get("bot", &format!("/v1/actions/{}", id(&v))).await;
    assert!(r["grant"]["token"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_action_is_denied_with_the_policy_reason() {
    let gw = Gw::start().await;
    let v = gw
        .submit(
            "bot",
            json!({"action": "db.drop", "resource": "pg://prod/users"}),
        )
        .await;
    assert_eq!(v["status"], "denied");
    assert_eq!(v["decision"]["reason"], "dropping tables is forbidden");
    assert_eq!(v["decision"]["policies"], json!(["no-drop"]));
    assert!(v.get("grant").is_none());
    let v = gw
        .submit("bot", json!({"action": "never.heard.of", "resource": "x"}))
        .await;
    assert_eq!(v["status"], "denied");
    assert_eq!(v["decision"]["reason"], "no policy permits this action");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_flow_with_long_poll_release_redeem_and_result() {
    let gw = Gw::start().await;
    let v = gw
        .submit("bot", json!({"action": "deploy", "resource": "k8s://prod/web", "environment": "production", "justification": "hotfix 1.2.3"}))
        .await;
    assert_eq!(v["status"], "pending");
    assert_eq!(v["review"]["approvers"], json!(["group:sre"]));
    assert_eq!(v["review"]["quorum"], 1);
    assert!(v.get("grant").is_none());
    let action = id(&v);

    let (s, list) = gw.get("alice", "/v1/reviews?status=pending").await;
    assert_eq!(s, StatusCode::OK);
    assert!(list["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == action.as_str()));
    let (_, list) = gw.get("dave", "/v1/reviews").await;
    assert!(
        list["reviews"].as_array().unwrap().is_empty(),
        "dave is no approver"
    );

    // A long poll is released by the vote itself, well before its timeout.
    let waiter = {
        let (http, url, action) = (gw.http.clone(), gw.url.clone(), action.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let v: serde_json::Value = http
                .get(format!("{url}/v1/actions/{action}?wait=30"))
                .bearer_auth("tok-bot")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (t.elapsed(), v)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, voted) = gw
        .vote(
            "alice",
            &action,
            json!({"verdict": "approve", "comment": "ok"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{voted}");
    assert_eq!(voted["status"], "approved");
    assert!(
        voted["grant"].get("token").is_none(),
        "only the requester sees the token"
    );
    let (waited, polled) = waiter.await.unwrap();
    assert_eq!(polled["status"], "approved");
    assert!(
        waited < Duration::from_secs(5),
        "released by the vote, not the timeout: {waited:?}"
    );
    let token = polled["grant"]["token"].as_str().unwrap().to_string();

    // Results before redeeming are refused for approved actions.
    let (s, r) = gw
        .post(
            "bot",
            &format!("/v1/actions/{action}/result"),
            json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "grant_not_redeemed"));
    let (s, r) = gw
        .post("bot", "/v1/grants/redeem", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, r) = gw
        .post(
            "bot",
            &format!("/v1/actions/{action}/result"),
            json!({"outcome": "failed", "exit_code": 3, "detail": "rollout stuck"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "failed");
    let (_, r) = gw.get("bot", &format!("/v1/actions/{action}")).await;
    assert_eq!(r["review"]["votes"][0]["voter"], "alice");
    assert_eq!(r["review"]["votes"][0]["comment"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_returns_at_its_timeout_when_nothing_happens() {
    let gw = Gw::start().await;
    let v = gw
        .submit("bot", json!({"action": "deploy", "resource": "r"}))
        .await;
    let t = Instant::now();
    let (s, r) = gw
        .get("bot", &format!("/v1/actions/{}?wait=0.3", id(&v)))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["status"], "pending");
    assert!(t.elapsed() >= Duration::from_millis(290));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_counts_distinct_people() {
    let gw = Gw::start().await;
    let v = gw
        .submit(
            "bot",
            json!({"action": "db.export", "resource": "pg://prod/orders"}),
        )
        .await;
    let action = id(&v);
    let (s, r) = gw.vote("bob", &action, json!({"verdict": "approve"})).await;
    assert_eq!((s, r["status"].as_str()), (StatusCode::OK, Some("pending")));
    assert_eq!(r["review"]["requirements"][0]["approvals"], 1);
    let (s, r) = gw.vote("bob", &action, json!({"verdict": "approve"})).await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "already_voted"));
    let (s, r) = gw
        .vote("alice", &action, json!({"verdict": "approve"}))
        .await;
    assert_eq!((s, code(&r)), (StatusCode::FORBIDDEN, "not_an_approver"));
    let (s, r) = gw
        .vote("carol", &action, json!({"verdict": "approve"}))
        .await;
    assert_eq!(
        (s, r["status"].as_str()),
        (StatusCode::OK, Some("approved"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modify_binds_the_grant_to_the_new_digest() {
    let gw = Gw::start().await;
    let v = gw
        .submit(
            "bot",
            json!({"action": "deploy", "resource": "r", "params": {"replicas": 10}}),
        )
        .await;
    let action = id(&v);
    let (s, r) = gw
        .vote(
            "alice",
            &action,
            json!({"verdict": "modify", "params": {"replicas": 2}, "comment": "start small"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "approved");
    assert_ne!(r["digest"], v["digest"]);
    let (_, mine) = gw.get("bot", &format!("/v1/actions/{action}")).await;
    let token = mine["grant"]["token"].as_str().unwrap();
    let (s, red) = gw
        .post("bot", "/v1/grants/redeem", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(red["params"], json!({"replicas": 2}));
    assert_eq!(red["digest"], r["digest"]);
    // The audit trail shows what was asked and what the reviewer changed it to.
    let (_, log) = gw.get("alice", "/v1/audit/entries?start=0&limit=3").await;
    let submitted = &log["entries"][0]["entry"]["event"];
    assert_eq!(submitted["spec"]["action"], "deploy");
    assert_eq!(submitted["spec"]["params"], json!({"replicas": 10}));
    assert_eq!(submitted["digest"], v["digest"]);
    let voted = &log["entries"][2]["entry"]["event"];
    assert_eq!(voted["verdict"], "modify");
    assert_eq!(voted["params"], json!({"replicas": 2}));
    assert_eq!(voted["digest"], r["digest"]);
}

/// A vote that names the digest its voter read is refused (409 `digest_mismatch`, nothing
/// counted) when another reviewer modified the action since; a malformed digest is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_on_a_digest_the_action_no_longer_has_is_refused() {
    let gw = Gw::start().await;
    let v = gw
        .submit(
            "bot",
            json!({"action": "db.export", "resource": "pg://prod/orders", "params": {"rows": 10}}),
        )
        .await;
    let action = id(&v);
    let read_by_bob = v["digest"].clone();
    let (s, r) = gw
        .vote(
            "carol",
            &action,
            json!({"verdict": "modify", "params": {"rows": 1000000}}),
        )
        .await;
    assert_eq!(
        (s, r["status"].as_str()),
        (StatusCode::OK, Some("pending")),
        "{r}"
    );
    let (s, r) = gw
        .vote(
            "bob",
            &action,
            json!({"verdict": "approve", "digest": read_by_bob}),
        )
        .await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::CONFLICT, "digest_mismatch"),
        "{r}"
    );
    let (_, now) = gw.get("bot", &format!("/v1/actions/{action}")).await;
    assert_eq!(now["status"], "pending");
    assert_eq!(now["review"]["votes"].as_array().unwrap().len(), 1, "{now}");
    for bad in [json!("sha256:zz"), json!(7), json!("")] {
        let (s, r) = gw
            .vote("bob", &action, json!({"verdict": "approve", "digest": bad}))
            .await;
        assert_eq!(
            (s, code(&r)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{r}"
        );
    }
    let (s, r) = gw
        .vote(
            "bob",
            &action,
            json!({"verdict": "approve", "digest": now["digest"]}),
        )
        .await;
    assert_eq!(
        (s, r["status"].as_str()),
        (StatusCode::OK, Some("approved")),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modification_that_policy_forbids_is_refused() {
    let gw = Gw::start().await;
    let v = gw.submit("bot", json!({"action": "iam.grant", "resource": "aws://iam/role", "params": {"role": "reader"}})).await;
    assert_eq!(v["status"], "pending");
    let (s, r) = gw
        .vote(
            "erin",
            &id(&v),
            json!({"verdict": "modify", "params": {"role": "admin"}}),
        )
        .await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::FORBIDDEN, "modification_denied")
    );
    let (_, after) = gw.get("bot", &format!("/v1/actions/{}", id(&v))).await;
    assert_eq!(after["status"], "pending");
    assert_eq!(after["digest"], v["digest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clarification_round_trip() {
    let gw = Gw::start().await;
    let v = gw
        .submit("bot", json!({"action": "deploy", "resource": "r"}))
        .await;
    let action = id(&v);
    let (s, r) = gw
        .vote(
            "alice",
            &action,
            json!({"verdict": "clarify", "question": "which build?"}),
        )
        .await;
    assert_eq!(
        (s, r["status"].as_str()),
        (StatusCode::OK, Some("needs_clarification"))
    );
    let (s, r) = gw
        .post(
            "alice",
            &format!("/v1/actions/{action}/answer"),
            json!({"answer": "me"}),
        )
        .await;
    assert_eq!((s, code(&r)), (StatusCode::FORBIDDEN, "not_requester"));
    let (s, r) = gw
        .post(
            "bot",
            &format!("/v1/actions/{action}/answer"),
            json!({"answer": "build 42"}),
        )
        .await;
    assert_eq!((s, r["status"].as_str()), (StatusCode::OK, Some("pending")));
    assert_eq!(r["review"]["clarifications"][0]["answer"], "build 42");
    let (s, r) = gw
        .vote("alice", &action, json!({"verdict": "approve"}))
        .await;
    assert_eq!(
        (s, r["status"].as_str()),
        (StatusCode::OK, Some("approved"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_rejects_and_cancel_withdraws() {
    let gw = Gw::start().await;
    let v = gw
        .submit("bot", json!({"action": "db.export", "resource": "r"}))
        .await;
    let (s, r) = gw
        .vote(
            "bob",
            &id(&v),
            json!({"verdict": "deny", "comment": "not today"}),
        )
        .await;
    assert_eq!(
        (s, r["status"].as_str()),
        (StatusCode::OK, Some("rejected"))
    );
    let (s, r) = gw
        .vote("carol", &id(&v), json!({"verdict": "approve"}))
        .await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "not_pending"));

    let v = gw
        .submit("bot", json!({"action": "deploy", "resource": "r"}))
        .await;
    let (s, r) = gw
        .post(
            "alice",
            &format!("/v1/actions/{}/cancel", id(&v)),
            json!({}),
        )
        .await;
    assert_eq!((s, code(&r)), (StatusCode::FORBIDDEN, "not_requester"));
    let (s, r) = gw
        .post("bot", &format!("/v1/actions/{}/cancel", id(&v)), json!({}))
        .await;
    assert_eq!(
        (s, r["status"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    let (s, r) = gw
        .vote("alice", &id(&v), json!({"verdict": "approve"}))
        .await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "not_pending"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeper_records_expiry_even_if_nobody_reads() {
    let gw = Gw::start().await;
    let v = gw
        .submit("bot", json!({"action": "quick", "resource": "r"}))
        .await;
    assert_eq!(v["status"], "pending");
    // Read the database directly: the state is recorded by the sweeper, not computed on read.
    let db = gw.dir.path().join("data/gw.db");
    let started = Instant::now();
    while rusqlite_free_read(&db, &id(&v)) != "expired" {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the sweeper never recorded expiry"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "not before its TTL"
    );
    let (s, r) = gw
        .vote("alice", &id(&v), json!({"verdict": "approve"}))
        .await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "not_pending"));
    let (_, r) = gw.get("bot", &format!("/v1/actions/{}", id(&v))).await;
    assert_eq!(r["status"], "expired");
    assert!(r.get("grant").is_none());
}

/// Reads an action's status straight from the SQLite file, bypassing the gateway.
fn rusqlite_free_read(db: &std::path::Path, id: &str) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT status FROM actions WHERE id = ?1", [id], |r| {
        r.get(0)
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_grant_is_gone() {
    let gw = Gw::start_with("grant_ttl = \"1s\"").await;
    let v = gw
        .submit("bot", json!({"action": "logs.read", "resource": "r"}))
        .await;
    let token = v["grant"]["token"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, r) = gw
        .post("bot", "/v1/grants/redeem", json!({"token": token}))
        .await;
    assert_eq!((s, code(&r)), (StatusCode::GONE, "grant_expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_returns_the_first_answer() {
    let gw = Gw::start().await;
    let body = json!({"action": "deploy", "resource": "r", "params": {"v": 1}});
    let send = |key: &'static str, body: serde_json::Value| {
        let (http, url) = (gw.http.clone(), gw.url.clone());
        async move {
            let resp = http
                .post(format!("{url}/v1/actions"))
                .bearer_auth("tok-bot")
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let replay = resp.headers().get("idempotent-replayed").is_some();
            (
                resp.status(),
                replay,
                resp.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (s1, replay1, first) = send("k-1", body.clone()).await;
    assert_eq!((s1, replay1), (StatusCode::CREATED, false));
    let (s2, replay2, second) = send("k-1", body.clone()).await;
    assert_eq!((s2, replay2), (StatusCode::CREATED, true));
    assert_eq!(first["id"], second["id"]);
    let (s3, _, err) = send(
        "k-1",
        json!({"action": "deploy", "resource": "r", "params": {"v": 2}}),
    )
    .await;
    assert_eq!(
        (s3, code(&err)),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_conflict")
    );

    // Concurrent retries with one key open exactly one review.
    let tasks: Vec<_> = (0..16)
        .map(|_| tokio::spawn(send("k-2", body.clone())))
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let (s, _, v) = t.await.unwrap();
        assert_eq!(s, StatusCode::CREATED);
        ids.insert(v["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1);
    let (_, list) = gw.get("alice", "/v1/reviews").await;
    assert_eq!(
        list["reviews"].as_array().unwrap().len(),
        2,
        "k-1 and k-2, once each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_endpoints_and_metrics() {
    let gw = Gw::start().await;
    let (s, v) = gw.get("", "/healthz").await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, v) = gw.get("", "/v1/keys").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["keys"][0]["crv"], "Ed25519");
    let (s, v) = gw.get("", "/openapi.json").await;
    assert_eq!((s, v["openapi"].as_str()), (StatusCode::OK, Some("3.1.0")));
    gw.submit("bot", json!({"action": "logs.read", "resource": "r"}))
        .await;
    gw.submit("bot", json!({"action": "deploy", "resource": "r"}))
        .await;
    let text = crate::support::get_text(&gw.http, format!("{}/metrics", gw.url)).await;
    assert!(
        text.contains("countersign_decisions_total{effect=\"allow\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("countersign_decisions_total{effect=\"review\"} 1"),
        "{text}"
    );
    assert!(text.contains("countersign_reviews_open 1"), "{text}");
    assert!(
        text.contains("countersign_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("countersign_time_to_decision_seconds"),
        "{text}"
    );
}

/// `POST /v1/actions` with `reuse_open`, answering 201 (new) or 200 (reused), and the id.
async fn submit_reusing(
    gw: &Gw,
    who: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let mut body = body;
    body["reuse_open"] = json!(true);
    gw.post(who, "/v1/actions", body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_open_answers_with_the_open_review_or_unused_approval() {
    let gw = Gw::start().await;
    let body = json!({"action": "deploy", "resource": "r", "params": {"v": 1}});
    let (s, first) = submit_reusing(&gw, "bot", body.clone()).await;
    assert_eq!(
        (s, first["status"].as_str()),
        (StatusCode::CREATED, Some("pending"))
    );
    let a = id(&first);
    let (_, entries) = gw
        .get("alice", "/v1/audit/entries?start=0&limit=1000")
        .await;
    let audit_size = entries["entries"].as_array().map(Vec::len);
    assert!(audit_size.is_some_and(|n| n > 0), "{entries}");

    // Pending: the same action, 200, nothing recorded.
    let (s, again) = submit_reusing(&gw, "bot", body.clone()).await;
    assert_eq!((s, id(&again)), (StatusCode::OK, a.clone()));
    assert_eq!(again["status"], "pending");
    let (_, entries) = gw
        .get("alice", "/v1/audit/entries?start=0&limit=1000")
        .await;
    assert_eq!(entries["entries"].as_array().map(Vec::len), audit_size);
    // Another requester, or different params, or `reuse_open` false: new actions.
    let (s, other) = submit_reusing(&gw, "ci", body.clone()).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_ne!(id(&other), a);
    let (s, v2) = submit_reusing(
        &gw,
        "bot",
        json!({"action": "deploy", "resource": "r", "params": {"v": 2}}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_ne!(id(&v2), a);
    let mut off = body.clone();
    off["reuse_open"] = json!(false);
    let plain = gw.submit("bot", off).await;
    assert_ne!(id(&plain), a);
    gw.post(
        "bot",
        &format!("/v1/actions/{}/cancel", id(&plain)),
        json!({}),
    )
    .await;

    // Approved and unused: the same action with its grant token, which works once.
    gw.vote("alice", &a, json!({"verdict": "approve"})).await;
    let (s, approved) = submit_reusing(&gw, "bot", body.clone()).await;
    assert_eq!((s, id(&approved)), (StatusCode::OK, a.clone()));
    assert_eq!(approved["status"], "approved");
    let token = approved["grant"]["token"].as_str().unwrap().to_string();
    let (s, r) = gw
        .post("bot", "/v1/grants/redeem", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    // Redeemed: a new review.
    let (s, fresh) = submit_reusing(&gw, "bot", body.clone()).await;
    assert_eq!(s, StatusCode::CREATED);
    let b = id(&fresh);
    assert_ne!(b, a);
    // Rejected: a new review.
    gw.vote("alice", &b, json!({"verdict": "deny"})).await;
    let (s, fresh) = submit_reusing(&gw, "bot", body.clone()).await;
    assert_eq!(s, StatusCode::CREATED);
    let c = id(&fresh);
    assert!(c != a && c != b);
    // Cancelled: a new review.
    gw.post("bot", &format!("/v1/actions/{c}/cancel"), json!({}))
        .await;
    let (s, fresh) = submit_reusing(&gw, "bot", body.clone()).await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(![&a, &b, &c].contains(&&id(&fresh)));

    // Past the review's deadline (even before the sweeper records it): a new review.
    let quick = json!({"action": "quick", "resource": "r"});
    let (s, q) = submit_reusing(&gw, "bot", quick.clone()).await;
    assert_eq!(s, StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, q2) = submit_reusing(&gw, "bot", quick).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_ne!(id(&q2), id(&q));

    // Policy decides every submission: an allowed or denied one is never answered by another.
    for what in [
        json!({"action": "logs.read", "resource": "r"}),
        json!({"action": "db.drop", "resource": "r"}),
    ] {
        let (s1, x) = submit_reusing(&gw, "bot", what.clone()).await;
        let (s2, y) = submit_reusing(&gw, "bot", what).await;
        assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
        assert_ne!(id(&x), id(&y));
    }

    // A wrong type is a 400 like any other field's.
    let (s, err) = gw
        .post(
            "bot",
            "/v1/actions",
            json!({"action": "deploy", "resource": "r", "reuse_open": "yes"}),
        )
        .await;
    assert_eq!(
        (s, code(&err)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_open_skips_an_approval_whose_grant_expired() {
    let gw = Gw::start_with("grant_ttl = \"1s\"").await;
    let body = json!({"action": "deploy", "resource": "r"});
    let (_, first) = submit_reusing(&gw, "bot", body.clone()).await;
    gw.vote("alice", &id(&first), json!({"verdict": "approve"}))
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, fresh) = submit_reusing(&gw, "bot", body).await;
    assert_eq!(
        (s, fresh["status"].as_str()),
        (StatusCode::CREATED, Some("pending"))
    );
    assert_ne!(id(&fresh), id(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reuse_open_submissions_open_one_review() {
    let gw = std::sync::Arc::new(Gw::start().await);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move {
                submit_reusing(&gw, "bot", json!({"action": "deploy", "resource": "same"})).await
            })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for t in tasks {
        let (s, v) = t.await.unwrap();
        created += usize::from(s == StatusCode::CREATED);
        ids.insert(id(&v));
    }
    assert_eq!((created, ids.len()), (1, 1));
    let (_, list) = gw.get("alice", "/v1/reviews").await;
    assert_eq!(list["reviews"].as_array().unwrap().len(), 1);
}
