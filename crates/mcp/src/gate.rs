//! The one small trait the proxy asks for decisions through, and its two implementations: a
//! remote gateway over the HTTP API v1 ([`Remote`]) and a gateway embedded in this process
//! ([`Embedded`]). The proxy holds no rule: it submits, waits, redeems, reports and cancels.

use async_trait::async_trait;
use countersign_core::{ActionRecord, ActionSpec, Effect, Identity, Outcome, Verdict};
use countersign_gateway::{ActionView, Gateway, GatewayError, Submission};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// A gateway call that failed.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The gateway refused the request (a stable code and its message).
    #[error("{code}: {message}")]
    Refused {
        /// Machine-readable code.
        code: String,
        /// Human sentence.
        message: String,
    },
    /// The gateway could not be reached or answered nonsense.
    #[error("the countersign gateway is unreachable: {0}")]
    Unreachable(String),
}

impl From<GatewayError> for GateError {
    fn from(e: GatewayError) -> Self {
        GateError::Refused {
            code: e.code().to_string(),
            message: e.to_string(),
        }
    }
}

/// What the proxy needs to know about an action.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tracked {
    /// Action id.
    pub id: String,
    /// Status wire name (`allowed`, `pending`, `approved`, `rejected`...).
    pub status: String,
    /// Why policy decided as it did.
    pub reason: Option<String>,
    /// Who may approve (while under review).
    pub approvers: Vec<String>,
    /// Reviewers' comments, in order (`verdict: comment`).
    pub comments: Vec<String>,
    /// A usable single-use grant for the requester.
    pub grant_token: Option<String>,
}

/// What a redeemed grant allows: the approved arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Approved {
    /// Action id.
    pub action_id: String,
    /// The approved parameters (a reviewer's modification included).
    pub params: Value,
}

/// The gateway, seen from the MCP proxy. Every call acts as the proxy's one agent identity.
#[async_trait]
pub trait Gate: Send + Sync {
    /// Submits an action.
    async fn submit(&self, sub: Submission) -> Result<Tracked, GateError>;
    /// Reads an action, waiting up to `wait` for it to leave review.
    async fn wait(&self, id: &str, wait: Duration) -> Result<Tracked, GateError>;
    /// Withdraws an action.
    async fn cancel(&self, id: &str) -> Result<(), GateError>;
    /// Redeems a grant, once.
    async fn redeem(&self, token: &str) -> Result<Approved, GateError>;
    /// Reports how the call went.
    async fn report(
        &self,
        id: &str,
        outcome: Outcome,
        output_sha256: Option<String>,
        detail: Option<String>,
    ) -> Result<(), GateError>;
    /// Records a message the proxy refused before it reached the server (`code`: the stable
    /// reason) in the audit trail, where this gate can. Returns whether it was recorded.
    async fn refused(&self, code: &str) -> bool;
    /// What policy would say about a tool called with no arguments, where the gateway can tell
    /// without recording anything (used to filter `tools/list`). `None`: unknown.
    fn preview(&self, spec: &ActionSpec) -> Option<Effect>;
}

fn comments_of(record: &ActionRecord) -> Vec<String> {
    record
        .review
        .iter()
        .flat_map(|r| r.votes.iter())
        .filter(|v| v.verdict != Verdict::Approve || v.comment.is_some())
        .map(|v| match &v.comment {
            Some(c) => format!("{} ({}): {c}", v.verdict.as_str(), v.voter),
            None => format!("{} ({})", v.verdict.as_str(), v.voter),
        })
        .collect()
}

fn tracked_from_view(view: ActionView) -> Tracked {
    let r = &view.record;
    let mut approvers: Vec<String> = r
        .review
        .iter()
        .flat_map(|rv| rv.requirements.iter())
        .flat_map(|q| q.approvers.entries())
        .collect();
    approvers.sort();
    approvers.dedup();
    Tracked {
        id: r.id.clone(),
        status: r.status.as_str().to_string(),
        reason: r.decision.reason.clone(),
        approvers,
        comments: comments_of(r),
        grant_token: view.grant_token,
    }
}

/// A gateway running in this process (`--config FILE`).
pub struct Embedded {
    gateway: Arc<Gateway>,
    who: Identity,
}

impl Embedded {
    /// Acts as `who` on `gateway`.
    pub fn new(gateway: Arc<Gateway>, who: Identity) -> Self {
        Embedded { gateway, who }
    }
}

