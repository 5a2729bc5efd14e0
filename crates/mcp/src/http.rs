//! The Streamable HTTP front: listens where the agent expects its MCP server, authenticates the
//! agent by its bearer token (which decides the identity of every call), and relays each HTTP
//! request to the upstream server, except that a `tools/call` POST is answered on an SSE stream
//! of our own: progress notifications while held, then the upstream's response to the approved
//! call (or the `isError` result). The agent's token never reaches the upstream server.
//!
//! On 2025-11-25 sessions (the `MCP-Protocol-Version` header) a task-augmented `tools/call` is
//! answered at once with a task of the proxy's, as on stdio ([`crate::tasks`]); each agent
//! (token) has its own tasks. An MCP session is bound to the agent that opened it: another
//! token naming it gets 404, as for an unknown session.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use countersign_enforce::Gates;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::calls::{AsTask, Calls, Submitted, Verdict};
use crate::dispatch::{self, Rewrite, Route, TaskMethod};
use crate::inbound::{self, Refusal};
use crate::jsonrpc;
use crate::session::Options;
use crate::tasks::{self, TaskError, Tasks};

/// An agent unseen this long is forgotten (its pending-mode hints and continuations with it).
const AGENT_IDLE: Duration = Duration::from_secs(3600);
/// An MCP session unused this long is forgotten (the server's own session has long expired).
const SESSION_IDLE: Duration = Duration::from_secs(24 * 3600);
/// Most MCP sessions remembered (the least recently used goes first).
const MAX_SESSIONS: usize = 100_000;
/// How often the maps are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// MCP session id → the agent (token hash) that opened it, and when it was last used.
type Sessions = HashMap<Vec<u8>, ([u8; 32], Instant)>;

/// One agent (token) the proxy has seen: its calls' state, and when it was last seen.
struct Agent {
    calls: Arc<Calls>,
    seen: Instant,
}

/// The proxy's shared state.
pub struct HttpProxy {
    upstream: String,
    client: reqwest::Client,
    gates: Arc<dyn Gates>,
    opts: Options,
    max_message: usize,
    /// Agents by token hash; a token is authenticated again on every request all the same.
    agents: Mutex<HashMap<[u8; 32], Agent>>,
    held: Mutex<HashMap<String, Arc<watch::Sender<bool>>>>,
    /// `tools/call`s being decided, forwarded or reported.
    active: AtomicUsize,
    /// Each agent's tasks, by token hash.
    tasks: Mutex<HashMap<[u8; 32], Arc<AgentTasks>>>,
    /// Which agent (token hash) opened each MCP session (`Mcp-Session-Id`), and when the
    /// session was last used.
    sessions: Mutex<Sessions>,
    /// When the maps were last pruned.
    pruned: Mutex<Instant>,
}

/// One agent's tasks, and what its server said about tasks of its own.
struct AgentTasks {
    tasks: Tasks,
    /// Tools the server runs only as its own tasks.
    server_task_tools: Mutex<HashSet<String>>,
    /// The server declared `tasks.list`.
    server_lists_tasks: AtomicBool,
}

impl AgentTasks {
    fn server_task_tools(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.server_task_tools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

fn agent_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn json_response(text: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response()
}

/// How long a stopping proxy waits for open streams, held calls' cancellations and result
/// reports.
const GRACE: Duration = Duration::from_secs(10);

/// Rewrites one JSON-RPC message (its text) of an upstream answer.
type Hook = Box<dyn FnMut(&str) -> String + Send>;

struct RxStream(mpsc::Receiver<Bytes>);

impl futures_core::Stream for RxStream {
    type Item = Result<Bytes, std::io::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(Ok))
    }
}

fn rpc_error(status: StatusCode, id: &Value, code: i64, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        jsonrpc::error(id, code, text),
    )
        .into_response()
}

fn timed_out(limit: Duration) -> String {
    format!("the MCP server did not answer within {limit:?}")
}

/// A held call's key for `notifications/cancelled`: the agent (its token's hash), the MCP
/// session and the request id, so nobody else can cancel it.
fn held_key(token: &str, headers: &HeaderMap, id: &Value) -> String {
    let agent = hex::encode(Sha256::digest(token.as_bytes()));
    format!("{agent}/{:?}/{id}", headers.get("mcp-session-id"))
}

fn sse_event(data: &str) -> Bytes {
    Bytes::from(format!("event: message\ndata: {data}\n\n"))
}

