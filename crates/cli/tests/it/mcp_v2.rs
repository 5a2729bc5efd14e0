//! Protocol 2026-07-28 through the proxy (stdio and Streamable HTTP: each scenario runs on
//! both), with the official MCP TypeScript SDK v2 on both
//! sides (`@modelcontextprotocol/client` as the agent, a server built on
//! `@modelcontextprotocol/server`: server-everything speaks only 2025-era protocols) and the
//! official Tasks extension client (`@modelcontextprotocol/ext-tasks`). The SDK validates every
//! result against 2026-07-28's schema, so the proxy's own answers (denials, reviewers'
//! verdicts) are checked by it too.

use crate::mcp::{
    action_status, audit_types, deny_open_review, eventually_status, free_port, gateway,
    http_proxy, open_review, proxy_command, root, vote_open_review, wait_listening, SdkClient,
    APPROVED_TRAIL,
};
use crate::support::Gw;
use serde_json::{json, Value};
use std::process::Stdio;
use tokio::process::{Child, Command};

/// How the agent reaches the proxy.
#[derive(Clone, Copy)]
enum Via {
    Stdio,
    Http,
}

/// The 2026-07-28 server, started by the proxy.
fn v2_server() -> Vec<String> {
    let p = root().join("tests/interop/mcp_v2_server.mjs");
    assert!(
        root()
            .join("tests/node_modules/@modelcontextprotocol/server")
            .exists(),
        "tests/node_modules is missing the MCP SDK v2: run scripts/test, which provisions it"
    );
    vec!["node".into(), p.display().to_string()]
}

/// The agent's client running `steps`, and (over HTTP) the server and proxy it talks to.
struct Run {
    client: SdkClient,
    _http: Option<(Child, Child)>,
}

impl std::ops::Deref for Run {
    type Target = SdkClient;
    fn deref(&self) -> &SdkClient {
        &self.client
    }
}

impl std::ops::DerefMut for Run {
    fn deref_mut(&mut self) -> &mut SdkClient {
        &mut self.client
    }
}

impl Run {
    async fn finish(self) {
        self.client.finish().await;
    }
}

