//! Request bodies and queries of API v1, and the small answers that are not an action.
//! Bodies reject unknown fields; the server checks lengths and shapes beyond these types.

use countersign_core::{ActionDigest, Outcome, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::action::Action;

/// The body of `POST /v1/actions` (with an optional `Idempotency-Key` header beside it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// Action name, e.g. `db.export`.
    pub action: String,
    /// Resource, e.g. `postgres://prod/customers`.
    pub resource: String,
    /// Environment, e.g. `production`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Parameters (a JSON object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// Why the action is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// The human this agent acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// Answer with the caller's open review of the same request, if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_open: Option<bool>,
}

/// Query of `GET /v1/actions/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetQuery {
    /// Wait up to this many seconds (0 to 60, fractions allowed) for the action to leave review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
    /// Include inclusion proofs of the action's audit entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<bool>,
}

/// Query of `GET /v1/reviews`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewsQuery {
    /// Comma-separated statuses (default `pending`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Page size (default 100, 1-1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The previous page's `next_cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `GET /v1/reviews`: a page of reviews, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewList<'a> {
    /// The reviews.
    pub reviews: Vec<Action<'a>>,
    /// Where the next page starts (`null` on the last page).
    pub next_cursor: Option<String>,
}

/// The body of `POST /v1/reviews/{id}/votes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteRequest {
    /// approve, deny, modify or clarify.
    pub verdict: Verdict,
    /// A note (shown to the agent for a deny).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The new parameters (`modify` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// The question (`clarify` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// The digest the voter reviewed: when given, the vote is refused (409 `digest_mismatch`)
    /// unless the action still has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<ActionDigest>,
}

impl VoteRequest {
    /// Approve the current digest.
    pub fn approve(comment: Option<String>) -> Self {
        Self::with(Verdict::Approve, comment, None, None)
    }
    /// Deny (one deny rejects).
    pub fn deny(comment: Option<String>) -> Self {
        Self::with(Verdict::Deny, comment, None, None)
    }
    /// Approve with these parameters instead.
    pub fn modify(params: Value, comment: Option<String>) -> Self {
        Self::with(Verdict::Modify, comment, Some(params), None)
    }
    /// Ask the requester a question.
    pub fn clarify(question: String) -> Self {
        Self::with(Verdict::Clarify, None, None, Some(question))
    }
    fn with(
        verdict: Verdict,
        comment: Option<String>,
        params: Option<Value>,
        question: Option<String>,
    ) -> Self {
        VoteRequest {
            verdict,
            comment,
            params,
            question,
            digest: None,
        }
    }

    /// The same vote, bound to the digest the voter reviewed.
    pub fn on(mut self, digest: ActionDigest) -> Self {
        self.digest = Some(digest);
        self
    }
}

/// The body of `POST /v1/actions/{id}/answer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// The answer to the open question.
    pub answer: String,
}

/// The body of `POST /v1/grants/redeem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    /// The grant token.
    pub token: String,
}

/// The answer to `POST /v1/grants/redeem`: exactly what may now run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Redeemed {
    /// The action id.
    pub action_id: String,
    /// The approved digest.
    pub digest: String,
    /// Action name.
    pub action: String,
    /// Resource.
    pub resource: String,
    /// Environment.
    pub environment: String,
    /// The approved parameters (a reviewer's modification included).
    pub params: Map<String, Value>,
    /// The credentials policy releases to the redeemer (names; ask for them with
    /// `POST /v1/actions/{id}/credentials`). Absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
}

/// The body of `POST /v1/actions/{id}/result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultRequest {
    /// succeeded or failed.
    pub outcome: Outcome,
    /// The process exit code, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// SHA-256 of the output, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_sha256: Option<String>,
    /// What happened, briefly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `GET /healthz` and `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    pub status: String,
}

impl Health {
    /// The answer of a live server (`/healthz`).
    pub fn ok() -> Self {
        Health {
            status: "ok".into(),
        }
    }

    /// The answer of a server whose store writes (`/readyz`).
    pub fn ready() -> Self {
        Health {
            status: "ready".into(),
        }
    }
}