/// Hop-by-hop and credential headers are not relayed.
fn relayed(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in headers {
        if !matches!(
            k.as_str(),
            "authorization" | "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

/// Splits an SSE byte stream into events and hands each event's data to `hook`.
#[derive(Default)]
struct SseSplitter {
    buf: Vec<u8>,
    fields: Vec<String>,
    data: Vec<String>,
}

impl SseSplitter {
    fn feed(&mut self, chunk: &[u8], hook: &mut dyn FnMut(&str) -> String) -> Vec<u8> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                let fields = std::mem::take(&mut self.fields);
                let data = match self.data.is_empty() {
                    true => None,
                    false => Some(hook(&std::mem::take(&mut self.data).join("\n"))),
                };
                if data.as_deref() == Some("") {
                    // Dropped by the hook: the whole event goes.
                    continue;
                }
                for f in &fields {
                    out.extend_from_slice(f.as_bytes());
                    out.push(b'\n');
                }
                for l in data.iter().flat_map(|d| d.split('\n')) {
                    out.extend_from_slice(format!("data: {l}\n").as_bytes());
                }
                out.push(b'\n');
            } else if let Some(d) = line.strip_prefix("data:") {
                self.data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            } else {
                self.fields.push(line.to_string());
            }
        }
        out
    }
}

