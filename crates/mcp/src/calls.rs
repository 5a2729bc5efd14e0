//! What happens to one `tools/call`, whatever the transport: submit (or find the parked action),
//! hold while reviewers decide (progress notifications, cancellation, "pending, call again"),
//! then redeem the grant and hand back the message to forward, or the result to answer with.
//! Also the `tools/list` filter and the result report.

use async_trait::async_trait;
use countersign_core::{ActionSpec, Effect, Outcome, Status};
use countersign_enforce::{
    hold, Continuations, Ending, Gate, HoldPolicy, Progress, Report, Submission, Tracked,
};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::jsonrpc;
use crate::session::{Options, ACTION};
use crate::tasks::{Tasks, Wire, RELATED_TASK};

/// Where progress notifications for a held call go.
pub type Outbox = mpsc::Sender<String>;

/// How a held call ended before reaching the server.
pub enum Verdict {
    /// Send this message to the server; report the result to this action.
    Forward(Value, Option<String>),
    /// Answer the client with this `CallToolResult`.
    Answer(Value),
}

/// A submitted call: where its decision stands.
pub struct Submitted {
    /// The action as the gateway answered.
    pub tracked: Tracked,
    /// Pending mode's key for the call (tool and arguments).
    park_key: Option<String>,
}

impl Submitted {
    /// Whether the call must wait for a review.
    pub fn waits(&self) -> bool {
        self.tracked.waits()
    }
}

/// A call being decided as a task: its status message follows the review, and its progress
/// notifications name the task.
pub struct AsTask<'a> {
    /// The session's tasks.
    pub tasks: &'a Tasks,
    /// This call's task.
    pub id: &'a str,
}

/// How long a 2026-07-28 call that the server answered with `input_required` may be
/// continued (its retry carrying `inputResponses`) without a new decision.
const ROUND_TTL: Duration = Duration::from_secs(600);

/// Most continuations remembered per agent (the oldest go first).
const MAX_ROUNDS: usize = 1024;

/// A forwarded call, as remembered until its response: what a multi-round-trip continuation
/// needs.
pub struct Forwarded {
    /// The client's call (its `params`), when a continuation needs it: its key is computed
    /// only if the server asks for input, off the allow path.
    original: Value,
    /// The arguments forwarded, when they differ from the client's (a reviewer's `modify`).
    modified: Option<Value>,
}

impl Forwarded {
    fn key(&self) -> String {
        round_key(&self.original)
    }

    fn arguments(self) -> Value {
        match self.modified {
            Some(a) => a,
            None => self.original["arguments"].clone(),
        }
    }
}

/// A held call's progress, MCP's way: `notifications/progress` when the client gave a token
/// (naming the task, for a task), and the task's status message.
struct Notes<'a> {
    token: Option<Value>,
    notes: &'a Outbox,
    task: Option<&'a AsTask<'a>>,
}

#[async_trait]
impl Progress for Notes<'_> {
    async fn waiting(&self, tracked: &Tracked, n: u64) {
        let text = format!(
            "waiting for human approval (countersign review {})",
            tracked.id
        );
        if let Some(t) = self.task {
            t.tasks.note(t.id, text.clone());
        }
        let Some(token) = &self.token else {
            return;
        };
        let mut note = json!({
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": token, "progress": n, "message": text}
        });
        if let Some(t) = self.task {
            note["params"]["_meta"] = json!({ RELATED_TASK: { "taskId": t.id } });
        }
        let _ = self.notes.send(note.to_string()).await;
    }
}

/// Logs a client message the proxy refused and, if it is worth it, records it through `gate`.
pub async fn record_refusal(gate: &dyn Gate, refusal: &crate::inbound::Refusal) {
    tracing::warn!(
        code = refusal.reason,
        jsonrpc_code = refusal.code,
        id = %refusal.id,
        "refused a client message: {}",
        refusal.message
    );
    if refusal.audited() {
        gate.refused(refusal.reason).await;
    }
}

/// The tool-call policy of one agent identity on one server.
pub struct Calls {
    gate: Arc<dyn Gate>,
    opts: Options,
    /// Pending mode: calls parked for review, by a digest of tool name and arguments.
    parked: Mutex<HashMap<String, String>>,
    /// 2026-07-28 calls waiting for their client's retry, by [`round_key`].
    rounds: Continuations<Value>,
}

