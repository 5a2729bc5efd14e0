//! Long-poll release latency: how long after a reviewer's vote is sent does an agent's waiting
//! `GET /v1/actions/{id}?wait=30` return? Run against a gateway with the demo config:
//! `longpoll URL ITERATIONS [VOTE_URL]` (see bench/run-http.sh). With `VOTE_URL` (another
//! replica on the same database) the vote goes there: the cross-replica wake-up.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8760".into());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let vote_url = args.get(3).cloned().unwrap_or_else(|| url.clone());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let v: Value = http
            .post(format!("{url}/v1/actions"))
            .bearer_auth("demo-agent-token")
            .json(&json!({"action": "kubectl.delete", "resource": format!("k8s://prod/pod/{i}")}))
            .send()
            .await?
            .json()
            .await?;
        let id = v["id"].as_str().ok_or("no id")?.to_string();
        let waiter = {
            let (http, url, id) = (http.clone(), url.clone(), id.clone());
            tokio::spawn(async move {
                let r = http
                    .get(format!("{url}/v1/actions/{id}?wait=30"))
                    .bearer_auth("demo-agent-token")
                    .send()
                    .await;
                let done = Instant::now();
                (r.map(|r| r.status()), done)
            })
        };
        // Let the waiter reach the server and park.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let sent = Instant::now();
        http.post(format!("{vote_url}/v1/reviews/{id}/votes"))
            .bearer_auth("demo-alice-token")
            .json(&json!({"verdict": "approve"}))
            .send()
            .await?;
        let (status, released) = waiter.await?;
        status?;
        samples.push(released.saturating_duration_since(sent));
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "long-poll release after vote, {n} samples: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.90).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3
    );
    Ok(())
}
