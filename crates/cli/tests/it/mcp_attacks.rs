//! Attacks on the MCP stdio front, with a deliberately lenient server
//! (tests/interop/lenient_server.py) that would run whatever reached it: every hostile shape of
//! a `tools/call` is refused by the proxy with a JSON-RPC error and never reaches the server;
//! a server's answer to a call the proxy still holds never reaches the agent; and a proxy
//! killed with SIGKILL takes its server and the server's own children down with it.

use crate::mcp::{gateway, open_review, proxy_command, root, Raw};
use crate::support::{client, write_config, Gw};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// The lenient server, recording the tools it runs in `ran`, with `extra` arguments.
fn lenient(ran: &Path, extra: &[&str]) -> Vec<String> {
    let mut cmd = vec![
        "python3".to_string(),
        root()
            .join("tests/interop/lenient_server.py")
            .display()
            .to_string(),
        ran.display().to_string(),
    ];
    cmd.extend(extra.iter().map(|s| s.to_string()));
    cmd
}

fn tools_run(ran: &Path) -> Vec<String> {
    std::fs::read_to_string(ran)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The hostile shapes of a `get-env` call (forbidden by policy), each with the JSON-RPC error
/// code and id the agent must get instead.
fn hostile_calls() -> Vec<(String, i64, Value)> {
    vec![
        // A notification: no id, so nothing to hold it by.
        (
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"get-env","arguments":{}}}"#.into(),
            -32600,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"get-env","arguments":{}}}"#.into(),
            -32600,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":{"x":1},"method":"tools/call","params":{"name":"get-env","arguments":{}}}"#.into(),
            -32600,
            Value::Null,
        ),
        // The proxy's parser used to read the last `method`, the server reads the first.
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","method":"ping","params":{"name":"get-env","arguments":{}}}"#.into(),
            -32700,
            Value::Null,
        ),
        // Go's encoding/json reads keys case-insensitively: `METHOD` is its `method`.
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"ping","METHOD":"tools/call","params":{"name":"get-env","arguments":{}}}"#.into(),
            -32700,
            Value::Null,
        ),
        // The same trick one level down: the proxy decided on `echo`.
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get-env","name":"echo","arguments":{}}}"#.into(),
            -32700,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"TOOLS/CALL","params":{"name":"get-env","arguments":{}}}"#.into(),
            -32601,
            json!(5),
        ),
        (
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call ","params":{"name":"get-env","arguments":{}}}"#.into(),
            -32601,
            json!(6),
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"Tools/Call","params":{"name":"get-env","arguments":{}}}"#.into(),
            -32601,
            json!(7),
        ),
    ]
}

#[tokio::test]
async fn mcp_stdio_hostile_tool_call_shapes_never_reach_the_server() {
    let gw = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let mut raw = Raw::start(&proxy_command(&gw, &[], &lenient(&ran, &[])));
    raw.initialize("2025-06-18").await;
    for (line, code, id) in hostile_calls() {
        raw.send(&line).await;
        let v = raw.recv().await;
        assert_eq!(v["error"]["code"], code, "{line}: {v}");
        assert_eq!(v["id"], id, "{line}: {v}");
    }
    // A method outside the specification is refused too, whatever it is.
    raw.send(r#"{"jsonrpc":"2.0","id":8,"method":"vendor/run","params":{}}"#)
        .await;
    assert_eq!(raw.recv().await["error"]["code"], -32601);
    // The session carries on: an allowed call runs, and it is the only tool that ran.
    raw.send(
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#,
    )
    .await;
    let v = raw.recv().await;
    assert_eq!(v["id"], 9);
    assert_eq!(v["result"]["content"][0]["text"], "ran echo", "{v}");
    assert_eq!(raw.close(Duration::from_secs(15)).await, Some(0));
    assert_eq!(tools_run(&ran), ["echo"], "the forbidden tool never ran");
}

#[tokio::test]
async fn mcp_stdio_allow_method_relays_exactly_the_configured_extra() {
    let gw = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let cmd = proxy_command(&gw, &["--allow-method", "vendor/run"], &lenient(&ran, &[]));
    let mut raw = Raw::start(&cmd);
    raw.initialize("2025-06-18").await;
    raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"vendor/run","params":{}}"#)
        .await;
    let v = raw.recv().await;
    assert_eq!(
        (v["id"].clone(), v["result"].clone()),
        (json!(1), json!({}))
    );
    raw.send(r#"{"jsonrpc":"2.0","id":2,"method":"vendor/run ","params":{}}"#)
        .await;
    assert_eq!(raw.recv().await["error"]["code"], -32601);
    assert_eq!(raw.close(Duration::from_secs(15)).await, Some(0));
}

#[tokio::test]
async fn mcp_stdio_a_servers_answer_to_a_held_call_never_reaches_the_agent() {
    let gw = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    // The server forges a result for request 9 with each ping.
    let mut raw = Raw::start(&proxy_command(&gw, &[], &lenient(&ran, &["--spoof", "9"])));
    raw.initialize("2025-06-18").await;
    raw.send(r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"get-sum","arguments":{"a":1,"b":2}}}"#).await;
    let review = open_review(&gw).await["id"].as_str().unwrap().to_string();
    for ping in 1..=2 {
        raw.send(&json!({"jsonrpc": "2.0", "id": ping, "method": "ping"}).to_string())
            .await;
        let v = raw.recv().await;
        assert_eq!(v["id"], ping, "only the ping's answer arrives: {v}");
    }
    // A second request with the held call's id is refused (its answer would pass for the
    // held call's).
    raw.send(r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#)
        .await;
    let v = raw.recv().await;
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!(9), json!(-32600))
    );
    raw.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9}}"#)
        .await;
    crate::mcp::eventually_status(&gw, &review, "cancelled").await;
    assert_eq!(raw.close(Duration::from_secs(15)).await, Some(0));
    assert!(tools_run(&ran).is_empty(), "the held call never ran");
}

