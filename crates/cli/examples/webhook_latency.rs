//! Notification latency through the outbox (issue #15): a local Standard Webhooks receiver in
//! this process; `CONCURRENCY` agents at a time submit a review (`kubectl.delete` on the demo
//! config) and the time from the submission's answer to the receiver's `review_opened` is
//! taken; then each is approved and the time from the vote's answer to the receiver's
//! `decided`. Run by bench/outbox-latency.sh: `webhook_latency URL RECEIVER_PORT N CONCURRENCY`
//! against a gateway whose config has a `[[webhooks]]` entry pointing at
//! `http://127.0.0.1:RECEIVER_PORT/hook`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

#[path = "common/latency.rs"]
mod latency;
use latency::{pct, until_seen, Seen};

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use serde_json::{json, Value};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args[1].clone();
    let port: u16 = args[2].parse().unwrap();
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(500);
    let concurrency: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(50);
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: Bytes| {
            let s = s.clone();
            async move {
                let at = Instant::now();
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                let key = format!(
                    "{}:{}",
                    v["data"]["action"]["id"].as_str().unwrap_or(""),
                    v["type"].as_str().unwrap_or("")
                );
                s.0.lock().unwrap().entry(key).or_insert(at);
                s.1.notify_waiters();
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let opened = Arc::new(Mutex::new(Vec::new()));
    let decided = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (http, url, seen, opened, decided, gate) = (
            http.clone(),
            url.clone(),
            seen.clone(),
            opened.clone(),
            decided.clone(),
            gate.clone(),
        );
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
            let at = until_seen(&seen, &format!("{id}:review_opened")).await;
            opened
                .lock()
                .unwrap()
                .push(at.saturating_duration_since(answered));
            let resp = http
                .post(format!("{url}/v1/reviews/{id}/votes"))
                .bearer_auth("demo-alice-token")
                .json(&json!({"verdict": "approve"}))
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
            let voted = Instant::now();
            let at = until_seen(&seen, &format!("{id}:decided")).await;
            decided
                .lock()
                .unwrap()
                .push(at.saturating_duration_since(voted));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    pct(
        opened.lock().unwrap().clone(),
        &format!("review opened -> webhook received ({concurrency} concurrent)"),
    );
    pct(
        decided.lock().unwrap().clone(),
        &format!("vote committed -> `decided` webhook received ({concurrency} concurrent)"),
    );
}
