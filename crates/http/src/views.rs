//! What the API returns for an action: the record, shaped for agents and reviewers.

use countersign_core::ActionRecord;
use countersign_gateway::ActionView;
use serde::Serialize;
use serde_json::{Map, Value};

pub use countersign_store::rfc3339;

#[derive(Serialize)]
struct DecisionView<'a> {
    effect: &'static str,
    policies: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct RequirementView<'a> {
    policy: &'a str,
    approvers: Vec<String>,
    quorum: u32,
    approvals: usize,
}

#[derive(Serialize)]
struct VoteView<'a> {
    voter: &'a str,
    verdict: &'static str,
    digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<&'a str>,
    at: String,
    counts: bool,
}

#[derive(Serialize)]
struct ClarificationView<'a> {
    asked_by: &'a str,
    question: &'a str,
    asked_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answered_at: Option<String>,
}

#[derive(Serialize)]
struct ReviewView<'a> {
    approvers: Vec<String>,
    quorum: u32,
    requirements: Vec<RequirementView<'a>>,
    expires_at: String,
    votes: Vec<VoteView<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    clarifications: Vec<ClarificationView<'a>>,
}

#[derive(Serialize)]
struct GrantView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    redeemed_at: Option<String>,
}

#[derive(Serialize)]
struct ResultView<'a> {
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    reported_by: &'a str,
    reported_at: String,
}

/// The answer to `POST /v1/actions`: what the agent needs to act on the decision, and no more
/// (`GET /v1/actions/{id}` has the whole record).
#[derive(Serialize)]
pub struct SubmittedJson<'a> {
    id: &'a str,
    status: &'static str,
    digest: String,
    decision: DecisionView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    review: Option<ReviewView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grant: Option<GrantView<'a>>,
}

impl<'a> SubmittedJson<'a> {
    /// Shapes a view.
    pub fn new(view: &'a ActionView) -> Self {
        let r = &view.record;
        SubmittedJson {
            id: &r.id,
            status: r.status.as_str(),
            digest: r.digest.to_string(),
            decision: decision(r),
            review: review(r),
            grant: grant(view),
        }
    }
}

/// The JSON for an action.
#[derive(Serialize)]
pub struct ActionJson<'a> {
    id: &'a str,
    status: &'static str,
    digest: String,
    action: &'a str,
    resource: &'a str,
    environment: &'a str,
    params: &'a Map<String, Value>,
    justification: &'a str,
    requester: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_behalf_of: Option<&'a str>,
    created_at: String,
    updated_at: String,
    decision: DecisionView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    review: Option<ReviewView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grant: Option<GrantView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<ResultView<'a>>,
}

fn decision(r: &ActionRecord) -> DecisionView<'_> {
    DecisionView {
        effect: r.decision.effect.as_str(),
        policies: &r.decision.policies,
        reason: r.decision.reason.as_deref(),
    }
}

fn grant(view: &ActionView) -> Option<GrantView<'_>> {
    view.record.grant.as_ref().map(|g| GrantView {
        token: view.grant_token.as_deref(),
        expires_at: rfc3339(g.expires_at),
        redeemed_at: g.redeemed_at.map(rfc3339),
    })
}

fn review(r: &ActionRecord) -> Option<ReviewView<'_>> {
    let rv = r.review.as_ref()?;
    let mut approvers: Vec<String> = rv
        .requirements
        .iter()
        .flat_map(|q| q.approvers.entries())
        .collect();
    approvers.sort();
    approvers.dedup();
    Some(ReviewView {
        approvers,
        quorum: rv
            .requirements
            .iter()
            .map(|q| q.quorum.get())
            .max()
            .unwrap_or(1),
        requirements: rv
            .requirements
            .iter()
            .enumerate()
            .map(|(i, q)| RequirementView {
                policy: &q.policy,
                approvers: q.approvers.entries(),
                quorum: q.quorum.get(),
                approvals: rv
                    .votes
                    .iter()
                    .filter(|v| v.digest == r.digest && v.counts_for.contains(&i))
                    .filter(|v| {
                        matches!(
                            v.verdict,
                            countersign_core::Verdict::Approve | countersign_core::Verdict::Modify
                        )
                    })
                    .map(|v| v.voter.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
            })
            .collect(),
        expires_at: rfc3339(rv.expires_at),
        votes: rv
            .votes
            .iter()
            .map(|v| VoteView {
                voter: &v.voter,
                verdict: v.verdict.as_str(),
                digest: v.digest.to_string(),
                comment: v.comment.as_deref(),
                at: rfc3339(v.at),
                counts: v.digest == r.digest,
            })
            .collect(),
        clarifications: rv
            .clarifications
            .iter()
            .map(|c| ClarificationView {
                asked_by: &c.asked_by,
                question: &c.question,
                asked_at: rfc3339(c.asked_at),
                answer: c.answer.as_deref(),
                answered_at: c.answered_at.map(rfc3339),
            })
            .collect(),
    })
}

impl<'a> ActionJson<'a> {
    /// Shapes a view.
    pub fn new(view: &'a ActionView) -> Self {
        let r = &view.record;
        ActionJson {
            id: &r.id,
            status: r.status.as_str(),
            digest: r.digest.to_string(),
            action: &r.spec.action,
            resource: &r.spec.resource,
            environment: &r.spec.environment,
            params: &r.spec.params,
            justification: &r.justification,
            requester: &r.requester,
            on_behalf_of: r.on_behalf_of.as_deref(),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
            decision: decision(r),
            review: review(r),
            grant: grant(view),
            result: r.result.as_ref().map(|res| ResultView {
                outcome: res.outcome.as_str(),
                exit_code: res.exit_code,
                output_sha256: res.output_sha256.as_deref(),
                detail: res.detail.as_deref(),
                reported_by: &res.reported_by,
                reported_at: rfc3339(res.reported_at),
            }),
        }
    }
}
