//! The store stays correct, and says when it is not, with other processes on its SQLite file:
//! `countersign keys create --config` beside a running gateway, a database that refuses writes.

use reqwest::StatusCode;
use serde_json::json;

use crate::cli::run;
use crate::support::{code, id, Gw};

/// `countersign keys create --config` (another process) appends to the log of a running
/// gateway's SQLite file; the gateway's next writes land after it. Once, every later write of the
/// gateway failed with `UNIQUE constraint failed: audit_entries.idx` until it restarted, while
/// `/healthz` answered ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_keeps_writing_after_keys_create_writes_its_database() {
    let gw = Gw::start().await;
    let config = gw.dir.path().join("countersign.toml");
    let config = config.to_str().unwrap();
    // The gateway writes first, so its writer knows the log's end.
    gw.submit("bot", json!({"action": "logs.read", "resource": "r"}))
        .await;
    for name in ["deploy-bot", "report-bot"] {
        let (rc, out, err) = run(
            &["keys", "create", "--config", config, "--identity", name],
            "",
            "",
        )
        .await;
        assert_eq!(rc, 0, "{err}");
        assert!(out.trim().starts_with("csk_"), "{out}");
        // Every kind of write of the gateway lands after the other process's.
        gw.submit("bot", json!({"action": "logs.read", "resource": "r"}))
            .await;
        let v = gw
            .submit("bot", json!({"action": "deploy", "resource": name}))
            .await;
        let (s, r) = gw
            .vote("alice", &id(&v), json!({"verdict": "approve"}))
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["status"], "approved", "{r}");
    }
    let (s, r) = gw.get("", "/readyz").await;
    assert_eq!((s, r["status"].as_str()), (StatusCode::OK, Some("ready")));
    let (rc, out, err) = run(&["audit", "verify", "--config", config], "", "").await;
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("verified"), "{out}");
}

/// `/readyz` answers 503 `store_unavailable` with the reason while the store cannot write, and
/// 200 again once a write succeeds; `/healthz` stays 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_a_store_that_cannot_write_until_it_writes_again() {
    let gw = Gw::start().await;
    let (s, r) = gw.get("", "/readyz").await;
    assert_eq!((s, r["status"].as_str()), (StatusCode::OK, Some("ready")));
    let db = gw.dir.path().join("data/gw.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER full BEFORE INSERT ON audit_entries \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    )
    .unwrap();
    let (s, _) = gw
        .post(
            "bot",
            "/v1/actions",
            json!({"action": "logs.read", "resource": "r"}),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    let (s, r) = gw.get("", "/readyz").await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
    );
    let message = r["error"]["message"].as_str().unwrap();
    assert!(message.contains("disk is full"), "{message}");
    let (s, _) = gw.get("", "/healthz").await;
    assert_eq!(s, StatusCode::OK);

    conn.execute_batch("DROP TRIGGER full").unwrap();
    gw.submit("bot", json!({"action": "logs.read", "resource": "r"}))
        .await;
    let (s, r) = gw.get("", "/readyz").await;
    assert_eq!(
        (s, r["status"].as_str()),
        (StatusCode::OK, Some("ready")),
        "{r}"
    );
}