impl HttpProxy {
    /// A proxy in front of `upstream` (the server's MCP endpoint URL).
    pub fn new(
        upstream: String,
        gates: Arc<dyn Gates>,
        opts: Options,
        max_message: usize,
    ) -> Arc<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Arc::new(HttpProxy {
            upstream,
            client: reqwest::Client::new(),
            gates,
            opts,
            max_message,
            agents: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            tasks: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            pruned: Mutex::new(Instant::now()),
        })
    }

    /// Serves until `shutdown` resolves. Then held calls are cancelled (their reviews too),
    /// and open streams, cancellations and result reports get [`GRACE`] each to finish.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(self.clone());
        let (stopping, stopped) = oneshot::channel::<()>();
        let me = self.clone();
        let signal = async move {
            shutdown.await;
            let held: Vec<_> = me.lock_held().drain().map(|(_, c)| c).collect();
            for cancel in held {
                let _ = cancel.send(true);
            }
            // Task results live in this process: nobody could collect them after it stops.
            let agents: Vec<_> = me.lock_tasks().values().cloned().collect();
            for agent in agents {
                agent.tasks.cancel_all();
            }
            let _ = stopping.send(());
        };
        let serving = axum::serve(listener, app).with_graceful_shutdown(signal);
        let overdue = async {
            match stopped.await {
                Ok(()) => tokio::time::sleep(GRACE).await,
                Err(_) => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            r = std::future::IntoFuture::into_future(serving) => r,
            () = overdue => {
                tracing::warn!("streams still open {GRACE:?} after the shutdown signal; closing them");
                Ok(())
            }
        };
        let deadline = Instant::now() + GRACE;
        while self.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        result
    }

    /// The agent `token` proves, authenticated now (every request: a revoked key or an expired
    /// token is refused at once, whatever it did before).
    async fn calls_for(&self, token: &str) -> Option<Arc<Calls>> {
        let hash = agent_hash(token);
        let gate = match self.gates.gate_for(token).await {
            Ok(gate) => gate,
            Err(e) => {
                tracing::info!(error = %e, "refused an agent's request");
                self.lock_agents().remove(&hash);
                return None;
            }
        };
        let now = Instant::now();
        let mut agents = self.lock_agents();
        let agent = agents.entry(hash).or_insert_with(|| Agent {
            calls: Arc::new(Calls::new(gate, self.opts.clone())),
            seen: now,
        });
        agent.seen = now;
        Some(agent.calls.clone())
    }

    fn lock_agents(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Agent>> {
        self.agents.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Prunes the maps, at most every [`PRUNE_EVERY`].
    fn maybe_prune(&self) {
        let now = Instant::now();
        {
            let mut last = self.pruned.lock().unwrap_or_else(|p| p.into_inner());
            if now.duration_since(*last) < PRUNE_EVERY {
                return;
            }
            *last = now;
        }
        self.prune(now);
    }

    /// Forgets agents unseen for [`AGENT_IDLE`] (and their tasks, once none is left), and MCP
    /// sessions unused for [`SESSION_IDLE`].
    fn prune(&self, now: Instant) {
        let idle = |seen: Instant, limit: Duration| now.saturating_duration_since(seen) > limit;
        let live: HashSet<[u8; 32]> = {
            let mut agents = self.lock_agents();
            agents.retain(|_, a| !idle(a.seen, AGENT_IDLE));
            agents.keys().copied().collect()
        };
        self.lock_tasks()
            .retain(|agent, t| live.contains(agent) || !t.tasks.is_empty());
        self.lock_sessions()
            .retain(|_, (_, seen)| !idle(*seen, SESSION_IDLE));
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<AgentTasks>>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Binds an MCP session to the agent that opened it.
    fn remember_session(&self, sid: Vec<u8>, agent: [u8; 32]) {
        let mut sessions = self.lock_sessions();
        if sessions.len() >= MAX_SESSIONS && !sessions.contains_key(&sid) {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, (_, seen))| *seen)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                sessions.remove(&k);
            }
        }
        sessions.insert(sid, (agent, Instant::now()));
    }

    fn tasks_for(&self, agent: [u8; 32]) -> Arc<AgentTasks> {
        self.lock_tasks()
            .entry(agent)
            .or_insert_with(|| {
                Arc::new(AgentTasks {
                    tasks: Tasks::new(self.opts.progress_every, self.opts.clock.clone()),
                    server_task_tools: Mutex::new(HashSet::new()),
                    server_lists_tasks: AtomicBool::new(false),
                })
            })
            .clone()
    }

    /// Posts a message upstream and returns the text of its response to `id` (relaying any
    /// other messages before it on `tx`), within `server_timeout`; else a JSON-RPC error.
    async fn call_upstream(
        &self,
        headers: HeaderMap,
        msg: &Value,
        id: &Value,
        tx: &mpsc::Sender<Bytes>,
    ) -> String {
        let headers = match (msg["method"].as_str(), msg["params"]["name"].as_str()) {
            (Some("tools/call"), Some(tool)) => tool_call_headers(headers, tool),
            _ => headers,
        };
        let answer = async {
            let resp = self
                .client
                .post(&self.upstream)
                .headers(headers)
                .body(msg.to_string())
                .send()
                .await
                .map_err(|e| format!("the MCP server is unreachable: {e}"))?;
            collect_response(resp, id, tx).await
        };
        let limit = self.opts.server_timeout;
        match tokio::time::timeout(limit, answer).await {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => jsonrpc::error(id, jsonrpc::INTERNAL_ERROR, &e),
            Err(_) => jsonrpc::error(id, jsonrpc::INTERNAL_ERROR, &timed_out(limit)),
        }
    }

    /// A task-augmented `tools/call` on a tasks session: answered at once with a task; the
    /// decision (and, if it may run, the forwarded call) goes on in the background.
    fn task_call(
        self: &Arc<Self>,
        calls: Arc<Calls>,
        agent: Arc<AgentTasks>,
        headers: HeaderMap,
        id: Value,
        mut msg: Value,
    ) -> Response {
        let created = agent.tasks.create(&msg["params"]["task"]);
        if let Some(p) = msg["params"].as_object_mut() {
            p.remove("task");
        }
        let answer = jsonrpc::result(&id, created.result);
        let me = self.clone();
        me.active.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            me.run_task(
                calls,
                agent,
                headers,
                created.id,
                created.cancelled,
                msg,
                None,
            )
            .await;
            me.active.fetch_sub(1, Ordering::SeqCst);
        });
        json_response(answer)
    }

    /// Runs a task whose `CreateTaskResult` has been sent: decides the call (or, given the
    /// `first` answer of its submission, follows its review), then forwards it if it may run,
    /// and ends the task with the outcome.
    #[allow(clippy::too_many_arguments)]
    async fn run_task(
        &self,
        calls: Arc<Calls>,
        agent: Arc<AgentTasks>,
        headers: HeaderMap,
        task: String,
        cancelled: watch::Receiver<bool>,
        msg: Value,
        first: Option<Submitted>,
    ) {
        // The task's answer has gone; there is no stream left to carry progress.
        let (notes_tx, mut notes_rx) = mpsc::channel::<String>(16);
        let drain = tokio::spawn(async move { while notes_rx.recv().await.is_some() {} });
        let as_task = AsTask {
            tasks: &agent.tasks,
            id: &task,
        };
        let verdict = match first {
            Some(first) => {
                calls
                    .follow(&msg, first, cancelled, &notes_tx, Some(as_task))
                    .await
            }
            None => {
                calls
                    .decide(&msg, cancelled, &notes_tx, Some(as_task))
                    .await
            }
        };
        drop(notes_tx);
        let _ = drain.await;
        match verdict {
            Verdict::Answer(result) => {
                agent.tasks.finish(&task, json!({ "result": result }));
            }
            Verdict::Forward(msg, action_id) => {
                self.forward_for_task(&calls, &agent, headers, &task, msg, action_id)
                    .await;
            }
        }
    }

    /// Forwards a task's call (under a request id of the proxy's own: the client's was
    /// answered with the task) and ends the task with the response, or, when the server asks
    /// for input (2026-07-28), leaves it `input_required` until `tasks/update`.
    async fn forward_for_task(
        &self,
        calls: &Calls,
        agent: &AgentTasks,
        headers: HeaderMap,
        task: &str,
        mut msg: Value,
        action_id: Option<String>,
    ) {
        let call_id = tasks::call_id(task);
        msg["id"] = call_id.clone();
        // Messages the server sends before its response have no stream to go to.
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let text = self.call_upstream(headers, &msg, &call_id, &tx).await;
        drop(tx);
        let _ = drain.await;
        let response = serde_json::from_str(&text).unwrap_or(Value::Null);
        if agent
            .tasks
            .ask_input(task, &msg, action_id.as_deref(), &response["result"])
        {
            return;
        }
        agent.tasks.finish(task, tasks::response_of(response));
        if let Some(action_id) = action_id {
            calls.report(&action_id, &text).await;
        }
    }

    fn lock_held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<watch::Sender<bool>>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Relays a message upstream; `hook` may rewrite each JSON-RPC message of the answer. The
    /// upstream has `server_timeout` to start answering, and to finish answering a request
    /// (`id`).
    async fn forward(
        &self,
        method: Method,
        headers: HeaderMap,
        body: Bytes,
        id: Option<Value>,
        hook: Option<Hook>,
    ) -> Response {
        let limit = self.opts.server_timeout;
        let started = Instant::now();
        let send = self
            .client
            .request(method, &self.upstream)
            .headers(headers)
            .body(body)
            .send();
        let error_id = id.clone().unwrap_or(Value::Null);
        let resp = match tokio::time::timeout(limit, send).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let text = format!("the MCP server is unreachable: {e}");
                return rpc_error(
                    StatusCode::BAD_GATEWAY,
                    &error_id,
                    jsonrpc::INTERNAL_ERROR,
                    &text,
                );
            }
            Err(_) => {
                return rpc_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    &error_id,
                    jsonrpc::INTERNAL_ERROR,
                    &timed_out(limit),
                );
            }
        };
        let status = resp.status();
        let mut out_headers = HeaderMap::new();
        for (k, v) in resp.headers() {
            if !matches!(
                k.as_str(),
                "content-length" | "transfer-encoding" | "connection"
            ) {
                out_headers.append(k.clone(), v.clone());
            }
        }
        let sse = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let (tx, rx) = mpsc::channel(64);
        let request = id.map(|id| (id, started + limit, limit));
        tokio::spawn(pump(resp, tx, sse, hook, request));
        let mut response = Response::new(Body::from_stream(RxStream(rx)));
        *response.status_mut() = status;
        *response.headers_mut() = out_headers;
        response
    }

    /// A `tools/call`: answered on our own SSE stream; or, when it must wait for a review and
    /// declares 2026-07-28's Tasks extension, answered there with a task that goes on in the
    /// background. `v1_tasks`: the session speaks 2025-11-25's tasks.
    #[allow(clippy::too_many_arguments)]
    fn call(
        self: &Arc<Self>,
        calls: Arc<Calls>,
        agent: Arc<AgentTasks>,
        v1_tasks: bool,
        headers: HeaderMap,
        held_key: String,
        id: Value,
        msg: Value,
    ) -> Response {
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let (cancel, cancelled) = watch::channel(false);
        let cancel = Arc::new(cancel);
        self.lock_held().insert(held_key.clone(), cancel.clone());
        // The client closing the stream cancels the held call (and so its review).
        let gone = {
            let tx = tx.clone();
            tokio::spawn(async move {
                tx.closed().await;
                let _ = cancel.send(true);
            })
        };
        let me = self.clone();
        me.active.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let (notes_tx, mut notes_rx) = mpsc::channel::<String>(16);
            let relay = {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some(n) = notes_rx.recv().await {
                        let _ = tx.send(sse_event(&n)).await;
                    }
                })
            };
            // 2026-07-28: the retry of a call the server asked input for continues it.
            let continued = calls.continuation(&msg);
            let submitted = match &continued {
                Some((fwd, action_id, _)) => {
                    Err(Verdict::Forward(fwd.clone(), Some(action_id.clone())))
                }
                None => calls.submit(&msg).await,
            };
            let mut round = continued.map(|(_, _, round)| round);
            let verdict = match submitted {
                Ok(first) if first.waits() && tasks::declares_extension(&msg) => {
                    gone.abort();
                    drop(notes_tx);
                    let _ = relay.await;
                    let still_held = me.lock_held().remove(&held_key).is_some();
                    if still_held && !tx.is_closed() {
                        let created = agent.tasks.create_v2(&first.tracked.id);
                        let _ = tx
                            .send(sse_event(&jsonrpc::result(&id, created.result)))
                            .await;
                        drop(tx);
                        let task = created.id;
                        me.run_task(
                            calls,
                            agent,
                            headers,
                            task,
                            created.cancelled,
                            msg,
                            Some(first),
                        )
                        .await;
                    } else {
                        // Cancelled (or gone) while being submitted: withdraw the review.
                        let gate = calls.gate().as_ref();
                        countersign_enforce::hold::withdraw(gate, &first.tracked.id).await;
                    }
                    me.active.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
                Ok(first) => calls.follow(&msg, first, cancelled, &notes_tx, None).await,
                Err(verdict) => verdict,
            };
            gone.abort();
            drop(notes_tx);
            let _ = relay.await;
            let still_held = me.lock_held().remove(&held_key).is_some();
            match verdict {
                _ if !still_held || tx.is_closed() => {}
                Verdict::Answer(result) => {
                    let result = if v1_tasks && msg["params"]["task"].is_object() {
                        // A task-augmented call of a tool the server runs as its own task, not
                        // run: the client expects a task, so it gets one of ours, already ended.
                        agent.tasks.ended(&msg["params"]["task"], result)
                    } else {
                        jsonrpc::complete(&msg, result)
                    };
                    let _ = tx.send(sse_event(&jsonrpc::result(&id, result))).await;
                }
                Verdict::Forward(fwd, action_id) => {
                    let text = me.call_upstream(headers, &fwd, &id, &tx).await;
                    let _ = tx.send(sse_event(&text)).await;
                    // The answer is complete: end the stream now, not after the report commits.
                    drop(tx);
                    if let Some(action_id) = action_id {
                        let round = round.take().or_else(|| calls.forwarded(&msg, &fwd));
                        let response = serde_json::from_str(&text).unwrap_or(Value::Null);
                        // A 2026-07-28 round: the call goes on when the client retries.
                        if !calls.asks_for_input(round, &action_id, &response) {
                            calls.report(&action_id, &text).await;
                        }
                    }
                }
            }
            me.active.fetch_sub(1, Ordering::SeqCst);
        });
        let mut response = Response::new(Body::from_stream(RxStream(rx)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }
}

