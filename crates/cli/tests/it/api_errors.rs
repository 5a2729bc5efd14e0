//! Bad input gets a precise 4xx with a machine-readable code, and changes nothing.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{code, id, Gw};

async fn raw(
    gw: &Gw,
    token: Option<&str>,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    let mut req = gw
        .http
        .post(format!("{}{path}", gw.url))
        .header("content-type", content_type)
        .body(body);
    if let Some(t) = token {
        req = req.header("authorization", t);
    }
    let resp = req.send().await.unwrap();
    let s = resp.status();
    (s, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_failures_are_401() {
    let gw = Gw::start().await;
    let body = br#"{"action":"logs.read","resource":"r"}"#.to_vec();
    for token in [
        None,
        Some("Bearer nope"),
        Some("Basic dG9rLWJvdDo="),
        Some("Bearer "),
        Some("tok-bot"),
    ] {
        let (s, r) = raw(&gw, token, "/v1/actions", "application/json", body.clone()).await;
        assert_eq!(
            (s, code(&r)),
            (StatusCode::UNAUTHORIZED, "unauthenticated"),
            "{token:?}"
        );
    }
    let (s, r) = gw.get("", "/v1/reviews").await;
    assert_eq!((s, code(&r)), (StatusCode::UNAUTHORIZED, "unauthenticated"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_400_and_record_nothing() {
    let gw = Gw::start().await;
    let auth = Some("Bearer tok-bot");
    let cases: Vec<&[u8]> = vec![
        b"{not json",
        b"",
        b"[]",
        br#"{"action":"logs.read"}"#,
        br#"{"action":"logs.read","resource":"r","surprise":1}"#,
        br#"{"action":"logs.read","resource":"r","params":[1,2]}"#,
        br#"{"action":"","resource":"r"}"#,
        br#"{"action":"has space","resource":"r"}"#,
        br#"{"action":"logs.read","resource":"r","environment":"a\nb"}"#,
        br#"{"action":7,"resource":"r"}"#,
    ];
    for body in cases {
        let (s, r) = raw(&gw, auth, "/v1/actions", "application/json", body.to_vec()).await;
        assert_eq!(
            (s, code(&r)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{}",
            String::from_utf8_lossy(body)
        );
        assert!(!r["error"]["message"].as_str().unwrap().is_empty());
    }
    let db = gw.dir.path().join("data/gw.db");
    let n: i64 = rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM actions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_non_json_bodies() {
    let gw = Gw::start().await;
    let big = format!(
        r#"{{"action":"logs.read","resource":"r","params":{{"blob":"{}"}}}}"#,
        "x".repeat(1024 * 1024 + 10)
    );
    let (s, r) = raw(
        &gw,
        Some("Bearer tok-bot"),
        "/v1/actions",
        "application/json",
        big.into_bytes(),
    )
    .await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let (s, r) = raw(
        &gw,
        Some("Bearer tok-bot"),
        "/v1/actions",
        "text/plain",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_votes_and_queries() {
    let gw = Gw::start().await;
    let v = gw
        .submit("bot", json!({"action": "deploy", "resource": "r"}))
        .await;
    let action = id(&v);
    for body in [
        json!({"verdict": "maybe"}),
        json!({"verdict": "modify"}),
        json!({"verdict": "clarify"}),
        json!({"verdict": "approve", "params": {"x": 1}}),
        json!({"verdict": "approve", "extra": true}),
        json!({"verdict": "modify", "params": [1]}),
        json!({"verdict": "modify", "params": {}}),
    ] {
        let (s, r) = gw.vote("alice", &action, body.clone()).await;
        assert_eq!(
            (s, code(&r)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{body}"
        );
    }
    let (s, r) = gw
        .vote("alice", "no-such-id", json!({"verdict": "approve"}))
        .await;
    assert_eq!((s, code(&r)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, r) = gw
        .get("bot", &format!("/v1/actions/{action}?wait=soon"))
        .await;
    assert_eq!((s, code(&r)), (StatusCode::BAD_REQUEST, "invalid_request"));
    let (s, r) = gw.get("alice", "/v1/reviews?status=bogus").await;
    assert_eq!((s, code(&r)), (StatusCode::BAD_REQUEST, "invalid_request"));
    let (s, r) = gw.get("bot", "/v1/nothing").await;
    assert_eq!((s, code(&r)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, r) = gw
        .post(
            "bot",
            &format!("/v1/actions/{action}/result"),
            json!({"outcome": "succeeded", "output_sha256": "xyz"}),
        )
        .await;
    assert_eq!((s, code(&r)), (StatusCode::BAD_REQUEST, "invalid_request"));
    let (_, after) = gw.get("bot", &format!("/v1/actions/{action}")).await;
    assert_eq!(after["status"], "pending");
    assert!(after["review"]["votes"].as_array().unwrap().is_empty());
}

/// `depth` levels of objects, the outermost being `params` itself.
fn nested_params(depth: usize) -> String {
    let mut s = String::from("{}");
    for _ in 1..depth {
        s = format!("{{\"a\":{s}}}");
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_beyond_the_input_limits_are_400_and_record_nothing() {
    // Before the limits, 125-deep params were accepted and their audit entry (3 levels deeper)
    // could no longer be read back; 2^53 + 1 was recorded as 2^53.
    let gw = Gw::start().await;
    let audit_before = audit_count(&gw);
    let cases = [
        (nested_params(33), "32 levels"),
        (nested_params(125), "32 levels"),
        (r#"{"n":9007199254740993}"#.to_string(), "9007199254740991"),
        (
            r#"{"n":[-9007199254740992]}"#.to_string(),
            "9007199254740991",
        ),
        (r#"{"n":18446744073709551616}"#.to_string(), ""),
        (r#"{"n":1e400}"#.to_string(), ""),
        (r#"{"n":-1e400}"#.to_string(), ""),
    ];
    for (params, says) in &cases {
        let body = format!(r#"{{"action":"logs.read","resource":"r","params":{params}}}"#);
        let (s, r) = raw(
            &gw,
            Some("Bearer tok-bot"),
            "/v1/actions",
            "application/json",
            body.into_bytes(),
        )
        .await;
        assert_eq!(
            (s, code(&r)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{params:.80}"
        );
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    // At the limit is fine.
    let body = format!(
        r#"{{"action":"logs.read","resource":"r","params":{}}}"#,
        nested_params(32)
    );
    let (s, _) = raw(
        &gw,
        Some("Bearer tok-bot"),
        "/v1/actions",
        "application/json",
        body.into_bytes(),
    )
    .await;
    assert!(s.is_success(), "{s}");
    assert!(audit_count(&gw) > audit_before);

    // A reviewer's modification obeys the same limits.
    let v = gw
        .submit("bot", json!({"action": "deploy", "resource": "r"}))
        .await;
    let action = id(&v);
    let audit_before = audit_count(&gw);
    let too_deep: serde_json::Value = serde_json::from_str(&nested_params(33)).unwrap();
    for params in [too_deep, json!({"n": 9_007_199_254_740_993u64})] {
        let (s, r) = gw
            .vote(
                "alice",
                &action,
                json!({"verdict": "modify", "params": params}),
            )
            .await;
        assert_eq!((s, code(&r)), (StatusCode::BAD_REQUEST, "invalid_request"));
    }
    assert_eq!(audit_count(&gw), audit_before);
}

fn audit_count(gw: &Gw) -> i64 {
    let db = gw.dir.path().join("data/gw.db");
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM audit_entries", [], |r| r.get(0))
        .unwrap()
}
