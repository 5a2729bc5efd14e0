//! MCP tasks, in both of their wire forms. A review can take hours; a task outlives any request
//! timeout.
//!
//! - **2025-11-25** (experimental, in the core protocol; [`Wire::V1`]): a client that adds
//!   `params.task` to a `tools/call` gets a task at once instead of a held request, polls it
//!   with `tasks/get`, and collects the result with `tasks/result`.
//! - **2026-07-28's Tasks extension** (`io.modelcontextprotocol/tasks`, SEP-2663; [`Wire::V2`]):
//!   the client declares the extension in each request's `_meta` capabilities and the receiver
//!   decides per call whether to answer with a task (`resultType: "task"`). The proxy does so
//!   only for a call that must wait for a review; `tasks/get` inlines the final result,
//!   `tasks/update` and `tasks/cancel` are acknowledged with an empty result.
//!
//! The proxy is the task *receiver*: the task wraps countersign's decision and, once allowed or
//! approved, the forwarded call. The decision itself (the action, its review, its grant) lives
//! in the gateway's store like every other call; this registry only keeps, per session, what
//! the client polls: each task's status and, once it ends, the JSON-RPC response the plain call
//! would have had.

use countersign_core::Timestamp;
use countersign_enforce::Clock;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// `_meta` key tying a message to its task.
pub const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// The protocol version whose tasks utility the proxy speaks.
pub const TASKS_VERSION: &str = "2025-11-25";

/// The Tasks extension's identifier (2026-07-28 on).
pub const EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// `_meta` key of a 2026-07-28 request's own capabilities.
pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// Which wire form a task speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// 2025-11-25's core tasks: `{"task": ..}` results, `ttl`, `pollInterval`, `tasks/result`;
    /// an `isError` result fails the task.
    V1,
    /// 2026-07-28's Tasks extension: flat results with `resultType`, `ttlMs`,
    /// `pollIntervalMs`, the final result inlined in `tasks/get`; an `isError` result
    /// completes the task (only a JSON-RPC error fails it).
    V2,
}

/// Whether a request declares the Tasks extension in its own capabilities (2026-07-28).
pub fn declares_extension(msg: &Value) -> bool {
    msg["params"]["_meta"][CLIENT_CAPABILITIES]["extensions"][EXTENSION].is_object()
}

/// The error a request without the extension gets for a 2026-07-28 task (`-32021`, Missing
/// Required Client Capability, naming the extension).
pub fn missing_extension(id: &Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {
        "code": crate::jsonrpc::MISSING_CAPABILITY,
        "message": "Missing required client capability",
        "data": {"requiredCapabilities": {"extensions": {EXTENSION: {}}}},
    }})
    .to_string()
}

/// Adds the Tasks extension to the capabilities of a `server/discover` result: the proxy runs
/// the tasks for calls under review itself.
pub fn advertise_extension(capabilities: &mut Value) {
    if !capabilities.is_object() {
        *capabilities = json!({});
    }
    if !capabilities["extensions"].is_object() {
        capabilities["extensions"] = json!({});
    }
    if !capabilities["extensions"][EXTENSION].is_object() {
        capabilities["extensions"][EXTENSION] = json!({});
    }
}

/// Request ids the proxy gives the calls it forwards for its tasks (followed by the task id):
/// the client's own request was already answered with the task.
pub const TASK_CALL_ID: &str = "countersign-call-";

/// The request id under which a task's call is forwarded.
pub fn call_id(task: &str) -> Value {
    Value::String(format!("{TASK_CALL_ID}{task}"))
}

/// A JSON-RPC response reduced to what a task keeps: `{"result": ..}` or `{"error": ..}`.
pub fn response_of(mut message: Value) -> Value {
    if let Some(o) = message.as_object_mut() {
        o.remove("jsonrpc");
        o.remove("id");
    }
    message
}