/// Reads the upstream's answer to a forwarded call: relays any messages before the response on
/// `tx` and returns the response's text.
async fn collect_response(
    mut resp: reqwest::Response,
    id: &Value,
    tx: &mpsc::Sender<Bytes>,
) -> Result<String, String> {
    let sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !sse {
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if v.get("method").is_none() && v.get("id") == Some(id) {
            return Ok(text);
        }
        // An HTTP error page, or a session-level error (`id: null`): not this call's response.
        let why = match v["error"]["message"].as_str() {
            Some(m) => m.to_string(),
            None => text.chars().take(200).collect(),
        };
        return Err(format!(
            "the MCP server answered HTTP {status} without a response to this call: {why}"
        ));
    }
    let mut split = SseSplitter::default();
    let mut found: Option<String> = None;
    while let Ok(Some(chunk)) = resp.chunk().await {
        let mut events = Vec::new();
        split.feed(&chunk, &mut |data| {
            events.push(data.to_string());
            data.to_string()
        });
        for data in events {
            let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            if v.get("method").is_none() && v.get("id") == Some(id) {
                found = Some(data);
            } else if stray_response(&v) {
                tracing::warn!(id = %v["id"], "the MCP server answered another request on a call's stream; dropped");
            } else {
                let _ = tx.send(sse_event(&data)).await;
            }
        }
        if found.is_some() {
            break;
        }
    }
    found.ok_or_else(|| "the MCP server ended its stream without answering".to_string())
}

