//! The MCP gateway against real MCP software: the official MCP Python SDK as the client
//! (tests/interop/mcp_client.py) and `@modelcontextprotocol/server-everything` as the server,
//! with `countersign mcp stdio` between them and a real gateway deciding. Raw JSON-RPC tests
//! drive the proxy directly for cancellation, robustness and protocol negotiation.
//! Everything these need is provisioned by scripts/test.

use crate::support::{client, write_config, Gw};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub(crate) const MCP_POLICIES: &str = r#"
@id("mcp-echo") permit (principal, action == Action::"mcp.tool_call", resource == Resource::"mcp://everything/echo");
@id("mcp-sum") @effect("review") @approvers("group:sre") @reason("sums need an SRE")
permit (principal, action == Action::"mcp.tool_call", resource == Resource::"mcp://everything/get-sum");
@id("mcp-research") @effect("review") @approvers("group:sre")
permit (principal, action == Action::"mcp.tool_call", resource == Resource::"mcp://everything/simulate-research-query");
@id("mcp-confirm-echo") permit (principal, action == Action::"mcp.tool_call", resource == Resource::"mcp://everything/confirm-echo");
@id("mcp-env") @reason("environment variables may hold secrets")
forbid (principal, action == Action::"mcp.tool_call", resource == Resource::"mcp://everything/get-env");
"#;

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn python() -> PathBuf {
    let p = root().join("target/pyenv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test, which provisions it",
        p.display()
    );
    p
}

pub(crate) fn server_everything() -> Vec<String> {
    let p = root().join("tests/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test, which provisions it",
        p.display()
    );
    vec!["node".into(), p.display().to_string(), "stdio".into()]
}

/// A gateway with the MCP policies on a loopback port.
pub(crate) async fn gateway() -> Gw {
    let dir = tempfile::tempdir().unwrap();
    let config_path = write_config(dir.path(), "");
    std::fs::write(dir.path().join("policies/mcp.cedar"), MCP_POLICIES).unwrap();
    let (url, server) = crate::support::serve(&config_path).await;
    Gw::from_parts(url, client(), dir, server)
}

/// `countersign mcp stdio` as agent `bot` in front of `server`, with `extra` flags.
pub(crate) fn proxy_command(gw: &Gw, extra: &[&str], server: &[String]) -> Vec<String> {
    let mut cmd = vec![
        env!("CARGO_BIN_EXE_countersign").to_string(),
        "mcp".into(),
        "stdio".into(),
        "--token".into(),
        "tok-bot".into(),
        "--server-name".into(),
        "everything".into(),
        "--progress-every".into(),
        "0.2".into(),
    ];
    if !extra.contains(&"--config") {
        cmd.extend(["--gateway".into(), gw.url.clone()]);
    }
    cmd.extend(extra.iter().map(|s| s.to_string()));
    cmd.push("--".into());
    cmd.extend(server.iter().cloned());
    cmd
}

/// The Python SDK client running `steps` through the proxy; its report lines are read as they come.
pub(crate) struct SdkClient {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl SdkClient {
    pub(crate) fn start(gw: &Gw, extra: &[&str], steps: Value) -> SdkClient {
        let spec = json!({"stdio": proxy_command(gw, extra, &server_everything()), "steps": steps});
        SdkClient::run(spec)
    }

    pub(crate) fn run(spec: Value) -> SdkClient {
        SdkClient::spawn(
            Command::new(python())
                .arg(root().join("tests/interop/mcp_client.py"))
                .arg(spec.to_string()),
        )
    }

    /// The MCP TypeScript SDK v2's client on protocol 2026-07-28, with the Tasks extension's
    /// client (tests/interop/mcp_v2_client.mjs), running `spec`.
    pub(crate) fn v2(spec: Value) -> SdkClient {
        SdkClient::spawn(
            Command::new("node")
                .arg(root().join("tests/interop/mcp_v2_client.mjs"))
                .arg(spec.to_string()),
        )
    }

    /// The MCP TypeScript SDK's task client (tests/interop/mcp_tasks_client.mjs) running `spec`.
    pub(crate) fn tasks(spec: Value) -> SdkClient {
        SdkClient::spawn(
            Command::new("node")
                .arg(root().join("tests/interop/mcp_tasks_client.mjs"))
                .arg(spec.to_string()),
        )
    }

