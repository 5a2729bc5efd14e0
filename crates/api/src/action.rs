//! An action as API v1 shows it: [`Action`] (the whole record, `GET /v1/actions/{id}`, votes,
//! lists) and [`Submitted`] (the answer to a submission). Both are built from the core's record
//! through one constructor each, borrow from it on the server (`Cow::Borrowed`) and own their
//! data when a client reads them.

use countersign_core::{
    ActionDigest, ActionRecord, Analysis, Effect, Outcome, Status, Timestamp, Verdict,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;

use crate::audit::ActionAudit;

/// The getters [`Submitted`] and [`Action`] share.
macro_rules! record_getters {
    ($view:ident) => {
        impl<'a> $view<'a> {
            /// The action id.
            pub fn id(&self) -> &str {
                &self.id
            }
            /// Where the action is in its life.
            pub fn status(&self) -> Status {
                self.status
            }
            /// The action's current digest.
            pub fn digest(&self) -> ActionDigest {
                self.digest
            }
            /// Policy's decision.
            pub fn decision(&self) -> &Decision<'a> {
                &self.decision
            }
            /// The review, if one opened.
            pub fn review(&self) -> Option<&Review<'a>> {
                self.review.as_ref()
            }
            /// The grant, if one was issued.
            pub fn grant(&self) -> Option<&Grant<'a>> {
                self.grant.as_ref()
            }
        }
    };
}

/// Policy's decision on the submitted action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision<'a> {
    effect: Effect,
    policies: Cow<'a, [String]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "no_names")]
    credentials: Cow<'a, [String]>,
    /// Who may see the masked values (`@reveal`): `group:NAME` and `human:ID` entries.
    #[serde(default, skip_serializing_if = "no_names")]
    reveal: Cow<'a, [String]>,
}

fn no_names(names: &[String]) -> bool {
    names.is_empty()
}

impl Decision<'_> {
    /// `allow`, `deny` or `review`.
    pub fn effect(&self) -> Effect {
        self.effect
    }
    /// The policies that decided.
    pub fn policies(&self) -> &[String] {
        &self.policies
    }
    /// Why, when policy said.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
    /// The credentials an approval releases to the grant's redeemer (`@credentials`).
    pub fn credentials(&self) -> &[String] {
        &self.credentials
    }
    /// Who may see the masked values (`@reveal`).
    pub fn reveal(&self) -> &[String] {
        &self.reveal
    }
}

/// One requirement of a review: a quorum of approvers under one policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requirement<'a> {
    policy: Cow<'a, str>,
    approvers: Vec<String>,
    quorum: u32,
    approvals: usize,
}

impl Requirement<'_> {
    /// The review rule that asked for it.
    pub fn policy(&self) -> &str {
        &self.policy
    }
    /// Who may approve (`group:NAME`, `human:ID`).
    pub fn approvers(&self) -> &[String] {
        &self.approvers
    }
    /// How many distinct approvers it needs.
    pub fn quorum(&self) -> u32 {
        self.quorum
    }
    /// How many distinct approvers approved the current digest.
    pub fn approvals(&self) -> usize {
        self.approvals
    }
}

/// A reviewer's vote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote<'a> {
    voter: Cow<'a, str>,
    verdict: Verdict,
    digest: ActionDigest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    comment: Option<Cow<'a, str>>,
    #[serde(with = "crate::time")]
    at: Timestamp,
    counts: bool,
}

impl Vote<'_> {
    /// The reviewer.
    pub fn voter(&self) -> &str {
        &self.voter
    }
    /// approve, deny, modify or clarify.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }
    /// The digest voted on.
    pub fn digest(&self) -> ActionDigest {
        self.digest
    }
    /// The reviewer's note.
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }
    /// When.
    pub fn at(&self) -> Timestamp {
        self.at
    }
    /// Whether it was cast on the current digest.
    pub fn counts(&self) -> bool {
        self.counts
    }
}

/// A reviewer's question and the requester's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clarification<'a> {
    asked_by: Cow<'a, str>,
    question: Cow<'a, str>,
    #[serde(with = "crate::time")]
    asked_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    answer: Option<Cow<'a, str>>,
    #[serde(
        default,
        with = "crate::time::option",
        skip_serializing_if = "Option::is_none"
    )]
    answered_at: Option<Timestamp>,
}

impl Clarification<'_> {
    /// Who asked.
    pub fn asked_by(&self) -> &str {
        &self.asked_by
    }
    /// The question.
    pub fn question(&self) -> &str {
        &self.question
    }
    /// The answer, once given.
    pub fn answer(&self) -> Option<&str> {
        self.answer.as_deref()
    }
}

/// An open or closed review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review<'a> {
    approvers: Vec<String>,
    quorum: u32,
    requirements: Vec<Requirement<'a>>,
    #[serde(with = "crate::time")]
    expires_at: Timestamp,
    votes: Vec<Vote<'a>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    clarifications: Vec<Clarification<'a>>,
}

