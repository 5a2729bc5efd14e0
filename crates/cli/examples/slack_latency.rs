//! Slack channel latency (issue #15): an in-process double of Slack's Web API
//! (`chat.postMessage`, `chat.update`, as documented); `CONCURRENCY` agents at a time submit a
//! review (`kubectl.delete` on the demo config) and the time from the submission's answer to the
//! double's `chat.postMessage` is taken; then alice clicks Approve (a signed `block_actions`
//! request to `/v1/channels/slack/interactions`) while the agent long-polls, and the time from
//! the click to both the long poll's release and the `chat.update` showing the final state is
//! taken. Run by bench/slack-latency.sh:
//! `slack_latency URL DOUBLE_PORT SIGNING_SECRET N CONCURRENCY`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

#[path = "common/latency.rs"]
mod latency;
use latency::{pct, until_seen, Seen};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::Path;
use serde_json::{json, Value};

/// The action id a message is about (its buttons' value, or its context line).
fn action_of(blocks: &Value) -> String {
    let text = blocks.to_string();
    let i = text.find("action `").map(|i| i + 8).unwrap_or(0);
    text[i..].split('`').next().unwrap_or("").to_string()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args[1].clone();
    let port: u16 = args[2].parse().unwrap();
    let secret = args[3].clone();
    let n: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(500);
    let concurrency: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(50);
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let counter = Arc::new(Mutex::new(0u64));
    let app = axum::Router::new().route(
        "/api/{method}",
        axum::routing::post(move |Path(method): Path<String>, body: Bytes| {
            let (s, counter) = (s.clone(), counter.clone());
            async move {
                let at = Instant::now();
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                let action = action_of(&v["blocks"]);
                let key = match method.as_str() {
                    "chat.postMessage" => format!("{action}:posted"),
                    "chat.update" if v["blocks"].to_string().contains("Final state") => {
                        format!("{action}:final")
                    }
                    _ => String::new(),
                };
                s.0.lock().unwrap().entry(key).or_insert(at);
                s.1.notify_waiters();
                let ts = {
                    let mut c = counter.lock().unwrap();
                    *c += 1;
                    format!("1700000000.{:06}", *c)
                };
                axum::Json(json!({"ok": true, "channel": "C0BENCH", "ts": v["ts"].as_str().unwrap_or(&ts)}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let posted = Arc::new(Mutex::new(Vec::new()));
    let released = Arc::new(Mutex::new(Vec::new()));
    let updated = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (http, url, seen, secret, gate) = (
            http.clone(),
            url.clone(),
            seen.clone(),
            secret.clone(),
            gate.clone(),
        );
        let (posted, released, updated) = (posted.clone(), released.clone(), updated.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let v: Value = http
                .post(format!("{url}/v1/actions"))
                .bearer_auth("demo-agent-token")
                .json(&json!({"action": "kubectl.delete", "resource": format!("k8s://bench/{i}")}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let answered = Instant::now();
            let id = v["id"].as_str().unwrap().to_string();
            let at = until_seen(&seen, &format!("{id}:posted")).await;
            posted
                .lock()
                .unwrap()
                .push(at.saturating_duration_since(answered));
            let poll = {
                let (http, url, id) = (http.clone(), url.clone(), id.clone());
                tokio::spawn(async move {
                    let r = http
                        .get(format!("{url}/v1/actions/{id}?wait=30"))
                        .bearer_auth("demo-agent-token")
                        .send()
                        .await
                        .unwrap();
                    let v: Value = r.json().await.unwrap();
                    (
                        Instant::now(),
                        v["status"].as_str().unwrap_or("").to_string(),
                    )
                })
            };
            // Let the long poll start waiting.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let payload = json!({
                "type": "block_actions", "user": {"id": "UALICE"},
                "response_url": format!("{url}/nowhere"), "trigger_id": "t",
                "actions": [{"type": "button", "action_id": "countersign_approve", "value": id}],
            });
            let body = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("payload", &payload.to_string())
                .finish();
            let ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            let sig = countersign_channels::slack::interactions::sign(
                secret.as_bytes(),
                ts,
                body.as_bytes(),
            );
            let clicked = Instant::now();
            let resp = http
                .post(format!("{url}/v1/channels/slack/interactions"))
                .header("x-slack-request-timestamp", ts.to_string())
                .header("x-slack-signature", sig)
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
            let (at, status) = poll.await.unwrap();
            assert_eq!(status, "approved");
            released
                .lock()
                .unwrap()
                .push(at.saturating_duration_since(clicked));
            let at = until_seen(&seen, &format!("{id}:final")).await;
            updated
                .lock()
                .unwrap()
                .push(at.saturating_duration_since(clicked));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    pct(
        posted.lock().unwrap().clone(),
        &format!("review opened -> chat.postMessage received ({concurrency} concurrent)"),
    );
    pct(
        released.lock().unwrap().clone(),
        &format!("click -> vote committed -> long poll released ({concurrency} concurrent)"),
    );
    pct(
        updated.lock().unwrap().clone(),
        &format!("click -> chat.update with the final state ({concurrency} concurrent)"),
    );
}