/// A response (no `method`) that is not a session-level error without an id.
fn stray_response(v: &Value) -> bool {
    v.is_object()
        && v.get("method").is_none()
        && !(v.get("id").is_none_or(Value::is_null) && v.get("error").is_some())
}

/// A hook for streams that carry no request's response (GET streams, answers to
/// notifications): responses on them answer nothing the proxy forwarded, and are dropped.
fn drop_responses() -> Hook {
    Box::new(|data: &str| -> String {
        let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        if stray_response(&v) {
            tracing::warn!(id = %v["id"], "the MCP server sent a response to no request the proxy forwarded; dropped");
            return String::new();
        }
        data.to_string()
    })
}

/// Relays an upstream answer on `tx`. For a `request` (its id and deadline), an answer stream
/// that has not carried the response by the deadline is closed with an error response.
async fn pump(
    resp: reqwest::Response,
    tx: mpsc::Sender<Bytes>,
    sse: bool,
    hook: Option<Hook>,
    request: Option<(Value, Instant, Duration)>,
) {
    let Some((id, deadline, limit)) = request else {
        return relay(resp, &tx, sse, hook).await;
    };
    let answered = Arc::new(AtomicBool::new(false));
    let seen = answered.clone();
    let want = id.clone();
    let mut inner = hook;
    let watching: Hook = Box::new(move |data: &str| -> String {
        let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        if v.get("method").is_none() && v.get("id") == Some(&want) {
            seen.store(true, Ordering::SeqCst);
        } else if stray_response(&v) {
            // An answer to another request (perhaps a call the proxy still holds): only this
            // request's response belongs on its stream.
            tracing::warn!(id = %v["id"], "the MCP server answered a request the proxy did not forward on this stream; dropped");
            if sse {
                return String::new();
            }
            let text = "the MCP server answered with a response to another request";
            return jsonrpc::error(&want, jsonrpc::INTERNAL_ERROR, text);
        }
        match &mut inner {
            Some(hook) => hook(data),
            None => data.to_string(),
        }
    });
    let late = tokio::time::timeout_at(deadline, relay(resp, &tx, sse, Some(watching)))
        .await
        .is_err();
    if late && sse && !answered.load(Ordering::SeqCst) {
        let text = jsonrpc::error(&id, jsonrpc::INTERNAL_ERROR, &timed_out(limit));
        let _ = tx.send(sse_event(&text)).await;
    }
}

async fn relay(
    mut resp: reqwest::Response,
    tx: &mpsc::Sender<Bytes>,
    sse: bool,
    hook: Option<Hook>,
) {
    match hook {
        None => {
            while let Ok(Some(chunk)) = resp.chunk().await {
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        }
        Some(mut hook) if sse => {
            let mut split = SseSplitter::default();
            while let Ok(Some(chunk)) = resp.chunk().await {
                let out = split.feed(&chunk, &mut *hook);
                if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                    return;
                }
            }
        }
        Some(mut hook) => {
            if let Ok(text) = resp.text().await {
                let _ = tx.send(Bytes::from(hook(&text))).await;
            }
        }
    }
}

