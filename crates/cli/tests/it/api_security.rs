//! Attempts to break the invariants through the API: self-approval, agents voting, approving for
//! the human you act for, double redemption under concurrency, forged and foreign grants.

use base64::Engine;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{code, id, Gw};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_approves_their_own_request() {
    let gw = Gw::start().await;
    // alice is an SRE and could approve deploys, but not her own.
    let v = gw
        .submit("alice", json!({"action": "deploy", "resource": "r"}))
        .await;
    let (s, r) = gw
        .vote("alice", &id(&v), json!({"verdict": "approve"}))
        .await;
    assert_eq!((s, code(&r)), (StatusCode::FORBIDDEN, "self_approval"));
    let (s, r) = gw
        .vote(
            "alice",
            &id(&v),
            json!({"verdict": "modify", "params": {"x": 1}}),
        )
        .await;
    assert_eq!((s, code(&r)), (StatusCode::FORBIDDEN, "self_approval"));
    let (_, list) = gw.get("alice", "/v1/reviews").await;
    assert!(
        list["reviews"].as_array().unwrap().is_empty(),
        "own requests are not offered for review"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_and_services_never_vote() {
    let gw = Gw::start().await;
    let v = gw
        .submit("alice", json!({"action": "deploy", "resource": "r"}))
        .await;
    for who in ["bot", "ci"] {
        // `ci` is a service in the sre group: membership does not make it a reviewer.
        let (s, r) = gw.vote(who, &id(&v), json!({"verdict": "approve"})).await;
        assert_eq!(
            (s, code(&r)),
            (StatusCode::FORBIDDEN, "agents_cannot_approve"),
            "{who}"
        );
    }
    let (_, after) = gw.get("alice", &format!("/v1/actions/{}", id(&v))).await;
    assert_eq!(after["status"], "pending");
    assert!(after["review"]["votes"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_human_an_agent_acts_for_cannot_approve() {
    let gw = Gw::start().await;
    let v = gw
        .submit(
            "bot",
            json!({"action": "deploy", "resource": "r", "on_behalf_of": "alice"}),
        )
        .await;
    let (_, full) = gw.get("bot", &format!("/v1/actions/{}", id(&v))).await;
    assert_eq!(full["on_behalf_of"], "alice");
    let (s, r) = gw
        .vote("alice", &id(&v), json!({"verdict": "approve"}))
        .await;
    assert_eq!((s, code(&r)), (StatusCode::FORBIDDEN, "self_approval"));
    let (s, r) = gw.vote("bob", &id(&v), json!({"verdict": "approve"})).await;
    assert_eq!(
        (s, r["status"].as_str()),
        (StatusCode::OK, Some("approved"))
    );

    let (s, r) = gw
        .post(
            "alice",
            "/v1/actions",
            json!({"action": "deploy", "resource": "r", "on_behalf_of": "bob"}),
        )
        .await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::FORBIDDEN, "on_behalf_of_not_allowed")
    );
    let (s, r) = gw
        .post(
            "bot",
            "/v1/actions",
            json!({"action": "deploy", "resource": "r", "on_behalf_of": "ci"}),
        )
        .await;
    assert_eq!((s, code(&r)), (StatusCode::BAD_REQUEST, "invalid_request"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_parallel_redeemers_one_success() {
    let gw = Gw::start().await;
    let v = gw
        .submit("bot", json!({"action": "deploy", "resource": "r"}))
        .await;
    gw.vote("alice", &id(&v), json!({"verdict": "approve"}))
        .await;
    let (_, mine) = gw.get("bot", &format!("/v1/actions/{}", id(&v))).await;
    let token = mine["grant"]["token"].as_str().unwrap().to_string();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (http, url, token) = (gw.http.clone(), gw.url.clone(), token.clone());
            tokio::spawn(async move {
                let resp = http
                    .post(format!("{url}/v1/grants/redeem"))
                    .bearer_auth("tok-bot")
                    .json(&json!({"token": token}))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status();
                let body: serde_json::Value = resp.json().await.unwrap();
                (status, body)
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let (s, body) = t.await.unwrap();
        match s {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => assert_eq!(code(&body), "grant_already_used"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tampered_and_foreign_grants_are_refused() {
    let gw = Gw::start().await;
    let a = gw
        .submit(
            "bot",
            json!({"action": "logs.read", "resource": "r", "params": {"n": 1}}),
        )
        .await;
    let b = gw
        .submit(
            "bot",
            json!({"action": "logs.read", "resource": "r", "params": {"n": 2}}),
        )
        .await;
    let token = a["grant"]["token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;

    // Claims swapped to the other action, signature kept: the signature no longer matches.
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["action_id"] = b["id"].clone();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    // A token signed by another gateway's key.
    let other = Gw::start().await;
    let c = other
        .submit("bot", json!({"action": "logs.read", "resource": "r"}))
        .await;
    let foreign = c["grant"]["token"].as_str().unwrap().to_string();
    // alg=none.
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    for bad in [
        tampered,
        foreign,
        none,
        "garbage".to_string(),
        String::new(),
        "a.b.c".into(),
    ] {
        let (s, r) = gw
            .post("bot", "/v1/grants/redeem", json!({"token": bad}))
            .await;
        assert_eq!(
            (s, code(&r)),
            (StatusCode::FORBIDDEN, "grant_invalid"),
            "{bad}"
        );
    }
    // Someone else's valid token.
    let (s, r) = gw
        .post("dave", "/v1/grants/redeem", json!({"token": token}))
        .await;
    assert_eq!((s, code(&r)), (StatusCode::FORBIDDEN, "not_requester"));
    // The genuine one still works, once.
    let (s, _) = gw
        .post("bot", "/v1/grants/redeem", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_and_rejected_actions_never_redeem() {
    let gw = Gw::start().await;
    let v = gw
        .submit("bot", json!({"action": "logs.read", "resource": "r"}))
        .await;
    let token = v["grant"]["token"].as_str().unwrap().to_string();
    let (s, _) = gw
        .post("bot", &format!("/v1/actions/{}/cancel", id(&v)), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, r) = gw
        .post("bot", "/v1/grants/redeem", json!({"token": token}))
        .await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "grant_revoked"));
    let (_, r) = gw.get("bot", &format!("/v1/actions/{}", id(&v))).await;
    assert!(
        r["grant"].get("token").is_none(),
        "a revoked grant's token is not shown again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_see_only_their_own_actions() {
    let gw = Gw::start().await;
    let v = gw
        .submit("alice", json!({"action": "deploy", "resource": "r"}))
        .await;
    let (s, r) = gw.get("bot", &format!("/v1/actions/{}", id(&v))).await;
    assert_eq!((s, code(&r)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, _) = gw.get("bob", &format!("/v1/actions/{}", id(&v))).await;
    assert_eq!(s, StatusCode::OK);
}