/// Retention when the client asks for none.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Retention bounds (a client's `ttl` is clamped to these).
const MIN_TTL: Duration = Duration::from_secs(60);
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// Why a `tasks/*` request was refused (all are `-32602`, invalid params).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TaskError {
    /// No such task in this session (or it was deleted after its ttl).
    #[error("task not found")]
    NotFound,
    /// `tasks/cancel` on a task that has already ended.
    #[error("the task has already ended ({0}) and cannot be cancelled")]
    Terminal(&'static str),
}

/// A task's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Being decided, reviewed or run.
    Working,
    /// Ran; the result is not an error.
    Completed,
    /// Denied, rejected, expired, or the tool failed (`isError` or a JSON-RPC error).
    Failed,
    /// Cancelled by the client.
    Cancelled,
    /// 2026-07-28: the server asked for input (multi round-trip requests); `tasks/update`
    /// brings the client's answers and the call goes on.
    InputRequired,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Working => "working",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::InputRequired => "input_required",
        }
    }

    /// Not ended yet.
    fn open(self) -> bool {
        matches!(self, Status::Working | Status::InputRequired)
    }
}

/// What a task waiting for the client's input (`input_required`) keeps to continue the call.
struct InputRound {
    /// The server's `inputRequests`, shown by `tasks/get`.
    requests: Value,
    /// The server's `requestState`, echoed in the retry.
    state: Option<String>,
    /// The call as it was forwarded (the arguments that were decided on).
    forwarded: Value,
    /// The action the call belongs to.
    action_id: Option<String>,
}

/// A continued call: what [`Tasks::update`] hands back to forward.
pub struct Retry {
    /// The `tools/call` to send the server (the proxy sets its request id).
    pub message: Value,
    /// The action the call belongs to.
    pub action_id: Option<String>,
}

struct Entry {
    wire: Wire,
    status: Status,
    message: Option<String>,
    created: Timestamp,
    updated: Timestamp,
    ttl: Duration,
    /// The response the plain call would have had: `{"result": ...}` or `{"error": ...}`.
    response: Option<Value>,
    /// Flips to `true` when the task ends.
    done: watch::Sender<bool>,
    /// Flips to `true` when the client cancels.
    cancel: watch::Sender<bool>,
    /// Set while the task is `input_required`.
    round: Option<InputRound>,
}

/// The tasks of one session (one agent identity).
pub struct Tasks {
    entries: Mutex<HashMap<String, Entry>>,
    poll_interval: Duration,
    clock: Clock,
}

fn rfc3339(t: Timestamp) -> String {
    let nanos = i128::from(t.millis()) * 1_000_000;
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
        return String::new();
    };
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Entry {
    /// The task as `tasks/get` shows it (without `resultType`).
    fn json(&self, id: &str, poll: Duration) -> Value {
        let (ttl, interval) = match self.wire {
            Wire::V1 => ("ttl", "pollInterval"),
            Wire::V2 => ("ttlMs", "pollIntervalMs"),
        };
        let mut t = json!({
            "taskId": id,
            "status": self.status.as_str(),
            "createdAt": rfc3339(self.created),
            "lastUpdatedAt": rfc3339(self.updated),
            ttl: millis(self.ttl),
        });
        if self.status.open() {
            t[interval] = json!(millis(poll));
        }
        if let Some(r) = &self.round {
            t["inputRequests"] = r.requests.clone();
        }
        if let Some(m) = &self.message {
            t["statusMessage"] = Value::String(m.clone());
        }
        if self.wire == Wire::V2 {
            // The extension's DetailedTask inlines what the task ended with.
            match (&self.status, &self.response) {
                (Status::Completed, Some(r)) => t["result"] = r["result"].clone(),
                (Status::Failed, Some(r)) => t["error"] = r["error"].clone(),
                _ => {}
            }
        }
        t
    }

    fn stale(&self, now: Timestamp) -> bool {
        // A task still being decided is kept whatever its ttl: its review is still open.
        self.status != Status::Working && now > self.created.plus(self.ttl)
    }
}