/// The bearer token (the scheme name is case-insensitive, RFC 9110 §11.1).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Why a POST's `Mcp-Method` / `Mcp-Name` headers (2026-07-28) disagree with its body, if they
/// do. `Mcp-Name` is compared for `tools/call` (unless Base64-encoded: forwarded calls get
/// theirs rewritten from the body anyway).
fn header_mismatch(headers: &HeaderMap, msg: &Value) -> Option<String> {
    let method = msg["method"].as_str();
    if let Some(h) = headers.get("mcp-method") {
        if method.map(str::as_bytes) != Some(h.as_bytes()) {
            return Some(format!(
                "header mismatch: Mcp-Method {:?} is not the body's method",
                String::from_utf8_lossy(h.as_bytes())
            ));
        }
    }
    let name = headers.get("mcp-name").map(HeaderValue::as_bytes);
    match (method, name) {
        (Some("tools/call"), Some(n)) if !n.starts_with(b"=?base64?") => {
            (msg["params"]["name"].as_str().map(str::as_bytes) != Some(n))
                .then(|| "header mismatch: Mcp-Name is not the body's tool name".to_string())
        }
        _ => None,
    }
}

/// The headers of a request sent on as a `tools/call` of `tool`: 2026-07-28's Streamable HTTP
/// names the method and tool in `Mcp-Method` and `Mcp-Name`, which must agree with the body
/// the proxy decided on, whatever the client sent.
fn tool_call_headers(mut headers: HeaderMap, tool: &str) -> HeaderMap {
    let named = headers.remove("mcp-name").is_some();
    if named || headers.contains_key("mcp-method") {
        headers.insert("mcp-method", HeaderValue::from_static("tools/call"));
        match HeaderValue::from_str(tool) {
            Ok(v) => {
                headers.insert("mcp-name", v);
            }
            Err(_) => {
                headers.remove("mcp-name");
            }
        }
    }
    headers
}

/// A task request's answer as a JSON response.
fn task_answer(id: &Value, answer: Result<Value, TaskError>) -> Response {
    json_response(match answer {
        Ok(v) => jsonrpc::result(id, v),
        Err(e) => jsonrpc::error(id, jsonrpc::INVALID_PARAMS, &format!("countersign: {e}")),
    })
}

