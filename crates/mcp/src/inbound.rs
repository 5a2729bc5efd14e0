//! What the proxy accepts from a client, checked once for both transports before anything else
//! looks at the message: JSON parsed strictly (a repeated key in any object refuses the
//! message: the proxy and a server must never read different values), a JSON-RPC 2.0 object,
//! a request id that is a string or a number, and a method the MCP specification defines for
//! this kind of message (or one the operator allowed). Everything else is refused with a
//! JSON-RPC error from the proxy and never reaches the server: a lenient server could
//! otherwise run what the proxy relayed unreviewed (`TOOLS/CALL`, `"tools/call "`, a
//! `tools/call` notification, a second `method` key). Keys are repeated when they are equal
//! case-insensitively too: decoders such as Go's `encoding/json` read `METHOD` as `method`.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

use crate::jsonrpc;

/// Requests a client may send a server, in every MCP version the proxy supports (2024-11-05,
/// 2025-03-26, 2025-06-18, 2025-11-25, 2026-07-28 with its Tasks extension).
pub const CLIENT_REQUESTS: &[&str] = &[
    "completion/complete",
    "initialize",
    "logging/setLevel",
    "ping",
    "prompts/get",
    "prompts/list",
    "resources/list",
    "resources/read",
    "resources/subscribe",
    "resources/templates/list",
    "resources/unsubscribe",
    "server/discover",
    "subscriptions/listen",
    "tasks/cancel",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/update",
    "tools/call",
    "tools/list",
];

/// Notifications a client may send a server (same versions).
pub const CLIENT_NOTIFICATIONS: &[&str] = &[
    "notifications/cancelled",
    "notifications/initialized",
    "notifications/progress",
    "notifications/roots/list_changed",
    "notifications/tasks/status",
];

/// Requests a server may send a client (same versions). Listed for reference and for
/// [`Methods::is_spec`]; the proxy does not filter what servers send (it reaches the agent,
/// never the gate).
pub const SERVER_REQUESTS: &[&str] = &[
    "elicitation/create",
    "ping",
    "roots/list",
    "sampling/createMessage",
    "tasks/cancel",
    "tasks/get",
    "tasks/list",
    "tasks/result",
];

/// Notifications a server may send a client (same versions).
pub const SERVER_NOTIFICATIONS: &[&str] = &[
    "notifications/cancelled",
    "notifications/elicitation/complete",
    "notifications/message",
    "notifications/progress",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
    "notifications/resources/updated",
    "notifications/subscriptions/acknowledged",
    "notifications/tasks",
    "notifications/tasks/status",
    "notifications/tools/list_changed",
];

/// The methods a client may use: the specification's plus the operator's extras
/// (`--allow-method`). An extra may be sent as a request or as a notification; it can never
/// be `tools/call` in disguise, since names are compared exactly.
#[derive(Debug, Clone, Default)]
pub struct Methods {
    extra: Arc<BTreeSet<String>>,
}

impl Methods {
    /// The specification's methods and these extras.
    pub fn with_extras<I: IntoIterator<Item = String>>(extras: I) -> Self {
        Methods {
            extra: Arc::new(extras.into_iter().collect()),
        }
    }

    /// Whether `method` is one the MCP specification defines, in either direction.
    pub fn is_spec(method: &str) -> bool {
        [
            CLIENT_REQUESTS,
            CLIENT_NOTIFICATIONS,
            SERVER_REQUESTS,
            SERVER_NOTIFICATIONS,
        ]
        .iter()
        .any(|l| l.contains(&method))
    }

    fn extra(&self, method: &str) -> bool {
        !self.extra.is_empty() && self.extra.contains(method)
    }
}

/// Why a client's message was refused; [`Refusal::response`] is what the client gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The request id to answer (`null` when there is none, or none can be trusted).
    pub id: Value,
    /// The JSON-RPC error code.
    pub code: i64,
    /// A stable machine-readable reason, also the audit entry's code: `mcp_parse_error`,
    /// `mcp_duplicate_key`, `mcp_invalid_request`, `mcp_invalid_id`, `mcp_method_not_found`,
    /// `mcp_duplicate_id`, `mcp_header_mismatch`, `mcp_invalid_params`.
    pub reason: &'static str,
    /// A sentence for the client.
    pub message: String,
}

