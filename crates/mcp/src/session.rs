//! One MCP session between an agent (the client) and a real MCP server, with countersign in the
//! middle. Transport-independent: a transport feeds it each message from either side and sends
//! what it queues on [`Outbox`] channels.
//!
//! Messages stay raw JSON-RPC (`serde_json::Value`, or the original bytes when relayed unchanged)
//! so fields and methods this code has never heard of pass through intact. Only three things are
//! looked at: `tools/call` requests (held for a decision), `tools/list` responses (filtered and
//! annotated), and `notifications/cancelled` for a held call (which cancels its review).

use countersign_core::Outcome;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

pub use crate::calls::Outbox;
use crate::calls::{Calls, Verdict};
use crate::gate::Gate;
use crate::jsonrpc;

/// The action every tool call becomes.
pub const ACTION: &str = "mcp.tool_call";

/// How a session behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server's name in resources: `mcp://<server_name>/<tool>`.
    pub server_name: String,
    /// Hold a call under review at most this long, then answer "pending, call again" (the
    /// review stays open; the same call later returns the real result once approved). `None`:
    /// hold until the review closes.
    pub pending_after: Option<Duration>,
    /// How often a held call sends `notifications/progress` (when the client gave a token) and
    /// re-reads the action.
    pub progress_every: Duration,
    /// Hide tools policy denies outright from `tools/list`.
    pub hide_denied: bool,
    /// A request the server has not answered after this long gets an error.
    pub server_timeout: Duration,
}

impl Options {
    /// Defaults for `server_name`.
    pub fn new(server_name: impl Into<String>) -> Self {
        Options {
            server_name: server_name.into(),
            pending_after: None,
            progress_every: Duration::from_secs(5),
            hide_denied: true,
            server_timeout: Duration::from_secs(600),
        }
    }
}

enum InFlight {
    /// A forwarded `tools/call`: report its outcome to this action.
    Call { action_id: Option<String> },
    /// A `tools/list`: filter the result.
    List,
    /// Anything else.
    Other,
}

struct Held {
    cancel: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    inflight: HashMap<String, InFlight>,
    held: HashMap<String, Held>,
    closed: bool,
}

/// One proxied MCP session.
pub struct Session {
    calls: Calls,
    to_client: Outbox,
    to_server: Outbox,
    state: Mutex<State>,
    active: std::sync::atomic::AtomicUsize,
}

fn key(id: &Value) -> String {
    id.to_string()
}

impl Session {
    /// A session that asks `gate` and writes to the two outboxes.
    pub fn new(
        gate: Arc<dyn Gate>,
        opts: Options,
        to_client: Outbox,
        to_server: Outbox,
    ) -> Arc<Self> {
        Arc::new(Session {
            calls: Calls::new(gate, opts),
            to_client,
            to_server,
            state: Mutex::new(State::default()),
            active: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn client(&self, msg: String) {
        let _ = self.to_client.send(msg).await;
    }

    /// A message from the client that was too large to read.
    pub async fn oversized(&self, limit: usize) {
        self.client(jsonrpc::error(
            &Value::Null,
            jsonrpc::INVALID_REQUEST,
            &format!("message larger than {limit} bytes refused"),
        ))
        .await;
    }

    /// One message from the client (`raw` is its text, without the line end).
    pub async fn from_client(self: &Arc<Self>, raw: &str) {
        let msg: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => {
                let text = format!("parse error: {e}");
                return self
                    .client(jsonrpc::error(&Value::Null, jsonrpc::PARSE_ERROR, &text))
                    .await;
            }
        };
        let Some(obj) = msg.as_object() else {
            // Batches were removed from MCP in 2025-06-18; relaying one would also let a
            // tools/call slip past review.
            return self
                .client(jsonrpc::error(
                    &Value::Null,
                    jsonrpc::INVALID_REQUEST,
                    "a JSON-RPC message must be one object (batches are not supported)",
                ))
                .await;
        };
        let id = obj.get("id").filter(|i| !i.is_null()).cloned();
        let method = obj.get("method").and_then(Value::as_str);
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0")
            || (method.is_none() && id.is_none())
        {
            let id = id.unwrap_or(Value::Null);
            return self
                .client(jsonrpc::error(
                    &id,
                    jsonrpc::INVALID_REQUEST,
                    "not a JSON-RPC 2.0 message",
                ))
                .await;
        }
        match (method, id) {
            (Some("tools/call"), Some(id)) => self.hold(id, msg),
            (Some("tools/list"), Some(id)) => {
                self.track(&id, InFlight::List);
                self.server(raw.to_string(), Some(id)).await;
            }
            (Some("notifications/cancelled"), None) => {
                let target = key(&msg["params"]["requestId"]);
                let held = self.state().held.remove(&target);
                match held {
                    Some(h) => {
                        let _ = h.cancel.send(true);
                    }
                    None => self.server(raw.to_string(), None).await,
                }
            }
            (Some(_), Some(id)) => {
                self.track(&id, InFlight::Other);
                self.server(raw.to_string(), Some(id)).await;
            }
            _ => self.server(raw.to_string(), None).await,
        }
    }

    fn track(&self, id: &Value, what: InFlight) {
        self.state().inflight.insert(key(id), what);
    }

    /// Sends to the server; a request is answered with an error if the server stays silent.
    async fn server(self: &Arc<Self>, msg: String, id: Option<Value>) {
        if self.to_server.send(msg).await.is_err() {
            if let Some(id) = id {
                self.fail_request(&id, "the MCP server is gone").await;
            }
            return;
        }
        if let Some(id) = id {
            let me = Arc::downgrade(self);
            let timeout = self.calls.options().server_timeout;
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                if let Some(me) = me.upgrade() {
                    let text = format!("the MCP server did not answer within {timeout:?}");
                    me.fail_request(&id, &text).await;
                }
            });
        }
    }