impl Review<'_> {
    /// Everyone who may approve under some requirement, sorted, once each.
    pub fn approvers(&self) -> &[String] {
        &self.approvers
    }
    /// The largest quorum of its requirements.
    pub fn quorum(&self) -> u32 {
        self.quorum
    }
    /// Its requirements, each with its approvals so far.
    pub fn requirements(&self) -> &[Requirement<'_>] {
        &self.requirements
    }
    /// Its deadline.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }
    /// Every vote, in order.
    pub fn votes(&self) -> &[Vote<'_>] {
        &self.votes
    }
    /// Questions and answers, in order.
    pub fn clarifications(&self) -> &[Clarification<'_>] {
        &self.clarifications
    }
    /// The fewest approvals any requirement has (how far the review is from its quorum).
    pub fn least_approvals(&self) -> usize {
        self.requirements
            .iter()
            .map(|q| q.approvals)
            .min()
            .unwrap_or(0)
    }
    /// The comment of the last `deny`, if any.
    pub fn denial_comment(&self) -> Option<&str> {
        self.votes
            .iter()
            .rev()
            .find(|v| v.verdict == Verdict::Deny)
            .and_then(Vote::comment)
    }
}

/// The action's single-use grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<Cow<'a, str>>,
    #[serde(with = "crate::time")]
    expires_at: Timestamp,
    #[serde(
        default,
        with = "crate::time::option",
        skip_serializing_if = "Option::is_none"
    )]
    redeemed_at: Option<Timestamp>,
}

impl Grant<'_> {
    /// The token (shown to the requester while the grant is usable).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
    /// Its deadline.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }
    /// When it was redeemed.
    pub fn redeemed_at(&self) -> Option<Timestamp> {
        self.redeemed_at
    }
}

/// What the executor reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionResult<'a> {
    outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_sha256: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<Cow<'a, str>>,
    reported_by: Cow<'a, str>,
    #[serde(with = "crate::time")]
    reported_at: Timestamp,
}

impl ActionResult<'_> {
    /// succeeded or failed.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }
    /// The process exit code, if any.
    pub fn exit_code(&self) -> Option<i32> {
        self.exit_code
    }
    /// The reporter's detail.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
    /// Who reported.
    pub fn reported_by(&self) -> &str {
        &self.reported_by
    }
}

/// The answer to `POST /v1/actions`: what the agent needs to act on the decision, and no more
/// (`GET /v1/actions/{id}` has the whole record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submitted<'a> {
    id: Cow<'a, str>,
    status: Status,
    digest: ActionDigest,
    decision: Decision<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    review: Option<Review<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grant: Option<Grant<'a>>,
}

impl<'a> Submitted<'a> {
    /// The view of `record`, with the grant's `token` where the caller may see it.
    pub fn new(record: &'a ActionRecord, grant_token: Option<&'a str>) -> Self {
        Submitted {
            id: Cow::Borrowed(&record.id),
            status: record.status,
            digest: record.digest,
            decision: decision(record),
            review: review(record),
            grant: grant(record, grant_token),
        }
    }
}

record_getters!(Submitted);

/// An action: the whole record, shaped for agents and reviewers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action<'a> {
    id: Cow<'a, str>,
    status: Status,
    digest: ActionDigest,
    action: Cow<'a, str>,
    resource: Cow<'a, str>,
    environment: Cow<'a, str>,
    params: Cow<'a, Map<String, Value>>,
    justification: Cow<'a, str>,
    requester: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on_behalf_of: Option<Cow<'a, str>>,
    #[serde(with = "crate::time")]
    created_at: Timestamp,
    #[serde(with = "crate::time")]
    updated_at: Timestamp,
    decision: Decision<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    analysis: Option<Cow<'a, Analysis>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    review: Option<Review<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grant: Option<Grant<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<ActionResult<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audit: Option<ActionAudit>,
    /// Present only in the answer of `POST /v1/actions/{id}/reveal`: where the values a
    /// masked view hides are (JSON pointers); this view shows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revealed: Option<Cow<'a, [String]>>,
}

