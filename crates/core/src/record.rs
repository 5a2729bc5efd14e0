//! The life of one action: submitted, decided, reviewed, granted, redeemed, reported. Every rule
//! about who may do what, and when, is enforced here and nowhere else.
//!
//! Every transition checks all of its preconditions before it changes anything, so an `Err`
//! leaves the record exactly as it was (the store then writes nothing).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

use crate::action::{ActionDigest, ActionSpec, SpecError};
use crate::analysis::Analysis;
use crate::decision::{Decision, Effect, Requirement};
use crate::event::Event;
use crate::identity::{id_key, same_id, Identity, IdentityKind};
use crate::time::Timestamp;

/// Where an action is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Policy allowed it; it may run.
    Allowed,
    /// Policy denied it.
    Denied,
    /// Waiting for reviewers.
    Pending,
    /// A reviewer asked the requester a question.
    NeedsClarification,
    /// Reviewers approved it; a grant was issued.
    Approved,
    /// A reviewer denied it.
    Rejected,
    /// Nobody decided before the review's deadline.
    Expired,
    /// The requester withdrew it.
    Cancelled,
    /// It ran and succeeded.
    Succeeded,
    /// It ran and failed.
    Failed,
}

impl Status {
    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Allowed => "allowed",
            Status::Denied => "denied",
            Status::Pending => "pending",
            Status::NeedsClarification => "needs_clarification",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
            Status::Cancelled => "cancelled",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Status> {
        const ALL: [Status; 10] = [
            Status::Allowed,
            Status::Denied,
            Status::Pending,
            Status::NeedsClarification,
            Status::Approved,
            Status::Rejected,
            Status::Expired,
            Status::Cancelled,
            Status::Succeeded,
            Status::Failed,
        ];
        ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether a review is still open (a vote, an answer or expiry can still change it).
    pub fn is_open_review(self) -> bool {
        matches!(self, Status::Pending | Status::NeedsClarification)
    }
}

/// A reviewer's verdict, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Approve the action as it is.
    Approve,
    /// Deny it: one deny rejects.
    Deny,
    /// Approve it with changed parameters (a new digest).
    Modify,
    /// Ask the requester a question.
    Clarify,
}

impl Verdict {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
            Verdict::Modify => "modify",
            Verdict::Clarify => "clarify",
        }
    }
}

/// A vote as cast, before the core accepts it.
#[derive(Debug, Clone, PartialEq)]
pub enum Ballot {
    /// Approve the current digest.
    Approve {
        /// Optional note.
        comment: Option<String>,
    },
    /// Deny.
    Deny {
        /// Optional note; shown to the agent.
        comment: Option<String>,
    },
    /// Approve with these parameters instead.
    Modify {
        /// The replacement parameters (a JSON object).
        params: Value,
        /// Optional note.
        comment: Option<String>,
    },
    /// Ask the requester a question.
    Clarify {
        /// The question.
        question: String,
    },
}

/// What the channel a vote comes through proves about how the voter signed in. The API and
/// chat prove nothing beyond the identity ([`VoteContext::default`]); the web console proves
/// multi-factor authentication when the session's ID token showed it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VoteContext {
    /// The voter signed in with multi-factor authentication.
    pub mfa: bool,
    /// The digest the voter was shown, when the channel knows it (the console's form, the API's
    /// `digest`): the vote is refused (`digest_mismatch`) unless it is still the action's digest.
    /// Decided inside the transition, so a modification landing between reading and voting is
    /// never approved unseen.
    pub seen: Option<ActionDigest>,
}

/// An accepted vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The reviewer's id.
    pub voter: String,
    /// What they decided.
    pub verdict: Verdict,
    /// The digest the vote applies to. Approvals count only while this is the current digest.
    pub digest: ActionDigest,
    /// Their comment or question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When.
    pub at: Timestamp,
    /// Indexes of the requirements the voter was an approver for *at the moment of the vote*.
    pub counts_for: Vec<usize>,
}

/// A reviewer's question and, once given, the requester's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clarification {
    /// The reviewer who asked.
    pub asked_by: String,
    /// The question.
    pub question: String,
    /// When it was asked.
    pub asked_at: Timestamp,
    /// The requester's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// When it was answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<Timestamp>,
}

/// An open or closed review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewState {
    /// All must be met.
    pub requirements: Vec<Requirement>,
    /// The deadline: at or after it, the review is expired.
    pub expires_at: Timestamp,
    /// Every vote, in order.
    pub votes: Vec<Vote>,
    /// Questions and answers, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clarifications: Vec<Clarification>,
}

impl ReviewState {
    /// Each requirement's approver entries, as audit events list them.
    fn approver_lists(&self) -> Vec<Vec<String>> {
        self.requirements
            .iter()
            .map(|r| r.approvers.entries())
            .collect()
    }

    /// Each requirement's quorum, as audit events list them.
    fn quorums(&self) -> Vec<u32> {
        self.requirements.iter().map(|r| r.quorum.get()).collect()
    }

    /// The quorum a view shows for the review as a whole: the largest requirement's (each
    /// requirement's own quorum is shown beside it).
    pub fn quorum_shown(&self) -> u32 {
        self.requirements
            .iter()
            .map(|r| r.quorum.get())
            .max()
            .unwrap_or(1)
    }