    /// Answers an in-flight request with an internal error (and records a failed call).
    async fn fail_request(&self, id: &Value, text: &str) {
        let Some(what) = self.state().inflight.remove(&key(id)) else {
            return;
        };
        if let InFlight::Call {
            action_id: Some(action_id),
        } = what
        {
            let _ = self
                .calls
                .gate()
                .report(&action_id, Outcome::Failed, None, Some(text.to_string()))
                .await;
        }
        self.client(jsonrpc::error(id, jsonrpc::INTERNAL_ERROR, text))
            .await;
    }

    /// One message from the server.
    pub async fn from_server(self: &Arc<Self>, raw: &str) {
        let msg: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "the MCP server sent a message that is not JSON; dropped");
                return;
            }
        };
        let is_response = msg.get("method").is_none();
        let id = msg.get("id").filter(|i| !i.is_null());
        let what = match (is_response, id) {
            (true, Some(id)) => self.state().inflight.remove(&key(id)),
            _ => None,
        };
        match what {
            Some(InFlight::List) if msg.get("result").is_some() => {
                let mut msg = msg;
                self.calls.filter_tools(&mut msg["result"]);
                self.client(msg.to_string()).await;
            }
            Some(InFlight::Call {
                action_id: Some(action_id),
            }) => {
                // Counted as active so a closing session waits for the report to land.
                self.active
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                self.client(raw.to_string()).await;
                // Off the server's read loop: a slow gateway (a remote one is an HTTP round trip
                // away) must not hold up the server's next messages.
                let me = self.clone();
                let raw = raw.to_string();
                tokio::spawn(async move {
                    me.calls.report(&action_id, &raw).await;
                    me.active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
            _ => self.client(raw.to_string()).await,
        }
    }

    /// Holds a `tools/call` for a decision in a task of its own.
    fn hold(self: &Arc<Self>, id: Value, msg: Value) {
        let (cancel, cancelled) = watch::channel(false);
        {
            let mut st = self.state();
            if st.closed {
                return;
            }
            st.held.insert(key(&id), Held { cancel });
        }
        let me = self.clone();
        me.active.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::spawn(async move {
            let verdict = me.calls.decide(&msg, cancelled, &me.to_client).await;
            let still_held = me.state().held.remove(&key(&id)).is_some();
            match verdict {
                Verdict::Answer(result) if still_held => {
                    me.client(jsonrpc::result(&id, result)).await;
                }
                Verdict::Forward(msg, action_id) if still_held => {
                    me.track(&id, InFlight::Call { action_id });
                    me.server(msg.to_string(), Some(id)).await;
                }
                _ => {}
            }
            me.active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
    }

    /// The client went away: cancel every held call's review and stop accepting new ones.
    pub async fn client_gone(&self) {
        let held: Vec<Held> = {
            let mut st = self.state();
            st.closed = true;
            st.held.drain().map(|(_, h)| h).collect()
        };
        for h in held {
            let _ = h.cancel.send(true);
        }
    }

    /// The server went away: every request it had not answered gets an error.
    pub async fn server_gone(&self) {
        let ids: Vec<String> = self.state().inflight.keys().cloned().collect();
        for k in ids {
            if let Ok(id) = serde_json::from_str::<Value>(&k) {
                self.fail_request(&id, "the MCP server exited before answering")
                    .await;
            }
        }
    }

    /// Waits (at most `limit`) until no call is being decided: after [`Session::client_gone`],
    /// until every held review is cancelled.
    pub async fn settle(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.active.load(std::sync::atomic::Ordering::SeqCst) > 0 && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