impl Calls {
    /// Calls decided by `gate`.
    pub fn new(gate: Arc<dyn Gate>, opts: Options) -> Self {
        Calls {
            gate,
            opts,
            parked: Mutex::new(HashMap::new()),
            rounds: Continuations::new(ROUND_TTL, MAX_ROUNDS),
        }
    }

    /// What to remember of a 2026-07-28 call (`original`, as the client sent it) forwarded as
    /// `forwarded`, so a server's `input_required` answer can be continued; `None` for an
    /// earlier protocol (no multi round-trip requests there).
    pub fn forwarded(&self, original: &Value, forwarded: &Value) -> Option<Forwarded> {
        if !jsonrpc::is_modern(original) {
            return None;
        }
        let (sent, given) = (
            &forwarded["params"]["arguments"],
            &original["params"]["arguments"],
        );
        Some(Forwarded {
            original: json!({"name": original["params"]["name"], "arguments": given}),
            modified: (sent != given).then(|| sent.clone()),
        })
    }

    /// A forwarded call's response: if the server asks for input (`resultType:
    /// "input_required"`), the call is remembered for its retry and `true` is returned (the
    /// action's result is not reported yet).
    pub fn asks_for_input(
        &self,
        fwd: Option<Forwarded>,
        action_id: &str,
        response: &Value,
    ) -> bool {
        let result = &response["result"];
        let (Some(fwd), "input_required") = (fwd, result["resultType"].as_str().unwrap_or(""))
        else {
            return false;
        };
        self.rounds.remember(
            fwd.key(),
            action_id.to_string(),
            fwd.arguments(),
            result["requestState"].as_str().map(str::to_string),
            Instant::now(),
        );
        true
    }