    fn spawn(cmd: &mut Command) -> SdkClient {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        SdkClient { child, lines }
    }

    /// Lets a `pause` step go on.
    pub(crate) async fn resume(&mut self) {
        let _ = self.next("paused").await;
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// The next report line with this `op`.
    pub(crate) async fn next(&mut self, op: &str) -> Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
                .await
                .expect("the MCP client went silent")
                .unwrap()
                .unwrap_or_else(|| panic!("the MCP client ended before reporting `{op}`"));
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["op"] == op {
                return v;
            }
        }
    }

    pub(crate) async fn finish(mut self) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the MCP client did not exit")
            .unwrap();
        assert!(status.success(), "the MCP client failed: {status}");
    }
}

/// Waits for the one open review `alice` can vote on and returns it.
pub(crate) async fn open_review(gw: &Gw) -> Value {
    for _ in 0..300 {
        let (_, v) = gw.get("alice", "/v1/reviews").await;
        if let Some(r) = v["reviews"].as_array().and_then(|a| a.first()) {
            return r.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no review opened");
}

/// The audit trail's event types for an action, in order.
pub(crate) async fn audit_types(gw: &Gw, action_id: &str) -> Vec<String> {
    let (_, v) = gw
        .get("alice", "/v1/audit/entries?start=0&limit=1000")
        .await;
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["action_id"] == action_id)
        .map(|e| e["entry"]["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Every action on an MCP resource, as the agent sees it.
pub(crate) async fn actions_on(gw: &Gw, resource: &str) -> Vec<Value> {
    let (_, v) = gw
        .get("alice", "/v1/audit/entries?start=0&limit=1000")
        .await;
    let mut ids: Vec<String> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["entry"]["action_id"].as_str().map(str::to_string))
        .collect();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids {
        let (_, a) = gw.get("bot", &format!("/v1/actions/{id}")).await;
        if a["resource"] == resource {
            out.push(a);
        }
    }
    out
}

#[tokio::test]
async fn mcp_stdio_allowed_call_returns_the_real_result_and_denied_gives_the_reason() {
    let gw = gateway().await;
    let mut c = SdkClient::start(
        &gw,
        &[],
        json!([
            {"op": "call", "tool": "echo", "args": {"message": "hello through countersign"}},
            {"op": "call", "tool": "get-env", "args": {}},
            {"op": "call", "tool": "get-tiny-image", "args": {}},
        ]),
    );
    let allowed = c.next("call").await;
    assert_eq!(allowed["isError"], false, "{allowed}");
    assert_eq!(allowed["text"], "Echo: hello through countersign");
    let denied = c.next("call").await;
    assert_eq!(denied["isError"], true, "{denied}");
    let text = denied["text"].as_str().unwrap();
    assert!(
        text.contains("environment variables may hold secrets"),
        "{text}"
    );
    assert!(text.contains("not run"), "{text}");
    let unmatched = c.next("call").await;
    assert_eq!(unmatched["isError"], true, "default deny: {unmatched}");
    c.finish().await;

    let echo = actions_on(&gw, "mcp://everything/echo").await;
    assert_eq!(echo.len(), 1);
    assert_eq!(echo[0]["action"], "mcp.tool_call");
    assert_eq!(
        echo[0]["params"],
        json!({"message": "hello through countersign"})
    );
    assert_eq!(echo[0]["requester"], "bot");
    assert_eq!(
        echo[0]["status"], "succeeded",
        "the result is reported: {}",
        echo[0]
    );
    let types = audit_types(&gw, echo[0]["id"].as_str().unwrap()).await;
    assert_eq!(
        types.first().map(String::as_str),
        Some("submitted"),
        "{types:?}"
    );
    assert!(types.iter().any(|t| t == "result_reported"), "{types:?}");
    let env = actions_on(&gw, "mcp://everything/get-env").await;
    assert_eq!(env[0]["status"], "denied");
}

#[tokio::test]
async fn mcp_stdio_held_call_approved_while_the_client_waits_returns_the_real_result() {
    let gw = gateway().await;
    let mut c = SdkClient::start(
        &gw,
        &[],
        json!([{"op": "call", "tool": "get-sum", "args": {"a": 1, "b": 2}, "progress": true}]),
    );
    let review = open_review(&gw).await;
    assert_eq!(review["resource"], "mcp://everything/get-sum");
    assert_eq!(review["params"], json!({"a": 1, "b": 2}));
    let id = review["id"].as_str().unwrap().to_string();
    // The agent may not approve its own call.
    let (s, _) = gw.vote("bot", &id, json!({"verdict": "approve"})).await;
    assert_eq!(s.as_u16(), 403);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (s, v) = gw.vote("alice", &id, json!({"verdict": "approve"})).await;
    assert!(s.is_success(), "{v}");
    let done = c.next("call").await;
    assert_eq!(done["isError"], false, "{done}");
    assert_eq!(done["text"], "The sum of 1 and 2 is 3.");
    let progress = done["progress"].as_array().unwrap();
    assert!(
        !progress.is_empty(),
        "progress notifications while held: {done}"
    );
    assert!(progress[0].as_str().unwrap().contains(&id));
    c.finish().await;

    let types = audit_types(&gw, &id).await;
    assert_eq!(
        types,
        [
            "submitted",
            "review_opened",
            "refused", // the agent's attempt to approve its own call
            "voted",
            "approved",
            "grant_issued",
            "grant_redeemed",
            "result_reported"
        ],
        "each step is in the audit trail"
    );
}

#[tokio::test]
async fn mcp_stdio_modified_call_reaches_the_server_with_the_modified_arguments() {
    let gw = gateway().await;
    let mut c = SdkClient::start(
        &gw,
        &[],
        json!([{"op": "call", "tool": "get-sum", "args": {"a": 1, "b": 2}}]),
    );
    let id = vote_open_review(
        &gw,
        json!({"verdict": "modify", "params": {"a": 10, "b": 20}, "comment": "bigger"}),
    )
    .await;
    let done = c.next("call").await;
    assert_eq!(done["text"], "The sum of 10 and 20 is 30.", "{done}");
    c.finish().await;
    let (_, a) = gw.get("bot", &format!("/v1/actions/{id}")).await;
    assert_eq!(a["status"], "succeeded");
    assert_eq!(a["params"], json!({"a": 10, "b": 20}));
}

#[tokio::test]
async fn mcp_stdio_rejected_call_is_an_error_result_with_the_reviewers_comment() {
    let gw = gateway().await;
    let mut c = SdkClient::start(
        &gw,
        &[],
        json!([{"op": "call", "tool": "get-sum", "args": {"a": 1, "b": 2}}]),
    );
    deny_open_review(&gw, "not during the freeze").await;
    let done = c.next("call").await;
    assert_eq!(done["isError"], true);
    let text = done["text"].as_str().unwrap();
    assert!(
        text.contains("rejected") && text.contains("not during the freeze"),
        "{text}"
    );
    c.finish().await;
}

#[tokio::test]
async fn mcp_stdio_pending_mode_answers_at_once_and_a_repeat_call_runs_once_approved() {
    let gw = gateway().await;
    let mut c = SdkClient::start(
        &gw,
        &["--pending-after", "0"],
        json!([
            {"op": "call", "tool": "get-sum", "args": {"a": 2, "b": 3}},
            {"op": "pause"},
            {"op": "list"},
            {"op": "call", "tool": "get-sum", "args": {"a": 2, "b": 3}},
            {"op": "call", "tool": "get-sum", "args": {"a": 2, "b": 3}},
        ]),
    );
    let first = c.next("call").await;
    assert_eq!(first["isError"], true);
    let text = first["text"].as_str().unwrap();
    let review = open_review(&gw).await;
    let id = review["id"].as_str().unwrap();
    assert!(text.contains(id) && text.contains("NOT run"), "{text}");
    let (s, _) = gw.vote("alice", id, json!({"verdict": "approve"})).await;
    assert!(s.is_success());
    c.resume().await;
    let _ = c.next("list").await;
    let second = c.next("call").await;
    assert_eq!(second["isError"], false, "{second}");
    assert_eq!(second["text"], "The sum of 2 and 3 is 5.");
    // The approval was used: the same call again is a new review.
    let third = c.next("call").await;
    assert_eq!(third["isError"], true, "{third}");
    assert!(!third["text"].as_str().unwrap().contains(id));
    c.finish().await;
}

/// The proxy driven with raw JSON-RPC lines.
pub(crate) struct Raw {
    pub(crate) child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Raw {
    pub(crate) fn start(cmd: &[String]) -> Raw {
        let mut child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Raw {
            child,
            stdin,
            lines,
        }
    }

    pub(crate) async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// The next message that is not a notification.
    pub(crate) async fn recv(&mut self) -> Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
                .await
                .expect("the proxy went silent")
                .unwrap()
                .expect("the proxy closed its output");
            let v: Value = serde_json::from_str(&line).unwrap();
            if v.get("id").is_some() {
                return v;
            }
        }
    }

    pub(crate) async fn initialize(&mut self, version: &str) -> Value {
        self.send(
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}})
            .to_string(),
        )
        .await;
        let v = self.recv().await;
        self.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await;
        v
    }

    /// Closes stdin and returns the exit code, asserting the proxy ends within `limit`.
    pub(crate) async fn close(mut self, limit: Duration) -> Option<i32> {
        self.stdin = None;
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("the proxy did not exit after its client went away")
            .unwrap();
        status.code()
    }
}

