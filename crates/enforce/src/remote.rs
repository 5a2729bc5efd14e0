//! A gateway reached over its HTTP API v1 (`--gateway URL --token TOKEN`).

use async_trait::async_trait;
use countersign_core::{ActionSpec, Effect, Outcome, Status};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

use crate::gate::{Approved, Gate, GateError, Gates, Submission, Tracked};

/// The request timeout: above the longest long poll the gate asks for (60 s).
const TIMEOUT: Duration = Duration::from_secs(90);

/// `POST /v1/actions`'s body for `sub` (its idempotency key goes in a header).
pub(crate) fn submit_body(sub: &Submission) -> Value {
    let mut body = json!({
        "action": sub.action,
        "resource": sub.resource,
        "params": sub.params,
    });
    let optional = [
        ("environment", &sub.environment),
        ("justification", &sub.justification),
        ("on_behalf_of", &sub.on_behalf_of),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            body[k] = Value::String(v.clone());
        }
    }
    if sub.reuse_open {
        body["reuse_open"] = Value::Bool(true);
    }
    body
}

/// An HTTP client for the gateway's API.
fn client() -> Result<reqwest::Client, GateError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        // Below the gateway's default header_read_timeout (10 s), which also closes idle
        // keep-alive connections: a pooled connection is never reused as the server closes it.
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| GateError::Unreachable(e.to_string()))
}

/// A gateway reached over its HTTP API v1, acting as one token's identity.
pub struct Remote {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Remote {
    /// A client for the gateway at `url`, authenticating with `token`.
    pub fn new(url: &str, token: String) -> Result<Self, GateError> {
        Ok(Remote::with_client(client()?, url, token))
    }