    /// Distinct approvers of `digest` who count for requirement `i` (people compared as
    /// [`id_key`]): the count a view shows beside the requirement's quorum.
    pub fn approvals_for(&self, i: usize, digest: &ActionDigest) -> usize {
        self.votes
            .iter()
            .filter(|v| matches!(v.verdict, Verdict::Approve | Verdict::Modify))
            .filter(|v| &v.digest == digest && v.counts_for.contains(&i))
            .map(|v| id_key(&v.voter))
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Whether every requirement has its quorum of distinct approvers on `digest`.
    pub fn quorum_met(&self, digest: &ActionDigest) -> bool {
        self.requirements
            .iter()
            .enumerate()
            .all(|(i, r)| self.approvals_for(i, digest) >= r.quorum.get() as usize)
    }
}

/// The principal a reviewer's modification is judged as (see [`ActionRecord::modify_judged_as`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgedAs<'a> {
    /// The requester as recorded at submission.
    Recorded(&'a Identity),
    /// The configured identity with this id, as configured now (none: no longer known, and
    /// the modification is denied).
    Configured(&'a str),
}

/// A single-use grant: permission to run exactly `digest`, once, before `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantState {
    /// Unique id (the JWT `jti`).
    pub jti: String,
    /// The digest it allows.
    pub digest: ActionDigest,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// Redeem before this instant.
    pub expires_at: Timestamp,
    /// Set on the one successful redemption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeemed_at: Option<Timestamp>,
    /// Who redeemed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeemed_by: Option<String>,
}

/// How the action went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It ran and succeeded.
    Succeeded,
    /// It ran and failed.
    Failed,
}

impl Outcome {
    /// The wire name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
        }
    }
}

/// What the executor reported after running the action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    /// Succeeded or failed.
    pub outcome: Outcome,
    /// The process exit code, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// SHA-256 of the output, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_sha256: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Who reported.
    pub reported_by: String,
    /// When.
    pub reported_at: Timestamp,
}

/// A credential released for an action: which, when, until when, and when it was revoked.
/// Never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedCredential {
    /// The configured credential's name.
    pub name: String,
    /// Its kind (`postgres_role`, `ssh_certificate`, `static`...).
    pub kind: String,
    /// Who received it (the redeemer of the grant).
    pub to: String,
    /// When it was released.
    pub released_at: Timestamp,
    /// When its lifetime ends.
    pub expires_at: Timestamp,
    /// When it was revoked (dropped, deleted), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
}

/// One credential the decision names, as the gateway configures it: what the core needs to
/// decide a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialTerms {
    /// The configured name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// How long it lives, counted from the grant's redemption.
    pub lifetime: Duration,
}

/// Why a released credential was revoked (the `credential_revoked` entry's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    /// The action reported its result.
    Reported,
    /// The action was cancelled.
    Cancelled,
    /// Its lifetime ended.
    Expired,
}

impl RevokeReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Reported => "reported",
            RevokeReason::Cancelled => "cancelled",
            RevokeReason::Expired => "expired",
        }
    }
}

/// Everything about one action. The store persists it whole; only this module changes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Unique id.
    pub id: String,
    /// Who submitted it.
    pub requester: String,
    /// The requester's kind.
    pub requester_kind: IdentityKind,
    /// The requester as authenticated when it submitted (groups, source, claims): a reviewer's
    /// `modify` is re-checked by policy as this identity, on any replica and after restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_identity: Option<Identity>,
    /// The human an agent acts for; barred from voting like the requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// The human who created the requester's managed key, as authenticated at submission;
    /// barred from voting like the requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sponsor: Option<String>,
    /// What will run (after any reviewer modification).
    pub spec: ActionSpec,
    /// Digest of `spec`.
    pub digest: ActionDigest,
    /// Digest of what was first submitted.
    pub submitted_digest: ActionDigest,
    /// The agent's own justification.
    #[serde(default)]
    pub justification: String,
    /// What policy decided at submission.
    pub decision: Decision,
    /// What the analyzers found in `spec` (recomputed when a reviewer modifies it). Absent when
    /// no analyzer applied, and on records written before analyzers existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// Where it is now.
    pub status: Status,
    /// Present when policy asked for review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewState>,
    /// Present once allowed or approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantState>,
    /// Present once reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ActionResult>,
    /// Credentials released to the redeemer (names, lifetimes, revocation; never a secret).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<ReleasedCredential>,
    /// The client's `Idempotency-Key`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// When it was submitted.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// Everything needed to record a new action. Ids come from the caller so the core stays pure.
#[derive(Debug, Clone)]
pub struct NewAction {
    /// Fresh unique id for the action.
    pub id: String,
    /// Fresh unique id for a grant, used if the decision allows.
    pub grant_jti: String,
    /// What will run.
    pub spec: ActionSpec,
    /// The agent's justification.
    pub justification: String,
    /// The human the agent acts for.
    pub on_behalf_of: Option<String>,
    /// The client's idempotency key.
    pub idempotency_key: Option<String>,
    /// What policy decided.
    pub decision: Decision,
    /// Review TTL when the decision does not set one.
    pub default_review_ttl: Duration,
    /// How long a grant may wait to be redeemed.
    pub grant_ttl: Duration,
    /// Whether an `allow` also gets a single-use grant (reviewed actions always do).
    pub grant_on_allow: bool,
    /// What the analyzers found in `spec` (policy saw it as `context.risk`/`context.tags`).
    pub analysis: Option<Analysis>,
}

/// Policy's judgement of a reviewer's modified action: the decision and what the analyzers
/// found in the modified spec (a plain [`Decision`] converts, with no analysis).
#[derive(Debug, Clone)]
pub struct Judgement {
    /// Policy's decision on the modified action.
    pub decision: Decision,
    /// What the analyzers found in the modified spec.
    pub analysis: Option<Analysis>,
}

impl From<Decision> for Judgement {
    fn from(decision: Decision) -> Self {
        Judgement {
            decision,
            analysis: None,
        }
    }
}