async fn start(gw: &Gw, via: Via, steps: Value) -> Run {
    match via {
        Via::Stdio => Run {
            client: SdkClient::v2(
                json!({"stdio": proxy_command(gw, &[], &v2_server()), "steps": steps}),
            ),
            _http: None,
        },
        Via::Http => {
            let mut cmd = v2_server();
            let up = free_port();
            cmd.extend(["--http".into(), up.to_string()]);
            let server = Command::new(&cmd[0])
                .args(&cmd[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            wait_listening(up).await;
            let (proxy, url) = http_proxy(gw, &format!("http://127.0.0.1:{up}/mcp"), &[]).await;
            let client = SdkClient::v2(json!({
                "url": url,
                "headers": {"Authorization": "Bearer tok-bot"},
                "steps": steps,
            }));
            Run {
                client,
                _http: Some((server, proxy)),
            }
        }
    }
}

/// Each scenario, once per transport.
macro_rules! both {
    ($scenario:ident: $stdio:ident, $http:ident) => {
        #[tokio::test]
        async fn $stdio() {
            $scenario(Via::Stdio).await
        }
        #[tokio::test]
        async fn $http() {
            $scenario(Via::Http).await
        }
    };
}

both!(allowed_and_denied:
    mcp_2026_07_28_stdio_allowed_and_denied_calls_answer_at_once_and_discovery_offers_tasks,
    mcp_2026_07_28_http_allowed_and_denied_calls_answer_at_once_and_discovery_offers_tasks
);

async fn allowed_and_denied(via: Via) {
    let gw = gateway().await;
    let mut c = start(
        &gw,
        via,
        json!([
            {"op": "discover"},
            {"op": "call", "tool": "echo", "args": {"message": "hello 2026"}},
            {"op": "call", "tool": "get-env"},
            {"op": "plain_call", "tool": "get-env"},
        ]),
    )
    .await;
    let d = c.next("discover").await;
    assert_eq!(d["era"], "modern", "{d}");
    assert!(
        d["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("io.modelcontextprotocol/tasks")),
        "server/discover gains the Tasks extension: {d}"
    );

    let call = c.next("call").await;
    assert_eq!(
        call["kind"], "immediate",
        "an allowed call is no task: {call}"
    );
    let echo = c.next("settled").await;
    assert_eq!(echo["isError"], false, "{echo}");
    assert_eq!(echo["text"], "Echo: hello 2026");
    assert_eq!(echo["resultType"], "complete");

    // Denied with the extension declared: answered at once, not as a task.
    let call = c.next("call").await;
    assert_eq!(call["kind"], "immediate", "{call}");
    let denied = c.next("settled").await;
    assert_eq!(denied["status"], "completed", "{denied}");
    assert_eq!(denied["isError"], true);
    assert!(
        denied["text"]
            .as_str()
            .unwrap()
            .contains("environment variables may hold secrets"),
        "{denied}"
    );
    assert_eq!(denied["resultType"], "complete");
    // The SDK's own callTool (no extension) accepts the proxy's denial as a 2026-07-28 result.
    let plain = c.next("settled").await;
    assert_eq!(plain["isError"], true, "{plain}");
    c.finish().await;

    let env = crate::mcp::actions_on(&gw, "mcp://everything/get-env").await;
    assert_eq!(env.len(), 2);
    assert!(env.iter().all(|a| a["status"] == "denied"));
    let echo = crate::mcp::actions_on(&gw, "mcp://everything/echo").await;
    let id = echo[0]["id"].as_str().unwrap();
    eventually_status(&gw, id, "succeeded").await;
}

both!(review_task_modified:
    mcp_2026_07_28_stdio_a_call_under_review_becomes_a_task_and_runs_as_modified,
    mcp_2026_07_28_http_a_call_under_review_becomes_a_task_and_runs_as_modified
);

async fn review_task_modified(via: Via) {
    let gw = gateway().await;
    let mut c = start(
        &gw,
        via,
        json!([{"op": "call", "tool": "get-sum", "args": {"a": 1, "b": 2}}]),
    )
    .await;
    let call = c.next("call").await;
    assert_eq!(call["kind"], "task", "{call}");
    assert_eq!(open_review(&gw).await["params"], json!({"a": 1, "b": 2}));
    let id = vote_open_review(
        &gw,
        json!({"verdict": "modify", "params": {"a": 10, "b": 20}, "comment": "bigger"}),
    )
    .await;
    let done = c.next("settled").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["isError"], false);
    assert_eq!(done["text"], "The sum of 10 and 20 is 30.");
    assert!(
        done["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.as_str().unwrap().contains(&id)),
        "the task's status message names the review: {done}"
    );
    c.finish().await;
    eventually_status(&gw, &id, "succeeded").await;
    let (_, a) = gw.get("bot", &format!("/v1/actions/{id}")).await;
    assert_eq!(a["params"], json!({"a": 10, "b": 20}));
    assert_eq!(audit_types(&gw, &id).await, APPROVED_TRAIL);
}

both!(rejected_task:
    mcp_2026_07_28_stdio_a_rejected_task_completes_with_an_error_result,
    mcp_2026_07_28_http_a_rejected_task_completes_with_an_error_result
);

async fn rejected_task(via: Via) {
    let gw = gateway().await;
    let mut c = start(
        &gw,
        via,
        json!([{"op": "call", "tool": "get-sum", "args": {"a": 1, "b": 2}}]),
    )
    .await;
    assert_eq!(c.next("call").await["kind"], "task");
    let id = deny_open_review(&gw, "not during the freeze").await;
    let done = c.next("settled").await;
    // The extension keeps `failed` for JSON-RPC errors: a tool-level error completes the task.
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["isError"], true);
    let text = done["text"].as_str().unwrap();
    assert!(
        text.contains("rejected") && text.contains("not during the freeze"),
        "{text}"
    );
    c.finish().await;
    assert_eq!(action_status(&gw, &id).await, "rejected");
}

both!(cancelled_task:
    mcp_2026_07_28_stdio_cancelling_a_task_withdraws_its_review_and_task_requests_need_the_extension,
    mcp_2026_07_28_http_cancelling_a_task_withdraws_its_review_and_task_requests_need_the_extension
);

async fn cancelled_task(via: Via) {
    let gw = gateway().await;
    let mut c = start(
        &gw,
        via,
        json!([
            {"op": "cancel", "tool": "get-sum", "args": {"a": 1, "b": 2}},
            {"op": "raw", "request": {"method": "tasks/get", "params": {"taskId": "$task"}}},
            {"op": "raw", "extension": true,
             "request": {"method": "tasks/get", "params": {"taskId": "$task"}}},
            {"op": "raw", "extension": true,
             "request": {"method": "tasks/update", "params": {"taskId": "$task", "inputResponses": {}}}},
            {"op": "raw", "extension": true,
             "request": {"method": "tasks/cancel", "params": {"taskId": "$task"}}},
            {"op": "raw", "extension": true,
             "request": {"method": "tasks/get", "params": {"taskId": "countersign-nope"}}},
        ]),
    )
    .await;
    let call = c.next("call").await;
    assert_eq!(call["kind"], "task", "{call}");
    let task = call["taskId"].as_str().unwrap().to_string();
    let _ = c.next("cancelled").await;

    let without = c.next("raw").await;
    assert_eq!(without["error"]["code"], -32021, "{without}");
    assert_eq!(
        without["error"]["data"]["requiredCapabilities"]["extensions"]
            ["io.modelcontextprotocol/tasks"],
        json!({})
    );
    let got = c.next("raw").await;
    assert_eq!(got["result"]["taskId"], task.as_str(), "{got}");
    assert_eq!(got["result"]["status"], "cancelled");
    assert_eq!(got["result"]["resultType"], "complete");
    assert!(got["result"]["ttlMs"].is_u64(), "{got}");
    let update = c.next("raw").await;
    assert_eq!(
        update["result"],
        json!({"resultType": "complete"}),
        "{update}"
    );
    // Cancelling an ended task is acknowledged too (cancellation is eventually consistent).
    let again = c.next("raw").await;
    assert_eq!(
        again["result"],
        json!({"resultType": "complete"}),
        "{again}"
    );
    let unknown = c.next("raw").await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    c.finish().await;

    let sums = crate::mcp::actions_on(&gw, "mcp://everything/get-sum").await;
    assert_eq!(sums.len(), 1);
    let id = sums[0]["id"].as_str().unwrap();
    eventually_status(&gw, id, "cancelled").await;
}

both!(held_without_extension:
    mcp_2026_07_28_stdio_a_call_without_the_extension_is_held_until_approved,
    mcp_2026_07_28_http_a_call_without_the_extension_is_held_until_approved
);

async fn held_without_extension(via: Via) {
    let gw = gateway().await;
    let mut c = start(
        &gw,
        via,
        json!([{"op": "plain_call", "tool": "get-sum", "args": {"a": 2, "b": 3}}]),
    )
    .await;
    vote_open_review(&gw, json!({"verdict": "approve"})).await;
    let done = c.next("settled").await;
    assert_eq!(done["isError"], false, "{done}");
    assert_eq!(done["text"], "The sum of 2 and 3 is 5.");
    c.finish().await;
}

both!(input_rounds:
    mcp_2026_07_28_stdio_a_reviewed_call_that_asks_for_input_is_continued_not_reviewed_again,
    mcp_2026_07_28_http_a_reviewed_call_that_asks_for_input_is_continued_not_reviewed_again
);

/// Multi round-trip requests: the server answers a call with `input_required`; the client
/// retries it with the answers. The retry continues the approved action (its arguments as
/// approved, no second review); a continuation is used once, and a "retry" that continues
/// nothing is decided like any call.
async fn input_rounds(via: Via) {
    let gw = gateway().await;
    let retry = json!({"name": "confirm-echo", "arguments": {"message": "m"},
        "inputResponses": {"confirm": {"action": "accept", "content": {"confirm": true}}},
        "requestState": "round-for-Echo m?"});
    let forged = json!({"name": "get-env", "arguments": {},
        "inputResponses": {"confirm": {"action": "accept", "content": {"confirm": true}}}});
    let mut c = start(
        &gw,
        via,
        json!([
            {"op": "plain_call", "tool": "simulate-research-query", "args": {"topic": "tides"}},
            {"op": "plain_call", "tool": "confirm-echo", "args": {"message": "m"}},
            {"op": "pause"},
            // The same retry again: its continuation was used, so it is a new decision.
            {"op": "raw", "request": {"method": "tools/call", "params": retry}},
            {"op": "raw", "request": {"method": "tools/call", "params": forged}},
        ]),
    )
    .await;
    assert_eq!(open_review(&gw).await["params"], json!({"topic": "tides"}));
    let id = vote_open_review(
        &gw,
        json!({"verdict": "modify", "params": {"topic": "currents"}, "comment": "narrower"}),
    )
    .await;
    let done = c.next("settled").await;
    assert_eq!(done["isError"], false, "{done}");
    assert_eq!(
        done["text"], "Research on currents: confirmed and done.",
        "both rounds ran with the approved arguments: {done}"
    );
    assert_eq!(done["elicitations"], 1, "{done}");
    let research = crate::mcp::actions_on(&gw, "mcp://everything/simulate-research-query").await;
    assert_eq!(research.len(), 1, "one action, one review: {research:?}");
    eventually_status(&gw, &id, "succeeded").await;
    let types = audit_types(&gw, &id).await;
    assert_eq!(
        types.iter().filter(|t| *t == "result_reported").count(),
        1,
        "the result is reported once, at the end: {types:?}"
    );

    let echo = c.next("settled").await;
    assert_eq!(echo["text"], "Confirmed echo: m", "{echo}");
    assert_eq!(
        crate::mcp::actions_on(&gw, "mcp://everything/confirm-echo")
            .await
            .len(),
        1,
        "an allowed call's rounds are one action"
    );
    c.resume().await;
    let replay = c.next("raw").await;
    assert_eq!(
        replay["result"]["content"][0]["text"], "Confirmed echo: m",
        "{replay}"
    );
    assert_eq!(
        crate::mcp::actions_on(&gw, "mcp://everything/confirm-echo")
            .await
            .len(),
        2,
        "a used continuation is not used again: the replay was decided anew"
    );
    let forged = c.next("raw").await;
    assert_eq!(forged["result"]["isError"], true, "{forged}");
    assert!(
        forged["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("environment variables may hold secrets"),
        "{forged}"
    );
    c.finish().await;
}

both!(task_input:
    mcp_2026_07_28_stdio_a_task_whose_server_asks_for_input_goes_input_required_then_on,
    mcp_2026_07_28_http_a_task_whose_server_asks_for_input_goes_input_required_then_on
);

/// A call under review became a task; once approved, the server asks for input: the task
/// shows the server's requests (`input_required`), `tasks/update` brings the answers, and the
/// call goes on with the approved arguments, one action, one review.
async fn task_input(via: Via) {
    let gw = gateway().await;
    let mut c = start(
        &gw,
        via,
        json!([{"op": "call", "tool": "simulate-research-query", "args": {"topic": "tides"}}]),
    )
    .await;
    assert_eq!(c.next("call").await["kind"], "task");
    let id = vote_open_review(
        &gw,
        json!({"verdict": "modify", "params": {"topic": "currents"}}),
    )
    .await;
    let done = c.next("settled").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["text"], "Research on currents: confirmed and done.");
    assert_eq!(done["elicitations"], 1, "{done}");
    assert!(
        done["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.as_str().unwrap().starts_with("input_required")),
        "the task went input_required: {done}"
    );
    c.finish().await;
    let research = crate::mcp::actions_on(&gw, "mcp://everything/simulate-research-query").await;
    assert_eq!(research.len(), 1, "{research:?}");
    eventually_status(&gw, &id, "succeeded").await;
}