pub(crate) async fn action_status(gw: &Gw, id: &str) -> String {
    let (_, a) = gw.get("bot", &format!("/v1/actions/{id}")).await;
    a["status"].as_str().unwrap_or("?").to_string()
}

/// Waits (up to 5 s) for an action to reach `want`, then asserts it did.
pub(crate) async fn eventually_status(gw: &Gw, id: &str, want: &str) {
    for _ in 0..100 {
        if action_status(gw, id).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(action_status(gw, id).await, want, "action {id}");
}

/// Waits for the open review, denies it as alice with `comment`, and returns its id.
pub(crate) async fn deny_open_review(gw: &Gw, comment: &str) -> String {
    vote_open_review(gw, json!({"verdict": "deny", "comment": comment})).await
}

/// Waits for the open review, votes `vote` on it as alice, and returns its id.
pub(crate) async fn vote_open_review(gw: &Gw, vote: Value) -> String {
    let id = open_review(gw).await["id"].as_str().unwrap().to_string();
    let (s, v) = gw.vote("alice", &id, vote).await;
    assert!(s.is_success(), "{v}");
    id
}

/// The audit trail of a call approved by one vote and run.
pub(crate) const APPROVED_TRAIL: [&str; 7] = [
    "submitted",
    "review_opened",
    "voted",
    "approved",
    "grant_issued",
    "grant_redeemed",
    "result_reported",
];

#[tokio::test]
async fn mcp_cancelling_a_held_call_or_disconnecting_cancels_its_review() {
    let gw = gateway().await;
    let mut raw = Raw::start(&proxy_command(&gw, &[], &server_everything()));
    raw.initialize("2025-06-18").await;
    raw.send(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get-sum","arguments":{"a":1,"b":1}}}"#).await;
    let first = open_review(&gw).await["id"].as_str().unwrap().to_string();
    raw.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"user pressed stop"}}"#).await;
    eventually_status(&gw, &first, "cancelled").await;

    raw.send(r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"get-sum","arguments":{"a":4,"b":4}}}"#).await;
    let second = open_review(&gw).await["id"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    assert_eq!(raw.close(Duration::from_secs(15)).await, Some(0));
    assert_eq!(action_status(&gw, &second).await, "cancelled");
    let types = audit_types(&gw, &second).await;
    assert_eq!(types, ["submitted", "review_opened", "cancelled"]);
}

