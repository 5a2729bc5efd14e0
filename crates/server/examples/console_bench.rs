//! The web console's figures (issue #16), run by `bench/console.sh`:
//! - the queue page with N open reviews (default 1,000), rendered on the server: latency of
//!   `GET /console` over loopback, p50 and p99 of `RUNS` requests;
//! - a vote made through the API reaching an open console page's event stream: p50 and p99 of
//!   the time from sending the vote to the `change` event's arrival.
//!
//! - the allow path's throughput with no console page open and with `SSE` (default 200) open
//!   event streams, alternated (off, on, off, on; `ALLOW_SECS` seconds each, 32 agents).
//!
//! A session is started directly through the gateway (the sign-in flow is not what is timed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let reviews: usize = std::env::var("REVIEWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/p.cedar"),
        r#"@id("deploy") @effect("review") @approvers("group:sre") @reason("deploys need an SRE")
permit (principal, action == Action::"deploy", resource);
@id("read")
permit (principal, action == Action::"read", resource);"#,
    )
    .unwrap();
    let toml = format!(
        r#"database = "sqlite://gw.db"
policies = "policies"
review_ttl = "1h"
max_open_reviews_per_requester = 100000

[[identities]]
id = "bot"
kind = "agent"
api_key_sha256 = "{bot}"

[[identities]]
id = "erin"
kind = "human"
groups = ["sre"]
api_key_sha256 = "{erin}"

[[oidc]]
issuer = "https://idp.invalid"
client_id = "console"
"#,
        bot = hex(&Sha256::digest(b"tok-bot")),
        erin = hex(&Sha256::digest(b"tok-erin")),
    );
    let path = dir.path().join("countersign.toml");
    std::fs::write(&path, toml).unwrap();
    let config = countersign_gateway::config::Config::load(&path).unwrap();
    let server = countersign_server::Server::open_with(
        &config,
        countersign_server::Options {
            record_loaded: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let gateway = server.gateway().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = server.serve(listener, std::future::pending()).await;
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let mut ids = Vec::with_capacity(reviews);
    for i in 0..reviews {
        let v: serde_json::Value = http
            .post(format!("{url}/v1/actions"))
            .bearer_auth("tok-bot")
            .json(
                &serde_json::json!({"action": "deploy", "resource": format!("svc-{i}"),
                "environment": "prod", "params": {"version": format!("1.{i}"), "replicas": 3}}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let alice =
        countersign_core::Identity::new("alice", countersign_core::IdentityKind::Human, ["sre"]);
    let secret = gateway
        .start_session(alice, false, Duration::from_secs(3600))
        .await
        .unwrap();
    let cookie = format!("cs_session={secret}");

    // The queue.
    let get = || async {
        let t = Instant::now();
        let resp = http
            .get(format!("{url}/console"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.text().await.unwrap();
        (t.elapsed(), body)
    };
    let (_, body) = get().await;
    assert!(
        body.contains(&format!("<title>({reviews}) Reviews")),
        "the queue lists all"
    );
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        times.push(get().await.0);
    }
    times.sort();
    println!(
        "queue page, {reviews} open reviews, {} KiB: p50 {:.2} ms, p99 {:.2} ms ({runs} requests)",
        body.len() / 1024,
        pct(&times, 0.5).as_secs_f64() * 1e3,
        pct(&times, 0.99).as_secs_f64() * 1e3
    );

    // A vote through the API reaching an open event stream.
    let mut stream = http
        .get(format!("{url}/console/events"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let votes = runs.min(ids.len());
    let mut times = Vec::with_capacity(votes);
    for id in ids.iter().take(votes) {
        let t = Instant::now();
        let vote = http
            .post(format!("{url}/v1/reviews/{id}/votes"))
            .bearer_auth("tok-erin")
            .json(&serde_json::json!({"verdict": "approve"}))
            .send();
        let (vote, chunk) = tokio::join!(vote, async {
            loop {
                let c = stream.chunk().await.unwrap().unwrap();
                if String::from_utf8_lossy(&c).contains("event: change") {
                    return t.elapsed();
                }
            }
        });
        assert_eq!(vote.unwrap().status(), 200);
        times.push(chunk);
    }
    times.sort();
    println!(
        "API vote -> console event stream: p50 {:.2} ms, p99 {:.2} ms ({votes} votes)",
        pct(&times, 0.5).as_secs_f64() * 1e3,
        pct(&times, 0.99).as_secs_f64() * 1e3
    );

    // Open event streams against the allow path.
    let sse: usize = std::env::var("SSE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let secs: u64 = std::env::var("ALLOW_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut rates = [Vec::new(), Vec::new()];
    for round in 0..4 {
        let open = round % 2 == 1;
        let mut readers = Vec::new();
        if open {
            for _ in 0..sse {
                let mut s = http
                    .get(format!("{url}/console/events"))
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(s.status(), 200);
                readers.push(tokio::spawn(async move {
                    while let Ok(Some(_)) = s.chunk().await {}
                }));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut agents = Vec::new();
        for _ in 0..32 {
            let (http, url) = (http.clone(), url.clone());
            agents.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let r = http
                        .post(format!("{url}/v1/actions"))
                        .bearer_auth("tok-bot")
                        .json(&serde_json::json!({"action": "read", "resource": "doc"}))
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success(), "{}", r.status());
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for a in agents {
            total += a.await.unwrap();
        }
        for r in readers {
            r.abort();
        }
        rates[usize::from(open)].push(total as f64 / secs as f64);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (off, on) = (mean(&rates[0]), mean(&rates[1]));
    println!(
        "allow path, 32 agents: {off:.0}/s with no console page open, {on:.0}/s with {sse} open event streams (ratio {:.3}; rounds off {:?}, on {:?})",
        on / off,
        rates[0].iter().map(|r| r.round()).collect::<Vec<_>>(),
        rates[1].iter().map(|r| r.round()).collect::<Vec<_>>()
    );
}
