//! `GET /v1/reviews` against a flood: the per-requester cap on open reviews, newest first,
//! keyset pages with `limit` and `cursor`, and closed statuses.

use crate::support::{code, id, Gw};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn review_ids(v: &Value) -> Vec<String> {
    v["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_agent_is_capped_and_hides_no_later_review() {
    let gw = Gw::start_with("max_open_reviews_per_requester = 20\n").await;
    let mut flood = Vec::new();
    for n in 0..20 {
        let v = gw
            .submit(
                "bot",
                json!({"action": "deploy", "resource": format!("svc-{n}")}),
            )
            .await;
        flood.push(id(&v));
    }
    // The 21st open review of the same requester is refused, and nothing is recorded.
    let (s, v) = gw
        .post(
            "bot",
            "/v1/actions",
            json!({"action": "deploy", "resource": "one-more"}),
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(code(&v), "too_many_open_reviews");
    // An allowed action is not a review: not capped.
    gw.submit("bot", json!({"action": "logs.read", "resource": "r"}))
        .await;
    // A real request from another requester, after the flood, is first in every reviewer's list.
    let real = id(&gw
        .submit("ci", json!({"action": "deploy", "resource": "prod"}))
        .await);
    let (s, v) = gw.get("alice", "/v1/reviews?limit=5").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let first = review_ids(&v);
    assert_eq!(first.len(), 5);
    assert_eq!(first[0], real);
    // Pages by cursor reach every review once, then end.
    let mut seen: Vec<String> = first.clone();
    let mut cursor = v["next_cursor"].as_str().unwrap().to_string();
    loop {
        let (s, v) = gw
            .get("alice", &format!("/v1/reviews?limit=5&cursor={cursor}"))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        seen.extend(review_ids(&v));
        match v["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 21, "{seen:?}");
    assert_eq!(unique.len(), 21);
    // The requester (a service in group sre) never sees its own review.
    let (_, v) = gw.get("ci", "/v1/reviews?limit=100").await;
    assert!(!review_ids(&v).contains(&real));
    // A decided review is listed under its status.
    let (s, v) = gw.vote("alice", &real, json!({"verdict": "approve"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = gw.get("bob", "/v1/reviews?status=approved").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(review_ids(&v), vec![real.clone()]);
    let (_, v) = gw.get("bob", "/v1/reviews").await;
    assert!(!review_ids(&v).contains(&real));
    // Carol is not an SRE: none of these are hers.
    let (_, v) = gw.get("carol", "/v1/reviews?status=pending,approved").await;
    assert!(review_ids(&v).is_empty(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_cursor_is_refused() {
    let gw = Gw::start().await;
    for cursor in ["not-base64!", "Zm9v", "OnNvbWVpZA", "MTIzOg"] {
        let (s, v) = gw
            .get("alice", &format!("/v1/reviews?cursor={cursor}"))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{cursor}: {v}");
        assert_eq!(code(&v), "invalid_request");
    }
}