#[tokio::test]
async fn mcp_malformed_batched_and_oversized_messages_get_json_rpc_errors() {
    let gw = gateway().await;
    let mut raw = Raw::start(&proxy_command(
        &gw,
        &["--max-message", "2000"],
        &server_everything(),
    ));
    raw.initialize("2025-11-25").await;
    raw.send("{not json").await;
    assert_eq!(raw.recv().await["error"]["code"], -32700);
    raw.send(r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-env"}}]"#)
        .await;
    assert_eq!(raw.recv().await["error"]["code"], -32600);
    raw.send(r#"{"id":2,"method":"ping"}"#).await;
    let v = raw.recv().await;
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!(2), json!(-32600))
    );
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{}"}}}}}}"#,
        "x".repeat(5000)
    );
    raw.send(&big).await;
    assert_eq!(raw.recv().await["error"]["code"], -32600);
    // The session carries on.
    raw.send(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"message":"still here"}}}"#).await;
    let v = raw.recv().await;
    assert_eq!(v["id"], 4);
    assert_eq!(v["result"]["content"][0]["text"], "Echo: still here");
    assert_eq!(raw.close(Duration::from_secs(15)).await, Some(0));
}

#[tokio::test]
async fn mcp_a_server_that_crashes_or_hangs_gives_errors_and_no_hung_process() {
    let gw = gateway().await;
    // Crashes on its first message.
    let crash = [
        "sh".into(),
        "-c".into(),
        "head -n 1 >/dev/null; exit 3".into(),
    ];
    let mut raw = Raw::start(&proxy_command(&gw, &[], &crash));
    raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .await;
    let v = raw.recv().await;
    assert_eq!(v["id"], 1);
    assert_eq!(v["error"]["code"], -32603, "{v}");
    let code = tokio::time::timeout(Duration::from_secs(15), raw.child.wait())
        .await
        .expect("the proxy must exit when its server does")
        .unwrap();
    assert_eq!(code.code(), Some(1));

    // Never answers, never reads.
    let hang = ["sleep".into(), "60".into()];
    let mut raw = Raw::start(&proxy_command(&gw, &["--server-timeout", "0.5"], &hang));
    raw.send(r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#)
        .await;
    let v = raw.recv().await;
    assert_eq!(v["id"], "p");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{v}"
    );
    assert_eq!(raw.close(Duration::from_secs(20)).await, Some(0));
}

