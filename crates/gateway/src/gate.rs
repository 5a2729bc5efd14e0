//! The gateway in this process, seen by a front as a [`countersign_enforce::Gate`] (`mcp
//! --config`). Every credential goes through the same [`countersign_identity::Authenticator`] as
//! `serve` (config tokens, managed keys, OIDC), again on every call: a revoked key or an expired
//! token stops at once.

use async_trait::async_trait;
use countersign_core::{ActionRecord, ActionSpec, Effect, Identity, Verdict};
use countersign_enforce::{
    Approved, Gate, GateError, Gates, Question, Released, ReleasedFile, Report, ReviewProgress,
    Submission, Tracked,
};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{ActionView, Gateway, GatewayError};

fn gate_error(e: GatewayError) -> GateError {
    GateError::Refused {
        code: e.code().to_string(),
        message: e.to_string(),
    }
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
        status: r.status,
        reason: r.decision.reason.clone(),
        approvers,
        comments: comments_of(r),
        grant_token: view.grant_token,
        review: r.review.as_ref().map(|rv| {
            let (approvals, needed) =
                rv.requirements
                    .iter()
                    .enumerate()
                    .fold((0, 0), |(a, n), (i, q)| {
                        let got = u32::try_from(rv.approvals_for(i, &r.digest)).unwrap_or(u32::MAX);
                        (a + got.min(q.quorum.get()), n + q.quorum.get())
                    });
            ReviewProgress {
                approvals,
                needed,
                expires_at: rv.expires_at,
            }
        }),
        question: r.review.as_ref().and_then(|rv| {
            Question::open(
                rv.clarifications
                    .iter()
                    .map(|c| (c.asked_by.as_str(), c.question.as_str(), c.answer.is_some())),
            )
        }),
    }
}

/// A gateway running in this process, acting as one credential's identity.
pub struct Embedded {
    gateway: Arc<Gateway>,
    /// The credential, authenticated again on every call (`None`: `who` was authenticated by
    /// the caller for this request).
    token: Option<String>,
    /// The identity last authenticated.
    who: Mutex<Arc<Identity>>,
}

impl Embedded {
    /// Acts as the identity `token` proves, checking it now and on every later call.
    pub async fn authenticated(gateway: Arc<Gateway>, token: &str) -> Result<Self, GateError> {
        let who = authenticate(&gateway, token).await?;
        Ok(Embedded {
            gateway,
            token: Some(token.to_string()),
            who: Mutex::new(who),
        })
    }

    fn last(&self) -> Arc<Identity> {
        self.who.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The identity to act as, its credential checked again.
    async fn who(&self) -> Result<Arc<Identity>, GateError> {
        let Some(token) = &self.token else {
            return Ok(self.last());
        };
        let who = authenticate(&self.gateway, token).await?;
        *self.who.lock().unwrap_or_else(|p| p.into_inner()) = who.clone();
        Ok(who)
    }
}

async fn authenticate(gateway: &Gateway, token: &str) -> Result<Arc<Identity>, GateError> {
    gateway
        .authenticate(token)
        .await
        .map_err(|e| GateError::Unauthenticated(e.to_string()))
}

#[async_trait]
impl Gate for Embedded {
    async fn submit(&self, sub: Submission) -> Result<Tracked, GateError> {
        countersign_enforce::check_submission(&sub)?;
        let who = self.who().await?;
        let (view, _) = self.gateway.submit(&who, sub).await.map_err(gate_error)?;
        Ok(tracked_from_view(view))
    }

    async fn wait(&self, id: &str, wait: Duration) -> Result<Tracked, GateError> {
        let who = self.who().await?;
        let view = self
            .gateway
            .wait(&who, id, wait)
            .await
            .map_err(gate_error)?;
        Ok(tracked_from_view(view))
    }

    async fn cancel(&self, id: &str) -> Result<(), GateError> {
        let who = self.who().await?;
        self.gateway.cancel(&who, id).await.map_err(gate_error)?;
        Ok(())
    }

    async fn answer(&self, id: &str, answer: String) -> Result<Tracked, GateError> {
        let who = self.who().await?;
        let view = self
            .gateway
            .answer(&who, id, answer)
            .await
            .map_err(gate_error)?;
        Ok(tracked_from_view(view))
    }

    async fn redeem(&self, token: &str) -> Result<Approved, GateError> {
        let who = self.who().await?;
        let r = self.gateway.redeem(&who, token).await.map_err(gate_error)?;
        Ok(Approved {
            action_id: r.action_id,
            params: Value::Object(r.spec.params),
            credentials: r.credentials,
        })
    }

    async fn credentials(&self, id: &str, public_key: Option<&str>) -> Result<Released, GateError> {
        let who = self.who().await?;
        let r = self
            .gateway
            .release_credentials(&who, id, public_key, None)
            .await
            .map_err(gate_error)?;
        let mut out = Released {
            expires_at: Some(r.expires_at),
            ..Default::default()
        };
        for c in r.credentials {
            out.env.extend(
                c.issued
                    .env
                    .into_iter()
                    .map(|(k, v)| (k, v.expose().to_string())),
            );
            out.files
                .extend(c.issued.files.into_iter().map(|f| ReleasedFile {
                    env: f.env,
                    name: f.file_name,
                    contents: f.contents.expose().to_string(),
                }));
        }
        Ok(out)
    }

    async fn report(&self, id: &str, report: Report) -> Result<(), GateError> {
        let who = self.who().await?;
        self.gateway
            .report(
                &who,
                id,
                report.outcome,
                report.exit_code,
                report.output_sha256,
                report.detail,
            )
            .await
            .map_err(gate_error)?;
        Ok(())
    }

    async fn refused(&self, code: &str) -> bool {
        self.gateway
            .record_refused(&self.last(), "mcp_message", code)
            .await;
        true
    }

    fn identity(&self) -> Option<String> {
        Some(self.last().id.clone())
    }

    fn preview(&self, spec: &ActionSpec) -> Option<Effect> {
        self.gateway
            .decide(&self.last(), spec, "")
            .ok()
            .map(|d| d.effect)
    }
}

/// Embedded gates for many agents (`mcp http --config`): each request's credential is
/// authenticated by the gateway's [`countersign_identity::Authenticator`].
pub struct EmbeddedGates(pub Arc<Gateway>);

#[async_trait]
impl Gates for EmbeddedGates {
    async fn gate_for(&self, token: &str) -> Result<Arc<dyn Gate>, GateError> {
        let who = authenticate(&self.0, token).await?;
        Ok(Arc::new(Embedded {
            gateway: self.0.clone(),
            token: None,
            who: Mutex::new(who),
        }))
    }
}