/// Why a transition was refused. Each variant has a stable machine-readable [`code`](Self::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Only agents and services may act on behalf of a human.
    #[error("only agents and services may submit `on_behalf_of` a human")]
    OnBehalfOfNotAllowed,
    /// An agent or service tried to vote.
    #[error("agents and services can request actions but never review them")]
    AgentsCannotApprove,
    /// The requester, the human it acts for, or the sponsor of the requesting agent's key
    /// tried to vote on the action.
    #[error("you requested this action (or it was requested on your behalf, or by an agent whose key you sponsor); another person must review it")]
    SelfApproval,
    /// The voter is not an approver under any of the review's requirements.
    #[error("you are not an approver for this action; its approvers are: {0}")]
    NotAnApprover(String),
    /// Someone other than the requester tried a requester-only operation.
    #[error("only the requester may do this")]
    NotRequester,
    /// The action is not in a state that allows this.
    #[error("the action is {}, so this is no longer possible", .0.as_str())]
    NotPending(Status),
    /// The review deadline passed.
    #[error("the review expired; submit the action again")]
    ReviewExpired,
    /// The voter already voted on the current digest.
    #[error("you already voted on this version of the action")]
    AlreadyVoted,
    /// A `modify` with unusable parameters.
    #[error("invalid modification: {0}")]
    BadModification(#[from] SpecError),
    /// A `modify` whose result policy would deny.
    #[error("policy denies the modified action: {0}")]
    ModificationDenied(String),
    /// A `modify` that changes nothing.
    #[error("the modified parameters are identical to the current ones; approve instead")]
    ModificationUnchanged,
    /// An answer with no open question.
    #[error("there is no open question to answer")]
    NoOpenQuestion,
    /// The grant does not belong to this action's current digest.
    #[error("this grant does not match the action it names; it may be forged or stale")]
    GrantMismatch,
    /// The grant was already redeemed.
    #[error("this grant was already used; approvals are single-use")]
    GrantAlreadyUsed,
    /// The grant's deadline passed.
    #[error("this grant expired before it was redeemed; submit the action again")]
    GrantExpired,
    /// The action was cancelled or otherwise withdrawn after its grant was issued.
    #[error("this grant was revoked because the action is {}", .0.as_str())]
    GrantRevoked(Status),
    /// An approved action must be redeemed before its result is reported.
    #[error("redeem the grant before reporting a result")]
    GrantNotRedeemed,
    /// A result was already reported.
    #[error("a result was already reported for this action")]
    ResultAlreadyReported,
    /// The requester already has the most open reviews it may have at once.
    #[error("you already have {0} reviews open, the most allowed; wait for some to be decided or cancel them")]
    TooManyOpenReviews(u32),
    /// The decision names no credential for this action.
    #[error("policy releases no credentials for this action")]
    NoCredentials,
    /// Credentials go only to the identity that redeemed the grant.
    #[error("only the identity that redeemed this action's grant may receive its credentials")]
    NotRedeemer,
    /// The credentials were already released for this grant.
    #[error(
        "the credentials for this action were already released; they are released once per grant"
    )]
    CredentialsAlreadyReleased,
    /// An approval of a review that requires multi-factor authentication (`@require_mfa`)
    /// without a vote context proving it (the action id, for the link to the console).
    #[error("approving this action needs a multi-factor sign-in: approve it in the web console at /console/actions/{0}")]
    MfaRequired(String),
    /// The credentials' lifetime, counted from the redemption, has passed.
    #[error("the credentials' lifetime for this action has ended; submit the action again")]
    CredentialsExpired,
    /// The caller is not among the people the policy lets see masked values.
    #[error("you may not see this action's masked values; {0}")]
    RevealNotAllowed(String),
    /// The vote was cast on a view of the action that is out of date: another reviewer changed
    /// it since (its current digest).
    #[error("the action changed since you read it (it is now {0}); review it again")]
    DigestMismatch(ActionDigest),
}

impl DomainError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::OnBehalfOfNotAllowed => "on_behalf_of_not_allowed",
            DomainError::AgentsCannotApprove => "agents_cannot_approve",
            DomainError::SelfApproval => "self_approval",
            DomainError::NotAnApprover(_) => "not_an_approver",
            DomainError::NotRequester => "not_requester",
            DomainError::NotPending(_) => "not_pending",
            DomainError::ReviewExpired => "not_pending",
            DomainError::AlreadyVoted => "already_voted",
            DomainError::BadModification(_) | DomainError::ModificationUnchanged => {
                "invalid_request"
            }
            DomainError::ModificationDenied(_) => "modification_denied",
            DomainError::NoOpenQuestion => "not_pending",
            DomainError::GrantMismatch => "grant_invalid",
            DomainError::GrantAlreadyUsed => "grant_already_used",
            DomainError::GrantExpired => "grant_expired",
            DomainError::GrantRevoked(_) => "grant_revoked",
            DomainError::GrantNotRedeemed => "grant_not_redeemed",
            DomainError::ResultAlreadyReported => "result_already_reported",
            DomainError::TooManyOpenReviews(_) => "too_many_open_reviews",
            DomainError::NoCredentials => "no_credentials",
            DomainError::NotRedeemer => "not_redeemer",
            DomainError::CredentialsAlreadyReleased => "credentials_already_released",
            DomainError::CredentialsExpired => "credentials_expired",
            DomainError::RevealNotAllowed(_) => "reveal_not_allowed",
            DomainError::MfaRequired(_) => "mfa_required",
            DomainError::DigestMismatch(_) => "digest_mismatch",
        }
    }

    /// Whether the refusal is an attempt an auditor must see: someone trying to approve what they
    /// may not (their own request, as an agent, without being an approver), to act for another
    /// without the right, to touch another's action, or to use a grant that is forged, reused,
    /// expired, revoked or for something else. Ordinary races (already voted, not pending) are not.
    pub fn is_security_relevant(&self) -> bool {
        matches!(
            self,
            DomainError::OnBehalfOfNotAllowed
                | DomainError::AgentsCannotApprove
                | DomainError::SelfApproval
                | DomainError::NotAnApprover(_)
                | DomainError::NotRequester
                | DomainError::GrantMismatch
                | DomainError::GrantAlreadyUsed
                | DomainError::GrantExpired
                | DomainError::GrantRevoked(_)
                | DomainError::NotRedeemer
                | DomainError::CredentialsAlreadyReleased
                | DomainError::CredentialsExpired
                | DomainError::RevealNotAllowed(_)
                | DomainError::MfaRequired(_)
        )
    }
}