#[tokio::test]
async fn mcp_protocol_versions_are_negotiated_through_the_proxy_unchanged() {
    let gw = gateway().await;
    for version in ["2025-06-18", "2025-11-25", "2026-07-28"] {
        let mut direct = Raw::start(&server_everything());
        let expected = direct.initialize(version).await;
        let mut proxied = Raw::start(&proxy_command(&gw, &[], &server_everything()));
        let got = proxied.initialize(version).await;
        assert_eq!(got, expected, "initialize {version}");
        assert!(got["result"]["protocolVersion"].is_string(), "{got}");
        proxied
            .send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
            .await;
        let tools = proxied.recv().await;
        assert!(
            tools["result"]["tools"].as_array().unwrap().len() > 3,
            "{tools}"
        );
        direct.close(Duration::from_secs(15)).await;
        proxied.close(Duration::from_secs(15)).await;
    }
}

#[tokio::test]
async fn mcp_embedded_gateway_hides_denied_tools_and_marks_reviewed_ones() {
    // No separate server: the proxy runs the gateway and serves its API for reviewers.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    std::fs::write(dir.path().join("policies/mcp.cedar"), MCP_POLICIES).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api = format!("127.0.0.1:{port}");
    let gw = Gw::from_parts(
        format!("http://{api}"),
        client(),
        dir,
        tokio::spawn(async {}),
    );
    let config = config.display().to_string();
    let mut c = SdkClient::start(
        &gw,
        &["--config", &config, "--api-listen", &api],
        json!([
            {"op": "list"},
            {"op": "call", "tool": "echo", "args": {"message": "embedded"}},
            {"op": "call", "tool": "get-sum", "args": {"a": 5, "b": 6}},
            // The gateway lives in the proxy: keep it up until the result report is read.
            {"op": "pause"},
        ]),
    );
    let list = c.next("list").await;
    let tools = list["tools"].as_array().unwrap();
    let find = |n: &str| tools.iter().find(|t| t["name"] == n).cloned();
    assert!(find("get-env").is_none(), "forbidden tool hidden: {list}");
    assert!(find("get-tiny-image").is_none(), "default-deny tool hidden");
    assert!(find("echo").is_some());
    let sum = find("get-sum").expect("reviewed tool listed");
    assert!(
        sum["description"]
            .as_str()
            .unwrap()
            .contains("[countersign]"),
        "{sum}"
    );
    assert_eq!(c.next("call").await["text"], "Echo: embedded");
    let id = open_review(&gw).await["id"].as_str().unwrap().to_string();
    let (s, _) = gw.vote("alice", &id, json!({"verdict": "approve"})).await;
    assert!(s.is_success());
    assert_eq!(c.next("call").await["text"], "The sum of 5 and 6 is 11.");
    eventually_status(&gw, &id, "succeeded").await;
    c.resume().await;
    c.finish().await;
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) async fn wait_listening(port: u16) {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on port {port}");
}