    /// A 2026-07-28 retry (`msg` carries `inputResponses` or `requestState`) of a call the
    /// server asked input for: the message to forward (with the arguments that were decided
    /// on, whatever the retry says) and its action, without a new decision. Each continuation
    /// is used once; a retry that matches none is decided like any call.
    pub fn continuation(&self, msg: &Value) -> Option<(Value, String, Forwarded)> {
        let params = &msg["params"];
        if !jsonrpc::is_modern(msg)
            || (params.get("inputResponses").is_none() && params.get("requestState").is_none())
        {
            return None;
        }
        let key = round_key(params);
        let round = self
            .rounds
            .take(&key, params["requestState"].as_str(), Instant::now())?;
        let mut fwd = msg.clone();
        match (&round.arguments, fwd["params"].as_object_mut()) {
            (Value::Null, Some(p)) => {
                p.remove("arguments");
            }
            (a, Some(p)) => {
                p.insert("arguments".into(), a.clone());
            }
            _ => {}
        }
        let again = Forwarded {
            original: json!({"name": params["name"], "arguments": params["arguments"]}),
            modified: Some(round.arguments),
        };
        Some((fwd, round.action_id, again))
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The gate.
    pub fn gate(&self) -> &Arc<dyn Gate> {
        &self.gate
    }

    fn parked(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A call this process parked whose review ended without approval (rejected, expired,
    /// cancelled), to tell the agent once instead of opening a new review. Only a hint: any
    /// other state, or a parking this process does not know of, is left to the gateway's
    /// `reuse_open`, which finds an open review or an unused approval in the store.
    async fn parked_verdict(&self, park_key: &str) -> Option<Tracked> {
        let action_id = self.parked().get(park_key).cloned()?;
        match self.gate.wait(&action_id, Duration::ZERO).await {
            Ok(t)
                if matches!(
                    t.status,
                    Status::Rejected | Status::Expired | Status::Cancelled
                ) =>
            {
                Some(t)
            }
            _ => None,
        }
    }

    /// Reports a forwarded call's response (its raw text) to the action.
    pub async fn report(&self, action_id: &str, raw: &str) {
        let msg: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
        let (outcome, detail) = outcome_of(&msg);
        let digest = hex::encode(Sha256::digest(raw.as_bytes()));
        if let Err(e) = self
            .gate
            .report(
                action_id,
                Report {
                    output_sha256: Some(digest),
                    detail,
                    ..Report::new(outcome)
                },
            )
            .await
        {
            tracing::warn!(action = %action_id, error = %e, "could not report a tool call's result");
        }
    }

    /// Decides one `tools/call` (`msg`): submits it, holds it while it is under review
    /// (progress notifications on `notes`; "pending, call again" after `pending_after`, unless
    /// it is a task), and concludes. `cancelled` flipping to `true` withdraws the review.
    pub async fn decide(
        &self,
        msg: &Value,
        cancelled: watch::Receiver<bool>,
        notes: &Outbox,
        task: Option<AsTask<'_>>,
    ) -> Verdict {
        match self.submit(msg).await {
            Ok(first) => self.follow(msg, first, cancelled, notes, task).await,
            Err(verdict) => verdict,
        }
    }

    /// The first half of [`Calls::decide`]: checks and submits the call (or finds the review a
    /// repeat call belongs to). A call that must wait ([`Submitted::waits`]) can be turned into
    /// a task before [`Calls::follow`] waits for its review.
    pub async fn submit(&self, msg: &Value) -> Result<Submitted, Verdict> {
        let params = &msg["params"];
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return Err(Verdict::Answer(jsonrpc::tool_error(
                "countersign: `params.name` (the tool) is missing",
            )));
        };
        let arguments = match params.get("arguments") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(a @ Value::Object(_)) => a.clone(),
            Some(_) => {
                return Err(Verdict::Answer(jsonrpc::tool_error(
                    "countersign: `arguments` must be an object",
                )))
            }
        };
        // Only pending mode parks calls, so only it needs their key.
        let park_key = self.opts.pending_after.map(|_| {
            hex::encode(Sha256::digest(
                serde_jcs::to_vec(&json!([name, &arguments])).unwrap_or_default(),
            ))
        });
        let parked = match &park_key {
            Some(key) => self.parked_verdict(key).await,
            None => None,
        };
        let first = match parked {
            Some(ended) => Ok(ended),
            None => {
                // Pending mode: the store finds the review a repeat call belongs to (across
                // restarts and replicas), not this process.
                self.gate
                    .submit(Submission {
                        action: ACTION.into(),
                        resource: self.resource(name),
                        params: Some(arguments.clone()),
                        reuse_open: self.opts.pending_after.is_some(),
                        ..Submission::default()
                    })
                    .await
            }
        };
        match first {
            Ok(tracked) => Ok(Submitted { tracked, park_key }),
            Err(e) => Err(Verdict::Answer(jsonrpc::tool_error(&format!(
                "countersign: the call was not run: {e}"
            )))),
        }
    }

    /// The second half of [`Calls::decide`]: waits while the call is under review (the
    /// enforcement crate's hold loop), then concludes.
    pub async fn follow(
        &self,
        msg: &Value,
        first: Submitted,
        cancelled: watch::Receiver<bool>,
        notes: &Outbox,
        task: Option<AsTask<'_>>,
    ) -> Verdict {
        let Submitted { tracked, park_key } = first;
        // 2026-07-28's tasks carry no progress: the request that held the token is answered.
        let token = match &task {
            Some(t) if t.tasks.wire(t.id) == Some(Wire::V2) => None,
            _ => msg["params"]["_meta"].get("progressToken").cloned(),
        };
        let policy = HoldPolicy {
            // A task is never answered "pending, call again": it is the answer.
            pending_after: self.opts.pending_after.filter(|_| task.is_none()),
            progress_every: self.opts.progress_every,
        };
        let progress = Notes {
            token,
            notes,
            task: task.as_ref(),
        };
        let ending = hold::hold(self.gate.as_ref(), tracked, policy, cancelled, &progress).await;
        match (&ending, &park_key) {
            (Ending::Cancelled(_), _) | (_, None) => {}
            (Ending::Parked(t), Some(key)) => {
                self.parked().insert(key.clone(), t.id.clone());
            }
            (_, Some(key)) => {
                self.parked().remove(key);
            }
        }
        self.conclude(msg, ending).await
    }

    async fn conclude(&self, msg: &Value, ending: Ending) -> Verdict {
        let (action_id, grant) = match ending {
            Ending::Run { action_id, grant } => (action_id, grant),
            Ending::Cancelled(_) => {
                return Verdict::Answer(jsonrpc::tool_error("countersign: cancelled"))
            }
            Ending::Parked(t) => return Verdict::Answer(jsonrpc::tool_error(&pending_text(&t))),
            Ending::Denied(t) => {
                let why = t.reason.as_deref().unwrap_or("no policy allows it");
                return Verdict::Answer(jsonrpc::tool_error(&format!(
                    "countersign denied this call (action {}): {why}. It was not run.",
                    t.id
                )));
            }
            Ending::Closed(t) => {
                let mut text = format!(
                    "countersign: this call was {} by review (action {}) and was not run.",
                    t.status.as_str(),
                    t.id
                );
                for c in &t.comments {
                    text.push_str(&format!("\n{c}"));
                }
                return Verdict::Answer(jsonrpc::tool_error(&text));
            }
        };
        let Some(token) = grant else {
            // Allowed outright without a grant: forward untouched.
            return Verdict::Forward(msg.clone(), Some(action_id));
        };
        match self.gate.redeem(&token).await {
            Ok(approved) => {
                let mut msg = msg.clone();
                if msg["params"].get("arguments") != Some(&approved.params) {
                    msg["params"]["arguments"] = approved.params;
                }
                Verdict::Forward(msg, Some(approved.action_id))
            }
            Err(e) => Verdict::Answer(jsonrpc::tool_error(&format!(
                "countersign: the approval could not be used ({e}); the call was not run"
            ))),
        }
    }

    /// Hides denied tools and marks reviewed ones in a `tools/list` result.
    pub fn filter_tools(&self, result: &mut Value) {
        let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
            return;
        };
        tools.retain_mut(|tool| {
            if !tool.is_object() {
                // Not a tool: no client could read it, and nothing may be added to it.
                tracing::warn!(entry = %tool, "the MCP server listed a tool that is not an object; dropped");
                return false;
            }
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                return true;
            };
            let Ok(spec) = ActionSpec::new(ACTION.to_string(), self.resource(name), String::new(), None)
            else {
                return true;
            };
            match self.gate.preview(&spec) {
                Some(Effect::Deny) => !self.opts.hide_denied,
                Some(Effect::Review) => {
                    let note = "[countersign] Each call of this tool is held until a person approves it; they see the arguments, so make them self-explanatory.";
                    let desc = match tool.get("description").and_then(Value::as_str) {
                        Some(d) if !d.is_empty() => format!("{d}\n\n{note}"),
                        _ => note.to_string(),
                    };
                    tool["description"] = Value::String(desc);
                    true
                }
                _ => true,
            }
        });
    }

    /// The resource a tool's calls act on.
    pub fn resource(&self, tool: &str) -> String {
        format!("mcp://{}/{tool}", self.opts.server_name)
    }
}

