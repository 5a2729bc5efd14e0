//! JSON-RPC 2.0 and MCP message shapes the proxy writes itself.

use serde_json::{json, Value};

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// Invalid method parameters (here: an unknown task, or cancelling one that has ended).
pub const INVALID_PARAMS: i64 = -32602;
/// The request was cancelled (the code LSP uses; MCP defines none): `tasks/result` of a
/// cancelled task.
pub const REQUEST_CANCELLED: i64 = -32800;
/// Internal error (here: the server is gone or did not answer in time).
pub const INTERNAL_ERROR: i64 = -32603;

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