impl Refusal {
    fn new(id: Value, code: i64, reason: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            id,
            code,
            reason,
            message: message.into(),
        }
    }

    /// The JSON-RPC error response.
    pub fn response(&self) -> String {
        jsonrpc::error(
            &self.id,
            self.code,
            &format!("countersign: {}", self.message),
        )
    }

    /// Whether the refusal is worth an audit entry: everything but plain malformed JSON (which
    /// a buggy client sends as easily as a hostile one, and which no server could act on).
    pub fn audited(&self) -> bool {
        self.reason != "mcp_parse_error"
    }

    /// Streamable HTTP: an `Mcp-Method` or `Mcp-Name` header that disagrees with the body (a
    /// server routing by header would run what the proxy did not decide on).
    pub fn header_mismatch(id: &Value, text: &str) -> Self {
        let id = if valid_id(id) {
            id.clone()
        } else {
            Value::Null
        };
        Refusal::new(id, jsonrpc::HEADER_MISMATCH, "mcp_header_mismatch", text)
    }

    /// A request id reused while the first request with it is still open.
    pub fn duplicate_id(id: &Value) -> Self {
        Refusal::new(
            id.clone(),
            jsonrpc::INVALID_REQUEST,
            "mcp_duplicate_id",
            "a request with this id is still in progress; use a new id",
        )
    }
}

/// Parses JSON like `serde_json::from_slice`, but refuses an object that repeats a key, at any
/// depth (serde_json keeps the last silently; other parsers keep the first).
pub fn parse_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// A [`Value`] seed whose objects refuse repeated keys.
#[derive(Clone, Copy)]
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        // Past a few keys, their folded forms are kept in a set (no quadratic scan).
        let mut folds: Option<HashSet<String>> = None;
        while let Some(k) = map.next_key::<String>()? {
            let repeated = match &mut folds {
                Some(set) => !set.insert(fold(&k).into_owned()),
                None => out.keys().any(|seen| same_fold(seen, &k)),
            };
            if repeated {
                return Err(de::Error::custom(format_args!("duplicate key `{k}`")));
            }
            if folds.is_none() && out.len() >= LINEAR_KEYS {
                let mut set: HashSet<String> = out.keys().map(|k| fold(k).into_owned()).collect();
                set.insert(fold(&k).into_owned());
                folds = Some(set);
            }
            let v = map.next_value_seed(Strict)?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// Objects up to this many keys are checked for repeats by a scan.
const LINEAR_KEYS: usize = 32;

/// A key as case-insensitive decoders see it: Go's `encoding/json` (and others) match keys
/// case-insensitively, with Unicode folding (`ſ` is `s`, the Kelvin sign `k`), so `METHOD`
/// and `method` are one key to them. Folding through upper then lower case covers their
/// folds (and a few more, refused too).
fn fold(k: &str) -> std::borrow::Cow<'_, str> {
    if k.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        std::borrow::Cow::Borrowed(k)
    } else if k.is_ascii() {
        std::borrow::Cow::Owned(k.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Owned(k.to_uppercase().to_lowercase())
    }
}

fn same_fold(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        fold(a) == fold(b)
    }
}

/// A valid request id: a string or a number (MCP forbids `null`).
fn valid_id(id: &Value) -> bool {
    id.is_string() || id.is_number()
}

