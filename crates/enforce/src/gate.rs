//! The one small trait a front asks for decisions through, and the types it speaks. A front holds
//! no rule: it submits, waits, redeems, reports and cancels.

use async_trait::async_trait;
pub use countersign_core::Submission;
use countersign_core::{ActionSpec, Effect, Outcome, Status, Timestamp};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A gateway call that failed.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The credential is unknown, revoked or expired.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
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

/// How a forwarded action went, as a front reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Succeeded or failed.
    pub outcome: Outcome,
    /// The process's exit status, where the action was a process (`countersign run`).
    pub exit_code: Option<i32>,
    /// SHA-256 of the output, hex.
    pub output_sha256: Option<String>,
    /// What happened, briefly.
    pub detail: Option<String>,
}

impl Report {
    /// A report of `outcome` and nothing else.
    pub fn new(outcome: Outcome) -> Self {
        Report {
            outcome,
            exit_code: None,
            output_sha256: None,
            detail: None,
        }
    }
}

/// What a front needs to know about an action.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    /// Action id.
    pub id: String,
    /// Where the action is.
    pub status: Status,
    /// Why policy decided as it did.
    pub reason: Option<String>,
    /// Who may approve (while under review).
    pub approvers: Vec<String>,
    /// Reviewers' comments, in order (`verdict (voter): comment`).
    pub comments: Vec<String>,
    /// A usable single-use grant for the requester.
    pub grant_token: Option<String>,
    /// Where the review stands, while there is one.
    pub review: Option<ReviewProgress>,
    /// The reviewer's question still waiting for the requester's answer, if any.
    pub question: Option<Question>,
}

/// A reviewer's question the requester has not answered yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// Its position among the review's questions (0 for the first): a new question has a new
    /// index, even with the same words.
    pub index: usize,
    /// The reviewer who asked.
    pub asked_by: String,
    /// The question.
    pub text: String,
}

impl Question {
    /// The last question of `questions` (`(asked_by, question, answered)` in order) if it is
    /// not answered yet.
    pub fn open<'a>(
        questions: impl DoubleEndedIterator<Item = (&'a str, &'a str, bool)> + ExactSizeIterator,
    ) -> Option<Question> {
        let index = questions.len().checked_sub(1)?;
        let (asked_by, text, answered) = questions.last()?;
        (!answered).then(|| Question {
            index,
            asked_by: asked_by.to_string(),
            text: text.to_string(),
        })
    }
}

/// A review's progress, as a front shows it to the requester.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewProgress {
    /// Approvals that count so far, summed over the requirements (each up to its quorum).
    pub approvals: u32,
    /// Approvals needed in all (the requirements' quorums summed).
    pub needed: u32,
    /// When the review expires.
    pub expires_at: Timestamp,
}

impl Tracked {
    /// Whether the action waits for people (pending, or a reviewer asked a question).
    pub fn waits(&self) -> bool {
        matches!(self.status, Status::Pending | Status::NeedsClarification)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_unanswered_question_is_open() {
        let open = |qs: &[(&'static str, &'static str, bool)]| Question::open(qs.iter().copied());
        assert_eq!(open(&[]), None);
        assert_eq!(open(&[("bob", "why?", true)]), None);
        assert_eq!(
            open(&[("bob", "why?", true), ("carol", "why?", false)]),
            Some(Question {
                index: 1,
                asked_by: "carol".into(),
                text: "why?".into()
            })
        );
    }
}

/// What a redeemed grant allows: the approved arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Approved {
    /// Action id.
    pub action_id: String,
    /// The approved parameters (a reviewer's modification included).
    pub params: Value,
    /// The credentials policy releases to the redeemer (names): ask with
    /// [`Gate::credentials`]. Empty: none.
    pub credentials: Vec<String>,
}

/// Credentials released for an action, as a front hands them to what it runs. `Debug` shows
/// names only, never a value.
#[derive(Clone, Default, PartialEq)]
pub struct Released {
    /// When they stop working.
    pub expires_at: Option<Timestamp>,
    /// Environment variables (name, secret value).
    pub env: Vec<(String, String)>,
    /// Files: the variable `env` receives the path of a file named `name` holding `contents`.
    pub files: Vec<ReleasedFile>,
}