impl ActionRecord {
    /// Records a submitted action and what policy decided. An `allow` gets its grant at once; a
    /// `review` opens a review that expires after the rule's TTL (or the default).
    pub fn submit(
        requester: &Identity,
        new: NewAction,
        now: Timestamp,
    ) -> Result<(ActionRecord, Vec<Event>), DomainError> {
        if new.on_behalf_of.is_some() && requester.kind == IdentityKind::Human {
            return Err(DomainError::OnBehalfOfNotAllowed);
        }
        let digest = new.spec.digest();
        let mut events = vec![Event::Submitted {
            requester: requester.id.clone(),
            requester_source: requester.source.clone(),
            on_behalf_of: new.on_behalf_of.clone(),
            justification: new.justification.clone(),
            digest,
            spec: new.spec.clone(),
            effect: new.decision.effect,
            policies: new.decision.policies.clone(),
            reason: new.decision.reason.clone(),
            analysis: new.analysis.clone(),
            masked: Vec::new(),
        }];
        let mut record = ActionRecord {
            id: new.id,
            requester: requester.id.clone(),
            requester_kind: requester.kind,
            requester_identity: Some(requester.clone()),
            on_behalf_of: new.on_behalf_of,
            sponsor: requester.sponsor.clone(),
            spec: new.spec,
            digest,
            submitted_digest: digest,
            justification: new.justification,
            decision: new.decision,
            analysis: new.analysis,
            status: Status::Denied,
            review: None,
            grant: None,
            result: None,
            credentials: Vec::new(),
            idempotency_key: new.idempotency_key,
            created_at: now,
            updated_at: now,
        };
        match record.decision.effect {
            Effect::Deny => {}
            Effect::Allow => {
                record.status = Status::Allowed;
                // Credentials are released only to the redeemer of a grant, so an action whose
                // decision names any gets one even where allowed actions usually do not.
                if new.grant_on_allow || !record.decision.credentials.is_empty() {
                    events.push(record.issue_grant(new.grant_jti, now, new.grant_ttl));
                }
            }
            Effect::Review => {
                let ttl = record.decision.review_ttl.unwrap_or(new.default_review_ttl);
                let review = ReviewState {
                    requirements: record.decision.requirements.clone(),
                    expires_at: now.plus(ttl),
                    votes: Vec::new(),
                    clarifications: Vec::new(),
                };
                events.push(Event::ReviewOpened {
                    approvers: review.approver_lists(),
                    quorum: review.quorums(),
                    expires_at: review.expires_at,
                });
                record.review = Some(review);
                record.status = Status::Pending;
            }
        }
        Ok((record, events))
    }

    fn issue_grant(&mut self, jti: String, now: Timestamp, ttl: Duration) -> Event {
        let grant = GrantState {
            jti,
            digest: self.digest,
            issued_at: now,
            expires_at: now.plus(ttl),
            redeemed_at: None,
            redeemed_by: None,
        };
        let event = Event::GrantIssued {
            jti: grant.jti.clone(),
            digest: grant.digest,
            expires_at: grant.expires_at,
        };
        self.grant = Some(grant);
        event
    }

    /// Whether a submission of `digest` for `on_behalf_of`, made with this action's idempotency
    /// key, is a replay of it: the same request as submitted, for the same human (compared
    /// normalised). Anything else under the same key is a conflict, never silently answered
    /// with this action.
    pub fn replayed_by(&self, digest: &ActionDigest, on_behalf_of: Option<&str>) -> bool {
        &self.submitted_digest == digest
            && self.on_behalf_of.as_deref().map(id_key) == on_behalf_of.map(id_key)
    }

    /// Whether this earlier action may answer `new` (a submission made with `reuse_open`) in
    /// its place: the same requester, acting for the same human, asked for the same thing (the
    /// digest as *submitted*, so an action a reviewer modified still answers its original
    /// request), and it is still worth waiting for at `new.created_at`: a review open before its
    /// deadline, or an approval whose grant is unused and unexpired.
    pub fn answers(&self, new: &ActionRecord) -> bool {
        let now = new.created_at;
        self.requester == new.requester
            && self.on_behalf_of.as_deref().map(id_key) == new.on_behalf_of.as_deref().map(id_key)
            && self.submitted_digest == new.submitted_digest
            && match self.status {
                Status::Pending | Status::NeedsClarification => self.open_review(now).is_ok(),
                Status::Approved => self
                    .grant
                    .as_ref()
                    .is_some_and(|g| g.redeemed_at.is_none() && now < g.expires_at),
                _ => false,
            }
    }

