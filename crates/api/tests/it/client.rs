//! The client against a stub server on loopback: what it sends, how it reads refusals, and its
//! timeout policy.

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use countersign_api::{Client, ClientError, ErrorBody, ErrorCode, SubmitRequest, Timeouts};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn submit(headers: HeaderMap, Json(body): Json<Value>) -> Response {
    assert_eq!(
        body,
        json!({"action": "deploy", "resource": "k8s://prod", "environment": "production", "on_behalf_of": "carol"})
    );
    let answer = json!({
        "id": "a1", "status": "pending", "digest": crate::wire::DIGEST,
        "decision": {"effect": "review", "policies": ["p"]}
    });
    match headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        Some("again") => (
            StatusCode::CREATED,
            [("idempotent-replayed", "true")],
            Json(answer),
        )
            .into_response(),
        Some(other) => panic!("unexpected key {other}"),
        None => (StatusCode::OK, Json(answer)).into_response(),
    }
}

async fn action(Path(id): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    match id.as_str() {
        "a/b" => (
            StatusCode::NOT_FOUND,
            Json(ErrorBody::new(ErrorCode::NotFound, "no such action")),
        )
            .into_response(),
        "slow" => {
            // Answers in 1 s: longer than an ordinary request may take, well within a long poll.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut a = crate::wire::action_json();
            a["id"] = json!(format!(
                "slow wait={}",
                q.get("wait").map_or("-", String::as_str)
            ));
            Json(a).into_response()
        }
        _ => (StatusCode::BAD_GATEWAY, "not json").into_response(),
    }
}

fn app() -> Router {
    Router::new()
        .route("/v1/actions", post(submit))
        .route("/v1/actions/{id}", get(action))
}

fn timeouts() -> Timeouts {
    Timeouts {
        request: Duration::from_millis(400),
        long_poll_margin: Duration::from_secs(3),
        ..Timeouts::default()
    }
}

#[tokio::test]
async fn submit_sends_every_field_given_and_the_idempotency_key() {
    let url = serve(app()).await;
    let client = Client::new(&url, "tok", timeouts()).unwrap();
    let body = SubmitRequest {
        action: "deploy".into(),
        resource: "k8s://prod".into(),
        environment: Some("production".into()),
        on_behalf_of: Some("carol".into()),
        ..SubmitRequest::default()
    };
    let first = client.submit(&body, None).await.unwrap();
    assert!(first.reused && !first.replayed);
    let again = client.submit(&body, Some("again")).await.unwrap();
    assert!(again.replayed && !again.reused);
    assert_eq!(again.submitted.id(), "a1");
}

#[tokio::test]
async fn a_refusal_carries_the_servers_code_and_an_id_stays_one_segment() {
    let url = serve(app()).await;
    let client = Client::new(&format!("{url}/"), "tok", timeouts()).unwrap();
    let err = client.get("a/b").await.unwrap_err();
    assert_eq!(err.error_code(), Some(ErrorCode::NotFound));
    assert!(matches!(&err, ClientError::Api { status, .. } if *status == StatusCode::NOT_FOUND));
    assert_eq!(err.to_string(), "not_found: no such action");
    let err = client.get("other").await.unwrap_err();
    assert!(matches!(err, ClientError::Unreadable { .. }), "{err}");
    assert!(!err.is_refusal());
}

#[tokio::test]
async fn long_polls_get_their_wait_plus_a_margin_and_other_calls_the_request_timeout() {
    let url = serve(app()).await;
    let client = Client::new(&url, "tok", timeouts()).unwrap();
    let waited = client
        .wait("slow", Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(waited.id(), "slow wait=0.500");
    let err = client.get("slow").await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn an_unreachable_gateway_is_a_transport_error_and_a_bad_url_is_refused_early() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::new(&format!("http://127.0.0.1:{port}"), "t", timeouts()).unwrap();
    assert!(!client.authenticates().await);
    assert!(matches!(
        client.get("x").await.unwrap_err(),
        ClientError::Unreachable { .. }
    ));
    assert!(matches!(
        Client::new("ftp://x", "t", Timeouts::default()).unwrap_err(),
        ClientError::BadUrl { .. }
    ));
}

/// Answers a read of the nil action by the bearer token: a known token gets 404, the others
/// the 401 a gateway gives an unknown, revoked or expired credential.
async fn by_token(headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let (status, code) = match token {
        "known" => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
        "revoked" => (StatusCode::UNAUTHORIZED, ErrorCode::KeyRevoked),
        "expired" => (StatusCode::UNAUTHORIZED, ErrorCode::TokenExpired),
        _ => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated),
    };
    (status, Json(ErrorBody::new(code, "answer"))).into_response()
}

#[tokio::test]
async fn a_revoked_key_or_an_expired_token_does_not_authenticate() {
    let url = serve(Router::new().route("/v1/actions/{id}", get(by_token))).await;
    let with = |token: &str| Client::new(&url, token, timeouts()).unwrap();
    assert!(with("known").authenticates().await);
    for token in ["revoked", "expired", "unknown"] {
        assert!(!with(token).authenticates().await, "{token}");
    }
}
