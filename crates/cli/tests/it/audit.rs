//! The audit trail end to end: checkpoints signed by the running gateway verify with its public
//! key; an action's entries come with inclusion proofs; bundles export and verify offline; edits
//! to a bundle or to the SQLite file are caught and named.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use countersign_audit::checkpoint::Checkpoint;
use countersign_audit::merkle::{check_record, check_tree, leaf_hash};
use countersign_audit::note::{self, Verifier};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::cli::Server;
use crate::support::{code, id, Gw};

fn hashes(v: &Value) -> Vec<[u8; 32]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect()
}

/// Waits until a checkpoint covers at least `size` entries; returns (note, checkpoint).
async fn checkpoint_of(gw: &Gw, key: &Verifier, size: u64) -> (String, Checkpoint) {
    let started = Instant::now();
    loop {
        let resp = gw
            .http
            .get(format!("{}/v1/audit/checkpoint", gw.url))
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::OK {
            let text = resp.text().await.unwrap();
            let opened = note::open(&text, std::slice::from_ref(key)).unwrap();
            let cp = Checkpoint::parse(&opened.text).unwrap();
            if cp.size() >= size {
                return (text, cp);
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no checkpoint of size {size}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_and_proofs_verify_with_the_published_key() {
    let gw = Gw::start().await;
    let key_text =
        crate::support::get_text(&gw.http, format!("{}/v1/audit/public-key", gw.url)).await;
    let key = Verifier::parse(key_text.trim()).unwrap();
    assert_eq!(key.name(), "countersign.local/audit");

    let v = gw
        .submit("bot", json!({"action": "deploy", "resource": "r"}))
        .await;
    gw.vote("alice", &id(&v), json!({"verdict": "approve"}))
        .await;
    let (first_note, first) = checkpoint_of(&gw, &key, 5).await;

    // The action's entries, with proofs against the latest checkpoint.
    let (s, action) = gw
        .get("bot", &format!("/v1/actions/{}?proof=true", id(&v)))
        .await;
    assert_eq!(s, StatusCode::OK, "{action}");
    let audit = &action["audit"];
    assert_eq!(audit["indexes"], json!([0, 1, 2, 3, 4]));
    let cp_text = audit["checkpoint"].as_str().unwrap();
    let cp = Checkpoint::parse(
        &note::open(cp_text, std::slice::from_ref(&key))
            .unwrap()
            .text,
    )
    .unwrap();
    let (_, entries) = gw.get("alice", "/v1/audit/entries?start=0&limit=10").await;
    for p in audit["proofs"].as_array().unwrap() {
        let i = p["index"].as_u64().unwrap();
        let entry = &entries["entries"][i as usize];
        let body = serde_jcs::to_vec(&entry["entry"]).unwrap();
        assert_eq!(B64.encode(leaf_hash(&body)), entry["leaf_hash"]);
        check_record(
            &hashes(&p["hashes"]),
            cp.size(),
            cp.root(),
            i,
            &leaf_hash(&body),
        )
        .unwrap();
    }
    let kinds: Vec<&str> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        &kinds[..5],
        [
            "submitted",
            "review_opened",
            "voted",
            "approved",
            "grant_issued"
        ]
    );
    assert_eq!(entries["entries"][2]["entry"]["actor"], "alice");

    // More entries, a later checkpoint, and a consistency proof between the two.
    for _ in 0..3 {
        gw.submit("bot", json!({"action": "logs.read", "resource": "r"}))
            .await;
    }
    let (_, second) = checkpoint_of(&gw, &key, first.size() + 3).await;
    let (s, proof) = gw
        .get(
            "bot",
            &format!(
                "/v1/audit/proof/consistency?first={}&second={}",
                first.size(),
                second.size()
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{proof}");
    check_tree(
        &hashes(&proof["hashes"]),
        second.size(),
        second.root(),
        first.size(),
        first.root(),
    )
    .unwrap();
    let (s, proof) = gw
        .get(
            "bot",
            &format!(
                "/v1/audit/proof/inclusion?index=2&tree_size={}",
                second.size()
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let body = serde_jcs::to_vec(&entries["entries"][2]["entry"]).unwrap();
    check_record(
        &hashes(&proof["hashes"]),
        second.size(),
        second.root(),
        2,
        &leaf_hash(&body),
    )
    .unwrap();
    assert!(first_note.contains("\u{2014} countersign.local/audit "));

    // Agents may not read the whole log; out-of-range proofs are 400.
    let (s, r) = gw.get("bot", "/v1/audit/entries").await;
    assert_eq!((s, code(&r)), (StatusCode::FORBIDDEN, "forbidden"));
    let (s, r) = gw
        .get("bot", "/v1/audit/proof/inclusion?index=0&tree_size=999999")
        .await;
    assert_eq!((s, code(&r)), (StatusCode::BAD_REQUEST, "invalid_request"));
}

async fn run(args: &[&str]) -> (i32, String, String) {
    crate::cli::run(args, "", "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_verify_and_catch_tampering_offline() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::spawn(dir.path()).await;
    let http = crate::support::client();
    for i in 0..6 {
        let v: Value = http.post(format!("{}/v1/actions", server.url)).bearer_auth("tok-bot")
            .json(&json!({"action": if i % 2 == 0 { "deploy" } else { "logs.read" }, "resource": format!("r{i}")}))
            .send().await.unwrap().json().await.unwrap();
        if v["status"] == "pending" {
            http.post(format!(
                "{}/v1/reviews/{}/votes",
                server.url,
                v["id"].as_str().unwrap()
            ))
            .bearer_auth("tok-alice")
            .json(&json!({"verdict": "approve"}))
            .send()
            .await
            .unwrap();
        }
    }
    let key = crate::support::get_text(&http, format!("{}/v1/audit/public-key", server.url)).await;
    let started = Instant::now();
    let checkpoint = loop {
        let r = http
            .get(format!("{}/v1/audit/checkpoint", server.url))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            let t = r.text().await.unwrap();
            // config and policy loaded + 3 reviews × 5 entries + 3 allowed × 2 entries
            if t.contains("\n23\n") {
                break t;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The log opens with what this process runs: its configuration and policy set.
    let first: Value = http
        .get(format!("{}/v1/audit/entries?start=0&limit=2", server.url))
        .bearer_auth("tok-alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["entries"][0]["entry"]["type"], "config_loaded");
    assert_eq!(
        first["entries"][0]["entry"]["event"]["sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert_eq!(first["entries"][1]["entry"]["type"], "policy_loaded");
    server.kill9().await;

    let config = dir.path().join("countersign.toml");
    let config = config.to_str().unwrap();
    let bundle = dir.path().join("bundle.jsonl");
    let bundle_s = bundle.to_str().unwrap();
    let (code, out, err) = run(&[
        "audit", "export", "--config", config, "--format", "jsonl", "--out", bundle_s,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("exported 23 entries"), "{out}");
    let (code, out, err) = run(&["audit", "verify", bundle_s, "--key", key.trim()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("verified 23 entries, tree size 23, root "),
        "{out}"
    );
    let prev = dir.path().join("prev.note");
    std::fs::write(&prev, &checkpoint).unwrap();
    let (code, _, err) = run(&[
        "audit",
        "verify",
        bundle_s,
        "--key",
        key.trim(),
        "--previous-checkpoint",
        prev.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");

    // One modified byte in entry 7 of the bundle.
    let text = std::fs::read_to_string(&bundle).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[2 + 7] = lines[2 + 7].replacen("\"actor\":\"", "\"actor\":\"x", 1);
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, lines.join("\n")).unwrap();
    let (code, _, err) = run(&[
        "audit",
        "verify",
        tampered.to_str().unwrap(),
        "--key",
        key.trim(),
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("entry 7 was modified"), "{err}");

    // A partial (time-window) export carries proofs and verifies too.
    let (code, _, err) = run(&[
        "audit",
        "export",
        "--config",
        config,
        "--out",
        bundle_s,
        "--since",
        "2000-01-01T00:00:00Z",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read_to_string(&bundle)
        .unwrap()
        .contains("\"proof\""));
    let (code, _, err) = run(&["audit", "verify", bundle_s, "--key", key.trim()]).await;
    assert_eq!(code, 0, "{err}");

    // The stored log verifies; then a row edited directly in SQLite is caught and named.
    let (code, out, err) = run(&["audit", "verify", "--config", config]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("verified 23 entries"), "{out}");

    // CSV for spreadsheets, OCSF for SIEMs, and the evidence report.
    let csv = dir.path().join("log.csv");
    let (code, out, err) = run(&[
        "audit",
        "export",
        "--config",
        config,
        "--format",
        "csv",
        "--out",
        csv.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("exported 23 entries"), "{out}");
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv_text.matches("\r\n").count(), 24, "header + 23 rows");
    assert!(csv_text.contains(",submitted,"));
    let ocsf = dir.path().join("log.ocsf.jsonl");
    let (code, _, err) = run(&[
        "audit",
        "export",
        "--config",
        config,
        "--format",
        "ocsf",
        "--out",
        ocsf.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let events: Vec<Value> = std::fs::read_to_string(&ocsf)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 23);
    assert!(events.iter().any(|e| e["class_uid"] == 3003));
    assert!(events.iter().any(|e| e["class_uid"] == 6003));
    let report = dir.path().join("report.html");
    let (code, out, err) = run(&[
        "audit",
        "evidence",
        "--config",
        config,
        "--out",
        report.to_str().unwrap(),
        "--since",
        "2000-01-01T00:00:00Z",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("evidence report on 23 entries"), "{out}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<tr id=\"AC-5\">") && html.contains("<svg"));
    assert!(
        html.contains(checkpoint.lines().nth(2).unwrap()),
        "anchored to the checkpoint's root"
    );
    let (code, _, err) = run(&[
        "audit",
        "export",
        "--config",
        config,
        "--format",
        "xml",
        "--out",
        csv.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("use jsonl, csv or ocsf"), "{err}");

    let db = dir.path().join("data/gw.db");
    // A consistent copy (WAL included) to delete a row from, below.
    let copy = dir.path().join("copy.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE audit_entries SET body = CAST(replace(CAST(body AS TEXT), '\"actor\":\"alice\"', '\"actor\":\"bob\"') AS BLOB) WHERE idx = 4", []).unwrap();
    drop(conn);
    let (code, _, err) = run(&["audit", "verify", "--config", config, "--key", key.trim()]).await;
    assert_eq!(code, 1);
    assert!(err.contains("entry 4 was modified"), "{err}");
    // No evidence report from a log that does not verify.
    let (code, _, err) = run(&[
        "audit",
        "evidence",
        "--config",
        config,
        "--out",
        report.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("the log does not verify, no report made: entry 4 was modified"),
        "{err}"
    );
    // A row deleted from the middle of the log is named (on a copy taken before the edit above).
    let conn = rusqlite::Connection::open(&copy).unwrap();
    conn.execute("DELETE FROM audit_entries WHERE idx = 11", [])
        .unwrap();
    drop(conn);
    let url = format!("sqlite://{}", copy.display());
    let (code, _, err) = run(&["audit", "verify", "--database", &url, "--key", key.trim()]).await;
    assert_eq!(code, 1);
    assert!(err.contains("entry 11 was deleted"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_attempts_that_matter_are_audit_entries() {
    let gw = Gw::start().await;
    let v = gw
        .submit("alice", json!({"action": "deploy", "resource": "r"}))
        .await;
    let (s, _) = gw
        .vote("alice", &id(&v), json!({"verdict": "approve"}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = gw.vote("bot", &id(&v), json!({"verdict": "approve"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // An ordinary race (voting twice) is refused but is not a security event.
    let w = gw
        .submit("bot", json!({"action": "deploy", "resource": "r2"}))
        .await;
    gw.vote(
        "bob",
        &id(&w),
        json!({"verdict": "clarify", "comment": "why?"}),
    )
    .await;
    let (s, _) = gw
        .vote(
            "bob",
            &id(&w),
            json!({"verdict": "clarify", "comment": "why?"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // A grant used twice, a forged one, and one used by someone else.
    let a = gw
        .submit("bot", json!({"action": "logs.read", "resource": "r"}))
        .await;
    let token = a["grant"]["token"].as_str().unwrap();
    let (s, _) = gw
        .post("dave", "/v1/grants/redeem", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for expected in [StatusCode::OK, StatusCode::CONFLICT] {
        let (s, _) = gw
            .post("bot", "/v1/grants/redeem", json!({"token": token}))
            .await;
        assert_eq!(s, expected);
    }
    let (s, _) = gw
        .post("bot", "/v1/grants/redeem", json!({"token": "a.b.c"}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let (_, log) = gw.get("alice", "/v1/audit/entries?start=0&limit=100").await;
    let refused: Vec<(String, String, String, Value)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"] == "refused")
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["event"]["attempted"].as_str().unwrap().to_string(),
                e["event"]["code"].as_str().unwrap().to_string(),
                e["action_id"].clone(),
            )
        })
        .collect();
    let row = |by: &str, what: &str, code: &str, action: Value| {
        (by.to_string(), what.to_string(), code.to_string(), action)
    };
    assert_eq!(
        refused,
        [
            row("alice", "vote", "self_approval", v["id"].clone()),
            row("bot", "vote", "agents_cannot_approve", v["id"].clone()),
            row("dave", "redeem", "not_requester", a["id"].clone()),
            row("bot", "redeem", "grant_already_used", a["id"].clone()),
            row("bot", "redeem", "grant_invalid", Value::Null),
        ]
    );
    // A refusal about an action is listed with that action's entries.
    let (_, full) = gw.get("alice", &format!("/v1/actions/{}", id(&v))).await;
    assert_eq!(full["audit"]["indexes"].as_array().unwrap().len(), 2 + 2);
}

/// Rewrites entry `idx` of a SQLite log with `edit` and recomputes every stored tree hash, as an
/// attacker with write access to the file would.
fn edit_with_recomputed_hashes(db: &std::path::Path, idx: u64, edit: impl Fn(&str) -> String) {
    use countersign_audit::merkle::{stored_hash_index, MemoryHashes};
    let conn = rusqlite::Connection::open(db).unwrap();
    let bodies: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT idx, body FROM audit_entries ORDER BY idx")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut tree = MemoryHashes::new();
    for (n, body) in &bodies {
        let body = if *n as u64 == idx {
            let edited = edit(std::str::from_utf8(body).unwrap());
            assert_ne!(edited.as_bytes(), &body[..], "the edit changes the entry");
            conn.execute(
                "UPDATE audit_entries SET body = ?1 WHERE idx = ?2",
                rusqlite::params![edited.as_bytes(), n],
            )
            .unwrap();
            edited.into_bytes()
        } else {
            body.clone()
        };
        tree.append(&body).unwrap();
    }
    for (n, _) in &bodies {
        let n = *n as u64;
        let start = stored_hash_index(0, n) as usize;
        let blob: Vec<u8> = tree.hashes()[start..start + 1 + n.trailing_ones() as usize]
            .iter()
            .flatten()
            .copied()
            .collect();
        conn.execute(
            "UPDATE audit_entries SET hashes = ?1 WHERE idx = ?2",
            rusqlite::params![blob, n as i64],
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_checkpoint_catches_an_edit_hidden_by_deleting_later_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::spawn(dir.path()).await;
    let http = crate::support::client();
    for i in 0..3 {
        let v: Value = http
            .post(format!("{}/v1/actions", server.url))
            .bearer_auth("tok-bot")
            .json(&json!({"action": "logs.read", "resource": format!("r{i}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["status"], "allowed", "{v}");
    }
    // config and policy loaded + 3 allowed × 2 entries
    let started = Instant::now();
    let kept = loop {
        let r = http
            .get(format!("{}/v1/audit/checkpoint", server.url))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            let t = r.text().await.unwrap();
            if t.contains("\n8\n") {
                break t;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    server.kill9().await;
    let config = dir.path().join("countersign.toml");
    let config = config.to_str().unwrap();
    let prev = dir.path().join("kept.note");
    std::fs::write(&prev, &kept).unwrap();
    let prev = prev.to_str().unwrap();
    let (code, _, err) = run(&[
        "audit",
        "verify",
        "--config",
        config,
        "--previous-checkpoint",
        prev,
    ])
    .await;
    assert_eq!(code, 0, "{err}");

    // Entry 2 (the first submission) now names another resource; every hash is recomputed and
    // the checkpoints that covered it are deleted.
    let db = dir.path().join("data/gw.db");
    edit_with_recomputed_hashes(&db, 2, |body| body.replacen("\"r0\"", "\"rX\"", 1));
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("DELETE FROM audit_checkpoints WHERE size > 2", [])
        .unwrap();
    let (code, _, err) = run(&["audit", "verify", "--config", config]).await;
    assert_eq!(
        code, 0,
        "without a kept checkpoint the edit is invisible: {err}"
    );
    let (code, _, err) = run(&[
        "audit",
        "verify",
        "--config",
        config,
        "--previous-checkpoint",
        prev,
    ])
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("inconsistent with the earlier checkpoint of size 8"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_commands_refuse_flags_they_do_not_use() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("b.jsonl");
    std::fs::write(&bundle, "").unwrap();
    let bundle = bundle.to_str().unwrap();
    for args in [
        // A bundle is verified on its own: a store flag would be ignored.
        vec!["audit", "verify", bundle, "--config", "x.toml"],
        vec!["audit", "verify", bundle, "--database", "sqlite://x.db"],
        vec![
            "audit",
            "verify",
            "--config",
            "x.toml",
            "--database",
            "sqlite://x.db",
        ],
    ] {
        let (code, _, err) = run(&args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("cannot be used with"), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_that_does_not_parse_is_shown_as_stored_not_hidden() {
    let gw = Gw::start().await;
    gw.submit("bot", json!({"action": "logs.read", "resource": "r"}))
        .await;
    // 200 levels: past every JSON parser's default limit (an edit; no writer makes this).
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    rusqlite::Connection::open(gw.dir.path().join("data/gw.db"))
        .unwrap()
        .execute(
            "UPDATE audit_entries SET body = ?1 WHERE idx = 0",
            [deep.as_bytes()],
        )
        .unwrap();
    let (s, v) = gw.get("alice", "/v1/audit/entries?start=0&limit=10").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let e = &v["entries"][0];
    assert_eq!(e["index"], 0);
    assert!(e["entry"].is_null(), "{e}");
    assert_eq!(e["entry_text"], deep.as_str());
    assert_eq!(e["leaf_hash"], B64.encode(leaf_hash(deep.as_bytes())));
    assert!(v["entries"][1].get("entry_text").is_none());
}