/// server-everything over Streamable HTTP with `countersign mcp http` in front of it.
pub(crate) struct HttpFront {
    pub(crate) url: String,
    pub(crate) server: Child,
    pub(crate) proxy: Child,
}

/// server-everything in Streamable HTTP mode on a free loopback port; returns it and the port.
pub(crate) async fn http_server_everything() -> (Child, u16) {
    let mut cmd = server_everything();
    cmd[2] = "streamableHttp".into();
    let up = free_port();
    let server = Command::new(&cmd[0])
        .args(&cmd[1..])
        .env("PORT", up.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_listening(up).await;
    (server, up)
}

/// `countersign mcp http` (gateway `gw`, server name `everything`) in front of `upstream`, with
/// `extra` flags; returns it and its MCP endpoint URL.
pub(crate) async fn http_proxy(gw: &Gw, upstream: &str, extra: &[&str]) -> (Child, String) {
    let port = free_port();
    let proxy = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["mcp", "http", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", upstream])
        .args(["--server-name", "everything", "--gateway", &gw.url])
        .args(["--progress-every", "0.2"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_listening(port).await;
    (proxy, format!("http://127.0.0.1:{port}/mcp"))
}

pub(crate) async fn http_front(gw: &Gw) -> HttpFront {
    http_front_with(gw, &[]).await
}

/// [`http_front`] with `extra` flags for the proxy.
pub(crate) async fn http_front_with(gw: &Gw, extra: &[&str]) -> HttpFront {
    let (server, up) = http_server_everything().await;
    let (proxy, url) = http_proxy(gw, &format!("http://127.0.0.1:{up}/mcp"), extra).await;
    HttpFront { url, server, proxy }
}

#[tokio::test]
async fn mcp_streamable_http_allows_denies_holds_and_modifies_per_agent_token() {
    let gw = gateway().await;
    let front = http_front(&gw).await;
    let (s, _) = gw
        .http
        .post(&front.url)
        .body("{}")
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(s.as_u16(), 401, "no token, no entry");
    let (s, _) = gw
        .http
        .post(&front.url)
        .bearer_auth("tok-nobody")
        .body("{}")
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(s.as_u16(), 401, "an unknown token is refused");

    let mut c = SdkClient::run(json!({
        "url": front.url,
        "headers": {"Authorization": "Bearer tok-bot"},
        "steps": [
            {"op": "list"},
            {"op": "call", "tool": "echo", "args": {"message": "over http"}},
            {"op": "call", "tool": "get-env", "args": {}},
            {"op": "call", "tool": "get-sum", "args": {"a": 1, "b": 2}, "progress": true},
            {"op": "call", "tool": "get-sum", "args": {"a": 3, "b": 4}},
        ],
    }));
    let list = c.next("list").await;
    assert!(list["tools"].as_array().unwrap().len() > 3, "{list}");
    let echo = c.next("call").await;
    assert_eq!(echo["text"], "Echo: over http", "{echo}");
    let env = c.next("call").await;
    assert_eq!(env["isError"], true);
    assert!(env["text"].as_str().unwrap().contains("may hold secrets"));

    let id = open_review(&gw).await["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, _) = gw.vote("alice", &id, json!({"verdict": "approve"})).await;
    assert!(s.is_success());
    let held = c.next("call").await;
    assert_eq!(held["text"], "The sum of 1 and 2 is 3.", "{held}");
    assert!(!held["progress"].as_array().unwrap().is_empty(), "{held}");

    let id2 = open_review(&gw).await["id"].as_str().unwrap().to_string();
    let (s, _) = gw
        .vote(
            "alice",
            &id2,
            json!({"verdict": "modify", "params": {"a": 30, "b": 40}}),
        )
        .await;
    assert!(s.is_success());
    let modified = c.next("call").await;
    assert_eq!(
        modified["text"], "The sum of 30 and 40 is 70.",
        "{modified}"
    );
    c.finish().await;

    for action in [&id, &id2] {
        let (_, a) = gw.get("bot", &format!("/v1/actions/{action}")).await;
        assert_eq!(a["status"], "succeeded", "{a}");
        assert_eq!(a["requester"], "bot");
        let types = audit_types(&gw, action).await;
        assert!(
            types.contains(&"grant_redeemed".to_string())
                && types.contains(&"result_reported".to_string()),
            "{types:?}"
        );
    }
}
