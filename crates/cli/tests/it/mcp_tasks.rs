//! MCP tasks (protocol 2025-11-25) through the stdio proxy, driven by the official MCP
//! TypeScript SDK's task client (the Python SDK has none) against server-everything: a task-augmented call is answered with
//! a task at once, its review is visible in `tasks/get`, and `tasks/result` returns the
//! server's real result once approved (or the reason, or the cancellation).

use crate::mcp::{
    action_status, audit_types, deny_open_review, eventually_status, gateway, http_front,
    open_review, SdkClient, APPROVED_TRAIL,
};
use serde_json::{json, Value};

/// The proxy told the client it may create tasks for `tools/call`.
async fn advertises_tasks(c: &mut SdkClient) {
    let connected = c.next("connected").await;
    assert_eq!(
        connected["tasks"]["requests"]["tools"]["call"],
        json!({}),
        "tasks for tools/call are advertised: {connected}"
    );
}

/// One tool of a `list` step's report.
fn tool(list: &Value, name: &str) -> Value {
    list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no tool {name} in {list}"))
}

fn connect_2025_11_25(gw: &crate::support::Gw, steps: Value) -> SdkClient {
    let spec = json!({
        "stdio": crate::mcp::proxy_command(gw, &[], &crate::mcp::server_everything()),
        "steps": steps,
    });
    SdkClient::tasks(spec)
}

