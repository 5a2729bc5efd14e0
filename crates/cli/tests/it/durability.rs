//! `kill -9` loses nothing that was acknowledged: every decision a client saw is in the database
//! after a restart.

use reqwest::StatusCode;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cli::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_under_load_loses_no_acknowledged_decision() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::spawn(dir.path()).await;
    let http = crate::support::client();

    // Acknowledged review decisions made before the crash.
    let v: serde_json::Value = http
        .post(format!("{}/v1/actions", server.url))
        .bearer_auth("tok-bot")
        .json(&json!({"action": "deploy", "resource": "r"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reviewed = v["id"].as_str().unwrap().to_string();
    let resp = http
        .post(format!("{}/v1/reviews/{reviewed}/votes", server.url))
        .bearer_auth("tok-alice")
        .json(&json!({"verdict": "approve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Write load from 16 clients; every 201 is recorded as acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for c in 0..16 {
        let (http, url, acked) = (http.clone(), server.url.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let action = if (c + i) % 5 == 0 {
                    "deploy"
                } else {
                    "logs.read"
                };
                let resp = http
                    .post(format!("{url}/v1/actions"))
                    .bearer_auth("tok-bot")
                    .json(&json!({"action": action, "resource": format!("r{c}/{i}")}))
                    .send()
                    .await;
                let Ok(resp) = resp else { break };
                if resp.status() != StatusCode::CREATED {
                    break;
                }
                let Ok(v) = resp.json::<serde_json::Value>().await else {
                    break;
                };
                acked
                    .lock()
                    .unwrap()
                    .push(v["id"].as_str().unwrap().to_string());
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9().await;
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "the load ran: {} acknowledged",
        acked.len()
    );

    let server = Server::spawn(dir.path()).await;
    let db = dir.path().join("data/gw.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut stmt = conn
        .prepare("SELECT status FROM actions WHERE id = ?1")
        .unwrap();
    for id in &acked {
        let status: String = stmt
            .query_row([id], |r| r.get(0))
            .unwrap_or_else(|e| panic!("acknowledged action {id} lost: {e}"));
        assert!(status == "allowed" || status == "pending", "{id}: {status}");
    }
    let status: String = stmt.query_row([&reviewed], |r| r.get(0)).unwrap();
    assert_eq!(status, "approved");
    // Every acknowledged action has its audit entries, and the log verifies after the crash.
    let mut entries = conn
        .prepare("SELECT COUNT(*) FROM audit_entries WHERE action_id = ?1")
        .unwrap();
    for id in acked.iter().step_by(17) {
        let n: i64 = entries.query_row([id], |r| r.get(0)).unwrap();
        assert!(n >= 1, "{id} has no audit entry");
    }
    let config = dir.path().join("countersign.toml");
    let out = tokio::process::Command::new(crate::cli::BIN)
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And the restarted server serves them.
    let resp = http
        .get(format!("{}/v1/actions/{reviewed}", server.url))
        .bearer_auth("tok-bot")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}