    fn with_client(http: reqwest::Client, url: &str, token: String) -> Self {
        Remote {
            http,
            url: url.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// Whether the gateway knows this token (any answer but `unauthenticated`).
    pub async fn authenticates(&self) -> bool {
        self.check().await.is_ok()
    }

    /// Asks the gateway whether it knows this token: `Unauthenticated` if not.
    async fn check(&self) -> Result<(), GateError> {
        let probe = "/v1/actions/00000000-0000-0000-0000-000000000000";
        match self.send(reqwest::Method::GET, probe, None, None).await {
            Ok(_) | Err(GateError::Refused { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, GateError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| GateError::Unreachable(format!("{}: {e}", self.url)))?;
        let status = resp.status();
        let value: Value = resp
            .json()
            .await
            .map_err(|e| GateError::Unreachable(format!("unreadable answer ({status}): {e}")))?;
        if status.is_success() {
            return Ok(value);
        }
        let text = |k: &str| value["error"][k].as_str().unwrap_or("").to_string();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(GateError::Unauthenticated(text("message")));
        }
        Err(GateError::Refused {
            code: text("code"),
            message: text("message"),
        })
    }
}

fn tracked_from_json(v: &Value) -> Result<Tracked, GateError> {
    let s = |v: &Value| v.as_str().map(str::to_string);
    let id = s(&v["id"]).ok_or_else(|| GateError::Unreachable("answer without an id".into()))?;
    let status = v["status"]
        .as_str()
        .and_then(Status::parse)
        .ok_or_else(|| GateError::Unreachable(format!("unknown action status {}", v["status"])))?;
    let comments = v["review"]["votes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|vote| vote["verdict"] != "approve" || vote["comment"].is_string())
        .map(|vote| {
            let head = format!(
                "{} ({})",
                vote["verdict"].as_str().unwrap_or("?"),
                vote["voter"].as_str().unwrap_or("?")
            );
            match vote["comment"].as_str() {
                Some(c) => format!("{head}: {c}"),
                None => head,
            }
        })
        .collect();
    Ok(Tracked {
        id,
        status,
        reason: s(&v["decision"]["reason"]),
        approvers: v["review"]["approvers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(s)
            .collect(),
        comments,
        grant_token: s(&v["grant"]["token"]),
    })
}

#[async_trait]
impl Gate for Remote {
    async fn submit(&self, sub: Submission) -> Result<Tracked, GateError> {
        let body = submit_body(&sub);
        let key = sub.idempotency_key.as_deref();
        let v = self
            .send(reqwest::Method::POST, "/v1/actions", Some(body), key)
            .await?;
        tracked_from_json(&v)
    }

    async fn wait(&self, id: &str, wait: Duration) -> Result<Tracked, GateError> {
        let path = format!("/v1/actions/{id}?wait={}", wait.as_secs().min(60));
        tracked_from_json(&self.send(reqwest::Method::GET, &path, None, None).await?)
    }

    async fn cancel(&self, id: &str) -> Result<(), GateError> {
        let path = format!("/v1/actions/{id}/cancel");
        self.send(reqwest::Method::POST, &path, None, None).await?;
        Ok(())
    }

    async fn redeem(&self, token: &str) -> Result<Approved, GateError> {
        let body = json!({ "token": token });
        let v = self
            .send(reqwest::Method::POST, "/v1/grants/redeem", Some(body), None)
            .await?;
        let action_id = v["action_id"]
            .as_str()
            .ok_or_else(|| GateError::Unreachable("a redeemed grant without an action".into()))?;
        Ok(Approved {
            action_id: action_id.to_string(),
            params: v["params"].clone(),
        })
    }

    async fn report(
        &self,
        id: &str,
        outcome: Outcome,
        output_sha256: Option<String>,
        detail: Option<String>,
    ) -> Result<(), GateError> {
        let mut body = json!({ "outcome": outcome.as_str() });
        if let Some(h) = output_sha256 {
            body["output_sha256"] = Value::String(h);
        }
        if let Some(d) = detail {
            body["detail"] = Value::String(d);
        }
        let path = format!("/v1/actions/{id}/result");
        self.send(reqwest::Method::POST, &path, Some(body), None)
            .await?;
        Ok(())
    }

    async fn refused(&self, _code: &str) -> bool {
        // The HTTP API v1 has no endpoint for an adapter's refusals: the front's log has them.
        false
    }

    fn preview(&self, _spec: &ActionSpec) -> Option<Effect> {
        None
    }
}

/// Remote gates for many agents (`mcp http --gateway URL`): one HTTP client, and each
/// request's token checked with the gateway before it is relayed.
pub struct RemoteGates {
    http: reqwest::Client,
    url: String,
}

impl RemoteGates {
    /// Gates on the gateway at `url`.
    pub fn new(url: &str) -> Result<Self, GateError> {
        Ok(RemoteGates {
            http: client()?,
            url: url.to_string(),
        })
    }
}

#[async_trait]
impl Gates for RemoteGates {
    async fn gate_for(&self, token: &str) -> Result<Arc<dyn Gate>, GateError> {
        let remote = Remote::with_client(self.http.clone(), &self.url, token.to_string());
        remote.check().await?;
        Ok(Arc::new(remote))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use axum::http::HeaderMap;
    use std::sync::Mutex;

    type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

    /// A gateway that records what it is sent and answers every submission `allowed`.
    async fn fake_gateway() -> (String, Seen) {
        let seen: Seen = Arc::default();
        let s = seen.clone();
        let app = axum::Router::new().route(
            "/v1/actions",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let s = s.clone();
                async move {
                    let v: Value = serde_json::from_str(&body).unwrap();
                    s.lock().unwrap().push((headers, v));
                    (
                        axum::http::StatusCode::CREATED,
                        [("content-type", "application/json")],
                        r#"{"id":"a1","status":"allowed"}"#,
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    #[tokio::test]
    async fn submit_sends_environment_on_behalf_of_and_the_idempotency_key() {
        let (url, seen) = fake_gateway().await;
        let gate = Remote::new(&url, "t".into()).unwrap();
        let tracked = gate
            .submit(Submission {
                action: "db.export".into(),
                resource: "postgres://prod/customers".into(),
                environment: Some("production".into()),
                params: Some(json!({"rows": 10})),
                justification: Some("audit".into()),
                on_behalf_of: Some("alice".into()),
                idempotency_key: Some("key-1".into()),
                reuse_open: true,
            })
            .await
            .unwrap();
        assert_eq!(tracked.status, Status::Allowed);
        let seen = seen.lock().unwrap();
        let (headers, body) = &seen[0];
        assert_eq!(body["environment"], "production");
        assert_eq!(body["on_behalf_of"], "alice");
        assert_eq!(body["justification"], "audit");
        assert_eq!(body["reuse_open"], true);
        assert_eq!(headers["idempotency-key"], "key-1");
    }

    #[test]
    fn an_unknown_status_is_not_taken_for_any() {
        let v = json!({"id": "a1", "status": "approved-ish"});
        assert!(matches!(
            tracked_from_json(&v),
            Err(GateError::Unreachable(_))
        ));
        let v = json!({"id": "a1", "status": "needs_clarification"});
        assert!(tracked_from_json(&v).unwrap().waits());
    }
}