/// What [`Tasks::create`] hands back.
pub struct Created {
    /// The task id.
    pub id: String,
    /// The `CreateTaskResult` to answer the `tools/call` with.
    pub result: Value,
    /// Flips to `true` if the client cancels the task.
    pub cancelled: watch::Receiver<bool>,
}

impl Tasks {
    /// An empty registry; `poll_interval` is suggested to clients; `clock` dates the tasks.
    pub fn new(poll_interval: Duration, clock: Clock) -> Self {
        Tasks {
            entries: Mutex::new(HashMap::new()),
            poll_interval: poll_interval.max(Duration::from_millis(100)),
            clock,
        }
    }

    fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// Whether no task is kept (none open, none within its ttl).
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.now();
        map.retain(|_, e| !e.stale(now));
        map
    }

    /// Whether `id` names one of this registry's tasks (ids are prefixed, so a server's own
    /// task ids are told apart and relayed).
    pub fn owns(id: &str) -> bool {
        id.starts_with("countersign-")
    }

    /// A new working task for a 2025-11-25 `tools/call` whose `params.task` is `request`.
    pub fn create(&self, request: &Value) -> Created {
        let ttl = request
            .get("ttl")
            .and_then(Value::as_u64)
            .map_or(DEFAULT_TTL, Duration::from_millis)
            .clamp(MIN_TTL, MAX_TTL);
        let message = "countersign is deciding whether this call may run".to_string();
        self.insert(Wire::V1, ttl, message)
    }

    /// A new working task of the 2026-07-28 extension, for a call that waits for `review`
    /// (the receiver picks the ttl: the extension's client asks for none).
    pub fn create_v2(&self, review: &str) -> Created {
        let message = format!("waiting for human approval (countersign review {review})");
        self.insert(Wire::V2, DEFAULT_TTL, message)
    }

    fn insert(&self, wire: Wire, ttl: Duration, message: String) -> Created {
        let id = format!("countersign-{}", uuid::Uuid::now_v7());
        let now = self.now();
        let (cancel, cancelled) = watch::channel(false);
        let entry = Entry {
            wire,
            status: Status::Working,
            message: Some(message),
            created: now,
            updated: now,
            ttl,
            response: None,
            done: watch::channel(false).0,
            cancel,
            round: None,
        };
        let task = entry.json(&id, self.poll_interval);
        self.entries().insert(id.clone(), entry);
        let result = match wire {
            Wire::V1 => json!({ "task": task }),
            Wire::V2 => {
                let mut t = task;
                t["resultType"] = json!("task");
                t
            }
        };
        Created {
            id,
            result,
            cancelled,
        }
    }

    /// The wire form of one of this registry's tasks.
    pub fn wire(&self, id: &str) -> Option<Wire> {
        self.entries().get(id).map(|e| e.wire)
    }

    /// A task for a call that was not run (denied, rejected, cancelled...) although the client
    /// asked for a task (`request`): created already ended with `result`. Returns the
    /// `CreateTaskResult` to answer with.
    pub fn ended(&self, request: &Value, result: Value) -> Value {
        let created = self.create(request);
        self.finish(&created.id, json!({ "result": result }));
        json!({ "task": self.get(&created.id).unwrap_or_else(|_| json!({ "taskId": created.id })) })
    }

    /// Puts this registry's tasks first in the first page of a server's `tasks/list` result.
    /// Returns `false`, leaving it alone, if the result is not an object (the server's answer is
    /// then refused: see [`not_an_object`]).
    pub fn merge_into(&self, result: &mut Value) -> bool {
        let Some(result) = result.as_object_mut() else {
            return false;
        };
        let ours = self.list();
        match result.get_mut("tasks").and_then(Value::as_array_mut) {
            Some(theirs) => theirs.splice(0..0, ours).for_each(drop),
            None => {
                result.insert("tasks".into(), Value::Array(ours));
            }
        }
        true
    }

    /// Updates a working task's status message.
    pub fn note(&self, id: &str, message: String) {
        if let Some(e) = self.entries().get_mut(id) {
            if e.status == Status::Working && e.message.as_deref() != Some(message.as_str()) {
                e.message = Some(message);
                e.updated = self.now();
            }
        }
    }

    /// Ends a task with the response (`{"result": ..}` or `{"error": ..}`) its call would
    /// have had. Returns the task (for a status notification), or `None` if it had already
    /// ended (a cancelled task stays cancelled).
    pub fn finish(&self, id: &str, mut response: Value) -> Option<Value> {
        let mut map = self.entries();
        let e = map.get_mut(id)?;
        if e.status != Status::Working {
            return None;
        }
        if e.wire == Wire::V2 {
            // The inlined result is a 2026-07-28 result: the proxy's own answers (a denial, a
            // reviewer's verdict) need the `resultType` a server's result already has.
            if let Some(r) = response.get_mut("result").and_then(Value::as_object_mut) {
                r.entry("resultType").or_insert_with(|| json!("complete"));
            }
        }
        let failed = response.get("error").is_some()
            || (e.wire == Wire::V1 && response["result"]["isError"] == Value::Bool(true));
        e.status = if failed {
            Status::Failed
        } else {
            Status::Completed
        };
        e.message = match &response["error"]["message"] {
            Value::String(m) => Some(m.clone()),
            _ => None,
        };
        e.updated = self.now();
        e.response = Some(response);
        e.done.send_replace(true);
        Some(e.json(id, self.poll_interval))
    }

    /// `tasks/get`.
    pub fn get(&self, id: &str) -> Result<Value, TaskError> {
        let map = self.entries();
        let e = map.get(id).ok_or(TaskError::NotFound)?;
        let mut t = e.json(id, self.poll_interval);
        if e.wire == Wire::V2 {
            t["resultType"] = json!("complete");
        }
        Ok(t)
    }

    /// A 2026-07-28 task's forwarded call (`forwarded`) was answered with `result`: if that is
    /// the server asking for input (`resultType: "input_required"`), the task becomes
    /// `input_required`, showing the server's requests, and `true` is returned (the task goes
    /// on when `tasks/update` brings the answers).
    pub fn ask_input(
        &self,
        id: &str,
        forwarded: &Value,
        action_id: Option<&str>,
        result: &Value,
    ) -> bool {
        if result["resultType"] != "input_required" {
            return false;
        }
        let mut map = self.entries();
        let Some(e) = map.get_mut(id).filter(|e| e.wire == Wire::V2) else {
            return false;
        };
        if e.status != Status::Working {
            return false;
        }
        e.status = Status::InputRequired;
        e.message = Some("the MCP server asks for input".into());
        e.updated = self.now();
        e.round = Some(InputRound {
            requests: result
                .get("inputRequests")
                .cloned()
                .unwrap_or_else(|| json!({})),
            state: result["requestState"].as_str().map(str::to_string),
            forwarded: forwarded.clone(),
            action_id: action_id.map(str::to_string),
        });
        true
    }

    /// `tasks/update` (2026-07-28): a known task is acknowledged. When it is waiting for input
    /// and the request brings `inputResponses`, the call is continued: the task is working
    /// again and the retry to forward is handed back (the arguments that were decided on, the
    /// client's answers, the server's `requestState`).
    pub fn update(&self, id: &str, request: &Value) -> Result<(Value, Option<Retry>), TaskError> {
        let ack = json!({"resultType": "complete"});
        let mut map = self.entries();
        let e = map.get_mut(id).ok_or(TaskError::NotFound)?;
        let responses = &request["params"]["inputResponses"];
        if e.status != Status::InputRequired || !responses.is_object() {
            return Ok((ack, None));
        }
        let Some(round) = e.round.take() else {
            return Ok((ack, None));
        };
        e.status = Status::Working;
        e.message = Some("continuing the call with the client's input".into());
        e.updated = self.now();
        let mut message = round.forwarded;
        message["params"]["inputResponses"] = responses.clone();
        match round.state {
            Some(state) => message["params"]["requestState"] = Value::String(state),
            None => {
                if let Some(p) = message["params"].as_object_mut() {
                    p.remove("requestState");
                }
            }
        }
        let retry = Retry {
            message,
            action_id: round.action_id,
        };
        Ok((ack, Some(retry)))
    }

    /// `tasks/list`: every task of this session, newest first (one page).
    pub fn list(&self) -> Vec<Value> {
        let map = self.entries();
        let mut all: Vec<(&String, &Entry)> = map.iter().collect();
        all.sort_by(|a, b| b.1.created.cmp(&a.1.created).then(b.0.cmp(a.0)));
        all.into_iter()
            .map(|(id, e)| e.json(id, self.poll_interval))
            .collect()
    }

    /// `tasks/cancel`: the task becomes `cancelled` (and its review is withdrawn by whoever
    /// holds the `cancelled` receiver).
    /// A 2026-07-28 task's cancellation is acknowledged with an empty result, even when the
    /// task had already ended (cancellation is eventually consistent there).
    pub fn cancel(&self, id: &str) -> Result<Value, TaskError> {
        let mut map = self.entries();
        let e = map.get_mut(id).ok_or(TaskError::NotFound)?;
        let ack = (e.wire == Wire::V2).then(|| json!({"resultType": "complete"}));
        if !e.status.open() {
            return ack.ok_or(TaskError::Terminal(e.status.as_str()));
        }
        e.status = Status::Cancelled;
        e.round = None;
        e.message = Some("cancelled by the client; the call was not run".into());
        e.updated = self.now();
        e.response = Some(json!({"error": {
            "code": crate::jsonrpc::REQUEST_CANCELLED,
            "message": "the task was cancelled",
        }}));
        e.cancel.send_replace(true);
        e.done.send_replace(true);
        Ok(ack.unwrap_or_else(|| e.json(id, self.poll_interval)))
    }

    /// `tasks/result`: waits until the task ends, then returns the response its call would
    /// have had, with the related-task `_meta` on a result.
    pub async fn result(&self, id: &str) -> Result<Value, TaskError> {
        let mut done = {
            let map = self.entries();
            let e = map.get(id).ok_or(TaskError::NotFound)?;
            e.done.subscribe()
        };
        // Ends when the task ends, or when the registry drops the task (sender gone).
        let _ = done.wait_for(|d| *d).await;
        let map = self.entries();
        let e = map.get(id).ok_or(TaskError::NotFound)?;
        let mut response = e.response.clone().ok_or(TaskError::NotFound)?;
        if let Some(result) = response.get_mut("result").and_then(Value::as_object_mut) {
            let meta = result
                .entry("_meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(meta) = meta.as_object_mut() {
                meta.insert(RELATED_TASK.into(), json!({ "taskId": id }));
            }
        }
        Ok(response)
    }

    /// Cancels every working task (the client went away).
    pub fn cancel_all(&self) {
        let ids: Vec<String> = self
            .entries()
            .iter()
            .filter(|(_, e)| e.status.open())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let _ = self.cancel(&id);
        }
    }
}