async fn handle(State(p): State<Arc<HttpProxy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    p.maybe_prune();
    let token = bearer(&parts.headers).unwrap_or_default().to_string();
    let Some(calls) = (match token.as_str() {
        "" => None,
        token => p.calls_for(token).await,
    }) else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "countersign: send your agent's API token as `Authorization: Bearer TOKEN`\n",
        )
            .into_response();
    };
    let bytes = match axum::body::to_bytes(body, p.max_message).await {
        Ok(b) => b,
        Err(_) => {
            let text = format!("message larger than {} bytes refused", p.max_message);
            return rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &Value::Null,
                jsonrpc::INVALID_REQUEST,
                &text,
            );
        }
    };
    let agent = agent_hash(&token);
    let session = parts
        .headers
        .get("mcp-session-id")
        .map(|v| v.as_bytes().to_vec());
    if let Some(sid) = &session {
        let other = match p.lock_sessions().get_mut(sid) {
            Some((owner, seen)) if *owner == agent => {
                *seen = Instant::now();
                false
            }
            Some(_) => true,
            None => false,
        };
        if other {
            // Another agent's session: as unknown to this agent as a session that never was.
            return rpc_error(
                StatusCode::NOT_FOUND,
                &Value::Null,
                jsonrpc::INVALID_REQUEST,
                "session not found",
            );
        }
    }
    let tasks_on = parts
        .headers
        .get("mcp-protocol-version")
        .is_some_and(|v| v.as_bytes() == tasks::TASKS_VERSION.as_bytes());
    let headers = relayed(&parts.headers);
    if parts.method != Method::POST {
        let ended = parts.method == Method::DELETE;
        // A GET stream carries the server's requests and notifications, never a response
        // (unless it resumes an earlier stream, 2025-03-26 to 2025-11-25: `Last-Event-ID`).
        // A resumed stream may replay a forwarded request's response, never a held call's.
        let hook = if parts.headers.contains_key("last-event-id") {
            let (me, token, asked) = (p.clone(), token.clone(), headers.clone());
            Box::new(move |data: &str| -> String {
                let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                if stray_response(&v)
                    && me
                        .lock_held()
                        .contains_key(&held_key(&token, &asked, &v["id"]))
                {
                    tracing::warn!(id = %v["id"], "the MCP server answered a held call on a resumed stream; dropped");
                    return String::new();
                }
                data.to_string()
            }) as Hook
        } else {
            drop_responses()
        };
        let response = p
            .forward(parts.method, headers, bytes, None, Some(hook))
            .await;
        if let Some(sid) = session.filter(|_| ended && response.status().is_success()) {
            p.lock_sessions().remove(&sid);
        }
        return response;
    }
    let msg = match inbound::check(&bytes, &p.opts.methods) {
        Ok(msg) => msg,
        Err(refusal) => {
            crate::calls::record_refusal(calls.gate().as_ref(), &refusal).await;
            let status = if refusal.code == jsonrpc::METHOD_NOT_FOUND {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            return (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                refusal.response(),
            )
                .into_response();
        }
    };
    let id = msg.get("id").filter(|i| !i.is_null()).cloned();
    let method = msg.get("method").and_then(Value::as_str);
    if let Some(text) = header_mismatch(&parts.headers, &msg) {
        let refusal = Refusal::header_mismatch(id.as_ref().unwrap_or(&Value::Null), &text);
        crate::calls::record_refusal(calls.gate().as_ref(), &refusal).await;
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            refusal.response(),
        )
            .into_response();
    }
    // A request (not a response from the client) must be answered in time.
    let request = id.clone().filter(|_| method.is_some());
    let agent_tasks = tasks_on.then(|| p.tasks_for(agent));
    let route = {
        let no_tools = HashSet::new();
        let tools = agent_tasks.as_ref().map(|a| a.server_task_tools());
        let session = dispatch::Session {
            tasks_on,
            server_lists_tasks: agent_tasks
                .as_ref()
                .is_some_and(|a| a.server_lists_tasks.load(Ordering::SeqCst)),
            server_task_tools: tools.as_deref().unwrap_or(&no_tools),
        };
        dispatch::route(&msg, &session)
    };
    match (route, id) {
        (Route::Task, Some(id)) => match &agent_tasks {
            Some(a) => p.task_call(calls, a.clone(), headers, id, msg),
            None => rpc_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &id,
                jsonrpc::INTERNAL_ERROR,
                "countersign: not a tasks session",
            ),
        },
        (Route::Hold, Some(id)) => {
            let key = held_key(&token, &headers, &id);
            if p.lock_held().contains_key(&key) {
                // Its answer could be taken for the held call's.
                let refusal = Refusal::duplicate_id(&id);
                crate::calls::record_refusal(calls.gate().as_ref(), &refusal).await;
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    &id,
                    refusal.code,
                    &format!("countersign: {}", refusal.message),
                );
            }
            let v1 = agent_tasks.is_some();
            p.call(calls, p.tasks_for(agent), v1, headers, key, id, msg)
        }
        (Route::Relay(Some(Rewrite::Initialize)), Some(_)) => {
            let me = p.clone();
            let hook = rewriting(move |v| match dispatch::initialized(v) {
                Some(lists) => {
                    me.tasks_for(agent)
                        .server_lists_tasks
                        .store(lists, Ordering::SeqCst);
                    Ok(true)
                }
                None => Ok(false),
            });
            let response = p
                .forward(Method::POST, headers, bytes, request, Some(hook))
                .await;
            if let Some(sid) = response.headers().get("mcp-session-id") {
                p.remember_session(sid.as_bytes().to_vec(), agent);
            }
            response
        }
        (Route::Relay(Some(Rewrite::Discover)), Some(_)) => {
            let hook = rewriting(|v| Ok(dispatch::discovered(v)));
            p.forward(Method::POST, headers, bytes, request, Some(hook))
                .await
        }
        (Route::OwnTask(m, task), Some(id)) => {
            let agent = p.tasks_for(agent);
            if agent.tasks.wire(&task) == Some(tasks::Wire::V2) && !tasks::declares_extension(&msg)
            {
                return json_response(tasks::missing_extension(&id));
            }
            match m {
                TaskMethod::Get => task_answer(&id, agent.tasks.get(&task)),
                TaskMethod::Update => match agent.tasks.update(&task, &msg) {
                    Ok((ack, Some(retry))) => {
                        // The client's answers to the server's input requests: continue the
                        // call in the background.
                        let me = p.clone();
                        let tool = retry.message["params"]["name"].as_str().unwrap_or_default();
                        let headers = tool_call_headers(headers, tool);
                        me.active.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(async move {
                            let (m, a) = (retry.message, retry.action_id);
                            me.forward_for_task(&calls, &agent, headers, &task, m, a)
                                .await;
                            me.active.fetch_sub(1, Ordering::SeqCst);
                        });
                        json_response(jsonrpc::result(&id, ack))
                    }
                    other => task_answer(&id, other.map(|(ack, _)| ack)),
                },
                TaskMethod::Cancel => task_answer(&id, agent.tasks.cancel(&task)),
                TaskMethod::Result => match agent.tasks.result(&task).await {
                    Ok(mut response) => {
                        response["jsonrpc"] = json!("2.0");
                        response["id"] = id;
                        json_response(response.to_string())
                    }
                    Err(e) => task_answer(&id, Err(e)),
                },
            }
        }
        (Route::ListOwnTasks, Some(id)) => {
            let agent = p.tasks_for(agent);
            let list = json!({ "tasks": agent.tasks.list() });
            json_response(jsonrpc::result(&id, list))
        }
        (Route::Relay(Some(Rewrite::TaskList { first_page })), Some(_)) => {
            let agent = p.tasks_for(agent);
            let hook = rewriting(move |v| dispatch::tasks_listed(v, &agent.tasks, first_page));
            p.forward(Method::POST, headers, bytes, request, Some(hook))
                .await
        }
        (Route::Cancelled(target), _) => {
            let key = held_key(&token, &headers, &target);
            let held = p.lock_held().remove(&key);
            match held {
                Some(cancel) => {
                    let _ = cancel.send(true);
                    StatusCode::ACCEPTED.into_response()
                }
                None => {
                    let hook = Some(drop_responses());
                    p.forward(Method::POST, headers, bytes, None, hook).await
                }
            }
        }
        (Route::Relay(Some(Rewrite::ToolsList)), Some(_)) => {
            let hook = rewriting(move |v| {
                let mut tools = agent_tasks.as_ref().map(|a| a.server_task_tools());
                Ok(dispatch::tools_listed(v, &calls, tools.as_deref_mut()))
            });
            p.forward(Method::POST, headers, bytes, request, Some(hook))
                .await
        }
        _ => {
            let hook = request.is_none().then(drop_responses);
            p.forward(Method::POST, headers, bytes, request, hook).await
        }
    }
}

