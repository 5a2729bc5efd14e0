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
    let key_text = gw
        .http
        .get(format!("{}/v1/audit/public-key", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
    let key = http
        .get(format!("{}/v1/audit/public-key", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let started = Instant::now();
    let checkpoint = loop {
        let r = http
            .get(format!("{}/v1/audit/checkpoint", server.url))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            let t = r.text().await.unwrap();
            if t.contains("\n21\n") {
                break t;
            } // 3 reviews × 5 entries + 3 allowed × 2 entries
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
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
    assert!(out.contains("exported 21 entries"), "{out}");
    let (code, out, err) = run(&["audit", "verify", bundle_s, "--key", key.trim()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("verified 21 entries, tree size 21, root "),
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
    assert!(out.contains("verified 21 entries"), "{out}");
    let db = dir.path().join("data/gw.db");
    // A consistent copy (WAL included) to delete a row from, below.
    let copy = dir.path().join("copy.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE audit_entries SET body = CAST(replace(CAST(body AS TEXT), '\"actor\":\"alice\"', '\"actor\":\"bob\"') AS BLOB) WHERE idx = 2", []).unwrap();
    drop(conn);
    let (code, _, err) = run(&["audit", "verify", "--config", config, "--key", key.trim()]).await;
    assert_eq!(code, 1);
    assert!(err.contains("entry 2 was modified"), "{err}");
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
