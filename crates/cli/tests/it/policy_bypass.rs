//! Issue #13's policy bypasses, end to end over the API: an evaluation error never lets a forbid
//! drop out, a reviewer's modify is judged as a new request, and only a named executor service
//! (or the requester) redeems a grant.

use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{code, id, Gw};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbid_whose_condition_errors_still_denies() {
    let gw = Gw::start().await;
    for amount in [json!(5000.5), json!("5000"), json!(null), json!([5000])] {
        let v = gw
            .submit(
                "bot",
                json!({"action": "payment.send", "resource": "bank://acme", "params": {"amount": amount}}),
            )
            .await;
        assert_eq!(v["status"], "denied", "{amount}: {v}");
        let reason = v["decision"]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("no-big-payments"), "{amount}: {reason}");
    }
    let small = gw
        .submit(
            "bot",
            json!({"action": "payment.send", "resource": "bank://acme", "params": {"amount": 50}}),
        )
        .await;
    assert_eq!(small["status"], "pending", "{small}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reviewer_cannot_approve_alone_what_a_modify_made_bigger() {
    let gw = Gw::start().await;
    let v = gw
        .submit(
            "bot",
            json!({"action": "db.read", "resource": "pg://prod/users", "params": {"rows": 10}}),
        )
        .await;
    assert_eq!(v["status"], "pending", "{v}");
    // bob is an SRE (enough for 10 rows) and a data owner; 100000 rows need two data owners.
    let (s, r) = gw
        .vote(
            "bob",
            &id(&v),
            json!({"verdict": "modify", "params": {"rows": 100000}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "pending", "bob alone must not approve: {r}");
    let (s, r) = gw
        .vote("alice", &id(&v), json!({"verdict": "approve"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "pending", "an SRE is not a data owner: {r}");
    let (s, r) = gw
        .vote("carol", &id(&v), json!({"verdict": "approve"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "approved", "{r}");
    // The log says the review widened.
    let (_, log) = gw.get("alice", "/v1/audit/entries?start=0&limit=20").await;
    let widened: Vec<_> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["type"] == "review_widened")
        .collect();
    assert_eq!(widened.len(), 1, "{log}");
    assert_eq!(widened[0]["entry"]["event"]["quorum"], json!([1, 2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_requester_or_the_named_executor_redeems() {
    let mut extra = String::new();
    for id in ["deployer", "intruder"] {
        let hash = hex::encode(Sha256::digest(format!("tok-{id}").as_bytes()));
        extra += &format!(
            "[[identities]]\nid = \"{id}\"\nkind = \"service\"\ngroups = []\napi_key_sha256 = \"{hash}\"\n\n"
        );
    }
    let gw = Gw::start_with(&extra).await;
    let approved = |body: serde_json::Value| {
        let gw = &gw;
        async move {
            let v = gw.submit("bot", body).await;
            let (s, r) = gw
                .vote("alice", &id(&v), json!({"verdict": "approve"}))
                .await;
            assert_eq!(
                (s, r["status"].as_str()),
                (StatusCode::OK, Some("approved")),
                "{r}"
            );
            let (_, mine) = gw.get("bot", &format!("/v1/actions/{}", id(&v))).await;
            mine["grant"]["token"].as_str().unwrap().to_string()
        }
    };
    // A deploy names no executor: no service but the requester redeems it.
    let token = approved(json!({"action": "deploy", "resource": "r"})).await;
    for who in ["ci", "deployer", "intruder"] {
        let (s, r) = gw
            .post(who, "/v1/grants/redeem", json!({"token": token}))
            .await;
        assert_eq!(
            (s, code(&r)),
            (StatusCode::FORBIDDEN, "not_requester"),
            "{who}"
        );
    }
    let (s, _) = gw
        .post("bot", "/v1/grants/redeem", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::OK);
    // A payment names service:deployer: it may redeem; another service may not.
    let token = approved(
        json!({"action": "payment.send", "resource": "bank://acme", "params": {"amount": 5}}),
    )
    .await;
    let (s, r) = gw
        .post("intruder", "/v1/grants/redeem", json!({"token": token}))
        .await;
    assert_eq!((s, code(&r)), (StatusCode::FORBIDDEN, "not_requester"));
    let (s, r) = gw
        .post("deployer", "/v1/grants/redeem", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
}
