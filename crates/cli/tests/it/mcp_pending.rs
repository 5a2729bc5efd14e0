//! "Pending, call again" across proxy processes: a parked call's review is found through the
//! gateway's store (`reuse_open`), not the memory of the proxy that parked it, so a proxy that
//! is killed and started again (or another replica of the HTTP front) still runs the approved
//! call once, and never opens a second review.

use crate::mcp::{
    actions_on, audit_types, deny_open_review, gateway, http_front_with, open_review,
    proxy_command, server_everything, Raw, SdkClient,
};
use serde_json::{json, Value};
use std::time::Duration;

const SUM: &str = "mcp://everything/get-sum";

/// A new `countersign mcp stdio` process in pending mode, initialised.
async fn pending_proxy(gw: &crate::support::Gw) -> Raw {
    let mut raw = Raw::start(&proxy_command(
        gw,
        &["--pending-after", "0"],
        &server_everything(),
    ));
    raw.initialize("2025-06-18").await;
    raw
}

/// Calls `get-sum` with 2 and 3 and returns the `CallToolResult`.
async fn call_sum(raw: &mut Raw, id: u64) -> Value {
    raw.send(
        &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "get-sum", "arguments": {"a": 2, "b": 3}}})
        .to_string(),
    )
    .await;
    let v = raw.recv().await;
    assert_eq!(v["id"], id, "{v}");
    v["result"].clone()
}

fn text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or("")
}

#[tokio::test]
async fn mcp_pending_mode_finds_the_review_after_the_proxy_is_killed_and_restarted() {
    let gw = gateway().await;

    // The first proxy parks the call and is killed (no shutdown, nothing cancelled).
    let mut first = pending_proxy(&gw).await;
    let parked = call_sum(&mut first, 1).await;
    assert_eq!(parked["isError"], true, "{parked}");
    let review = open_review(&gw).await;
    let action = review["id"].as_str().unwrap().to_string();
    assert!(text(&parked).contains(&action) && text(&parked).contains("NOT run"));
    first.child.kill().await.unwrap();

    // A new proxy, asked again before anyone decided: the same review, still not run.
    let mut second = pending_proxy(&gw).await;
    let again = call_sum(&mut second, 1).await;
    assert_eq!(again["isError"], true, "{again}");
    assert!(text(&again).contains(&action), "{again}");
    second.child.kill().await.unwrap();

    // Approved; a third proxy, which never saw the call, runs it with the server's real result.
    let (s, v) = gw
        .vote("alice", &action, json!({"verdict": "approve"}))
        .await;
    assert!(s.is_success(), "{v}");
    let mut third = pending_proxy(&gw).await;
    let ran = call_sum(&mut third, 7).await;
    assert_ne!(ran["isError"], true, "{ran}");
    assert_eq!(text(&ran), "The sum of 2 and 3 is 5.");

    // One action, redeemed once, its result reported once.
    let actions = settled(&gw, SUM).await;
    assert_eq!(actions.len(), 1, "one review was opened: {actions:?}");
    assert_eq!(actions[0]["id"], action.as_str());
    assert_eq!(actions[0]["status"], "succeeded");
    let types = audit_types(&gw, &action).await;
    let count = |t: &str| types.iter().filter(|x| *x == t).count();
    assert_eq!(
        (
            count("submitted"),
            count("review_opened"),
            count("grant_redeemed"),
            count("result_reported")
        ),
        (1, 1, 1, 1),
        "{types:?}"
    );
    assert_eq!(third.close(Duration::from_secs(15)).await, Some(0));
}

/// Succeeded actions on `resource` once every one of them has its result reported.
async fn settled(gw: &crate::support::Gw, resource: &str) -> Vec<Value> {
    let mut actions = Vec::new();
    for _ in 0..200 {
        actions = actions_on(gw, resource).await;
        if actions.iter().all(|a| a["status"] == "succeeded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    actions
}

#[tokio::test]
async fn mcp_pending_mode_over_http_a_repeat_call_on_another_front_runs_the_approved_call() {
    let gw = gateway().await;
    let (a, b) = tokio::join!(
        http_front_with(&gw, &["--pending-after", "0"]),
        http_front_with(&gw, &["--pending-after", "0"])
    );
    let call = |url: &str| {
        SdkClient::run(json!({
            "url": url,
            "headers": {"Authorization": "Bearer tok-bot"},
            "steps": [{"op": "call", "tool": "get-sum", "args": {"a": 4, "b": 5}}],
        }))
    };
    let mut c = call(&a.url);
    let parked = c.next("call").await;
    assert_eq!(parked["isError"], true, "{parked}");
    c.finish().await;
    let action = open_review(&gw).await["id"].as_str().unwrap().to_string();
    assert!(parked["text"].as_str().unwrap().contains(&action));

    let (s, v) = gw
        .vote("alice", &action, json!({"verdict": "approve"}))
        .await;
    assert!(s.is_success(), "{v}");
    let mut c = call(&b.url);
    let ran = c.next("call").await;
    assert_eq!(ran["text"], "The sum of 4 and 5 is 9.", "{ran}");
    c.finish().await;

    let actions = settled(&gw, SUM).await;
    assert_eq!(actions.len(), 1, "one review was opened: {actions:?}");
    assert_eq!(
        (actions[0]["id"].as_str(), actions[0]["status"].as_str()),
        (Some(action.as_str()), Some("succeeded"))
    );
}

#[tokio::test]
async fn mcp_pending_mode_tells_a_rejection_once_then_a_repeat_call_opens_a_new_review() {
    let gw = gateway().await;
    let mut raw = pending_proxy(&gw).await;
    let parked = call_sum(&mut raw, 1).await;
    assert_eq!(parked["isError"], true, "{parked}");
    let action = deny_open_review(&gw, "not today").await;
    let told = call_sum(&mut raw, 2).await;
    assert_eq!(told["isError"], true, "{told}");
    assert!(
        text(&told).contains("rejected") && text(&told).contains("not today"),
        "{told}"
    );
    let fresh = call_sum(&mut raw, 3).await;
    assert_eq!(fresh["isError"], true, "{fresh}");
    assert!(
        text(&fresh).contains("NOT run") && !text(&fresh).contains(&action),
        "{fresh}"
    );
    assert_eq!(actions_on(&gw, SUM).await.len(), 2);
    assert_eq!(raw.close(Duration::from_secs(15)).await, Some(0));
}
