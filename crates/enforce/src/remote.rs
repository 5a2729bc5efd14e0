//! A gateway reached over its HTTP API v1 (`--gateway URL --token TOKEN`).

use async_trait::async_trait;
use countersign_api::{Action, Client, ClientError, ResultRequest, SubmitRequest, Timeouts};
use countersign_core::{ActionSpec, Effect, Status, Verdict};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

use crate::gate::{
    Approved, Gate, GateError, Gates, Question, Report, ReviewProgress, Submission, Tracked,
};

/// `POST /v1/actions`'s body for `sub` (its idempotency key goes in a header).
pub(crate) fn submit_request(sub: &Submission) -> SubmitRequest {
    SubmitRequest {
        action: sub.action.clone(),
        resource: sub.resource.clone(),
        environment: sub.environment.clone(),
        params: sub.params.clone(),
        justification: sub.justification.clone(),
        on_behalf_of: sub.on_behalf_of.clone(),
        reuse_open: sub.reuse_open.then_some(true),
    }
}

/// The body as JSON (for the size limit every gate applies).
pub(crate) fn submit_body(sub: &Submission) -> Value {
    serde_json::to_value(submit_request(sub)).unwrap_or(Value::Null)
}

fn gate_error(e: ClientError) -> GateError {
    match e {
        ClientError::Api {
            status, message, ..
        } if status.as_u16() == 401 => GateError::Unauthenticated(message),
        ClientError::Api { code, message, .. } => GateError::Refused { code, message },
        other => GateError::Unreachable(other.to_string()),
    }
}

/// What a front needs of an action the API answered with.
fn tracked(
    id: &str,
    status: Status,
    reason: Option<&str>,
    review: Option<&countersign_api::Review<'_>>,
    grant: Option<&countersign_api::Grant<'_>>,
) -> Tracked {
    let comments = review
        .map(|r| r.votes())
        .unwrap_or_default()
        .iter()
        .filter(|v| v.verdict() != Verdict::Approve || v.comment().is_some())
        .map(|v| {
            let head = format!("{} ({})", v.verdict().as_str(), v.voter());
            match v.comment() {
                Some(c) => format!("{head}: {c}"),
                None => head,
            }
        })
        .collect();
    Tracked {
        id: id.to_string(),
        status,
        reason: reason.map(str::to_string),
        approvers: review.map(|r| r.approvers().to_vec()).unwrap_or_default(),
        comments,
        grant_token: grant.and_then(|g| g.token()).map(str::to_string),
        review: review.map(|r| {
            let (approvals, needed) = r.requirements().iter().fold((0, 0), |(a, n), q| {
                let got = u32::try_from(q.approvals()).unwrap_or(u32::MAX);
                (a + got.min(q.quorum()), n + q.quorum())
            });
            ReviewProgress {
                approvals,
                needed,
                expires_at: r.expires_at(),
            }
        }),
        question: review.and_then(|r| {
            Question::open(
                r.clarifications()
                    .iter()
                    .map(|c| (c.asked_by(), c.question(), c.answer().is_some())),
            )
        }),
    }
}

fn tracked_action(a: &Action<'_>) -> Tracked {
    tracked(
        a.id(),
        a.status(),
        a.decision().reason(),
        a.review(),
        a.grant(),
    )
}

/// A gateway reached over its HTTP API v1 (the typed client of `countersign-api`), acting as
/// one token's identity.
pub struct Remote {
    client: Client,
    /// The identity the token proved at the last [`Remote::check`].
    me: std::sync::OnceLock<String>,
}

impl Remote {
    /// A client for the gateway at `url`, authenticating with `token`.
    pub fn new(url: &str, token: String) -> Result<Self, GateError> {
        let client = Client::new(url, &token, Timeouts::default()).map_err(gate_error)?;
        Ok(Remote {
            client,
            me: std::sync::OnceLock::new(),
        })
    }

    /// Whether the gateway knows this token (any answer but a 401).
    pub async fn authenticates(&self) -> bool {
        self.check().await.is_ok()
    }

