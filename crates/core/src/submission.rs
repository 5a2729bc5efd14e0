//! What a front asks the gateway to decide: one action, as received from any channel (the HTTP
//! API's `POST /v1/actions`, the MCP proxy, later chat and `countersign run`). One type for every
//! front, so a field added here reaches them all.

use serde_json::Value;

/// A submission, as received from any channel (the idempotency key is the HTTP API's
/// `Idempotency-Key` header).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Submission {
    /// Action name.
    pub action: String,
    /// Resource.
    pub resource: String,
    /// Environment.
    pub environment: Option<String>,
    /// Parameters (a JSON object).
    pub params: Option<Value>,
    /// The agent's justification.
    pub justification: Option<String>,
    /// The human the agent acts for.
    pub on_behalf_of: Option<String>,
    /// The client's idempotency key.
    pub idempotency_key: Option<String>,
    /// When policy asks for review: answer with the requester's earlier action for the same
    /// request (same digest, same `on_behalf_of`) if it still awaits review or is approved with
    /// an unused grant, instead of opening a second review.
    pub reuse_open: bool,
}
