//! `GET /v1/reviews` latency with many open reviews: fills a fresh SQLite database with
//! `REVIEWS` open reviews (from 1,000 agents, every one asking the SRE group, so the reviewer's
//! index range holds all of them), starts the gateway on loopback and times a reviewer's first
//! page (`limit=100`) and a page deep in the list (by cursor).
//!
//! `cargo run --release -p countersign --example reviews_latency -- [REVIEWS] [SAMPLES]`
//! (defaults 100000 and 300; see BENCHMARKS.md).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

use countersign_core::{
    ActionRecord, ActionSpec, Decision, Effect, Identity, IdentityKind, NewAction, Quorum,
    Requirement, Timestamp,
};
use countersign_store::{SqliteStore, Store};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const POLICY: &str = r#"@id("deploy") @effect("review") @approvers("group:sre")
permit (principal, action == Action::"deploy", resource);
"#;

fn percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{name}, {} samples: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.90).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        pct(1.0).as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let reviews: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let samples: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(300);
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("policies"))?;
    std::fs::write(dir.path().join("policies/deploy.cedar"), POLICY)?;
    let hash = hex::encode(Sha256::digest(b"tok-alice"));
    let config_path = dir.path().join("countersign.toml");
    std::fs::write(
        &config_path,
        format!(
            "database = \"sqlite://bench.db\"\nreview_ttl = \"2h\"\n\n[[identities]]\n\
             id = \"alice\"\nkind = \"human\"\ngroups = [\"sre\"]\napi_key_sha256 = \"{hash}\"\n"
        ),
    )?;

    // Fill the database directly through the store (the per-requester cap is the gateway's).
    let started = Instant::now();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("bench.db"))?);
        let decision = Decision {
            effect: Effect::Review,
            policies: vec!["deploy".into()],
            reason: None,
            requirements: vec![Requirement {
                policy: "deploy".into(),
                approvers: "group:sre".parse()?,
                quorum: Quorum::ONE,
                require_mfa: false,
            }],
            review_ttl: None,
            executors: Vec::new(),
            credentials: Vec::new(),
            reveal: None,
            notify: Vec::new(),
        };
        for chunk in (0..reviews).collect::<Vec<_>>().chunks(2_000) {
            let mut tasks = Vec::with_capacity(chunk.len());
            for &i in chunk {
                let agent = Identity::new(
                    format!("agent-{}", i % 1000),
                    IdentityKind::Agent,
                    Vec::<String>::new(),
                );
                let (record, events) = ActionRecord::submit(
                    &agent,
                    NewAction {
                        id: uuid_like(i),
                        grant_jti: format!("jti-{i}"),
                        spec: ActionSpec::new("deploy", format!("svc-{i}"), "prod", None)?,
                        justification: "flood".into(),
                        on_behalf_of: None,
                        idempotency_key: None,
                        decision: decision.clone(),
                        default_review_ttl: Duration::from_secs(7200),
                        grant_ttl: Duration::from_secs(300),
                        grant_on_allow: false,
                        analysis: None,
                    },
                    Timestamp(now - (reviews - i) as i64),
                )?;
                let store = store.clone();
                tasks.push(tokio::spawn(
                    async move { store.insert(record, events).await },
                ));
            }
            for t in tasks {
                t.await??;
            }
        }
        println!(
            "stored {} open reviews in {:.1} s",
            store.open_reviews().await?,
            started.elapsed().as_secs_f64()
        );
    }

    let config = countersign_gateway::config::Config::load(&config_path)?;
    let server = countersign_server::Server::open(&config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(server.serve(listener, std::future::pending()));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let get = |query: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let start = Instant::now();
            let v: Value = http
                .get(format!("{url}/v1/reviews?{query}"))
                .bearer_auth("tok-alice")
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            Ok::<_, reqwest::Error>((start.elapsed(), v))
        }
    };
    // The cursor of a page half-way down the list.
    let mut cursor = String::new();
    for _ in 0..(reviews / 2 / 1000) {
        let query = if cursor.is_empty() {
            "limit=1000".to_string()
        } else {
            format!("limit=1000&cursor={cursor}")
        };
        let (_, v) = get(query).await?;
        cursor = v["next_cursor"].as_str().unwrap_or_default().to_string();
    }
    for _ in 0..20 {
        get("limit=100".into()).await?;
    }
    let mut first = Vec::with_capacity(samples);
    let mut deep = Vec::with_capacity(samples);
    for _ in 0..samples {
        let (took, v) = get("limit=100".into()).await?;
        if v["reviews"].as_array().map_or(0, Vec::len) != 100 {
            return Err("the first page does not hold 100 reviews".into());
        }
        first.push(took);
        let (took, _) = get(format!("limit=100&cursor={cursor}")).await?;
        deep.push(took);
    }
    percentiles(
        &format!("GET /v1/reviews?limit=100 with {reviews} open reviews"),
        first,
    );
    percentiles("the same, a page half-way down (cursor)", deep);
    Ok(())
}

/// Ids that sort like the gateway's UUIDv7s do (by creation).
fn uuid_like(i: usize) -> String {
    format!("00000000-0000-7000-8000-{i:012}")
}
