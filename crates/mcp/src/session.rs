//! One MCP session between an agent (the client) and a real MCP server, with countersign in the
//! middle. Transport-independent: a transport feeds it each message from either side and sends
//! what it queues on [`Outbox`] channels.
//!
//! Messages stay raw JSON-RPC (`serde_json::Value`, or the original bytes when relayed unchanged)
//! so fields and methods this code has never heard of pass through intact. Only three things are
//! looked at: `tools/call` requests (held for a decision, or run as a task when the client asks),
//! `tools/list` responses (filtered and annotated), `notifications/cancelled` for a held call
//! (which cancels its review), the `initialize` result (which gains the tasks capability on
//! 2025-11-25 sessions), the `server/discover` result (which gains the 2026-07-28 Tasks
//! extension) and `tasks/*` requests for the proxy's own tasks.

use countersign_core::Outcome;
use countersign_enforce::Clock;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

pub use crate::calls::Outbox;
use crate::calls::{AsTask, Calls, Forwarded, Verdict};
use crate::dispatch::{self, Rewrite, Route, TaskMethod};
use crate::inbound::{self, Methods, Refusal};
use crate::jsonrpc;
use crate::tasks::{self, TaskError, Tasks};
use countersign_enforce::Gate;

/// The action every tool call becomes.
pub const ACTION: &str = "mcp.tool_call";

/// How a session behaves.
#[derive(Clone)]
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
    /// Methods relayed besides the MCP specification's (`--allow-method`).
    pub methods: Methods,
    /// The wall clock (tasks are dated with it).
    pub clock: Clock,
}

impl Options {
    /// Defaults for `server_name`, with `clock` as the wall clock.
    pub fn new(server_name: impl Into<String>, clock: Clock) -> Self {
        Options {
            server_name: server_name.into(),
            pending_after: None,
            progress_every: Duration::from_secs(5),
            hide_denied: true,
            server_timeout: Duration::from_secs(600),
            methods: Methods::default(),
            clock,
        }
    }
}

enum InFlight {
    /// A forwarded `tools/call`: report its outcome to this action (2026-07-28: unless the
    /// server asks for input, when `round` lets the client's retry continue it).
    Call {
        action_id: Option<String>,
        round: Option<Forwarded>,
    },
    /// A `tools/call` forwarded for one of our tasks (under an id of the proxy's own): the
    /// response ends the task; report it to this action.
    TaskCall {
        task: String,
        action_id: Option<String>,
        /// The call as forwarded, to continue it if the server asks for input (2026-07-28).
        forwarded: Value,
    },
    /// Any other request, its answer rewritten as [`dispatch`] says (`None`: relayed unchanged).
    Relayed(Option<Rewrite>),
}

struct Held {
    cancel: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    inflight: HashMap<String, InFlight>,
    held: HashMap<String, Held>,
    closed: bool,
    /// The session speaks 2025-11-25: `tools/call` may be task-augmented.
    tasks_on: bool,
    /// The server declared `tasks.list` itself.
    server_lists_tasks: bool,
    /// Tools the server runs only as its own tasks (`execution.taskSupport: "required"`): their
    /// task-augmented calls are held like plain ones, then forwarded with `task` intact.
    server_task_tools: std::collections::HashSet<String>,
}

/// One proxied MCP session.
pub struct Session {
    calls: Calls,
    tasks: Tasks,
    to_client: Outbox,
    to_server: Outbox,
    state: Mutex<State>,
    active: std::sync::atomic::AtomicUsize,
}

fn key(id: &Value) -> String {
    id.to_string()
}

fn task_error(id: &Value, e: &TaskError) -> String {
    jsonrpc::error(id, jsonrpc::INVALID_PARAMS, &format!("countersign: {e}"))
}

