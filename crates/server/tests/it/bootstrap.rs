//! The one bootstrap: any store, the start-up entries, the registered workers, a test clock.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use countersign_core::{Status, Timestamp};
use countersign_gateway::config::Config;
use countersign_gateway::{Clock, Submission};
use countersign_server::{Options, Server};

const POLICY: &str = r#"@id("quick") @effect("review") @approvers("human:alice") @ttl("1m")
permit (principal, action == Action::"deploy", resource);
"#;

/// A config for `database` in `dir`, with an agent `bot` (token `tok-bot`) and a human `alice`.
fn config(dir: &Path, database: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/p.cedar"), POLICY).unwrap();
    let toml = format!(
        r#"database = "{database}"
policies = "policies"

[[identities]]
id = "bot"
kind = "agent"
api_key_sha256 = "5c88176db2bbe3009646236b9b18383b494d5ebf9b57603403ac2b090e9b256f"

[[identities]]
id = "alice"
kind = "human"
api_key_sha256 = "dde96f5b27b2298476b272c037dfd2cb5438e3495510c51035db1ef55f2994a4"
"#
    );
    let path = dir.join("countersign.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// A clock that moves only when told to.
fn test_clock(start: i64) -> (Clock, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(start));
    let read = now.clone();
    (
        Arc::new(move || Timestamp(read.load(Ordering::SeqCst))),
        now,
    )
}

async fn entry_types(server: &Server) -> Vec<String> {
    let who = server
        .gateway()
        .identities()
        .authenticate("tok-alice")
        .unwrap();
    server
        .gateway()
        .audit_entries(&who, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
            v["type"].as_str().unwrap_or("?").to_string()
        })
        .collect()
}

async fn records_start_entries_and_registers_the_workers(database: &str, dir: &Path) {
    let config = Config::load(&config(dir, database)).unwrap();
    let server = Server::open(&config).await.unwrap();
    assert_eq!(
        entry_types(&server).await,
        ["config_loaded", "policy_loaded"]
    );
    let mut server = server;
    assert_eq!(
        server.workers().names(),
        [
            "expiry sweeper",
            "checkpoint signer",
            "credential sweeper",
            "outbox delivery"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_start_records_the_configuration_and_registers_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    records_start_entries_and_registers_the_workers("sqlite://gw.db", dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_start_records_the_configuration_and_registers_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database("server_bootstrap").await;
    records_start_entries_and_registers_the_workers(&db, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_harness_may_start_without_the_start_entries() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&config(dir.path(), "sqlite://gw.db")).unwrap();
    let options = Options {
        record_loaded: false,
        ..Default::default()
    };
    let server = Server::open_with(&config, options).await.unwrap();
    assert!(entry_types(&server).await.is_empty());
}

/// The sweeper registered by the bootstrap expires a review when the injected clock passes its
/// deadline: no test sleeps for the review's minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_started_sweeper_follows_the_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&config(dir.path(), "sqlite://gw.db")).unwrap();
    let (clock, now) = test_clock(1_000_000);
    let options = Options {
        record_loaded: true,
        clock,
    };
    let running = Server::open_with(&config, options).await.unwrap().start();
    let gw = running.gateway().clone();
    let bot = gw.identities().authenticate("tok-bot").unwrap();
    let submit = |resource: &str| Submission {
        action: "deploy".into(),
        resource: resource.into(),
        ..Default::default()
    };
    let (first, _) = gw.submit(&bot, submit("a")).await.unwrap();
    assert_eq!(first.record.status, Status::Pending);
    now.fetch_add(61_000, Ordering::SeqCst);
    // A new review wakes the sweeper at once; it reads the clock that has moved on.
    gw.submit(&bot, submit("b")).await.unwrap();
    let view = gw
        .wait(&bot, &first.record.id, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(view.record.status, Status::Expired);
    drop(running);
}

/// A fresh schema in the test database; returns its URL.
async fn fresh_database(test: &str) -> String {
    let base = std::env::var("COUNTERSIGN_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "COUNTERSIGN_TEST_POSTGRES is not set: the PostgreSQL tests need a server, e.g. \
             postgres://postgres@127.0.0.1:5432/test (scripts/test sets it and starts the server)"
        )
    });
    let schema = format!("s_{test}");
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {base}: {e}"));
    let driver = tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
        ))
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-csearch_path%3D{schema}")
}

/// The core's field limits hold for every front that calls the gateway (embedded MCP included),
/// with the API's message and code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_enforces_the_field_limits_for_every_front() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&config(dir.path(), "sqlite://gw.db")).unwrap();
    let server = Server::open(&config).await.unwrap();
    let gw = server.gateway();
    let bot = gw.identities().authenticate("tok-bot").unwrap();
    let sub = Submission {
        action: "deploy".into(),
        resource: "r".into(),
        justification: Some("x".repeat(16 * 1024 + 1)),
        ..Default::default()
    };
    let err = gw.submit(&bot, sub).await.unwrap_err();
    assert_eq!(err.code(), "invalid_request");
    assert_eq!(
        err.to_string(),
        "`justification` is longer than 16384 bytes"
    );
    let sub = Submission {
        action: "deploy".into(),
        resource: "r".into(),
        justification: Some("x".repeat(16 * 1024)),
        ..Default::default()
    };
    let (view, _) = gw.submit(&bot, sub).await.unwrap();
    let alice = gw.identities().authenticate("tok-alice").unwrap();
    let ballot = countersign_core::Ballot::Approve {
        comment: Some("y".repeat(4097)),
    };
    let err = gw.vote(&alice, &view.record.id, ballot).await.unwrap_err();
    assert_eq!(err.code(), "invalid_request");
}
