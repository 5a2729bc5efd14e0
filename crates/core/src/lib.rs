//! Countersign's domain core: what an action is, who asks, what policy decided, how a review moves
//! from `pending` to a verdict, and what a grant allows. Every invariant of the product lives here,
//! once, so that every channel (HTTP, CLI, MCP, chat) gets it for free.
//!
//! **Architecture Invariant:** this crate does no I/O. It knows nothing of HTTP, SQL, Cedar, clocks
//! or random numbers: time and fresh identifiers come in as parameters, so every function is
//! deterministic and property-testable.

mod action;
mod analysis;
mod approvers;
pub mod canonical;
mod decision;
mod event;
mod identity;
mod limits;
mod masked;
mod record;
mod submission;
mod time;

pub use action::{
    check_json, check_json_text, ActionDigest, ActionSpec, DigestParseError, SpecError,
    MAX_PARAMS_DEPTH, MAX_SAFE_INTEGER,
};
pub use analysis::{Analysis, Risk};
pub use approvers::{Approvers, ApproversParseError, Quorum, QuorumParseError};
pub use decision::{Decision, Effect, Requirement, Route};
pub use event::Event;
pub use identity::{
    check_id, id_key, may_be_on_behalf_of, same_id, IdError, Identity, IdentityKind,
};
pub use limits::{Field, TooLong};
pub use masked::MaskedValue;
pub use record::{
    ActionRecord, ActionResult, Ballot, Clarification, CredentialTerms, DomainError, GrantState,
    JudgedAs, Judgement, NewAction, Outcome, ReleasedCredential, ReviewState, RevokeReason, Status,
    Verdict, Vote, VoteContext,
};
pub use submission::Submission;
pub use time::Timestamp;
