//! `webhook:NAME` channels end to end: a held action's notifications reach a Standard Webhooks
//! receiver in order, signed so the reference library accepts them; a receiver that fails
//! (500), throttles (429 with `Retry-After`) and recovers gets each notification once accepted;
//! one that keeps failing dead-letters it after `max_attempts`, and a requeue delivers it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use countersign_channels::{Channels, Deliverer};
use countersign_core::Ballot;
use countersign_gateway::config::Config;
use countersign_gateway::{Gateway, Submission};
use countersign_store::{Notification, OutboxChange, OutboxFilter, OutboxState};

use crate::receiver::Receiver;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const POLICIES: &str = r#"@id("deploy") @effect("review") @approvers("human:alice")
@notify("webhook:ops")
permit (principal, action == Action::"deploy", resource);

@id("export") @effect("review") @approvers("human:alice")
permit (principal, action == Action::"export", resource);

@id("read")
permit (principal, action == Action::"read", resource);
"#;

/// A gateway over a fresh SQLite file whose `[[webhooks]]` are `ops` (routed by `@notify`)
/// and `pager` (a default route, `decided` only), both at `url`.
fn config(dir: &Path, url: &str, outbox: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/p.cedar"), POLICIES).unwrap();
    let toml = format!(
        r#"database = "sqlite://gw.db"
policies = "policies"

[[identities]]
id = "bot"
kind = "agent"
api_key_sha256 = "5c88176db2bbe3009646236b9b18383b494d5ebf9b57603403ac2b090e9b256f"

[[identities]]
id = "alice"
kind = "human"
api_key_sha256 = "dde96f5b27b2298476b272c037dfd2cb5438e3495510c51035db1ef55f2994a4"

[[webhooks]]
name = "ops"
url = "{url}"
secret = "{SECRET}"

[[webhooks]]
name = "pager"
url = "{url}"
secret = "{SECRET}"
events = ["decided"]

[outbox]
{outbox}
"#
    );
    let path = dir.join("countersign.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

struct Setup {
    _dir: tempfile::TempDir,
    gateway: Arc<Gateway>,
    receiver: Receiver,
    _worker: tokio::task::JoinHandle<()>,
}

async fn setup(outbox: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let config = Config::load(&config(dir.path(), &url, outbox)).unwrap();
    let store = countersign_gateway::open_store(&config.database)
        .await
        .unwrap();
    let gateway = Gateway::with_store(&config, store, countersign_gateway::system_clock()).unwrap();
    let channels = Channels::from_config(&config).unwrap();
    let worker = tokio::spawn(
        Deliverer::new(gateway.clone(), channels, config.outbox.clone()).deliver_forever(),
    );
    Setup {
        _dir: dir,
        gateway,
        receiver,
        _worker: worker,
    }
}

fn who(gateway: &Gateway, token: &str) -> Arc<countersign_core::Identity> {
    gateway.identities().authenticate(token).unwrap()
}

async fn submit(gateway: &Gateway, action: &str) -> String {
    let sub = Submission {
        action: action.into(),
        resource: "svc/api".into(),
        environment: Some("prod".into()),
        params: Some(serde_json::json!({"version": "1.2.3", "password": "hunter2-secret"})),
        justification: Some("release".into()),
        ..Default::default()
    };
    let (view, _) = gateway.submit(&who(gateway, "tok-bot"), sub).await.unwrap();
    view.record.id
}

async fn rows(gateway: &Gateway) -> Vec<Notification> {
    gateway
        .store()
        .outbox_list(OutboxFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the reference library over the received requests; one line per request.
fn verify_with_reference(received: &[crate::receiver::Received], secret: &str) -> Vec<String> {
    let python = std::env::var("COUNTERSIGN_PYTHON").unwrap_or_else(|_| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        root.join("target/pyenv/bin/python").display().to_string()
    });
    let requests: Vec<serde_json::Value> = received
        .iter()
        .map(|r| {
            serde_json::json!({
                "headers": r.headers.iter().cloned().collect::<std::collections::HashMap<_, _>>(),
                "body": r.body,
            })
        })
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        serde_json::to_vec(&serde_json::json!({"secret": secret, "requests": requests})).unwrap(),
    )
    .unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/verify_webhooks.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .arg(file.path())
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e} (run scripts/test once to provision it)"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviews_notifications_arrive_in_order_signed_and_masked() {
    let s = setup("backoff_base = \"20ms\"").await;
    let g = &s.gateway;
    // An allowed action notifies nobody.
    submit(g, "read").await;
    let id = submit(g, "deploy").await;
    g.vote(&who(g, "tok-alice"), &id, Ballot::Approve { comment: None })
        .await
        .unwrap();
    until("3 notifications accepted", || {
        s.receiver.accepted().len() == 3
    })
    .await;
    let got = s.receiver.accepted();
    let kinds: Vec<String> = got
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    // `@notify` routes to `ops` only: the default `pager` route is not added.
    assert_eq!(kinds, ["review_opened", "voted", "decided"]);
    for r in &got {
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["data"]["action"]["id"], id.as_str());
        assert_eq!(body["data"]["channel"], "webhook:ops");
        assert!(!r.body.contains("hunter2-secret"), "masked: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let lines = verify_with_reference(&got, SECRET);
    assert_eq!(lines.len(), 3);
    for (line, kind) in lines.iter().zip(&kinds) {
        assert!(
            line.starts_with("ok msg_") && line.ends_with(kind.as_str()),
            "{line}"
        );
    }
    // A forged body or a wrong secret is refused by the reference library: it checks something.
    let mut forged = got[0].clone();
    forged.body = forged.body.replace("deploy", "destroy");
    let bad = verify_with_reference(&[forged], SECRET);
    assert!(bad[0].starts_with("bad"), "{bad:?}");
    let bad = verify_with_reference(&got[..1], "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert!(bad[0].starts_with("bad"), "{bad:?}");

    let rows = rows(g).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r.state == OutboxState::Delivered && r.attempts == 1));
    let metrics = g.render_metrics().await;
    assert!(
        metrics.contains("countersign_outbox_delivered_total{channel=\"webhook:ops\"} 3"),
        "{metrics}"
    );
    assert!(metrics
        .contains("countersign_outbox_delivery_latency_seconds_count{channel=\"webhook:ops\"} 3"));
    assert!(metrics.contains(
        "countersign_outbox_notifications{channel=\"webhook:ops\",state=\"delivered\"} 3"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_then_throttling_receiver_gets_each_notification_once_accepted() {
    let s = setup("backoff_base = \"20ms\"\nbackoff_max = \"40ms\"").await;
    s.receiver
        .script(&[(500, None), (503, None), (429, Some("1")), (200, None)]);
    let g = &s.gateway;
    // No `@notify`: the default routes, `ops` (every kind) and `pager` (`decided` only).
    let id = submit(g, "export").await;
    until("review_opened accepted", || {
        s.receiver.accepted().len() == 1
    })
    .await;
    let all = s.receiver.received();
    assert_eq!(
        all.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 503, 429, 200]
    );
    // One message id across the retries; Retry-After (1 s) honoured, well above the backoff.
    assert!(all
        .iter()
        .all(|r| r.header("webhook-id") == all[0].header("webhook-id")));
    assert!(all[3].at.duration_since(all[2].at) >= Duration::from_millis(950));
    g.vote(
        &who(g, "tok-alice"),
        &id,
        Ballot::Deny {
            comment: Some("not today".into()),
        },
    )
    .await
    .unwrap();
    until("all accepted", || s.receiver.accepted().len() == 4).await;
    let lines = verify_with_reference(&s.receiver.accepted(), SECRET);
    assert!(lines.iter().all(|l| l.starts_with("ok")), "{lines:?}");
    let rows = rows(g).await;
    let summary: Vec<(&str, &str, u32)> = rows
        .iter()
        .map(|r| (r.channel.as_str(), r.kind.as_str(), r.attempts))
        .collect();
    assert_eq!(
        summary,
        [
            ("webhook:ops", "review_opened", 4),
            ("webhook:ops", "voted", 1),
            ("webhook:ops", "decided", 1),
            ("webhook:pager", "decided", 1),
        ]
    );
    let metrics = g.render_metrics().await;
    assert!(
        metrics.contains("countersign_outbox_failed_total{channel=\"webhook:ops\"} 3"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_dead_letter_after_max_attempts_and_a_requeue_delivers_them() {
    let s = setup("backoff_base = \"10ms\"\nbackoff_max = \"20ms\"\nmax_attempts = 3").await;
    s.receiver.always(Some(500));
    let g = &s.gateway;
    let id = submit(g, "deploy").await;
    let dead = |rows: &[Notification]| rows.iter().any(|r| r.state == OutboxState::Dead);
    let start = Instant::now();
    loop {
        if dead(&rows(g).await) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let row = rows(g).await.remove(0);
    assert_eq!((row.state, row.attempts), (OutboxState::Dead, 3));
    assert_eq!(
        row.last_error.as_deref(),
        Some("the receiver answered 500 Internal Server Error")
    );
    assert_eq!(s.receiver.received().len(), 3);
    // A permanent refusal (400) dead-letters at once.
    s.receiver.always(Some(400));
    g.cancel(&who(g, "tok-bot"), &id).await.unwrap();
    loop {
        let r = rows(g).await;
        if r.len() == 2 && r[1].state == OutboxState::Dead {
            assert_eq!(r[1].attempts, 1);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "400 not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The receiver is fixed; the operator requeues both (what `countersign outbox retry` does).
    s.receiver.always(None);
    let now = g.time();
    let ids: Vec<i64> = rows(g).await.iter().map(|r| r.id).collect();
    g.store()
        .outbox_record(
            ids.iter()
                .map(|&id| OutboxChange::Requeue { id, at: now })
                .collect(),
        )
        .await
        .unwrap();
    until("requeued delivered", || s.receiver.accepted().len() == 2).await;
    let kinds: Vec<String> = s
        .receiver
        .accepted()
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["review_opened", "cancelled"]);
    let metrics = g.render_metrics().await;
    assert!(
        metrics.contains("countersign_outbox_dead_total{channel=\"webhook:ops\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed_and_slow_or_unreachable_receivers_are_retried() {
    let s = setup("backoff_base = \"10ms\"\nbackoff_max = \"20ms\"\ntimeout = \"200ms\"").await;
    // A redirect is not followed (the signed event goes only where configured): dead at once.
    s.receiver.always(Some(302));
    let g = &s.gateway;
    submit(g, "deploy").await;
    let start = Instant::now();
    let row = loop {
        let r = rows(g).await;
        if r.first().is_some_and(|r| r.state == OutboxState::Dead) {
            break r[0].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "302 not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(row.attempts, 1);
    assert_eq!(
        s.receiver.received().len(),
        1,
        "the Location was not fetched"
    );
    // A receiver slower than `timeout` is retried, then delivered once it answers in time.
    s.receiver.always(None);
    s.receiver.delay(Some(Duration::from_millis(600)));
    submit(g, "deploy").await;
    let start = Instant::now();
    loop {
        let r = rows(g).await;
        if r.len() == 2 && r[1].attempts >= 2 {
            assert_eq!(r[1].state, OutboxState::Queued);
            assert!(
                r[1].last_error
                    .as_deref()
                    .unwrap_or("")
                    .contains("request failed"),
                "{r:?}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timeout not retried"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.receiver.delay(None);
    until("the slow one delivered", || {
        !s.receiver.accepted().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_receivers_error_names_no_url_secret() {
    let dir = tempfile::tempdir().unwrap();
    let url = "http://127.0.0.1:1/hook?token=sekret-in-query";
    let config = Config::load(&config(dir.path(), url, "backoff_base = \"10ms\"")).unwrap();
    let store = countersign_gateway::open_store(&config.database)
        .await
        .unwrap();
    let gateway = Gateway::with_store(&config, store, countersign_gateway::system_clock()).unwrap();
    let deliverer = Deliverer::new(
        gateway.clone(),
        Channels::from_config(&config).unwrap(),
        config.outbox.clone(),
    );
    submit(&gateway, "deploy").await;
    assert_eq!(deliverer.round().await.unwrap(), 1);
    let row = rows(&gateway).await.remove(0);
    assert_eq!((row.state, row.attempts), (OutboxState::Queued, 1));
    let error = row.last_error.unwrap();
    assert!(error.starts_with("request failed"), "{error}");
    assert!(!error.contains("sekret"), "{error}");
}

/// Two processes on one SQLite file (two gateways, two writers, two delivery workers, each
/// with the lease SQLite always grants) send each notification once: rows are claimed before
/// they are sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_sharing_a_database_send_each_notification_once() {
    let s = setup("backoff_base = \"10ms\"").await;
    let config = Config::load(&s._dir.path().join("countersign.toml")).unwrap();
    let store = countersign_gateway::open_store(&config.database)
        .await
        .unwrap();
    let other = Gateway::with_store(&config, store, countersign_gateway::system_clock()).unwrap();
    let _second = tokio::spawn(
        Deliverer::new(
            other.clone(),
            Channels::from_config(&config).unwrap(),
            config.outbox.clone(),
        )
        .deliver_forever(),
    );
    for i in 0..20 {
        let g = if i % 2 == 0 { &s.gateway } else { &other };
        submit(g, "deploy").await;
    }
    until("20 accepted", || s.receiver.accepted().len() >= 20).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = s.receiver.accepted();
    let mut ids: Vec<&str> = got.iter().filter_map(|r| r.header("webhook-id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((got.len(), ids.len()), (20, 20));
}

/// Every kind along a review's life reaches the receiver, in order: opened, a question asked
/// and answered, the vote, the decision, the reported result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_its_answer_the_decision_and_the_result_are_notified() {
    let s = setup("backoff_base = \"10ms\"").await;
    let g = &s.gateway;
    let (bot, alice) = (who(g, "tok-bot"), who(g, "tok-alice"));
    let id = submit(g, "deploy").await;
    g.vote(
        &alice,
        &id,
        Ballot::Clarify {
            question: "which cluster?".into(),
        },
    )
    .await
    .unwrap();
    g.answer(&bot, &id, "eu-1".into()).await.unwrap();
    g.vote(&alice, &id, Ballot::Approve { comment: None })
        .await
        .unwrap();
    let token = g.get(&bot, &id).await.unwrap().grant_token.unwrap();
    g.redeem(&bot, &token).await.unwrap();
    g.report(
        &bot,
        &id,
        countersign_core::Outcome::Succeeded,
        Some(0),
        None,
        None,
    )
    .await
    .unwrap();
    until("6 accepted", || s.receiver.accepted().len() == 6).await;
    let kinds: Vec<String> = s
        .receiver
        .accepted()
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "review_opened",
            "question_asked",
            "question_answered",
            "voted",
            "decided",
            "result_reported"
        ]
    );
}
