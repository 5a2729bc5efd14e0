//! The official Rust MCP SDK (`rmcp`, pinned) as the agent, through `countersign mcp stdio` in
//! front of server-everything: a Rust agent gets the server's real result for an allowed call,
//! the policy's reason for a denied one, and the real result of a held call once a person
//! approves it, with no change to the agent.

use crate::mcp::{audit_types, gateway, open_review, proxy_command, server_everything};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::ServiceExt;
use serde_json::json;
use std::time::Duration;

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn args(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[tokio::test]
async fn mcp_rust_sdk_agent_gets_allowed_denied_and_approved_results() {
    let gw = gateway().await;
    let cmd = proxy_command(&gw, &[], &server_everything());
    let transport = TokioChildProcess::new(tokio::process::Command::new(&cmd[0]).configure(|c| {
        c.args(&cmd[1..]);
    }))
    .unwrap();
    let client = ().serve(transport).await.unwrap();
    let tools = client.list_tools(None).await.unwrap();
    assert!(tools.tools.iter().any(|t| t.name == "echo"));

    let echo = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(args(json!({"message": "hi"}))),
        )
        .await
        .unwrap();
    assert_ne!(echo.is_error, Some(true));
    assert_eq!(text(&echo), "Echo: hi");

    let env = client
        .call_tool(CallToolRequestParams::new("get-env"))
        .await
        .unwrap();
    assert_eq!(env.is_error, Some(true));
    assert!(text(&env).contains("secrets"), "{}", text(&env));

    let held = {
        let peer = client.peer().clone();
        tokio::spawn(async move {
            peer.call_tool(
                CallToolRequestParams::new("get-sum")
                    .with_arguments(args(json!({"a": 2, "b": 40}))),
            )
            .await
        })
    };
    let review = open_review(&gw).await;
    let id = review["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "the call is held while under review");
    let (s, v) = gw.vote("alice", &id, json!({"verdict": "approve"})).await;
    assert!(s.is_success(), "{v}");
    let sum = tokio::time::timeout(Duration::from_secs(30), held)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(text(&sum), "The sum of 2 and 40 is 42.");
    client.cancel().await.unwrap();

    let types = audit_types(&gw, &id).await;
    assert!(types.contains(&"grant_redeemed".to_string()), "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("result_reported"));
}
