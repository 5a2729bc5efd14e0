//! Three real `countersign serve` processes on one PostgreSQL database (the server named by
//! `COUNTERSIGN_TEST_POSTGRES`, one fresh schema per test): wake-ups, exactly-once redemption,
//! one quorum count, background-work failover, and `kill -9` under load.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::cli::BIN;

/// A fresh schema in the test database; returns its URL.
async fn fresh_database(test: &str) -> String {
    let base = std::env::var("COUNTERSIGN_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "COUNTERSIGN_TEST_POSTGRES is not set: the multi-replica tests need PostgreSQL, e.g. \
             postgres://postgres@127.0.0.1:5432/test (scripts/test sets it and starts the server)"
        )
    });
    let schema = format!("r_{test}");
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

/// The shared config of all replicas, pointing at `db`.
fn write_config(dir: &Path, db: &str) -> std::path::PathBuf {
    write_config_with(dir, db, "")
}

/// The shared config of all replicas, pointing at `db`, with `extra` TOML.
fn write_config_with(dir: &Path, db: &str, extra: &str) -> std::path::PathBuf {
    let path = crate::support::write_config(dir, extra);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "database = \"sqlite://data/gw.db\"",
        &format!("database = \"{db}\""),
    );
    std::fs::write(&path, text).unwrap();
    path
}

struct Replica {
    url: String,
    child: Child,
}

impl Replica {
    async fn spawn(config: &Path) -> Replica {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("replica started")
            .unwrap()
            .unwrap_or_default();
        Replica {
            url: crate::cli::listening_url(&line),
            child,
        }
    }

    async fn kill9(&mut self) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    db: String,
    replicas: Vec<Replica>,
    http: reqwest::Client,
}

impl Cluster {
    /// Three replicas; the first is started alone (it creates the shared key files and takes
    /// the background-work lease), then the other two.
    async fn start(test: &str) -> Cluster {
        Cluster::start_with(test, "").await
    }

    /// [`Cluster::start`] with `extra` TOML in the shared config.
    async fn start_with(test: &str, extra: &str) -> Cluster {
        let db = fresh_database(test).await;
        let dir = tempfile::tempdir().unwrap();
        let config = write_config_with(dir.path(), &db, extra);
        let first = Replica::spawn(&config).await;
        // Let the first replica take the lease before the others compete for it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (b, c) = tokio::join!(Replica::spawn(&config), Replica::spawn(&config));
        Cluster {
            dir,
            config,
            db,
            replicas: vec![first, b, c],
            http: crate::support::client(),
        }
    }

    fn url(&self, i: usize) -> &str {
        &self.replicas[i % self.replicas.len()].url
    }

    async fn post(&self, i: usize, who: &str, path: &str, body: Value) -> (StatusCode, Value) {
        post(&self.http, self.url(i), who, path, body).await
    }

