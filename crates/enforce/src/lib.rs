//! Protocol-neutral enforcement: what every front (MCP stdio, MCP HTTP, and later the PostgreSQL
//! wire proxy and `countersign run`) does with an action, without knowing any protocol.
//!
//! - [`Gate`]: the small trait a front asks the gateway through; [`Remote`] is the gateway over
//!   its HTTP API v1. The embedded gate lives with the gateway (`countersign_gateway::gate`), so a
//!   remote-only front does not link the policy engine.
//! - [`hold`]: the hold loop as a state machine ([`Hold`], no I/O, typed [`Step`]s and
//!   [`Ending`]s) and its runner ([`hold::hold`]), with [`hold::withdraw`] for cancellations.
//! - [`continuation`]: an approved, forwarded action the downstream asked more input for is
//!   continued by the caller's retry, once, without a new decision.
//!
//! **Architecture Invariant:** this crate holds no approval rule and no protocol type, and does
//! not depend on the policy engine (tidy test `a_remote_front_does_not_link_cedar`).

pub mod clock;
pub mod continuation;
pub mod gate;
pub mod hold;
pub mod remote;

pub use clock::{system_clock, TestClock};
pub use continuation::{Continuations, Continued};
pub use gate::{
    check_submission, Approved, Clock, Gate, GateError, Gates, Question, Released, ReleasedFile,
    Report, ReviewProgress, Submission, Tracked, MAX_SUBMISSION,
};
pub use hold::{Ending, Hold, HoldPolicy, Progress, Silent, Step};
pub use remote::{Remote, RemoteGates};