    /// Asks the gateway who this token is (`GET /v1/whoami`) and remembers the answer for
    /// [`Gate::identity`]: `Unauthenticated` on any 401 (unknown, revoked or expired),
    /// `Unreachable` if it does not answer, and any other refusal (a gateway without the
    /// endpoint) is an error too: a front that cannot learn who the token is does not guess.
    async fn check(&self) -> Result<(), GateError> {
        let me = self.client.whoami().await.map_err(gate_error)?;
        if let Some(known) = self.me.get() {
            if *known != me.id {
                return Err(GateError::Unauthenticated(format!(
                    "the credential was `{known}` and is now `{}`",
                    me.id
                )));
            }
        }
        let _ = self.me.set(me.id);
        Ok(())
    }
}

#[async_trait]
impl Gate for Remote {
    fn identity(&self) -> Option<String> {
        self.me.get().cloned()
    }

    async fn submit(&self, sub: Submission) -> Result<Tracked, GateError> {
        let key = sub.idempotency_key.as_deref();
        let answer = self
            .client
            .submit(&submit_request(&sub), key)
            .await
            .map_err(gate_error)?;
        let s = &answer.submitted;
        Ok(tracked(
            s.id(),
            s.status(),
            s.decision().reason(),
            s.review(),
            s.grant(),
        ))
    }

    async fn wait(&self, id: &str, wait: Duration) -> Result<Tracked, GateError> {
        let a = self.client.wait(id, wait).await.map_err(gate_error)?;
        Ok(tracked_action(&a))
    }

    async fn cancel(&self, id: &str) -> Result<(), GateError> {
        self.client.cancel(id).await.map_err(gate_error)?;
        Ok(())
    }

    async fn answer(&self, id: &str, answer: String) -> Result<Tracked, GateError> {
        let a = self.client.answer(id, answer).await.map_err(gate_error)?;
        Ok(tracked_action(&a))
    }

    async fn redeem(&self, token: &str) -> Result<Approved, GateError> {
        let r = self.client.redeem(token).await.map_err(gate_error)?;
        Ok(Approved {
            action_id: r.action_id,
            params: Value::Object(r.params),
            credentials: r.credentials,
        })
    }

    async fn credentials(
        &self,
        id: &str,
        public_key: Option<&str>,
    ) -> Result<crate::gate::Released, GateError> {
        let body = countersign_api::CredentialsRequest {
            public_key: public_key.map(str::to_string),
        };
        let r = self
            .client
            .credentials(id, &body)
            .await
            .map_err(gate_error)?;
        let mut out = crate::gate::Released {
            expires_at: Some(r.expires_at),
            ..Default::default()
        };
        for c in r.credentials {
            out.env.extend(c.env);
            out.files
                .extend(c.files.into_iter().map(|f| crate::gate::ReleasedFile {
                    env: f.env,
                    name: f.name,
                    contents: f.contents,
                }));
        }
        Ok(out)
    }

    async fn report(&self, id: &str, report: Report) -> Result<(), GateError> {
        let body = ResultRequest {
            outcome: report.outcome,
            exit_code: report.exit_code,
            output_sha256: report.output_sha256,
            detail: report.detail,
        };
        self.client.report(id, &body).await.map_err(gate_error)?;
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

/// Remote gates for many agents (`mcp http --gateway URL`): each request's token checked with
/// the gateway before it is relayed.
pub struct RemoteGates {
    url: String,
}

impl RemoteGates {
    /// Gates on the gateway at `url`.
    pub fn new(url: &str) -> Result<Self, GateError> {
        Client::new(url, "", Timeouts::default()).map_err(gate_error)?;
        Ok(RemoteGates {
            url: url.to_string(),
        })
    }
}

#[async_trait]
impl Gates for RemoteGates {
    async fn gate_for(&self, token: &str) -> Result<Arc<dyn Gate>, GateError> {
        let remote = Remote::new(&self.url, token.to_string())?;
        remote.check().await?;
        Ok(Arc::new(remote))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use axum::http::HeaderMap;
    use serde_json::json;
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
                        r#"{"id":"a1","status":"allowed","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","decision":{"effect":"allow","policies":[]}}"#,
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
}