/// A credential delivered as a file.
#[derive(Clone, PartialEq)]
pub struct ReleasedFile {
    /// The environment variable that receives the file's path.
    pub env: String,
    /// The file's name.
    pub name: String,
    /// Its contents (secret).
    pub contents: String,
}

impl std::fmt::Debug for Released {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Released")
            .field("expires_at", &self.expires_at)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field(
                "files",
                &self.files.iter().map(|x| &x.env).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The gateway, seen from a front. Every call acts as the front's one agent identity.
#[async_trait]
pub trait Gate: Send + Sync {
    /// Submits an action.
    async fn submit(&self, sub: Submission) -> Result<Tracked, GateError>;
    /// Reads an action, waiting up to `wait` for it to leave review.
    async fn wait(&self, id: &str, wait: Duration) -> Result<Tracked, GateError>;
    /// Withdraws an action.
    async fn cancel(&self, id: &str) -> Result<(), GateError>;
    /// Answers the reviewer's open question on an action (the requester only).
    async fn answer(&self, id: &str, answer: String) -> Result<Tracked, GateError>;
    /// Redeems a grant, once.
    async fn redeem(&self, token: &str) -> Result<Approved, GateError>;
    /// Reports how the call went.
    async fn report(&self, id: &str, report: Report) -> Result<(), GateError>;
    /// Receives, once, the credentials policy releases for the action to the redeemer of its
    /// grant (`public_key`: an SSH public key to certify, for kinds that sign one). A gate that
    /// cannot release credentials refuses.
    async fn credentials(&self, id: &str, public_key: Option<&str>) -> Result<Released, GateError> {
        let _ = (id, public_key);
        Err(GateError::Refused {
            code: "no_credentials".into(),
            message: "this gateway releases no credentials".into(),
        })
    }
    /// Records a message the front refused before it reached the server (`code`: the stable
    /// reason) in the audit trail, where this gate can. Returns whether it was recorded.
    async fn refused(&self, code: &str) -> bool;
    /// What policy would say about a tool called with no arguments, where the gateway can tell
    /// without recording anything (used to filter `tools/list`). `None`: unknown.
    fn preview(&self, spec: &ActionSpec) -> Option<Effect>;
    /// The id of the identity this gate acts as, where the gate knows it: the embedded gate
    /// always, a remote gate once `Gates::gate_for` checked its token (`GET /v1/whoami`).
    /// `None`: not known (a front that needs it refuses).
    fn identity(&self) -> Option<String> {
        None
    }
}

/// Where a front serving many agents gets each request's gate: the request's bearer credential
/// is authenticated again on every call (a revoked key or an expired token stops at once).
#[async_trait]
pub trait Gates: Send + Sync {
    /// The gate acting as the identity `token` proves, or why it proves none.
    async fn gate_for(&self, token: &str) -> Result<Arc<dyn Gate>, GateError>;
}

pub use crate::clock::Clock;

/// Largest submission accepted, as the JSON body `POST /v1/actions` would carry: the HTTP API
/// v1's body limit (`countersign_http::MAX_BODY`; a test of the CLI checks they agree), so an
/// embedded gateway takes no more than a remote one.
pub const MAX_SUBMISSION: usize = 1024 * 1024;

/// Checks a submission against the input limits every front shares: the body size of the API
/// and the parameters' JSON rules (depth, I-JSON numbers). The gateway checks the rest (names,
/// lengths) when the submission becomes an action.
pub fn check_submission(sub: &Submission) -> Result<(), GateError> {
    let refused = |message: String| GateError::Refused {
        code: "invalid_request".into(),
        message,
    };
    if let Some(p) = &sub.params {
        countersign_core::check_json(p, countersign_core::MAX_PARAMS_DEPTH)
            .map_err(|e| refused(e.to_string()))?;
    }
    let size = crate::remote::submit_body(sub).to_string().len();
    if size > MAX_SUBMISSION {
        return Err(GateError::Refused {
            code: "payload_too_large".into(),
            message: format!("the action is over the {MAX_SUBMISSION}-byte limit ({size} bytes)"),
        });
    }
    Ok(())
}