/// Checks one message from the client and returns it parsed, or why it is refused.
pub fn check(raw: &[u8], methods: &Methods) -> Result<Value, Refusal> {
    let msg = parse_strict(raw).map_err(|e| {
        let text = e.to_string();
        if text.starts_with("duplicate key") {
            Refusal::new(
                Value::Null,
                jsonrpc::PARSE_ERROR,
                "mcp_duplicate_key",
                format!("refused: an object repeats a key ({text})"),
            )
        } else {
            Refusal::new(
                Value::Null,
                jsonrpc::PARSE_ERROR,
                "mcp_parse_error",
                format!("parse error: {text}"),
            )
        }
    })?;
    let Some(obj) = msg.as_object() else {
        // Batches were removed from MCP in 2025-06-18; relaying one would also let a
        // tools/call slip past review.
        return Err(Refusal::new(
            Value::Null,
            jsonrpc::INVALID_REQUEST,
            "mcp_invalid_request",
            "a JSON-RPC message must be one object (batches are not supported)",
        ));
    };
    let id = obj.get("id");
    let answer_id = id.filter(|i| valid_id(i)).cloned().unwrap_or(Value::Null);
    let invalid = |reason, text: &str| {
        Err(Refusal::new(
            answer_id.clone(),
            jsonrpc::INVALID_REQUEST,
            reason,
            text,
        ))
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid("mcp_invalid_request", "not a JSON-RPC 2.0 message");
    }
    let Some(method) = obj.get("method") else {
        // A response to one of the server's requests.
        let ok = match id {
            Some(i) if valid_id(i) => true,
            // An error response to a request the client could not read.
            Some(Value::Null) => obj.contains_key("error"),
            _ => false,
        };
        let shaped = obj.contains_key("result") != obj.contains_key("error");
        return if ok && shaped {
            Ok(msg)
        } else {
            invalid(
                "mcp_invalid_request",
                "not a JSON-RPC 2.0 message (a response needs an id and one of result, error)",
            )
        };
    };
    let Some(method) = method.as_str() else {
        return invalid("mcp_invalid_request", "`method` must be a string");
    };
    // A tool call's arguments become an action's params: integers beyond I-JSON's range must be
    // caught on the text, where parsing would round them (2^64 reads as a float).
    if method == "tools/call" {
        if let Err(e) = countersign_core::check_json_text(raw) {
            return Err(Refusal::new(
                answer_id,
                jsonrpc::INVALID_PARAMS,
                "mcp_invalid_params",
                format!("refused: {e}"),
            ));
        }
    }
    let request = match id {
        None => false,
        Some(i) if valid_id(i) => true,
        Some(_) => {
            return invalid(
                "mcp_invalid_id",
                "a request id must be a string or a number (never null)",
            )
        }
    };
    let (mine, other) = if request {
        (CLIENT_REQUESTS, CLIENT_NOTIFICATIONS)
    } else {
        (CLIENT_NOTIFICATIONS, CLIENT_REQUESTS)
    };
    if mine.contains(&method) || methods.extra(method) {
        return Ok(msg);
    }
    if other.contains(&method) {
        return if request {
            invalid(
                "mcp_invalid_request",
                &format!("`{method}` is a notification: send it without an id"),
            )
        } else {
            invalid(
                "mcp_invalid_id",
                &format!("`{method}` is a request: it needs an id (a string or a number)"),
            )
        };
    }
    Err(Refusal::new(
        answer_id,
        jsonrpc::METHOD_NOT_FOUND,
        "mcp_method_not_found",
        format!("method not found: `{method}` is not an MCP method this proxy relays"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn refused(raw: &str) -> Refusal {
        match check(raw.as_bytes(), &Methods::default()) {
            Ok(v) => panic!("{raw} was accepted as {v}"),
            Err(r) => r,
        }
    }

    #[test]
    fn repeated_keys_are_refused_at_any_depth() {
        for raw in [
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"get-env"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":[{"k":1,"k":2}]}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","m\u0065thod":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","METHOD":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"get-env"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{},"argument\u017f":{"x":1}}}"#,
        ] {
            let r = refused(raw);
            assert_eq!((r.code, r.reason), (-32700, "mcp_duplicate_key"), "{raw}");
            assert_eq!(r.id, Value::Null);
        }
    }

    #[test]
    fn repeats_are_found_in_large_objects_too() {
        let mut keys: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        let fine = format!("{{{}}}", keys.join(","));
        assert!(parse_strict(fine.as_bytes()).is_ok());
        keys.push("\"K57\":0".into());
        let repeated = format!("{{{}}}", keys.join(","));
        assert!(parse_strict(repeated.as_bytes()).is_err());
        keys.pop();
        keys.push("\"\\u212a3\":0".into()); // the Kelvin sign folds to k
        let kelvin = format!("{{{}}}", keys.join(","));
        assert!(parse_strict(kelvin.as_bytes()).is_err());
    }

    #[test]
    fn tools_call_without_a_valid_id_is_an_invalid_request() {
        for raw in [
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"get-env"}}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"get-env"}}"#,
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"tools/call","params":{"name":"get-env"}}"#,
            r#"{"jsonrpc":"2.0","id":[1],"method":"tools/call","params":{"name":"get-env"}}"#,
            r#"{"jsonrpc":"2.0","id":true,"method":"tools/call","params":{"name":"get-env"}}"#,
        ] {
            let r = refused(raw);
            assert_eq!(r.code, -32600, "{raw}");
            assert_eq!(r.id, Value::Null);
        }
    }

    #[test]
    fn methods_outside_the_specification_are_not_found() {
        for m in [
            "TOOLS/CALL",
            "tools/call ",
            " tools/call",
            "tools/call\u{0}",
            "Tools/Call",
            "tools/calls",
            "x",
        ] {
            let raw = serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": m}).to_string();
            let r = refused(&raw);
            assert_eq!(
                (r.code, r.reason),
                (-32601, "mcp_method_not_found"),
                "{m:?}"
            );
            assert_eq!(r.id, serde_json::json!(7));
        }
    }

    #[test]
    fn extras_pass_exactly_as_configured() {
        let methods = Methods::with_extras(["vendor/thing".to_string()]);
        let ok = r#"{"jsonrpc":"2.0","id":1,"method":"vendor/thing"}"#;
        assert!(check(ok.as_bytes(), &methods).is_ok());
        let note = r#"{"jsonrpc":"2.0","method":"vendor/thing"}"#;
        assert!(check(note.as_bytes(), &methods).is_ok());
        let near = r#"{"jsonrpc":"2.0","id":1,"method":"vendor/thing "}"#;
        assert!(check(near.as_bytes(), &methods).is_err());
    }

    #[test]
    fn ordinary_messages_pass() {
        for raw in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"m":"x"}}}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"initialize","params":{}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":3,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":2.5,"method":"ping"}"#,
        ] {
            assert!(check(raw.as_bytes(), &Methods::default()).is_ok(), "{raw}");
        }
    }

    #[test]
    fn requests_and_notifications_keep_their_kind() {
        let r = refused(r#"{"jsonrpc":"2.0","id":1,"method":"notifications/initialized"}"#);
        assert_eq!(r.code, -32600);
        let r = refused(r#"{"jsonrpc":"2.0","method":"tools/list"}"#);
        assert_eq!(r.code, -32600);
        let r = refused(r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage"}"#);
        assert_eq!(r.code, -32601);
    }

    #[test]
    fn responses_need_an_id_and_one_outcome() {
        refused(r#"{"jsonrpc":"2.0","result":{}}"#);
        refused(r#"{"jsonrpc":"2.0","id":null,"result":{}}"#);
        refused(r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#);
        refused(r#"{"jsonrpc":"2.0","id":1}"#);
    }

    proptest! {
        /// On JSON without repeated keys the strict parser reads exactly what serde_json reads.
        #[test]
        fn strict_parsing_agrees_with_serde_json(v in arb_json()) {
            let text = v.to_string();
            prop_assert_eq!(parse_strict(text.as_bytes()).unwrap(), v);
        }

        /// Whatever the method string, only exact spec names pass.
        #[test]
        fn only_exact_method_names_pass(m in "\\PC{0,20}") {
            let raw = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": m}).to_string();
            let passed = check(raw.as_bytes(), &Methods::default()).is_ok();
            prop_assert_eq!(passed, CLIENT_REQUESTS.contains(&m.as_str()));
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e9f64..1e9).prop_map(Value::from),
            "\\PC{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z0-9_]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn tool_call_integers_beyond_i_json_are_refused_on_the_text() {
        let m = Methods::with_extras(Vec::<String>::new());
        for n in [
            "18446744073709551616",
            "9007199254740993",
            "-9007199254740993",
        ] {
            let raw = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"pay","arguments":{{"amount":{n}}}}}}}"#
            );
            let r = check(raw.as_bytes(), &m).unwrap_err();
            assert_eq!((r.code, r.reason), (-32602, "mcp_invalid_params"), "{n}");
        }
        let ok = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pay","arguments":{"amount":9007199254740991}}}"#;
        assert!(check(ok.as_bytes(), &m).is_ok());
    }
}