/// A hook applying one of [`dispatch`]'s rewrites to each JSON message of an upstream answer:
/// `Ok(true)` sends the rewritten message, `Ok(false)` the original text, `Err` this text
/// instead.
fn rewriting(mut rewrite: impl FnMut(&mut Value) -> Result<bool, String> + Send + 'static) -> Hook {
    Box::new(move |data: &str| -> String {
        let Ok(mut v) = serde_json::from_str::<Value>(data) else {
            return data.to_string();
        };
        match rewrite(&mut v) {
            Ok(true) => v.to_string(),
            Ok(false) => data.to_string(),
            Err(refused) => refused,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::tests::NoGate;
    use async_trait::async_trait;
    use countersign_enforce::{Gate, GateError};

    struct NoGates;

    #[async_trait]
    impl Gates for NoGates {
        async fn gate_for(&self, _: &str) -> Result<Arc<dyn Gate>, GateError> {
            Err(GateError::Unauthenticated("test".into()))
        }
    }

    #[test]
    fn idle_agents_their_empty_task_lists_and_idle_sessions_are_forgotten() {
        let clock = Arc::new(|| countersign_core::Timestamp(0));
        let opts = Options::new("s", clock);
        let p = HttpProxy::new("http://127.0.0.1:9".into(), Arc::new(NoGates), opts, 1024);
        let t0 = Instant::now();
        let later = t0 + SESSION_IDLE + Duration::from_secs(1800);
        let now = t0 + SESSION_IDLE + Duration::from_secs(3600);
        let calls = || Arc::new(Calls::new(Arc::new(NoGate), p.opts.clone()));
        for (agent, seen) in [([1; 32], t0), ([2; 32], later)] {
            p.lock_agents().insert(
                agent,
                Agent {
                    calls: calls(),
                    seen,
                },
            );
        }
        // Agent 1 has no task left; agent 3 (unseen for long) still has one being decided.
        p.tasks_for([1; 32]);
        p.tasks_for([3; 32]).tasks.create(&serde_json::json!({}));
        p.lock_sessions().insert(b"old".to_vec(), ([1; 32], t0));
        p.lock_sessions().insert(b"new".to_vec(), ([2; 32], later));
        p.prune(now);
        let agents: HashSet<[u8; 32]> = p.lock_agents().keys().copied().collect();
        assert_eq!(agents, HashSet::from([[2; 32]]));
        let tasks: HashSet<[u8; 32]> = p.lock_tasks().keys().copied().collect();
        assert_eq!(tasks, HashSet::from([[3; 32]]), "an open task is kept");
        let sessions: Vec<Vec<u8>> = p.lock_sessions().keys().cloned().collect();
        assert_eq!(sessions, [b"new".to_vec()]);
    }

    #[test]
    fn sessions_are_bounded() {
        let clock = Arc::new(|| countersign_core::Timestamp(0));
        let p = HttpProxy::new(
            "http://127.0.0.1:9".into(),
            Arc::new(NoGates),
            Options::new("s", clock),
            1024,
        );
        let t0 = Instant::now();
        {
            let mut sessions = p.lock_sessions();
            for i in 0..MAX_SESSIONS {
                let seen = t0 + Duration::from_millis(u64::try_from(i).unwrap_or(0));
                sessions.insert(i.to_be_bytes().to_vec(), ([0; 32], seen));
            }
        }
        p.remember_session(b"one more".to_vec(), [0; 32]);
        let sessions = p.lock_sessions();
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(
            !sessions.contains_key(&0usize.to_be_bytes().to_vec()),
            "the oldest went"
        );
        assert!(sessions.contains_key(&b"one more".to_vec()));
    }
}