/// Tools of a `tools/list` result may be called as tasks: the proxy runs the task, the server
/// gets a plain call. Tools the server requires to be its own tasks
/// (`execution.taskSupport: "required"`) are left as they are and remembered in
/// `server_task_tools`.
pub fn offer(result: &mut Value, server_task_tools: &mut HashSet<String>) {
    let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
        return;
    };
    // Not a tool (`filter_tools` drops them first): nothing to offer.
    for tool in tools.iter_mut().filter(|t| t.is_object()) {
        let name = tool["name"].as_str().unwrap_or_default().to_string();
        if tool["execution"]["taskSupport"] == "required" {
            server_task_tools.insert(name);
            continue;
        }
        server_task_tools.remove(&name);
        if !tool["execution"].is_object() {
            tool["execution"] = json!({});
        }
        tool["execution"]["taskSupport"] = json!("optional");
    }
}

/// The error the client gets instead of a server's answer to `method` whose `result` is not an
/// object.
pub fn not_an_object(id: &Value, method: &str) -> String {
    tracing::warn!(id = %id, "the MCP server answered {method} with a result that is not an object; refused");
    crate::jsonrpc::error(
        id,
        crate::jsonrpc::INTERNAL_ERROR,
        &format!("the MCP server answered {method} with a result that is not an object"),
    )
}

