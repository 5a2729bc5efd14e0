//! The outbox survives `kill -9`: notifications committed with their changes but not yet
//! delivered (the receiver was failing) are all delivered after a restart, each accepted once;
//! `countersign outbox list` shows them delivered and `countersign outbox retry ID` sends one
//! again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;
use tokio::process::Command;

use crate::cli::{Server, BIN};

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A receiver answering `status` (shared, changeable), recording `(webhook-id, type, status)`
/// and every request's headers and body as text.
#[derive(Clone)]
pub struct Receiver {
    pub status: Arc<Mutex<u16>>,
    pub got: Arc<Mutex<Vec<(String, String, u16)>>>,
    pub raw: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    pub async fn start(status: u16) -> (Receiver, String) {
        let r = Receiver {
            status: Arc::new(Mutex::new(status)),
            got: Arc::default(),
            raw: Arc::default(),
        };
        let me = r.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let me = me.clone();
                async move {
                    let status = *me.status.lock().unwrap();
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    me.raw
                        .lock()
                        .unwrap()
                        .push(format!("{headers:?}\n{}", String::from_utf8_lossy(&body)));
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let kind = format!(
                        "{}:{}",
                        v["data"]["action"]["id"].as_str().unwrap_or(""),
                        v["type"].as_str().unwrap_or("")
                    );
                    me.got.lock().unwrap().push((id, kind, status));
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, url)
    }

    /// Accepted deliveries: webhook-id → (action:type, times).
    pub fn accepted(&self) -> HashMap<String, (String, usize)> {
        let mut out: HashMap<String, (String, usize)> = HashMap::new();
        for (id, kind, status) in self.got.lock().unwrap().iter() {
            if *status == 200 {
                out.entry(id.clone()).or_insert((kind.clone(), 0)).1 += 1;
            }
        }
        out
    }
}

pub async fn outbox_cli(args: &[&str], config: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("outbox")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_with_undelivered_notifications_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, url) = Receiver::start(503).await;
    let extra = format!(
        "[[webhooks]]\nname = \"ops\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n\n\
         [outbox]\nmax_attempts = 1000\nbackoff_base = \"20ms\"\nbackoff_max = \"100ms\"\ntimeout = \"1s\"\n"
    );
    let config = crate::support::write_config(dir.path(), &extra);
    let mut server = Server::serve(&config, &[], std::process::Stdio::null()).await;
    let http = crate::support::client();

    // 20 reviews opened (10 of them approved at once) and allowed actions, which notify nobody.
    let mut expected = Vec::new();
    for i in 0..20 {
        let v: serde_json::Value = http
            .post(format!("{}/v1/actions", server.url))
            .bearer_auth("tok-bot")
            .json(&json!({"action": "deploy", "resource": format!("svc/{i}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        expected.push(format!("{id}:review_opened"));
        if i % 2 == 0 {
            let resp = http
                .post(format!("{}/v1/reviews/{id}/votes", server.url))
                .bearer_auth("tok-alice")
                .json(&json!({"verdict": "approve"}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), reqwest::StatusCode::OK);
            expected.push(format!("{id}:voted"));
            expected.push(format!("{id}:decided"));
        }
        let resp = http
            .post(format!("{}/v1/actions", server.url))
            .bearer_auth("tok-bot")
            .json(&json!({"action": "logs.read", "resource": format!("r/{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
    }
    // The receiver fails: attempts are being made, nothing is accepted.
    let start = Instant::now();
    while receiver.got.lock().unwrap().len() < 5 {
        assert!(start.elapsed() < Duration::from_secs(30), "no attempt made");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9().await;
    assert!(receiver.accepted().is_empty());

    // The receiver recovers; the gateway restarts and delivers everything, each once.
    *receiver.status.lock().unwrap() = 200;
    let server = Server::serve(&config, &[], std::process::Stdio::null()).await;
    let start = Instant::now();
    while receiver.accepted().len() < expected.len() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "delivered {} of {}",
            receiver.accepted().len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let accepted = receiver.accepted();
    let mut kinds: Vec<String> = accepted.values().map(|(k, _)| k.clone()).collect();
    kinds.sort();
    expected.sort();
    assert_eq!(kinds, expected);
    assert!(
        accepted.values().all(|(_, n)| *n == 1),
        "each accepted once: {accepted:?}"
    );

    // The operator's view: every notification delivered, with its attempts.
    let (code, out, err) = outbox_cli(&["list", "--state", "delivered"], &config).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), expected.len(), "{out}");
    let (code, out, err) = outbox_cli(&["list", "--state", "queued"], &config).await;
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let listed = Command::new(BIN)
        .args(["--output", "json", "outbox", "list", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.len(), expected.len());
    assert!(listed.iter().any(|n| n["attempts"].as_u64() > Some(1)));
    let first = listed[0]["id"].as_i64().unwrap();

    // `outbox retry ID` sends it again (same webhook-id: receivers deduplicate).
    let (code, out, err) = outbox_cli(&["retry", &first.to_string()], &config).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("queued {first}")), "{out}");
    let start = Instant::now();
    while receiver.accepted()[&format!("msg_{first}")].1 < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "retry not delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, _, err) = outbox_cli(&["retry", "999999"], &config).await;
    assert_eq!(code, 2);
    assert!(err.contains("no notification 999999"), "{err}");
    let (code, _, err) = outbox_cli(&["list", "--state", "lost"], &config).await;
    assert_eq!(code, 2);
    assert!(err.contains("--state lost"), "{err}");
    drop(server);
}

/// A channel a policy names but the configuration lacks is a load error, in `policy validate
/// --config` and at `serve`, not a silent drop; so is a Slack channel in this build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_notify_channel_is_a_load_error() {
    for (channel, needle) in [
        (
            "webhook:nope",
            "`webhook:nope` (policy `routed`) is not configured",
        ),
        (
            "slack:#ops",
            "needs the Slack app configured; add a [slack] section",
        ),
        (
            "teams:sre",
            "needs the Teams bot configured; add a [teams] section",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::support::write_config(dir.path(), "");
        std::fs::write(
            dir.path().join("policies/routed.cedar"),
            format!(
                "@id(\"routed\") @effect(\"review\") @approvers(\"group:sre\") @notify(\"{channel}\")\n\
                 permit (principal, action == Action::\"routed\", resource);\n"
            ),
        )
        .unwrap();
        let out = Command::new(BIN)
            .args(["policy", "validate", "--config"])
            .arg(&config)
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(needle), "{err}");
        let out = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(needle), "{err}");
    }
}