/// A call's identity for multi-round-trip continuations: its tool and arguments as the client
/// sends them (a retry repeats them), from its `params`.
fn round_key(params: &Value) -> String {
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(a) => a.clone(),
    };
    hex::encode(Sha256::digest(
        serde_jcs::to_vec(&json!([params["name"], arguments])).unwrap_or_default(),
    ))
}

fn pending_text(t: &Tracked) -> String {
    let who = if t.approvers.is_empty() {
        String::new()
    } else {
        format!(" by {}", t.approvers.join(", "))
    };
    format!(
        "countersign: this call needs human approval{who} and has NOT run yet (review {}). \
         Call the tool again later with exactly the same arguments: once approved, that call runs it.",
        t.id
    )
}

fn outcome_of(msg: &Value) -> (Outcome, Option<String>) {
    if let Some(e) = msg.get("error") {
        let text = e["message"]
            .as_str()
            .unwrap_or("JSON-RPC error")
            .to_string();
        return (Outcome::Failed, Some(text));
    }
    if msg["result"]["isError"] == Value::Bool(true) {
        return (Outcome::Failed, Some("the tool returned isError".into()));
    }
    (Outcome::Succeeded, None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use countersign_enforce::{Approved, GateError};

    /// A gate the continuation logic never calls.
    pub(crate) struct NoGate;

    #[async_trait]
    impl Gate for NoGate {
        async fn submit(&self, _: Submission) -> Result<Tracked, GateError> {
            Err(GateError::Unreachable("test".into()))
        }
        async fn wait(&self, _: &str, _: Duration) -> Result<Tracked, GateError> {
            Err(GateError::Unreachable("test".into()))
        }
        async fn cancel(&self, _: &str) -> Result<(), GateError> {
            Ok(())
        }
        async fn answer(&self, _: &str, _: String) -> Result<Tracked, GateError> {
            Err(GateError::Unreachable("test".into()))
        }
        async fn redeem(&self, _: &str) -> Result<Approved, GateError> {
            Err(GateError::Unreachable("test".into()))
        }
        async fn report(&self, _: &str, _: Report) -> Result<(), GateError> {
            Ok(())
        }
        async fn refused(&self, _: &str) -> bool {
            false
        }
        fn preview(&self, _: &ActionSpec) -> Option<Effect> {
            None
        }
    }

    fn calls() -> Calls {
        let clock = Arc::new(|| countersign_core::Timestamp(0));
        Calls::new(Arc::new(NoGate), Options::new("s", clock))
    }

    fn call(args: Value, extra: Value) -> Value {
        let mut m = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "deploy", "arguments": args,
            "_meta": {jsonrpc::PROTOCOL_VERSION_META: "2026-07-28"},
        }});
        if let (Some(p), Some(e)) = (m["params"].as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        m
    }

    fn input_required(state: Option<&str>) -> Value {
        let mut r = json!({"result": {"resultType": "input_required", "inputRequests": {}}});
        if let Some(s) = state {
            r["result"]["requestState"] = json!(s);
        }
        r
    }

    /// The client's call `{"env": "dev"}`, forwarded as approved `{"env": "prod"}`, answered
    /// with `input_required` (state `s1`).
    fn parked(c: &Calls) {
        let original = call(json!({"env": "dev"}), json!({}));
        let forwarded = call(json!({"env": "prod"}), json!({}));
        let fwd = c.forwarded(&original, &forwarded);
        assert!(c.asks_for_input(fwd, "action-1", &input_required(Some("s1"))));
    }

    fn retry(args: Value, state: &str) -> Value {
        call(
            args,
            json!({"inputResponses": {"k": {"action": "accept"}}, "requestState": state}),
        )
    }

    #[test]
    fn tool_entries_that_are_not_objects_are_dropped_from_a_listing() {
        let c = calls();
        let mut result = json!({"tools": [1, "two", null, {"name": "ok"}]});
        c.filter_tools(&mut result);
        assert_eq!(result["tools"], json!([{"name": "ok"}]));
    }

    #[test]
    fn a_retry_continues_the_action_with_the_decided_arguments_once() {
        let c = calls();
        parked(&c);
        let (fwd, action, _) = c.continuation(&retry(json!({"env": "dev"}), "s1")).unwrap();
        assert_eq!(action, "action-1");
        assert_eq!(fwd["params"]["arguments"], json!({"env": "prod"}));
        assert_eq!(fwd["params"]["requestState"], "s1");
        assert!(
            c.continuation(&retry(json!({"env": "dev"}), "s1"))
                .is_none(),
            "used once"
        );
    }

    #[test]
    fn a_retry_that_does_not_match_continues_nothing() {
        let c = calls();
        parked(&c);
        // Another state, other arguments, no retry fields, or an earlier protocol: no.
        assert!(c
            .continuation(&retry(json!({"env": "dev"}), "s2"))
            .is_none());
        assert!(c
            .continuation(&retry(json!({"env": "prod"}), "s1"))
            .is_none());
        assert!(c
            .continuation(&call(json!({"env": "dev"}), json!({})))
            .is_none());
        let mut legacy = retry(json!({"env": "dev"}), "s1");
        legacy["params"]["_meta"] = json!({});
        assert!(c.continuation(&legacy).is_none());
        // ... and the real retry still finds it.
        assert!(c
            .continuation(&retry(json!({"env": "dev"}), "s1"))
            .is_some());
        // A plain result, or a legacy call, parks nothing.
        let original = call(json!({"env": "dev"}), json!({}));
        let fwd = c.forwarded(&original, &original);
        assert!(!c.asks_for_input(fwd, "a", &json!({"result": {"content": []}})));
        let mut old = original.clone();
        old["params"]["_meta"] = json!({});
        assert!(c.forwarded(&old, &old).is_none());
    }

    #[test]
    fn racing_retries_continue_the_action_once() {
        let c = Arc::new(calls());
        parked(&c);
        let wins: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    let c = c.clone();
                    s.spawn(move || {
                        usize::from(
                            c.continuation(&retry(json!({"env": "dev"}), "s1"))
                                .is_some(),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(wins, 1);
    }
}