    /// `who` approves action `id` through replica `i`.
    async fn approve(&self, i: usize, who: &str, id: &str) {
        let path = format!("/v1/reviews/{id}/votes");
        let (s, v) = self
            .post(i, who, &path, json!({"verdict": "approve"}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    /// The agent `bot` submits `action` on `resource` through replica `i`: the new action.
    async fn submit(&self, i: usize, action: &str, resource: &str) -> Value {
        let body = json!({"action": action, "resource": resource});
        let (s, v) = self.post(i, "bot", "/v1/actions", body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    async fn get(&self, i: usize, who: &str, path: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.url(i)))
            .bearer_auth(format!("tok-{who}"))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    who: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let resp = http
        .post(format!("{url}{path}"))
        .bearer_auth(format!("tok-{who}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_on_one_replica_releases_a_long_poll_on_another() {
    let c = Cluster::start("wakeup").await;
    for round in 0..3 {
        let v = c.submit(0, "deploy", &format!("r{round}")).await;
        let id = v["id"].as_str().unwrap().to_string();
        let (http, url, path) = (
            c.http.clone(),
            c.url(1).to_string(),
            format!("/v1/actions/{id}?wait=30"),
        );
        let poll = tokio::spawn(async move {
            let resp = http
                .get(format!("{url}{path}"))
                .bearer_auth("tok-bot")
                .send()
                .await
                .unwrap();
            (Instant::now(), resp.json::<Value>().await.unwrap())
        });
        // Give the long poll time to be waiting on replica 1.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let voted = Instant::now();
        c.approve(2, "alice", &id).await;
        let (released, view) = poll.await.unwrap();
        assert_eq!(view["status"], "approved", "{view}");
        // Released by the notification, not by the 5 s safety re-read or the 30 s wait.
        assert!(
            released.duration_since(voted) < Duration::from_secs(4),
            "released {:?} after the vote",
            released.duration_since(voted)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_redeemed_concurrently_on_every_replica_succeeds_once() {
    let c = Cluster::start("redeem").await;
    for round in 0..3 {
        let v = c.submit(round, "logs.read", &format!("r{round}")).await;
        let token = v["grant"]["token"].as_str().unwrap().to_string();
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let (http, url, token) = (c.http.clone(), c.url(i).to_string(), token.clone());
                tokio::spawn(async move {
                    post(
                        &http,
                        &url,
                        "bot",
                        "/v1/grants/redeem",
                        json!({"token": token}),
                    )
                    .await
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            let (s, v) = t.await.unwrap();
            match s {
                StatusCode::OK => ok += 1,
                StatusCode::CONFLICT => {}
                other => panic!("unexpected {other}: {v}"),
            }
        }
        assert_eq!(ok, 1, "redeemed {ok} times");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_on_different_replicas_reach_the_quorum_once() {
    let c = Cluster::start("quorum").await;
    let mut ids = Vec::new();
    for i in 0..8 {
        let v = c.submit(i, "db.export", &format!("t{i}")).await;
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        for (j, who) in ["bob", "carol"].into_iter().enumerate() {
            let (http, url, path) = (
                c.http.clone(),
                c.url(i + j + 1).to_string(),
                format!("/v1/reviews/{id}/votes"),
            );
            tasks.push(tokio::spawn(async move {
                post(&http, &url, who, &path, json!({"verdict": "approve"})).await
            }));
        }
    }
    for t in tasks {
        let (s, v) = t.await.unwrap();
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    for (i, id) in ids.iter().enumerate() {
        let (s, v) = c.get(i, "bot", &format!("/v1/actions/{id}")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["status"], "approved", "{v}");
        // One `approved` entry in the one audit log, whichever replica counted it.
        let (_, entries) = c
            .get(i, "alice", "/v1/audit/entries?start=0&limit=1000")
            .await;
        let approved = entries["entries"]
            .as_array()
            .unwrap_or_else(|| panic!("{entries}"))
            .iter()
            .filter(|e| e["entry"]["action_id"] == id.as_str() && e["entry"]["type"] == "approved")
            .count();
        assert_eq!(approved, 1, "{id}: {approved} approvals in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_moves_to_another_replica_when_the_leader_is_killed() {
    let mut c = Cluster::start("failover").await;
    // The first replica took the lease; it dies without a word.
    c.replicas[0].kill9().await;
    let v = c.submit(1, "quick", "r").await;
    let id = v["id"].as_str().unwrap().to_string();
    // The review's TTL is 1 s; a surviving replica must take the lease and expire it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = c.get(2, "bot", &format!("/v1/actions/{id}")).await;
        if v["status"] == "expired" {
            break;
        }
        assert!(Instant::now() < deadline, "never expired: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Exactly one `expired` entry.
    let (_, entries) = c
        .get(1, "alice", "/v1/audit/entries?start=0&limit=1000")
        .await;
    let expired = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["action_id"] == id.as_str() && e["entry"]["type"] == "expired")
        .count();
    assert_eq!(expired, 1);
}

/// The outbox on three replicas: only the lease holder delivers (each notification is
/// accepted once, whichever replica committed it), and when it is killed another takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_delivers_the_outbox_and_another_takes_over_after_kill_dash_nine() {
    use crate::outbox::{Receiver, SECRET};
    let (receiver, url) = Receiver::start(200).await;
    let extra = format!(
        "[[webhooks]]\nname = \"ops\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n\n\
         [outbox]\nbackoff_base = \"20ms\"\n"
    );
    let mut c = Cluster::start_with("outbox", &extra).await;
    let mut expected = Vec::new();
    for i in 0..9 {
        let v = c.submit(i % 3, "deploy", &format!("svc/{i}")).await;
        expected.push(format!("{}:review_opened", v["id"].as_str().unwrap()));
    }
    let wait_for = |n: usize| {
        let receiver = receiver.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while receiver.accepted().len() < n {
                assert!(
                    Instant::now() < deadline,
                    "delivered {} of {n}",
                    receiver.accepted().len()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait_for(9).await;
    // The leader (the first replica) dies; the next notifications still go out, once.
    c.replicas[0].kill9().await;
    for i in 9..15 {
        let v = c.submit(1 + i % 2, "deploy", &format!("svc/{i}")).await;
        expected.push(format!("{}:review_opened", v["id"].as_str().unwrap()));
    }
    wait_for(15).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let accepted = receiver.accepted();
    let mut kinds: Vec<String> = accepted.values().map(|(k, _)| k.clone()).collect();
    kinds.sort();
    expected.sort();
    assert_eq!(kinds, expected);
    assert!(accepted.values().all(|(_, n)| *n == 1), "{accepted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_of_a_replica_under_load_loses_no_acknowledged_decision() {
    let mut c = Cluster::start("crash").await;
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for k in 0..12 {
        let (http, url, acked) = (c.http.clone(), c.url(k).to_string(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let action = if (k + i) % 5 == 0 {
                    "deploy"
                } else {
                    "logs.read"
                };
                let resp = http
                    .post(format!("{url}/v1/actions"))
                    .bearer_auth("tok-bot")
                    .json(&json!({"action": action, "resource": format!("r{k}/{i}")}))
                    .send()
                    .await;
                let Ok(resp) = resp else { break };
                if resp.status() != StatusCode::CREATED {
                    break;
                }
                let Ok(v) = resp.json::<Value>().await else {
                    break;
                };
                acked
                    .lock()
                    .unwrap()
                    .push(v["id"].as_str().unwrap().to_string());
                if i > 2000 {
                    break;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.replicas[0].kill9().await;
    // The others keep going for a while, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.replicas[1].kill9().await;
    c.replicas[2].kill9().await;
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "the load ran: {} acknowledged",
        acked.len()
    );

    let (client, conn) = tokio_postgres::connect(&c.db, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let rows = client
        .query("SELECT id FROM actions WHERE id = ANY($1)", &[&acked])
        .await
        .unwrap();
    assert_eq!(rows.len(), acked.len(), "acknowledged actions lost");
    let with_entries: i64 = client
        .query_one(
            "SELECT COUNT(DISTINCT action_id) FROM audit_entries WHERE action_id = ANY($1)",
            &[&acked],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        with_entries as usize,
        acked.len(),
        "acknowledged actions without audit entries"
    );
    drop(client);
    let _ = driver.await;

    let out = Command::new(BIN)
        .args(["audit", "verify", "--config"])
        .arg(&c.config)
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = c.dir.path();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_the_schema_once() {
    let db = fresh_database("migrate").await;
    let run = || async {
        Command::new(BIN)
            .args(["migrate", "--database", &db])
            .output()
            .await
            .unwrap()
    };
    let first = run().await;
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("from version 0"));
    let again = run().await;
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));
}

/// The open-review gauge counts the store's reviews, whichever replica opened or closed them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_reports_every_open_review() {
    let c = Cluster::start("gauge").await;
    let gauge = |i: usize| {
        let (http, url) = (c.http.clone(), c.url(i).to_string());
        async move {
            let text = crate::support::get_text(&http, format!("{url}/metrics")).await;
            text.lines()
                .find_map(|l| l.strip_prefix("countersign_reviews_open "))
                .map(str::to_string)
        }
    };
    let v = c.submit(0, "deploy", "g").await;
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(gauge(1).await.as_deref(), Some("1"));
    c.approve(2, "alice", &id).await;
    assert_eq!(gauge(0).await.as_deref(), Some("0"));
}

/// `mcp stdio --config` runs its embedded gateway through the same bootstrap as `serve`, so on
/// PostgreSQL too (it used to refuse: "PostgreSQL is opened with Gateway::open"), with the
/// start-up entries in the log and a working API for reviewers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_mcp_gateway_runs_on_postgres() {
    let db = fresh_database("mcp_embedded").await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db);
    let port = crate::mcp::free_port();
    let api = format!("127.0.0.1:{port}");
    let mut proxy = Command::new(BIN)
        .args(["mcp", "stdio", "--token", "tok-bot", "--server-name", "x"])
        .arg("--config")
        .arg(&config)
        .args(["--api-listen", &api, "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Held open (the agent's side of stdio): `wait` below would close it, ending the proxy.
    let _agent = proxy.stdin.take().unwrap();
    tokio::select! {
        () = crate::mcp::wait_listening(port) => {}
        status = proxy.wait() => {
            let mut err = String::new();
            use tokio::io::AsyncReadExt;
            proxy.stderr.take().unwrap().read_to_string(&mut err).await.unwrap();
            panic!("the proxy exited ({status:?}): {err}");
        }
    }
    let http = crate::support::client();
    let url = format!("http://{api}");
    let (s, v) = post(
        &http,
        &url,
        "bot",
        "/v1/actions",
        json!({"action": "logs.read", "resource": "r"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let log: Value = http
        .get(format!("{url}/v1/audit/entries?start=0&limit=10"))
        .bearer_auth("tok-alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types[..3],
        ["config_loaded", "policy_loaded", "submitted"],
        "{log}"
    );
    proxy.kill().await.unwrap();
}