    /// Of `candidates` (earlier actions of the same requester), the one that answers `new` in
    /// its place, if any: an approved one first (usable at once), else the newest.
    pub fn best_answer<'a>(
        candidates: impl IntoIterator<Item = &'a ActionRecord>,
        new: &ActionRecord,
    ) -> Option<&'a ActionRecord> {
        candidates
            .into_iter()
            .filter(|c| c.id != new.id && c.answers(new))
            .max_by_key(|c| (c.status == Status::Approved, c.created_at, c.id.as_str()))
    }

    /// As whom policy judges a reviewer's `modify`: the requester, never the reviewer. A
    /// configured identity as the configuration says now (its groups may have changed); anyone
    /// else (OIDC, managed key) as they were when they submitted, from the record itself.
    pub fn modify_judged_as(&self) -> JudgedAs<'_> {
        match &self.requester_identity {
            Some(who) if who.source.as_deref().is_some_and(|s| s != "config") => {
                JudgedAs::Recorded(who)
            }
            _ => JudgedAs::Configured(&self.requester),
        }
    }

    /// Whether `who` may read this action: its requester, the human it acts for, or any human
    /// (reviewers need the context). Agents and services see only their own actions.
    pub fn visible_to(&self, who: &Identity) -> bool {
        self.is_own(who) || who.kind == IdentityKind::Human
    }

    /// The grant `who` may still use: only the requester's, unredeemed, before its deadline, while
    /// the action is allowed or approved (a cancelled action's grant is revoked).
    pub fn usable_grant(&self, who: &Identity, now: Timestamp) -> Option<&GrantState> {
        self.grant
            .as_ref()
            .filter(|g| {
                same_id(&who.id, &self.requester) && g.redeemed_at.is_none() && now < g.expires_at
            })
            .filter(|_| matches!(self.status, Status::Allowed | Status::Approved))
    }

    /// Whether `who` reviews this action: a human, not its requester, the human it acts for or
    /// its agent's sponsor, an approver under some requirement, with the review still open (pending, or waiting for
    /// an answer). The same rules [`ActionRecord::vote`] enforces; this only answers the question.
    pub fn reviewable_by(&self, who: &Identity, now: Timestamp) -> bool {
        who.kind.can_vote()
            && !self.barred_from_voting(who)
            && self
                .open_review(now)
                .is_ok_and(|r| r.requirements.iter().any(|q| q.approvers.admits(who)))
    }

    /// Whether this action belongs in `who`'s list of reviews: for an open review, exactly
    /// [`reviewable_by`](Self::reviewable_by); for a closed one (approved, rejected, expired...),
    /// a review `who` could have voted on: a human, neither its requester nor the human it acts
    /// for, and an approver under one of its requirements.
    pub fn listed_for_reviewer(&self, who: &Identity, now: Timestamp) -> bool {
        if self.status.is_open_review() {
            return self.reviewable_by(who, now);
        }
        who.kind.can_vote()
            && !self.is_own(who)
            && self
                .review
                .as_ref()
                .is_some_and(|r| r.requirements.iter().any(|q| q.approvers.admits(who)))
    }

    /// The approver entries (`group:NAME`, `human:ID`) of every requirement of this action's
    /// review, if it has one: a store indexes reviews by them, and [`Approvers::keys_of`] gives
    /// the entries under which a person is admitted.
    ///
    /// [`Approvers::keys_of`]: crate::Approvers::keys_of
    pub fn approver_keys(&self) -> BTreeSet<String> {
        self.review
            .iter()
            .flat_map(|r| &r.requirements)
            .flat_map(|q| q.approvers.entries())
            .collect()
    }

    /// Whether this new action may be stored while its requester already has `open` reviews
    /// open, with at most `max` allowed: an action that opens a review is refused
    /// ([`DomainError::TooManyOpenReviews`]) when `open` has reached `max`, so one requester
    /// cannot bury every reviewer's queue. Decided in the store's atomic insert step, where
    /// `open` is exact.
    pub fn check_open_reviews(&self, open: u64, max: u32) -> Result<(), DomainError> {
        if self.status.is_open_review() && open >= u64::from(max) {
            return Err(DomainError::TooManyOpenReviews(max));
        }
        Ok(())
    }

    /// Whether `who` is the requester or the human the action was requested for (ids compared
    /// normalised, [`same_id`]).
    fn is_own(&self, who: &Identity) -> bool {
        same_id(&who.id, &self.requester)
            || self
                .on_behalf_of
                .as_deref()
                .is_some_and(|h| same_id(&who.id, h))
    }

    /// Whether `who` may never vote on this action: its requester, the human it acts for, or the
    /// human who sponsors the requesting agent's key.
    fn barred_from_voting(&self, who: &Identity) -> bool {
        self.is_own(who) || self.sponsor.as_deref().is_some_and(|s| same_id(&who.id, s))
    }

    /// The open review, or why there is none. Past its deadline a review is closed even before the
    /// sweeper records `expired`.
    fn open_review(&self, now: Timestamp) -> Result<&ReviewState, DomainError> {
        match &self.review {
            Some(r) if self.status.is_open_review() && now >= r.expires_at => {
                Err(DomainError::ReviewExpired)
            }
            Some(r) if self.status.is_open_review() => Ok(r),
            _ => Err(DomainError::NotPending(self.status)),
        }
    }

    /// A reviewer's vote. `grant_jti` and `grant_ttl` are used if this vote completes the quorum.
    ///
    /// Refused, in this order: agents and services (`agents_cannot_approve`), the requester or the
    /// human it acts for (`self_approval`), a closed or expired review, someone who is not an
    /// approver under any requirement *now*, and a second vote by the same person on the same
    /// digest. One `deny` rejects. A `modify` creates a new digest: approvals of the old one stop
    /// counting and the modifier's vote counts for the new one.
    /// A modified action is a new request: `judge` is asked for policy's decision on the modified
    /// spec (as a fresh submission by the requester would be judged) before anything changes.
    /// `deny` refuses the modify; otherwise the review must meet the old requirements *and* the
    /// new decision's, before the earlier of the two deadlines, and only votes on the new digest
    /// count.
    pub fn vote<J: Into<Judgement>>(
        &mut self,
        voter: &Identity,
        ballot: Ballot,
        now: Timestamp,
        grant_jti: String,
        grant_ttl: Duration,
        judge: impl FnOnce(&ActionSpec) -> J,
    ) -> Result<Vec<Event>, DomainError> {
        self.vote_in(
            VoteContext::default(),
            voter,
            ballot,
            now,
            grant_jti,
            grant_ttl,
            judge,
        )
    }

    /// Whether approving this action needs a vote context proving multi-factor
    /// authentication: one of its review's requirements came from a `@require_mfa` rule.
    pub fn requires_mfa(&self) -> bool {
        self.review
            .as_ref()
            .is_some_and(|r| r.requirements.iter().any(|q| q.require_mfa))
    }

    /// [`Self::vote`] with what the channel proves about how the voter signed in: an approval
    /// (approve or modify) of a review that [`requires_mfa`](Self::requires_mfa) is refused
    /// (`mfa_required`) unless `context.mfa`; a deny or a question is not (refusing is always
    /// safe).
    #[allow(clippy::too_many_arguments)]
    pub fn vote_in<J: Into<Judgement>>(
        &mut self,
        context: VoteContext,
        voter: &Identity,
        ballot: Ballot,
        now: Timestamp,
        grant_jti: String,
        grant_ttl: Duration,
        judge: impl FnOnce(&ActionSpec) -> J,
    ) -> Result<Vec<Event>, DomainError> {
        if !voter.kind.can_vote() {
            return Err(DomainError::AgentsCannotApprove);
        }
        if self.barred_from_voting(voter) {
            return Err(DomainError::SelfApproval);
        }
        let review = self.open_review(now)?;
        if self.status != Status::Pending {
            return Err(DomainError::NotPending(self.status));
        }
        if !review
            .requirements
            .iter()
            .any(|r| r.approvers.admits(voter))
        {
            let all: Vec<String> = review
                .requirements
                .iter()
                .flat_map(|r| r.approvers.entries())
                .collect();
            return Err(DomainError::NotAnApprover(all.join(", ")));
        }
        if context.seen.is_some_and(|seen| seen != self.digest) {
            return Err(DomainError::DigestMismatch(self.digest));
        }
        if matches!(ballot, Ballot::Approve { .. } | Ballot::Modify { .. })
            && self.requires_mfa()
            && !context.mfa
        {
            return Err(DomainError::MfaRequired(self.id.clone()));
        }
        let voted_on_current = review.votes.iter().any(|v| {
            same_id(&v.voter, &voter.id)
                && v.digest == self.digest
                && matches!(v.verdict, Verdict::Approve | Verdict::Modify)
        });
        if voted_on_current && !matches!(ballot, Ballot::Clarify { .. }) {
            return Err(DomainError::AlreadyVoted);
        }

        let (verdict, comment, new_spec) = match ballot {
            Ballot::Approve { comment } => (Verdict::Approve, comment, None),
            Ballot::Deny { comment } => (Verdict::Deny, comment, None),
            Ballot::Clarify { question } => (Verdict::Clarify, Some(question), None),
            Ballot::Modify { params, comment } => {
                let spec = self.spec.with_params(params)?;
                if spec.digest() == self.digest {
                    return Err(DomainError::ModificationUnchanged);
                }
                let Judgement { decision, analysis } = judge(&spec).into();
                if decision.effect == Effect::Deny {
                    return Err(DomainError::ModificationDenied(
                        decision.reason.unwrap_or_default(),
                    ));
                }
                (Verdict::Modify, comment, Some((spec, decision, analysis)))
            }
        };

        // Every precondition holds; from here on the record changes.
        let mut widened = None;
        let modified_params = new_spec.as_ref().map(|(spec, _, _)| spec.params.clone());
        let mut modified_analysis = None;
        if let Some((spec, decision, analysis)) = new_spec {
            self.digest = spec.digest();
            self.spec = spec;
            self.analysis = analysis.clone();
            modified_analysis = analysis;
            widened = self.widen_review(&decision, now);
        }
        let counts_for: Vec<usize> = self
            .review
            .as_ref()
            .map(|r| {
                r.requirements
                    .iter()
                    .enumerate()
                    .filter(|(_, q)| q.approvers.admits(voter))
                    .map(|(i, _)| i)
                    .collect()
            })
            .unwrap_or_default();
        let vote = Vote {
            voter: voter.id.clone(),
            verdict,
            digest: self.digest,
            comment: comment.clone(),
            at: now,
            counts_for,
        };
        let mut events = vec![Event::Voted {
            voter: voter.id.clone(),
            voter_source: voter.source.clone(),
            verdict: verdict.as_str().to_string(),
            digest: self.digest,
            params: modified_params,
            analysis: modified_analysis,
            comment: comment.clone(),
            masked: Vec::new(),
        }];
        events.extend(widened);
        self.updated_at = now;
        let review = self.review.get_or_insert_with(|| ReviewState {
            requirements: Vec::new(),
            expires_at: now,
            votes: Vec::new(),
            clarifications: Vec::new(),
        });
        review.votes.push(vote);
        match verdict {
            Verdict::Deny => {
                self.status = Status::Rejected;
                events.push(Event::Rejected {
                    by: voter.id.clone(),
                });
            }
            Verdict::Clarify => {
                review.clarifications.push(Clarification {
                    asked_by: voter.id.clone(),
                    question: comment.unwrap_or_default(),
                    asked_at: now,
                    answer: None,
                    answered_at: None,
                });
                self.status = Status::NeedsClarification;
            }
            Verdict::Approve | Verdict::Modify => {
                if review.quorum_met(&self.digest) {
                    self.status = Status::Approved;
                    events.push(Event::Approved {
                        digest: self.digest,
                    });
                    events.push(self.issue_grant(grant_jti, now, grant_ttl));
                }
            }
        }
        Ok(events)
    }

    /// After a `modify`: the review must also meet what policy asks of the modified action (each
    /// requirement not already there is added), expires at the earlier deadline, and only the
    /// executors both decisions name may redeem. Returns the event when requirements changed.
    fn widen_review(&mut self, decision: &Decision, now: Timestamp) -> Option<Event> {
        self.decision
            .executors
            .retain(|e| decision.executors.contains(e));
        // Likewise credentials: a reviewer's edit can take a credential away, never add one.
        self.decision
            .credentials
            .retain(|c| decision.credentials.contains(c));
        // And who may see masked values: only those both decisions name.
        self.decision.reveal = match (self.decision.reveal.take(), &decision.reveal) {
            (Some(mut mine), Some(theirs)) => {
                mine.groups.retain(|g| theirs.groups.contains(g));
                mine.humans.retain(|h| theirs.humans.contains(h));
                (!mine.groups.is_empty() || !mine.humans.is_empty()).then_some(mine)
            }
            _ => None,
        };
        let review = self.review.as_mut()?;
        let mut changed = false;
        for req in &decision.requirements {
            if !review.requirements.contains(req) {
                review.requirements.push(req.clone());
                changed = true;
            }
        }
        if let Some(ttl) = decision.review_ttl {
            let deadline = now.plus(ttl);
            if deadline < review.expires_at {
                review.expires_at = deadline;
                changed = true;
            }
        }
        changed.then(|| Event::ReviewWidened {
            policies: review
                .requirements
                .iter()
                .map(|r| r.policy.clone())
                .collect(),
            approvers: review.approver_lists(),
            quorum: review.quorums(),
            expires_at: review.expires_at,
        })
    }

    /// The requester answers the open question; the review returns to `pending`.
    pub fn answer(
        &mut self,
        who: &Identity,
        answer: String,
        now: Timestamp,
    ) -> Result<Vec<Event>, DomainError> {
        if !same_id(&who.id, &self.requester) {
            return Err(DomainError::NotRequester);
        }
        self.open_review(now)?;
        if self.status != Status::NeedsClarification {
            return Err(DomainError::NoOpenQuestion);
        }
        let open = self
            .review
            .as_mut()
            .and_then(|r| {
                r.clarifications
                    .iter_mut()
                    .rev()
                    .find(|c| c.answer.is_none())
            })
            .ok_or(DomainError::NoOpenQuestion)?;
        open.answer = Some(answer);
        open.answered_at = Some(now);
        self.status = Status::Pending;
        self.updated_at = now;
        Ok(vec![Event::ClarificationAnswered { by: who.id.clone() }])
    }

    /// The requester withdraws the action: allowed while a review is open, or while an allowed or
    /// approved action has not started (its grant, if any, is unredeemed and then revoked).
    pub fn cancel(&mut self, who: &Identity, now: Timestamp) -> Result<Vec<Event>, DomainError> {
        if !same_id(&who.id, &self.requester) {
            return Err(DomainError::NotRequester);
        }
        let cancellable = match self.status {
            Status::Pending | Status::NeedsClarification => true,
            Status::Allowed | Status::Approved => {
                self.grant.as_ref().is_none_or(|g| g.redeemed_at.is_none()) && self.result.is_none()
            }
            _ => false,
        };
        if !cancellable {
            return Err(DomainError::NotPending(self.status));
        }
        self.status = Status::Cancelled;
        self.updated_at = now;
        Ok(vec![Event::Cancelled { by: who.id.clone() }])
    }

    /// Records that an open review passed its deadline. Returns no events (and changes nothing)
    /// when the review is not open or not yet due, so the sweeper may call it freely.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Event> {
        match &self.review {
            Some(r) if self.status.is_open_review() && now >= r.expires_at => {
                self.status = Status::Expired;
                self.updated_at = now;
                vec![Event::Expired]
            }
            _ => Vec::new(),
        }
    }

    /// Who may redeem this action's grant: the requester, or a service a matching policy named as
    /// executor (`@executor("service:ID")`). No other service, agent or person.
    pub fn may_redeem(&self, who: &Identity) -> bool {
        same_id(&who.id, &self.requester)
            || (who.kind == IdentityKind::Service
                && self.decision.executors.iter().any(|e| same_id(e, &who.id)))
    }

    /// Redeems the grant identified by `jti` for `digest`, once. The redeemer must be one
    /// [`may_redeem`](Self::may_redeem) admits.
    pub fn redeem(
        &mut self,
        who: &Identity,
        jti: &str,
        digest: &ActionDigest,
        now: Timestamp,
    ) -> Result<Vec<Event>, DomainError> {
        let grant = self.grant.as_ref().ok_or(DomainError::GrantMismatch)?;
        if grant.jti != jti || &grant.digest != digest || &self.digest != digest {
            return Err(DomainError::GrantMismatch);
        }
        if !self.may_redeem(who) {
            return Err(DomainError::NotRequester);
        }
        if grant.redeemed_at.is_some() {
            return Err(DomainError::GrantAlreadyUsed);
        }
        if !matches!(self.status, Status::Allowed | Status::Approved) {
            return Err(DomainError::GrantRevoked(self.status));
        }
        if now >= grant.expires_at {
            return Err(DomainError::GrantExpired);
        }
        let jti = grant.jti.clone();
        if let Some(g) = self.grant.as_mut() {
            g.redeemed_at = Some(now);
            g.redeemed_by = Some(who.id.clone());
        }
        self.updated_at = now;
        Ok(vec![Event::GrantRedeemed {
            jti,
            by: who.id.clone(),
        }])
    }

    /// The executor reports how the action went. Only the requester or the identity that redeemed
    /// the grant may report, once; an approved action must have been redeemed first.
    pub fn report(
        &mut self,
        who: &Identity,
        outcome: Outcome,
        exit_code: Option<i32>,
        output_sha256: Option<String>,
        detail: Option<String>,
        now: Timestamp,
    ) -> Result<Vec<Event>, DomainError> {
        let redeemer = self.grant.as_ref().and_then(|g| g.redeemed_by.as_deref());
        if !same_id(&who.id, &self.requester) && !redeemer.is_some_and(|r| same_id(&who.id, r)) {
            return Err(DomainError::NotRequester);
        }
        if self.result.is_some() {
            return Err(DomainError::ResultAlreadyReported);
        }
        match self.status {
            Status::Allowed => {}
            Status::Approved if self.grant.as_ref().is_some_and(|g| g.redeemed_at.is_some()) => {}
            Status::Approved => return Err(DomainError::GrantNotRedeemed),
            other => return Err(DomainError::NotPending(other)),
        }
        self.status = match outcome {
            Outcome::Succeeded => Status::Succeeded,
            Outcome::Failed => Status::Failed,
        };
        self.result = Some(ActionResult {
            outcome,
            exit_code,
            output_sha256,
            detail,
            reported_by: who.id.clone(),
            reported_at: now,
        });
        self.updated_at = now;
        Ok(vec![Event::ResultReported {
            outcome: outcome.as_str().into(),
            by: who.id.clone(),
        }])
    }

    /// Whether `who` may see the values masking hides in this action's views: a human the
    /// decision's `@reveal` names (by id or group, compared as approvers are). Nobody else —
    /// not agents or services, not the requester — and nobody at all when no policy says so.
    pub fn may_reveal(&self, who: &Identity) -> Result<(), DomainError> {
        match &self.decision.reveal {
            None => Err(DomainError::RevealNotAllowed(
                "no policy that matched it names who may (@reveal)".into(),
            )),
            Some(allowed) if allowed.admits(who) => Ok(()),
            Some(allowed) => Err(DomainError::RevealNotAllowed(format!("only {allowed} may"))),
        }
    }

    /// Records that `who` was shown the masked values at `values` (JSON pointers), under the
    /// rule of [`Self::may_reveal`]; changes nothing else.
    pub fn reveal(&self, who: &Identity, values: Vec<String>) -> Result<Vec<Event>, DomainError> {
        self.may_reveal(who)?;
        Ok(vec![Event::Revealed {
            by: who.id.clone(),
            values,
        }])
    }

    /// Whether `who` may receive this action's credentials now, and until when: the decision
    /// names some, the grant was redeemed by `who` (compared normalised), the action has not
    /// reported or been withdrawn, nothing was released yet for this grant, and the lifetime
    /// (counted from the redemption, the shortest of `terms`) has not ended. Checked before the
    /// gateway mints anything, and again, atomically, by [`Self::release_credentials`].
    pub fn may_release(
        &self,
        who: &Identity,
        terms: &[CredentialTerms],
        now: Timestamp,
    ) -> Result<Timestamp, DomainError> {
        if self.decision.credentials.is_empty() || terms.is_empty() {
            return Err(DomainError::NoCredentials);
        }
        if terms
            .iter()
            .any(|t| !self.decision.credentials.contains(&t.name))
        {
            return Err(DomainError::NoCredentials);
        }
        let redeemed = self
            .grant
            .as_ref()
            .and_then(|g| Some((g.redeemed_at?, g.redeemed_by.as_deref()?)));
        let Some((redeemed_at, redeemer)) = redeemed else {
            return Err(match self.status {
                Status::Allowed | Status::Approved => DomainError::GrantNotRedeemed,
                Status::Pending | Status::NeedsClarification => {
                    DomainError::NotPending(self.status)
                }
                other => DomainError::GrantRevoked(other),
            });
        };
        if !same_id(&who.id, redeemer) {
            return Err(DomainError::NotRedeemer);
        }
        if !self.credentials.is_empty() {
            return Err(DomainError::CredentialsAlreadyReleased);
        }
        if !matches!(self.status, Status::Allowed | Status::Approved) || self.result.is_some() {
            return Err(DomainError::NotPending(self.status));
        }
        let lifetime = terms.iter().map(|t| t.lifetime).min().unwrap_or_default();
        let until = redeemed_at.plus(lifetime);
        if now >= until {
            return Err(DomainError::CredentialsExpired);
        }
        Ok(until)
    }

    /// Records that the credentials `terms` names were released to `who` (all of those the
    /// decision names, once per grant), under the rules of [`Self::may_release`]. One
    /// `credential_released` event per credential: which, to whom, until when.
    pub fn release_credentials(
        &mut self,
        who: &Identity,
        terms: &[CredentialTerms],
        now: Timestamp,
    ) -> Result<Vec<Event>, DomainError> {
        let until = self.may_release(who, terms, now)?;
        let mut events = Vec::new();
        for t in terms {
            self.credentials.push(ReleasedCredential {
                name: t.name.clone(),
                kind: t.kind.clone(),
                to: who.id.clone(),
                released_at: now,
                expires_at: until,
                revoked_at: None,
            });
            events.push(Event::CredentialReleased {
                credential: t.name.clone(),
                kind: t.kind.clone(),
                to: who.id.clone(),
                expires_at: until,
            });
        }
        self.updated_at = now;
        Ok(events)
    }

    /// The released credentials to revoke now: every one not yet revoked once the action has
    /// reported or was withdrawn, and any whose lifetime has ended. The reason is the first that
    /// applies.
    pub fn credentials_to_revoke(&self, now: Timestamp) -> Vec<(String, RevokeReason)> {
        let finished = match self.status {
            Status::Succeeded | Status::Failed => Some(RevokeReason::Reported),
            Status::Cancelled | Status::Expired | Status::Rejected | Status::Denied => {
                Some(RevokeReason::Cancelled)
            }
            _ => None,
        };
        self.credentials
            .iter()
            .filter(|c| c.revoked_at.is_none())
            .filter_map(|c| {
                let reason = finished.or((now >= c.expires_at).then_some(RevokeReason::Expired))?;
                Some((c.name.clone(), reason))
            })
            .collect()
    }

    /// Records that the credential `name` was revoked. Changes nothing (no event) when it was
    /// never released or is already recorded as revoked, so revokers may retry freely.
    pub fn credential_revoked(
        &mut self,
        name: &str,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Vec<Event> {
        let Some(c) = self
            .credentials
            .iter_mut()
            .find(|c| c.name == name && c.revoked_at.is_none())
        else {
            return Vec::new();
        };
        c.revoked_at = Some(now);
        self.updated_at = now;
        vec![Event::CredentialRevoked {
            credential: name.to_string(),
            reason: reason.as_str().to_string(),
        }]
    }
}