impl Session {
    /// A session that asks `gate` and writes to the two outboxes.
    pub fn new(
        gate: Arc<dyn Gate>,
        opts: Options,
        to_client: Outbox,
        to_server: Outbox,
    ) -> Arc<Self> {
        let tasks = Tasks::new(opts.progress_every, opts.clock.clone());
        Arc::new(Session {
            calls: Calls::new(gate, opts),
            tasks,
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
        let msg = match inbound::check(raw.as_bytes(), &self.calls.options().methods) {
            Ok(msg) => msg,
            Err(refusal) => return self.refuse(refusal).await,
        };
        let id = msg.get("id").filter(|i| !i.is_null()).cloned();
        let method = msg.get("method").and_then(Value::as_str);
        if let (Some(_), Some(id)) = (method, &id) {
            // JSON-RPC ids name one open request: a second one with the same id could be
            // mistaken for (or answered as) the first.
            let open = {
                let (k, st) = (key(id), self.state());
                st.held.contains_key(&k) || st.inflight.contains_key(&k)
            };
            if open {
                return self.refuse(Refusal::duplicate_id(id)).await;
            }
        }
        let route = {
            let st = self.state();
            let session = dispatch::Session {
                tasks_on: st.tasks_on,
                server_lists_tasks: st.server_lists_tasks,
                server_task_tools: &st.server_task_tools,
            };
            dispatch::route(&msg, &session)
        };
        match (route, id) {
            (Route::Task, Some(id)) => self.start_task(id, msg).await,
            (Route::Hold, Some(id)) => self.hold(id, msg),
            (Route::OwnTask(m, task), Some(id)) => self.task_request(m, task, id, &msg).await,
            (Route::ListOwnTasks, Some(id)) => {
                let list = json!({ "tasks": self.tasks.list() });
                self.client(jsonrpc::result(&id, list)).await;
            }
            (Route::Relay(rewrite), Some(id)) => {
                self.track(&id, InFlight::Relayed(rewrite));
                self.server(raw.to_string(), Some(id)).await;
            }
            (Route::Cancelled(target), _) => {
                let held = self.state().held.remove(&key(&target));
                match held {
                    Some(h) => {
                        let _ = h.cancel.send(true);
                    }
                    None => self.server(raw.to_string(), None).await,
                }
            }
            _ => self.server(raw.to_string(), None).await,
        }
    }

    /// Logs a refused message, records it in the audit trail, then answers it with its error.
    async fn refuse(&self, refusal: Refusal) {
        crate::calls::record_refusal(self.calls.gate().as_ref(), &refusal).await;
        self.client(refusal.response()).await;
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
        let error = json!({"code": jsonrpc::INTERNAL_ERROR, "message": text});
        let action_id = match what {
            InFlight::Call { action_id, .. } => action_id,
            InFlight::TaskCall {
                task, action_id, ..
            } => {
                self.end_task(&task, json!({ "error": error })).await;
                action_id
            }
            _ => None,
        };
        if let Some(action_id) = action_id {
            let _ = self
                .calls
                .gate()
                .report(
                    &action_id,
                    countersign_enforce::Report {
                        detail: Some(text.to_string()),
                        ..countersign_enforce::Report::new(Outcome::Failed)
                    },
                )
                .await;
        }
        if !matches!(id, Value::String(s) if s.starts_with(tasks::TASK_CALL_ID)) {
            self.client(jsonrpc::error(id, jsonrpc::INTERNAL_ERROR, text))
                .await;
        }
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
        if is_response && what.is_none() && !(id.is_none() && msg.get("error").is_some()) {
            // Not an answer to anything the proxy sent (a call still held, one never
            // forwarded, or one already answered): the agent must not read it as a result.
            tracing::warn!(
                id = %msg.get("id").unwrap_or(&serde_json::Value::Null),
                "the MCP server answered a request the proxy did not forward; dropped"
            );
            return;
        }
        match what {
            Some(InFlight::Relayed(Some(rewrite))) => {
                let mut msg = msg;
                let changed = match rewrite {
                    Rewrite::Initialize => match dispatch::initialized(&mut msg) {
                        Some(lists) => {
                            let mut st = self.state();
                            st.tasks_on = true;
                            st.server_lists_tasks = lists;
                            true
                        }
                        None => false,
                    },
                    Rewrite::Discover => dispatch::discovered(&mut msg),
                    Rewrite::ToolsList => {
                        let mut st = self.state();
                        let tools = st.tasks_on.then_some(&mut st.server_task_tools);
                        dispatch::tools_listed(&mut msg, &self.calls, tools)
                    }
                    Rewrite::TaskList { first_page } => {
                        match dispatch::tasks_listed(&mut msg, &self.tasks, first_page) {
                            Ok(changed) => changed,
                            Err(refused) => return self.client(refused).await,
                        }
                    }
                };
                match changed {
                    true => self.client(msg.to_string()).await,
                    false => self.client(raw.to_string()).await,
                }
            }
            Some(InFlight::TaskCall {
                task,
                action_id,
                forwarded,
            }) => {
                if self
                    .tasks
                    .ask_input(&task, &forwarded, action_id.as_deref(), &msg["result"])
                {
                    // The task is `input_required`; `tasks/update` continues the call.
                    return;
                }
                self.end_task(&task, tasks::response_of(msg)).await;
                if let Some(action_id) = action_id {
                    let me = self.clone();
                    let raw = raw.to_string();
                    self.active
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::spawn(async move {
                        me.calls.report(&action_id, &raw).await;
                        me.active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    });
                }
            }
            Some(InFlight::Call {
                action_id: Some(action_id),
                round,
            }) => {
                if self.calls.asks_for_input(round, &action_id, &msg) {
                    // A 2026-07-28 round: the call goes on when the client retries.
                    return self.client(raw.to_string()).await;
                }
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
            // 2026-07-28: the retry of a call the server asked input for continues it.
            if let Some((fwd, action_id, round)) = me.calls.continuation(&msg) {
                if me.state().held.remove(&key(&id)).is_some() {
                    let action_id = Some(action_id);
                    me.track(
                        &id,
                        InFlight::Call {
                            action_id,
                            round: Some(round),
                        },
                    );
                    me.server(fwd.to_string(), Some(id)).await;
                }
                me.active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                return;
            }
            let verdict = match me.calls.submit(&msg).await {
                // 2026-07-28's Tasks extension: a call that must wait for a review becomes a
                // task, if the client declared the extension on this request.
                Ok(first) if first.waits() && tasks::declares_extension(&msg) => {
                    if me.state().held.remove(&key(&id)).is_some() {
                        me.run_as_task(id, msg, first).await;
                    } else {
                        // Cancelled while being submitted: withdraw the review.
                        let gate = me.calls.gate().as_ref();
                        countersign_enforce::hold::withdraw(gate, &first.tracked.id).await;
                    }
                    me.active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
                Ok(first) => {
                    me.calls
                        .follow(&msg, first, cancelled, &me.to_client, None)
                        .await
                }
                Err(verdict) => verdict,
            };
            let still_held = me.state().held.remove(&key(&id)).is_some();
            match verdict {
                Verdict::Answer(result) if still_held => {
                    let answer = if msg["params"]["task"].is_object() {
                        // A task-augmented call of a tool the server runs as its own task, not
                        // run: the client expects a task, so it gets one of ours, already ended.
                        me.tasks.ended(&msg["params"]["task"], result)
                    } else {
                        jsonrpc::complete(&msg, result)
                    };
                    me.client(jsonrpc::result(&id, answer)).await;
                }
                Verdict::Forward(fwd, action_id) if still_held => {
                    let round = me.calls.forwarded(&msg, &fwd);
                    me.track(&id, InFlight::Call { action_id, round });
                    me.server(fwd.to_string(), Some(id)).await;
                }
                _ => {}
            }
            me.active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
    }

    /// The client went away: cancel every held call's review (tasks' too: nobody is left
    /// to collect their results) and stop accepting new ones.
    pub async fn client_gone(&self) {
        let held: Vec<Held> = {
            let mut st = self.state();
            st.closed = true;
            st.held.drain().map(|(_, h)| h).collect()
        };
        for h in held {
            let _ = h.cancel.send(true);
        }
        self.tasks.cancel_all();
    }

    /// Answers a task-augmented `tools/call` with a new task at once, then decides (and, if it
    /// may run, forwards) the call in the background.
    async fn start_task(self: &Arc<Self>, id: Value, mut msg: Value) {
        if self.state().closed {
            return;
        }
        let created = self.tasks.create(&msg["params"]["task"]);
        if let Some(p) = msg["params"].as_object_mut() {
            p.remove("task");
        }
        self.client(jsonrpc::result(&id, created.result)).await;
        let me = self.clone();
        me.active.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::spawn(async move {
            let as_task = AsTask {
                tasks: &me.tasks,
                id: &created.id,
            };
            let verdict = me
                .calls
                .decide(&msg, created.cancelled, &me.to_client, Some(as_task))
                .await;
            me.conclude_task(&created.id, verdict).await;
            me.active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
    }

    /// A call under review, made with the 2026-07-28 Tasks extension declared: the client's
    /// request is answered with a task now; the review is followed (and the call forwarded
    /// once approved) in the task.
    async fn run_as_task(self: &Arc<Self>, id: Value, msg: Value, first: crate::calls::Submitted) {
        let created = self.tasks.create_v2(&first.tracked.id);
        self.client(jsonrpc::result(&id, created.result)).await;
        let as_task = AsTask {
            tasks: &self.tasks,
            id: &created.id,
        };
        let verdict = self
            .calls
            .follow(
                &msg,
                first,
                created.cancelled,
                &self.to_client,
                Some(as_task),
            )
            .await;
        self.conclude_task(&created.id, verdict).await;
    }

    /// Ends a task with its call's verdict, or forwards the call for it.
    async fn conclude_task(self: &Arc<Self>, task: &str, verdict: Verdict) {
        match verdict {
            Verdict::Answer(result) => self.end_task(task, json!({ "result": result })).await,
            Verdict::Forward(msg, action_id) => self.forward_for_task(task, msg, action_id).await,
        }
    }

    /// Forwards a task's call. The client's request id was answered with the task; the call
    /// goes out under an id of the proxy's own.
    async fn forward_for_task(
        self: &Arc<Self>,
        task: &str,
        mut msg: Value,
        action_id: Option<String>,
    ) {
        let call_id = tasks::call_id(task);
        msg["id"] = call_id.clone();
        self.track(
            &call_id,
            InFlight::TaskCall {
                task: task.to_string(),
                action_id,
                forwarded: msg.clone(),
            },
        );
        self.server(msg.to_string(), Some(call_id)).await;
    }

    /// Ends one of our tasks and tells the client (`notifications/tasks/status`, 2025-11-25's;
    /// the extension's `notifications/tasks` go only to subscribers, and the proxy takes none).
    async fn end_task(&self, task: &str, response: Value) {
        let v1 = self.tasks.wire(task) == Some(tasks::Wire::V1);
        if let Some(t) = self.tasks.finish(task, response).filter(|_| v1) {
            let note =
                json!({"jsonrpc": "2.0", "method": "notifications/tasks/status", "params": t});
            self.client(note.to_string()).await;
        }
    }

    /// `tasks/get`, `tasks/result` or `tasks/cancel` for one of our tasks.
    async fn task_request(
        self: &Arc<Self>,
        method: TaskMethod,
        task: String,
        id: Value,
        msg: &Value,
    ) {
        if self.tasks.wire(&task) == Some(tasks::Wire::V2) && !tasks::declares_extension(msg) {
            return self.client(tasks::missing_extension(&id)).await;
        }
        let answer = match method {
            TaskMethod::Get => self.tasks.get(&task),
            TaskMethod::Update => match self.tasks.update(&task, msg) {
                Ok((ack, Some(retry))) => {
                    // The client's answers to the server's input requests: continue the call.
                    self.forward_for_task(&task, retry.message, retry.action_id)
                        .await;
                    Ok(ack)
                }
                other => other.map(|(ack, _)| ack),
            },
            TaskMethod::Cancel => {
                let r = self.tasks.cancel(&task);
                if r.is_ok() {
                    // Already forwarded? Tell the server too (best effort).
                    let call_id = tasks::call_id(&task);
                    if self.state().inflight.contains_key(&key(&call_id)) {
                        let note = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                            "params": {"requestId": call_id, "reason": "task cancelled"}});
                        let _ = self.to_server.send(note.to_string()).await;
                    }
                }
                r
            }
            TaskMethod::Result => {
                // Blocks until the task ends: in a task of its own, so the session goes on.
                let me = self.clone();
                tokio::spawn(async move {
                    let text = match me.tasks.result(&task).await {
                        Ok(mut response) => {
                            response["jsonrpc"] = json!("2.0");
                            response["id"] = id;
                            response.to_string()
                        }
                        Err(e) => task_error(&id, &e),
                    };
                    me.client(text).await;
                });
                return;
            }
        };
        let text = match answer {
            Ok(t) => jsonrpc::result(&id, t),
            Err(e) => task_error(&id, &e),
        };
        self.client(text).await;
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
