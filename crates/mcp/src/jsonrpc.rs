//! JSON-RPC 2.0 and MCP message shapes the proxy writes itself.

use serde_json::{json, Value};

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist (here: not an MCP method, nor one the operator allowed).
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters (here: an unknown task, or cancelling one that has ended).
pub const INVALID_PARAMS: i64 = -32602;
/// The request was cancelled (the code LSP uses; MCP defines none): `tasks/result` of a
/// cancelled task.
pub const REQUEST_CANCELLED: i64 = -32800;
/// Internal error (here: the server is gone or did not answer in time).
pub const INTERNAL_ERROR: i64 = -32603;
/// Missing Required Client Capability (2026-07-28): a `tasks/*` request for an extension task
/// from a request that does not declare the Tasks extension.
pub const MISSING_CAPABILITY: i64 = -32021;

/// Header Mismatch (2026-07-28's Streamable HTTP): `Mcp-Method` or `Mcp-Name` disagrees with
/// the body.
pub const HEADER_MISMATCH: i64 = -32020;

/// `_meta` key carrying a 2026-07-28 request's protocol version (each request names its own).
pub const PROTOCOL_VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";

/// Whether a request uses 2026-07-28's per-request framing: its results must then carry
/// `resultType` (answers the proxy writes itself included).
pub fn is_modern(msg: &Value) -> bool {
    msg["params"]["_meta"][PROTOCOL_VERSION_META].is_string()
}

/// A result for `request`, marked `resultType: "complete"` when the request is 2026-07-28's.
pub fn complete(request: &Value, mut result: Value) -> Value {
    if is_modern(request) {
        if let Some(o) = result.as_object_mut() {
            o.entry("resultType").or_insert_with(|| json!("complete"));
        }
    }
    result
}

/// An error response.
pub fn error(id: &Value, code: i64, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

/// A success response.
pub fn result(id: &Value, result: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

/// A `CallToolResult` with `isError: true`: the model reads why and can adapt.
pub fn tool_error(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": true})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_2026_07_28_requests_get_a_result_type() {
        let modern = json!({"params": {"_meta": {PROTOCOL_VERSION_META: "2026-07-28"}}});
        let legacy = json!({"params": {"name": "echo"}});
        let r = tool_error("no");
        assert_eq!(complete(&modern, r.clone())["resultType"], "complete");
        assert!(complete(&legacy, r.clone()).get("resultType").is_none());
        let task = json!({"resultType": "task"});
        assert_eq!(complete(&modern, task)["resultType"], "task");
    }
}