/// The server capabilities an `initialize` result gets so clients know they may create tasks
/// for `tools/call` (merged into what the server itself declares).
pub fn advertise(capabilities: &mut Value) {
    if !capabilities.is_object() {
        *capabilities = json!({});
    }
    let tasks = &mut capabilities["tasks"];
    if !tasks.is_object() {
        *tasks = json!({});
    }
    for k in ["list", "cancel"] {
        if !tasks[k].is_object() {
            tasks[k] = json!({});
        }
    }
    if !tasks["requests"].is_object() {
        tasks["requests"] = json!({});
    }
    if !tasks["requests"]["tools"].is_object() {
        tasks["requests"]["tools"] = json!({});
    }
    tasks["requests"]["tools"]["call"] = json!({});
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    /// 2026-12-01T00:00:00Z.
    const T0: i64 = 1_796_083_200_000;

    fn fixed_clock() -> Clock {
        Arc::new(|| Timestamp(T0))
    }

    #[test]
    fn hostile_tasks_list_results_and_tool_entries_do_not_panic() {
        let tasks = Tasks::new(Duration::from_secs(1), fixed_clock());
        tasks.create(&json!({}));
        for mut bad in [json!([1, 2]), json!("x"), json!(7), json!(true)] {
            assert!(!tasks.merge_into(&mut bad));
        }
        let mut theirs = json!({"tasks": "not a list"});
        assert!(tasks.merge_into(&mut theirs));
        assert_eq!(theirs["tasks"].as_array().map(Vec::len), Some(1));
        let mut list = json!({"tools": [1, "two", null, [3], {"name": "ok"}]});
        let mut required = HashSet::new();
        offer(&mut list, &mut required);
        assert_eq!(list["tools"][4]["execution"]["taskSupport"], "optional");
        assert_eq!(list["tools"][0], 1);
    }

    #[test]
    fn tasks_are_dated_by_the_injected_clock_and_forgotten_after_their_ttl() {
        let now = Arc::new(AtomicI64::new(T0));
        let clock = {
            let now = now.clone();
            Arc::new(move || Timestamp(now.load(Ordering::SeqCst))) as Clock
        };
        let tasks = Tasks::new(Duration::from_secs(1), clock);
        let c = tasks.create(&json!({"ttl": 60000}));
        assert_eq!(c.result["task"]["createdAt"], "2026-12-01T00:00:00Z");
        tasks.finish(&c.id, json!({"result": {"content": []}}));
        now.fetch_add(59_000, Ordering::SeqCst);
        assert!(tasks.get(&c.id).is_ok(), "kept within its ttl");
        now.fetch_add(2_000, Ordering::SeqCst);
        assert_eq!(tasks.get(&c.id), Err(TaskError::NotFound));
        assert!(tasks.is_empty());
    }

    #[tokio::test]
    async fn a_task_works_then_completes_and_its_result_carries_the_related_task() {
        let tasks = Tasks::new(Duration::from_secs(1), fixed_clock());
        let c = tasks.create(&json!({"ttl": 60000}));
        assert!(Tasks::owns(&c.id));
        assert_eq!(c.result["task"]["status"], "working");
        assert_eq!(c.result["task"]["ttl"], 60000);
        assert_eq!(tasks.get(&c.id).unwrap()["status"], "working");
        let t = tasks
            .finish(&c.id, json!({"result": {"content": [], "isError": false}}))
            .unwrap();
        assert_eq!(t["status"], "completed");
        let r = tasks.result(&c.id).await.unwrap();
        assert_eq!(r["result"]["_meta"][RELATED_TASK]["taskId"], c.id.as_str());
        assert_eq!(tasks.list().len(), 1);
    }

    #[tokio::test]
    async fn an_error_result_fails_the_task_and_a_cancelled_task_stays_cancelled() {
        let tasks = Tasks::new(Duration::from_secs(1), fixed_clock());
        let a = tasks.create(&json!({}));
        tasks.finish(&a.id, json!({"result": {"content": [], "isError": true}}));
        assert_eq!(tasks.get(&a.id).unwrap()["status"], "failed");
        assert_eq!(tasks.cancel(&a.id), Err(TaskError::Terminal("failed")));

        let b = tasks.create(&json!({}));
        let waiter = {
            let id = b.id.clone();
            let tasks = std::sync::Arc::new(tasks);
            let t2 = tasks.clone();
            (tokio::spawn(async move { t2.result(&id).await }), tasks)
        };
        let (handle, tasks) = waiter;
        assert_eq!(tasks.cancel(&b.id).unwrap()["status"], "cancelled");
        assert!(*b.cancelled.borrow());
        let r = handle.await.unwrap().unwrap();
        assert_eq!(r["error"]["code"], crate::jsonrpc::REQUEST_CANCELLED);
        assert!(tasks.finish(&b.id, json!({"result": {}})).is_none());
        assert_eq!(tasks.get(&b.id).unwrap()["status"], "cancelled");
        assert_eq!(tasks.get("countersign-nope"), Err(TaskError::NotFound));
    }

    #[test]
    fn an_extension_task_is_flat_inlines_its_end_and_an_error_result_completes_it() {
        let tasks = Tasks::new(Duration::from_secs(2), fixed_clock());
        let c = tasks.create_v2("review-1");
        assert_eq!(c.result["resultType"], "task");
        assert_eq!(c.result["status"], "working");
        assert_eq!(c.result["ttlMs"], 3_600_000);
        assert_eq!(c.result["pollIntervalMs"], 2000);
        assert!(c.result.get("task").is_none() && c.result.get("ttl").is_none());
        assert!(c.result["statusMessage"]
            .as_str()
            .unwrap()
            .contains("review-1"));
        assert_eq!(tasks.wire(&c.id), Some(Wire::V2));
        let got = tasks.get(&c.id).unwrap();
        assert_eq!(got["resultType"], "complete");
        assert!(got.get("result").is_none());

        let denied = json!({"content": [{"type": "text", "text": "no"}], "isError": true});
        assert!(tasks
            .finish(&c.id, json!({ "result": denied.clone() }))
            .is_some());
        let got = tasks.get(&c.id).unwrap();
        assert_eq!(
            got["status"], "completed",
            "isError is a tool result, not a failure"
        );
        let mut marked = denied;
        marked["resultType"] = json!("complete");
        assert_eq!(got["result"], marked, "inlined as a 2026-07-28 result");
        assert!(got.get("pollIntervalMs").is_none());
        assert_eq!(
            tasks.update(&c.id, &json!({})).unwrap().0,
            json!({"resultType": "complete"})
        );
        assert_eq!(
            tasks.cancel(&c.id).unwrap(),
            json!({"resultType": "complete"}),
            "cancelling an ended task is acknowledged"
        );
        assert_eq!(tasks.get(&c.id).unwrap()["status"], "completed");

        let f = tasks.create_v2("review-2");
        let error = json!({"code": -32603, "message": "the MCP server is gone"});
        tasks.finish(&f.id, json!({ "error": error.clone() }));
        let got = tasks.get(&f.id).unwrap();
        assert_eq!(got["status"], "failed");
        assert_eq!(got["error"], error);
        assert!(matches!(
            tasks.update("countersign-nope", &json!({})),
            Err(TaskError::NotFound)
        ));
    }

    #[test]
    fn an_extension_task_asked_for_input_shows_the_requests_and_update_continues_it() {
        let tasks = Tasks::new(Duration::from_secs(1), fixed_clock());
        let c = tasks.create_v2("review-1");
        let forwarded = json!({"jsonrpc": "2.0", "id": "x", "method": "tools/call",
            "params": {"name": "deploy", "arguments": {"env": "prod"}}});
        let asks = json!({"resultType": "input_required", "requestState": "s1",
            "inputRequests": {"confirm": {"method": "elicitation/create", "params": {}}}});
        assert!(!tasks.ask_input(&c.id, &forwarded, Some("a1"), &json!({"content": []})));
        assert!(tasks.ask_input(&c.id, &forwarded, Some("a1"), &asks));
        let got = tasks.get(&c.id).unwrap();
        assert_eq!(got["status"], "input_required");
        assert_eq!(got["inputRequests"], asks["inputRequests"]);
        // An update without answers is only acknowledged.
        let (_, none) = tasks.update(&c.id, &json!({"params": {}})).unwrap();
        assert!(none.is_none());
        let answers = json!({"confirm": {"action": "accept", "content": {"confirm": true}}});
        let (ack, retry) = tasks
            .update(
                &c.id,
                &json!({"params": {"inputResponses": answers.clone()}}),
            )
            .unwrap();
        assert_eq!(ack, json!({"resultType": "complete"}));
        let retry = retry.unwrap();
        assert_eq!(retry.action_id.as_deref(), Some("a1"));
        assert_eq!(retry.message["params"]["arguments"], json!({"env": "prod"}));
        assert_eq!(retry.message["params"]["inputResponses"], answers);
        assert_eq!(retry.message["params"]["requestState"], "s1");
        let got = tasks.get(&c.id).unwrap();
        assert_eq!(got["status"], "working");
        assert!(got.get("inputRequests").is_none());
        // The same answers again continue nothing: the round was used.
        let (_, again) = tasks
            .update(&c.id, &json!({"params": {"inputResponses": answers}}))
            .unwrap();
        assert!(again.is_none());
        // A task waiting for input can be cancelled.
        assert!(tasks.ask_input(&c.id, &forwarded, None, &asks));
        tasks.cancel(&c.id).unwrap();
        assert_eq!(tasks.get(&c.id).unwrap()["status"], "cancelled");
        assert!(*c.cancelled.borrow());
    }

    #[test]
    fn extension_declarations_are_read_from_the_requests_own_capabilities() {
        let with =
            json!({"params": {"_meta": {CLIENT_CAPABILITIES: {"extensions": {EXTENSION: {}}}}}});
        let without = json!({"params": {"_meta": {CLIENT_CAPABILITIES: {"extensions": {}}}}});
        assert!(declares_extension(&with));
        assert!(!declares_extension(&without));
        assert!(!declares_extension(&json!({"params": {}})));
        let e: Value = serde_json::from_str(&missing_extension(&json!(7))).unwrap();
        assert_eq!(e["error"]["code"], -32021);
        assert_eq!(e["id"], 7);
        let mut caps = json!({"tools": {}, "extensions": {"other/ext": {"x": 1}}});
        advertise_extension(&mut caps);
        assert_eq!(caps["extensions"][EXTENSION], json!({}));
        assert_eq!(caps["extensions"]["other/ext"], json!({"x": 1}));
    }

    #[test]
    fn advertising_merges_into_the_servers_capabilities() {
        let mut caps = json!({"tools": {}, "tasks": {"list": {}, "requests": {"sampling": {}}}});
        advertise(&mut caps);
        assert_eq!(caps["tools"], json!({}));
        assert_eq!(caps["tasks"]["requests"]["sampling"], json!({}));
        assert_eq!(caps["tasks"]["requests"]["tools"]["call"], json!({}));
        assert_eq!(caps["tasks"]["cancel"], json!({}));
    }
}
