//! API v1 of countersign as types, shared by the server and its clients.
//!
//! - The wire types: every request body and query the server's handlers take and every answer
//!   they give ([`Action`], [`Submitted`], [`ReviewList`], [`Redeemed`], keys, audit, health).
//!   The server serializes exactly these (borrowing from its records); clients deserialize them.
//!   Views of a record have private fields and one constructor from the core's record.
//! - [`ErrorCode`]: every stable error code, with the one HTTP status each always answers with,
//!   and [`ErrorBody`], the one error shape.
//! - With the `client` feature (default): [`client::Client`], one typed client of every endpoint
//!   with one timeout policy, used by the CLI and the MCP proxy's remote gate.
//!
//! **Architecture Invariant:** this crate knows the wire and the core's types, nothing else: no
//! gateway, store or policy (a remote-only client links no Cedar and no database).

mod action;
mod audit;
pub mod credentials;
mod error;
mod keys;
mod requests;
pub mod time;
mod whoami;

#[cfg(feature = "client")]
pub mod client;

pub use action::{
    Action, ActionResult, Clarification, Decision, Grant, Requirement, Review, Submitted, Vote,
};
pub use audit::{
    ActionAudit, ConsistencyProof, ConsistencyQuery, Entries, EntriesQuery, Entry, EntryProof,
    InclusionProof, InclusionQuery,
};
pub use credentials::{
    CredentialFile, CredentialsRequest, ReleasedCredential, ReleasedCredentials,
};
pub use error::{ErrorBody, ErrorCode};
pub use keys::{CreateKeyRequest, CreatedKey, KeyList, ManagedKey};
pub use requests::{
    AnswerRequest, GetQuery, Health, RedeemRequest, Redeemed, ResultRequest, ReviewList,
    ReviewsQuery, SubmitRequest, VoteRequest,
};
pub use whoami::WhoAmI;

#[cfg(feature = "client")]
pub use client::{Client, ClientError, SubmitAnswer, Timeouts};