impl<'a> Action<'a> {
    /// The view of `record`, with the grant's `token` where the caller may see it.
    pub fn new(record: &'a ActionRecord, grant_token: Option<&'a str>) -> Self {
        let r = record;
        Action {
            id: Cow::Borrowed(&r.id),
            status: r.status,
            digest: r.digest,
            action: Cow::Borrowed(&r.spec.action),
            resource: Cow::Borrowed(&r.spec.resource),
            environment: Cow::Borrowed(&r.spec.environment),
            params: Cow::Borrowed(&r.spec.params),
            justification: Cow::Borrowed(&r.justification),
            requester: Cow::Borrowed(&r.requester),
            on_behalf_of: r.on_behalf_of.as_deref().map(Cow::Borrowed),
            created_at: r.created_at,
            updated_at: r.updated_at,
            decision: decision(r),
            analysis: r.analysis.as_ref().map(Cow::Borrowed),
            review: review(r),
            grant: grant(r, grant_token),
            result: r.result.as_ref().map(|res| ActionResult {
                outcome: res.outcome,
                exit_code: res.exit_code,
                output_sha256: res.output_sha256.as_deref().map(Cow::Borrowed),
                detail: res.detail.as_deref().map(Cow::Borrowed),
                reported_by: Cow::Borrowed(&res.reported_by),
                reported_at: res.reported_at,
            }),
            audit: None,
            revealed: None,
        }
    }

    /// The same view, unmasked, naming the values it reveals (`POST /v1/actions/{id}/reveal`).
    pub fn with_revealed(mut self, values: &'a [String]) -> Self {
        self.revealed = Some(Cow::Borrowed(values));
        self
    }

    /// Where the values a masked view hides are, when this view reveals them.
    pub fn revealed(&self) -> Option<&[String]> {
        self.revealed.as_deref()
    }

    /// The same view with its `audit` member (`GET /v1/actions/{id}`).
    pub fn with_audit(mut self, audit: ActionAudit) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The action name.
    pub fn action(&self) -> &str {
        &self.action
    }
    /// The resource.
    pub fn resource(&self) -> &str {
        &self.resource
    }
    /// The environment.
    pub fn environment(&self) -> &str {
        &self.environment
    }
    /// The current parameters (a reviewer's modification included).
    pub fn params(&self) -> &Map<String, Value> {
        &self.params
    }
    /// Why the requester needs it.
    pub fn justification(&self) -> &str {
        &self.justification
    }
    /// Who submitted it.
    pub fn requester(&self) -> &str {
        &self.requester
    }
    /// The human it acts for.
    pub fn on_behalf_of(&self) -> Option<&str> {
        self.on_behalf_of.as_deref()
    }
    /// When it was submitted.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
    /// When it last changed.
    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
    /// What the analyzers found in the current parameters (risk, tags, impact), if any
    /// analyzer applied.
    pub fn analysis(&self) -> Option<&Analysis> {
        self.analysis.as_deref()
    }
    /// The reported result.
    pub fn result(&self) -> Option<&ActionResult<'a>> {
        self.result.as_ref()
    }
    /// Its audit entries (`GET /v1/actions/{id}` only).
    pub fn audit(&self) -> Option<&ActionAudit> {
        self.audit.as_ref()
    }
}

record_getters!(Action);

fn decision(r: &ActionRecord) -> Decision<'_> {
    Decision {
        effect: r.decision.effect,
        policies: Cow::Borrowed(&r.decision.policies),
        reason: r.decision.reason.as_deref().map(Cow::Borrowed),
        credentials: Cow::Borrowed(&r.decision.credentials),
        reveal: Cow::Owned(
            r.decision
                .reveal
                .as_ref()
                .map(|a| a.entries())
                .unwrap_or_default(),
        ),
    }
}

fn grant<'a>(r: &'a ActionRecord, token: Option<&'a str>) -> Option<Grant<'a>> {
    r.grant.as_ref().map(|g| Grant {
        token: token.map(Cow::Borrowed),
        expires_at: g.expires_at,
        redeemed_at: g.redeemed_at,
    })
}

fn review(r: &ActionRecord) -> Option<Review<'_>> {
    let rv = r.review.as_ref()?;
    let mut approvers: Vec<String> = rv
        .requirements
        .iter()
        .flat_map(|q| q.approvers.entries())
        .collect();
    approvers.sort();
    approvers.dedup();
    Some(Review {
        approvers,
        quorum: rv.quorum_shown(),
        requirements: rv
            .requirements
            .iter()
            .enumerate()
            .map(|(i, q)| Requirement {
                policy: Cow::Borrowed(&q.policy),
                approvers: q.approvers.entries(),
                quorum: q.quorum.get(),
                approvals: rv.approvals_for(i, &r.digest),
            })
            .collect(),
        expires_at: rv.expires_at,
        votes: rv
            .votes
            .iter()
            .map(|v| Vote {
                voter: Cow::Borrowed(&v.voter),
                verdict: v.verdict,
                digest: v.digest,
                comment: v.comment.as_deref().map(Cow::Borrowed),
                at: v.at,
                counts: v.digest == r.digest,
            })
            .collect(),
        clarifications: rv
            .clarifications
            .iter()
            .map(|c| Clarification {
                asked_by: Cow::Borrowed(&c.asked_by),
                question: Cow::Borrowed(&c.question),
                asked_at: c.asked_at,
                answer: c.answer.as_deref().map(Cow::Borrowed),
                answered_at: c.answered_at,
            })
            .collect(),
    })
}
