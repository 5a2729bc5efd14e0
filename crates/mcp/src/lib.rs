//! The MCP gateway: sits between an AI agent and a Model Context Protocol server and turns every
//! `tools/call` into a countersign action (`mcp.tool_call` on `mcp://<server>/<tool>`, the call's
//! arguments as parameters). Allowed calls are forwarded, denied ones answered with an `isError`
//! result giving the reason, reviewed ones held until people decide (with progress
//! notifications, or a "pending, call again" answer), then forwarded with the approved
//! arguments and their result reported to the audit trail.
//!
//! **Architecture Invariant:** this crate holds no approval rule and does not link the policy
//! engine. It asks a [`Gate`] (`countersign_enforce`: the gateway embedded or over HTTP) and
//! relays everything else byte-for-byte as raw JSON-RPC, so fields of newer protocol versions
//! pass through untouched, once [`inbound::check`] has accepted the
//! message (strict JSON, valid ids, the specification's methods plus configured extras).

pub mod calls;
pub mod dispatch;
pub mod http;
pub mod inbound;
pub mod jsonrpc;
pub mod session;
pub mod stdio;
pub mod tasks;

pub use countersign_enforce::{
    Approved, Gate, GateError, Gates, Remote, RemoteGates, Tracked, MAX_SUBMISSION,
};
pub use session::{Options, Session, ACTION};