#[async_trait]
impl Gate for Embedded {
    async fn submit(&self, sub: Submission) -> Result<Tracked, GateError> {
        let (view, _) = self.gateway.submit(&self.who, sub).await?;
        Ok(tracked_from_view(view))
    }

    async fn wait(&self, id: &str, wait: Duration) -> Result<Tracked, GateError> {
        Ok(tracked_from_view(
            self.gateway.wait(&self.who, id, wait).await?,
        ))
    }

    async fn cancel(&self, id: &str) -> Result<(), GateError> {
        self.gateway.cancel(&self.who, id).await?;
        Ok(())
    }

    async fn redeem(&self, token: &str) -> Result<Approved, GateError> {
        let r = self.gateway.redeem(&self.who, token).await?;
        Ok(Approved {
            action_id: r.action_id,
            params: Value::Object(r.spec.params),
        })
    }

    async fn report(
        &self,
        id: &str,
        outcome: Outcome,
        output_sha256: Option<String>,
        detail: Option<String>,
    ) -> Result<(), GateError> {
        self.gateway
            .report(&self.who, id, outcome, None, output_sha256, detail)
            .await?;
        Ok(())
    }

    async fn refused(&self, code: &str) -> bool {
        self.gateway
            .record_refused(&self.who, "mcp_message", code)
            .await;
        true
    }

    fn preview(&self, spec: &ActionSpec) -> Option<Effect> {
        self.gateway
            .decide(&self.who, spec, "")
            .ok()
            .map(|d| d.effect)
    }
}

/// A gateway reached over its HTTP API v1 (`--gateway URL --token TOKEN`).
pub struct Remote {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Remote {
    /// A client for the gateway at `url`, authenticating with `token`.
    pub fn new(url: &str, token: String) -> Result<Self, GateError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            // Below the gateway's default header_read_timeout (10 s), which also closes idle
            // keep-alive connections: a pooled connection is never reused as the server closes it.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| GateError::Unreachable(e.to_string()))?;
        Ok(Remote {
            http,
            url: url.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// Whether the gateway knows this token (any answer but `unauthenticated`).
    pub async fn authenticates(&self) -> bool {
        let probe = "/v1/actions/00000000-0000-0000-0000-000000000000";
        match self.send(reqwest::Method::GET, probe, None).await {
            Ok(_) => true,
            Err(GateError::Refused { code, .. }) => code != "unauthenticated",
            Err(GateError::Unreachable(_)) => false,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, GateError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
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
        Err(GateError::Refused {
            code: text("code"),
            message: text("message"),
        })
    }
}

fn tracked_from_json(v: &Value) -> Result<Tracked, GateError> {
    let s = |v: &Value| v.as_str().map(str::to_string);
    let id = s(&v["id"]).ok_or_else(|| GateError::Unreachable("answer without an id".into()))?;
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
        status: s(&v["status"]).unwrap_or_default(),
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
        let mut body = json!({
            "action": sub.action,
            "resource": sub.resource,
            "params": sub.params,
        });
        if let Some(j) = sub.justification {
            body["justification"] = Value::String(j);
        }
        if sub.reuse_open {
            body["reuse_open"] = Value::Bool(true);
        }
        let v = self
            .send(reqwest::Method::POST, "/v1/actions", Some(body))
            .await?;
        tracked_from_json(&v)
    }

    async fn wait(&self, id: &str, wait: Duration) -> Result<Tracked, GateError> {
        let path = format!("/v1/actions/{id}?wait={}", wait.as_secs().min(60));
        tracked_from_json(&self.send(reqwest::Method::GET, &path, None).await?)
    }

    async fn cancel(&self, id: &str) -> Result<(), GateError> {
        let path = format!("/v1/actions/{id}/cancel");
        self.send(reqwest::Method::POST, &path, None).await?;
        Ok(())
    }

    async fn redeem(&self, token: &str) -> Result<Approved, GateError> {
        let v = self
            .send(
                reqwest::Method::POST,
                "/v1/grants/redeem",
                Some(json!({ "token": token })),
            )
            .await?;
        Ok(Approved {
            action_id: v["action_id"].as_str().unwrap_or_default().to_string(),
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
        self.send(reqwest::Method::POST, &path, Some(body)).await?;
        Ok(())
    }

    async fn refused(&self, _code: &str) -> bool {
        // The HTTP API v1 has no endpoint for an adapter's refusals: the proxy's log has them.
        false
    }

    fn preview(&self, _spec: &ActionSpec) -> Option<Effect> {
        None
    }
}