#[tokio::test]
async fn mcp_task_is_created_at_once_reviewed_and_returns_the_real_result() {
    let gw = gateway().await;
    let mut c = connect_2025_11_25(
        &gw,
        json!([
            {"op": "list"},
            {"op": "task_call", "tool": "get-sum", "args": {"a": 1, "b": 2}, "ttl": 120000},
            {"op": "pause"},
            {"op": "task_get"},
            {"op": "pause"},
            {"op": "task_wait", "until": ["completed", "failed", "cancelled"]},
            {"op": "task_result"},
            {"op": "task_list"},
        ]),
    );
    advertises_tasks(&mut c).await;
    let list = c.next("list").await;
    assert_eq!(tool(&list, "get-sum")["taskSupport"], "optional", "{list}");
    // A tool the server runs only as its own task keeps saying so.
    assert_eq!(
        tool(&list, "simulate-research-query")["taskSupport"],
        "required"
    );

    let created = c.next("task_call").await;
    let task = created["task"].clone();
    assert_eq!(task["status"], "working", "{created}");
    assert_eq!(task["ttl"], 120000);
    let task_id = task["taskId"].as_str().unwrap().to_string();
    assert!(task_id.starts_with("countersign-"), "{task_id}");

    // The review is open while the task works; tasks/get names it.
    let review = open_review(&gw).await;
    let action = review["id"].as_str().unwrap().to_string();
    assert_eq!(review["params"], json!({"a": 1, "b": 2}));
    c.resume().await;
    let got = c.next("task_get").await;
    assert_eq!(got["task"]["status"], "working", "{got}");
    let message = got["task"]["statusMessage"].as_str().unwrap_or_default();
    assert!(message.contains(&action), "{got}");

    let (s, v) = gw
        .vote(
            "alice",
            &action,
            json!({"verdict": "modify", "params": {"a": 4, "b": 5}}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    c.resume().await;
    let done = c.next("task_wait").await;
    assert_eq!(done["task"]["status"], "completed", "{done}");
    let result = c.next("task_result").await;
    assert_eq!(result["isError"], false, "{result}");
    assert_eq!(result["text"], "The sum of 4 and 5 is 9.");
    assert_eq!(result["related"], task_id.as_str());
    let listed = c.next("task_list").await;
    assert!(
        listed["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["taskId"] == task_id.as_str() && t["status"] == "completed"),
        "{listed}"
    );
    c.finish().await;

    assert_eq!(action_status(&gw, &action).await, "succeeded");
    assert_eq!(audit_types(&gw, &action).await, APPROVED_TRAIL);
}

#[tokio::test]
async fn mcp_task_denied_fails_with_the_reason_and_allowed_completes() {
    let gw = gateway().await;
    let mut c = connect_2025_11_25(
        &gw,
        json!([
            {"op": "task_call", "tool": "get-env"},
            {"op": "task_wait", "until": ["completed", "failed", "cancelled"]},
            {"op": "task_result"},
            {"op": "task_call", "tool": "echo", "args": {"message": "hi"}},
            {"op": "task_wait", "until": ["completed", "failed", "cancelled"]},
            {"op": "task_result"},
        ]),
    );
    let _ = c.next("task_call").await;
    let denied = c.next("task_wait").await;
    assert_eq!(denied["task"]["status"], "failed", "{denied}");
    let r = c.next("task_result").await;
    assert_eq!(r["isError"], true);
    assert!(
        r["text"].as_str().unwrap().contains("secrets"),
        "the policy's reason: {r}"
    );
    let _ = c.next("task_call").await;
    let allowed = c.next("task_wait").await;
    assert_eq!(allowed["task"]["status"], "completed", "{allowed}");
    let r = c.next("task_result").await;
    assert_eq!(r["text"], "Echo: hi", "{r}");
    c.finish().await;
}

#[tokio::test]
async fn mcp_task_cancel_withdraws_the_review_and_ends_the_task() {
    let gw = gateway().await;
    let mut c = connect_2025_11_25(
        &gw,
        json!([
            {"op": "task_call", "tool": "get-sum", "args": {"a": 1, "b": 2}},
            {"op": "pause"},
            {"op": "task_cancel"},
            {"op": "task_get"},
            {"op": "task_result"},
            {"op": "task_cancel"},
        ]),
    );
    let _ = c.next("task_call").await;
    let action = open_review(&gw).await["id"].as_str().unwrap().to_string();
    c.resume().await;
    assert_eq!(c.next("task_cancel").await["status"], "cancelled");
    assert_eq!(c.next("task_get").await["task"]["status"], "cancelled");
    let r = c.next("task_result").await;
    assert_eq!(r["error"]["code"], -32800, "{r}");
    // Cancelling an ended task is invalid params.
    let again = c.next("task_cancel").await;
    assert_eq!(again["error"]["code"], -32602, "{again}");
    c.finish().await;
    eventually_status(&gw, &action, "cancelled").await;
    assert!(audit_types(&gw, &action)
        .await
        .contains(&"cancelled".to_string()));
}

#[tokio::test]
async fn mcp_a_tool_the_server_runs_as_its_own_task_is_reviewed_first_then_relayed() {
    // server-everything's simulate-research-query requires task execution: after approval the
    // call goes to the server with `task` intact, and the server's task is polled through the
    // proxy. Not run (a denial) is a task of the proxy's, already failed.
    let gw = gateway().await;
    let mut c = connect_2025_11_25(
        &gw,
        json!([
            {"op": "list"},
            {"op": "task_call", "tool": "simulate-research-query", "args": {"topic": "tides"}},
            {"op": "task_wait", "until": ["completed", "failed", "cancelled"]},
            {"op": "task_result"},
            {"op": "task_call", "tool": "simulate-research-query", "args": {"topic": "moons"}},
            {"op": "task_wait", "until": ["completed", "failed", "cancelled"]},
            {"op": "task_result"},
        ]),
    );
    let list = c.next("list").await;
    assert_eq!(
        tool(&list, "simulate-research-query")["taskSupport"],
        "required"
    );

    let action = open_review(&gw).await["id"].as_str().unwrap().to_string();
    let (s, v) = gw
        .vote("alice", &action, json!({"verdict": "approve"}))
        .await;
    assert!(s.is_success(), "{v}");
    let created = c.next("task_call").await;
    let server_task = created["task"]["taskId"].as_str().unwrap().to_string();
    assert!(!server_task.starts_with("countersign-"), "{created}");
    assert_eq!(c.next("task_wait").await["task"]["status"], "completed");
    let r = c.next("task_result").await;
    assert!(
        r["text"]
            .as_str()
            .unwrap()
            .contains("Research Report: tides"),
        "{r}"
    );

    deny_open_review(&gw, "enough research").await;
    let created = c.next("task_call").await;
    assert!(created["task"]["taskId"]
        .as_str()
        .unwrap()
        .starts_with("countersign-"));
    assert_eq!(c.next("task_wait").await["task"]["status"], "failed");
    let r = c.next("task_result").await;
    assert!(
        r["text"].as_str().unwrap().contains("enough research"),
        "{r}"
    );
    c.finish().await;
    assert_eq!(action_status(&gw, &action).await, "succeeded");
}

#[tokio::test]
async fn mcp_http_task_is_created_at_once_reviewed_and_returns_the_real_result() {
    let gw = gateway().await;
    let front = http_front(&gw).await;
    let mut c = SdkClient::tasks(json!({
        "url": front.url,
        "headers": {"Authorization": "Bearer tok-bot"},
        "steps": [
            {"op": "list"},
            {"op": "task_call", "tool": "get-sum", "args": {"a": 1, "b": 2}},
            {"op": "pause"},
            {"op": "task_get"},
            {"op": "pause"},
            {"op": "task_wait", "until": ["completed", "failed", "cancelled"]},
            {"op": "task_result"},
            {"op": "task_call", "tool": "get-sum", "args": {"a": 3, "b": 3}},
            {"op": "pause"},
            {"op": "task_cancel"},
            {"op": "task_result"},
            {"op": "task_list"},
        ],
    }));
    advertises_tasks(&mut c).await;
    let list = c.next("list").await;
    assert_eq!(tool(&list, "get-sum")["taskSupport"], "optional", "{list}");
    let created = c.next("task_call").await;
    assert_eq!(created["task"]["status"], "working", "{created}");
    let task_id = created["task"]["taskId"].as_str().unwrap().to_string();
    let action = open_review(&gw).await["id"].as_str().unwrap().to_string();
    c.resume().await;
    let got = c.next("task_get").await;
    assert!(
        got["task"]["statusMessage"]
            .as_str()
            .unwrap_or_default()
            .contains(&action),
        "{got}"
    );
    let (s, v) = gw
        .vote("alice", &action, json!({"verdict": "approve"}))
        .await;
    assert!(s.is_success(), "{v}");
    c.resume().await;
    assert_eq!(c.next("task_wait").await["task"]["status"], "completed");
    let r = c.next("task_result").await;
    assert_eq!(r["text"], "The sum of 1 and 2 is 3.", "{r}");
    assert_eq!(r["related"], task_id.as_str());
    assert_eq!(action_status(&gw, &action).await, "succeeded");

    // A second task, cancelled while under review: its review is withdrawn.
    let _ = c.next("task_call").await;
    let second = open_review(&gw).await["id"].as_str().unwrap().to_string();
    c.resume().await;
    assert_eq!(c.next("task_cancel").await["status"], "cancelled");
    assert_eq!(c.next("task_result").await["error"]["code"], -32800);
    let listed = c.next("task_list").await;
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 2, "{listed}");
    c.finish().await;
    eventually_status(&gw, &second, "cancelled").await;
}

#[tokio::test]
async fn mcp_http_sessions_and_tasks_belong_to_the_agent_that_made_them() {
    let gw = gateway().await;
    let front = http_front(&gw).await;
    let http = reqwest::Client::new();
    let post = |token: &'static str, session: Option<String>, body: Value| {
        let mut req = http
            .post(&front.url)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .json(&body);
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        req.send()
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"}}});
    let r = post("tok-bot", None, init).await.unwrap();
    assert!(r.status().is_success());
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let _ = r.text().await;
    // Lower-case scheme names are accepted (RFC 9110).
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    let r = http
        .post(&front.url)
        .header("authorization", "bearer tok-bot")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .json(&ping)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // Another agent naming bot's session: 404, as for a session that does not exist.
    let r = post("tok-alice", Some(session.clone()), ping.clone())
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // A task of bot's is unknown to alice.
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "get-sum", "arguments": {"a": 1, "b": 1}, "task": {"ttl": 60000}}});
    let created: Value = post("tok-bot", Some(session.clone()), call)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task = created["result"]["task"]["taskId"]
        .as_str()
        .unwrap()
        .to_string();
    let get = json!({"jsonrpc": "2.0", "id": 4, "method": "tasks/get", "params": {"taskId": task}});
    let mine: Value = post("tok-bot", Some(session.clone()), get.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["result"]["status"], "working", "{mine}");
    let theirs: Value = post("tok-alice", None, get)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["error"]["code"], -32602, "{theirs}");
    let cancel =
        json!({"jsonrpc": "2.0", "id": 5, "method": "tasks/cancel", "params": {"taskId": task}});
    let r: Value = post("tok-alice", None, cancel.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let r: Value = post("tok-bot", Some(session), cancel)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["result"]["status"], "cancelled", "{r}");
}