#[tokio::test]
async fn mcp_stdio_refusals_are_audited_by_an_embedded_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    std::fs::write(
        dir.path().join("policies/mcp.cedar"),
        crate::mcp::MCP_POLICIES,
    )
    .unwrap();
    let api = format!("127.0.0.1:{}", crate::mcp::free_port());
    let gw = Gw::from_parts(
        format!("http://{api}"),
        client(),
        dir,
        tokio::spawn(async {}),
    );
    let ran = gw.dir.path().join("ran");
    let config = config.display().to_string();
    let cmd = proxy_command(
        &gw,
        &["--config", &config, "--api-listen", &api],
        &lenient(&ran, &[]),
    );
    let mut raw = Raw::start(&cmd);
    raw.initialize("2025-06-18").await;
    raw.send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","method":"ping","params":{"name":"get-env"}}"#).await;
    assert_eq!(raw.recv().await["error"]["code"], -32700);
    raw.send(r#"{"jsonrpc":"2.0","id":4,"method":"TOOLS/CALL","params":{"name":"get-env"}}"#)
        .await;
    assert_eq!(raw.recv().await["error"]["code"], -32601);
    let (_, log) = gw.get("alice", "/v1/audit/entries?start=0&limit=100").await;
    let refused: Vec<(String, String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"] == "refused")
        .map(|e| {
            let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
            (
                s(&e["actor"]),
                s(&e["event"]["attempted"]),
                s(&e["event"]["code"]),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            (
                "bot".into(),
                "mcp_message".into(),
                "mcp_duplicate_key".into()
            ),
            (
                "bot".into(),
                "mcp_message".into(),
                "mcp_method_not_found".into()
            ),
        ],
        "{log}"
    );
    assert_eq!(raw.close(Duration::from_secs(15)).await, Some(0));
    assert!(tools_run(&ran).is_empty());
}

/// Whether `pid` is gone (or a zombie nobody has reaped yet: it runs nothing and holds no
/// descriptors).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

async fn wait_gone(pids: &[String], limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if pids.iter().all(|p| gone(p)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alive: Vec<_> = pids.iter().filter(|p| !gone(p)).collect();
    // Clean up before failing, so the test run is not held up by them.
    for p in &alive {
        let _ = std::process::Command::new("kill").args(["-9", p]).status();
    }
    panic!("still running {limit:?} later: {alive:?}");
}

/// The lingering server's and its grandchild's pids, once it has written them.
async fn lingering_pids(file: &Path) -> Vec<String> {
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(file) {
            if text.ends_with('\n') {
                return text.split_whitespace().map(str::to_string).collect();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the lingering server did not start");
}

#[tokio::test]
async fn mcp_stdio_a_killed_proxy_takes_its_server_and_the_servers_children_down() {
    let gw = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let (ran, pids) = (dir.path().join("ran"), dir.path().join("pids"));
    let server = lenient(&ran, &[pids.to_str().unwrap(), "--linger"]);
    let mut raw = Raw::start(&proxy_command(&gw, &[], &server));
    raw.initialize("2025-06-18").await;
    let pids = lingering_pids(&pids).await;
    assert_eq!(pids.len(), 2);
    raw.child.start_kill().unwrap(); // SIGKILL: the proxy runs no code of its own.
    let _ = raw.child.wait().await;
    wait_gone(&pids, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn mcp_stdio_a_server_that_ignores_its_closed_input_goes_with_its_children() {
    let gw = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let (ran, pids) = (dir.path().join("ran"), dir.path().join("pids"));
    let server = lenient(&ran, &[pids.to_str().unwrap(), "--linger"]);
    let mut raw = Raw::start(&proxy_command(&gw, &[], &server));
    raw.initialize("2025-06-18").await;
    let pids = lingering_pids(&pids).await;
    // The client leaves: the server is given 5 s to exit, then killed with its children.
    assert_eq!(raw.close(Duration::from_secs(20)).await, Some(0));
    wait_gone(&pids, Duration::from_secs(3)).await;
}

/// `mcp stdio --config FILE` (an embedded gateway, its API on a free port) in front of the
/// lenient server recording runs in `gw.dir/ran`.
fn embedded_proxy(extra_config: &str) -> (Gw, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), extra_config);
    std::fs::write(
        dir.path().join("policies/mcp.cedar"),
        crate::mcp::MCP_POLICIES,
    )
    .unwrap();
    let api = format!("127.0.0.1:{}", crate::mcp::free_port());
    let gw = Gw::from_parts(
        format!("http://{api}"),
        client(),
        dir,
        tokio::spawn(async {}),
    );
    let ran = gw.dir.path().join("ran");
    let config = config.display().to_string();
    let cmd = proxy_command(
        &gw,
        &["--config", &config, "--api-listen", &api],
        &lenient(&ran, &[]),
    );
    (gw, cmd)
}

#[tokio::test]
async fn mcp_stdio_embedded_takes_no_larger_action_than_the_api() {
    let (gw, cmd) = embedded_proxy("");
    let mut raw = Raw::start(&cmd);
    raw.initialize("2025-06-18").await;
    // An allowed tool, with arguments over the API's 1 MiB body limit (the proxy's own message
    // limit is 16 MiB): a remote gateway would refuse it, so the embedded one does too.
    let big = "x".repeat(countersign_http::MAX_BODY + 1);
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": big}}});
    raw.send(&call.to_string()).await;
    let answer = raw.recv().await;
    assert_eq!(
        answer["result"]["isError"],
        true,
        "{:.300}",
        answer.to_string()
    );
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("payload_too_large"), "{text}");
    // A small call still runs.
    raw.send(r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#).await;
    assert_eq!(raw.recv().await["result"]["content"][0]["text"], "ran echo");
    assert_eq!(raw.close(Duration::from_secs(15)).await, Some(0));
    assert_eq!(tools_run(&gw.dir.path().join("ran")), ["echo"]);
    assert_eq!(countersign_mcp::MAX_SUBMISSION, countersign_http::MAX_BODY);
}

#[tokio::test]
async fn mcp_stdio_embedded_takes_managed_keys_and_stops_at_their_revocation() {
    let (gw, mut cmd) = embedded_proxy("admin_group = \"sec\"");
    let config = gw.dir.path().join("countersign.toml");
    let out = std::process::Command::new(crate::cli::BIN)
        .args(["keys", "create", "--config", config.to_str().unwrap()])
        .args([
            "--identity",
            "keybot",
            "--kind",
            "agent",
            "--groups",
            "automation",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let at = cmd.iter().position(|a| a == "--token").unwrap();
    cmd[at + 1] = secret;
    let mut raw = Raw::start(&cmd);
    raw.initialize("2025-06-18").await;
    let echo = |id: u32| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "hi"}}})
        .to_string()
    };
    raw.send(&echo(5)).await;
    assert_eq!(raw.recv().await["result"]["content"][0]["text"], "ran echo");

    let (_, keys) = gw.get("erin", "/v1/admin/api-keys").await;
    let id = keys["keys"][0]["id"].as_str().unwrap().to_string();
    let revoke = format!("/v1/admin/api-keys/{id}/revoke");
    let (s, r) = gw.post("erin", &revoke, json!({})).await;
    assert!(s.is_success(), "{r}");
    raw.send(&echo(6)).await;
    let answer = raw.recv().await;
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert!(answer.to_string().contains("unauthenticated"), "{answer}");
    assert_eq!(raw.close(Duration::from_secs(15)).await, Some(0));
    assert_eq!(tools_run(&gw.dir.path().join("ran")), ["echo"]);
}

/// A server that declares tasks (2025-11-25) and answers `tasks/list` with a list where an
/// object belongs, and lists a tool that is not an object.
const HOSTILE_TASKS_SERVER: &str = r#"
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    method, rid = msg.get("method"), msg.get("id")
    if rid is None:
        continue
    if method == "initialize":
        result = {"protocolVersion": "2025-11-25", "serverInfo": {"name": "hostile", "version": "0"},
                  "capabilities": {"tools": {}, "tasks": {"list": {}}}}
    elif method == "tasks/list":
        result = [1, 2]
    elif method == "tools/list":
        result = {"tools": [7, {"name": "echo", "inputSchema": {"type": "object"}}]}
    else:
        result = {}
    print(json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}), flush=True)
"#;

#[tokio::test]
async fn mcp_stdio_a_server_answering_tasks_list_or_tools_list_badly_does_not_end_the_session() {
    let gw = gateway().await;
    let server = vec![
        "python3".to_string(),
        "-c".into(),
        HOSTILE_TASKS_SERVER.into(),
    ];
    let mut raw = Raw::start(&proxy_command(&gw, &[], &server));
    let init = raw.initialize("2025-11-25").await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    raw.send(r#"{"jsonrpc":"2.0","id":2,"method":"tasks/list"}"#)
        .await;
    let answer = raw.recv().await;
    assert_eq!(answer["id"], 2);
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    raw.send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#)
        .await;
    let tools = raw.recv().await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo"], "{tools}");
    // The session goes on.
    raw.send(r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#)
        .await;
    assert_eq!(raw.recv().await["result"], json!({}));
    assert_eq!(raw.close(Duration::from_secs(15)).await, Some(0));
}
