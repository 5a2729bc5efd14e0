//! Analyzers (#17) through the API: policy sees `context.risk` and `context.tags`, the view
//! and the `submitted` audit entry carry the analysis, and a reviewer's `modify` is analyzed
//! afresh.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{id, Gw};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_policy_sees_the_analysis_and_the_view_shows_it() {
    let gw = Gw::start().await;
    // A read is low risk: allowed.
    let v = gw
        .submit(
            "bot",
            json!({"action": "db.query", "resource": "postgres://prod", "params": {"sql": "SELECT id FROM users"}}),
        )
        .await;
    assert_eq!(v["status"], "allowed", "{v}");
    let (_, full) = gw.get("bot", &format!("/v1/actions/{}", id(&v))).await;
    assert_eq!(full["analysis"]["risk"], "low");
    assert_eq!(full["analysis"]["tags"], json!(["sql:read"]));
    // DDL is held; the agent's own `risk` parameter changes nothing.
    let v = gw
        .submit(
            "bot",
            json!({"action": "db.query", "resource": "postgres://prod",
                   "params": {"sql": "DROP TABLE users, orders", "risk": "low"}}),
        )
        .await;
    assert_eq!(v["status"], "pending", "{v}");
    assert_eq!(v["decision"]["policies"], json!(["sql-ddl"]));
    let (_, full) = gw.get("alice", &format!("/v1/actions/{}", id(&v))).await;
    let analysis = &full["analysis"];
    assert_eq!(analysis["risk"], "high");
    assert_eq!(analysis["tags"], json!(["sql:ddl", "sql:drop"]));
    assert!(
        analysis["impact"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().starts_with("drops 2 tables")),
        "{analysis}"
    );
    assert_eq!(
        full["params"]["risk"], "low",
        "the agent's field stays as sent"
    );
    // The `submitted` audit entry records what policy saw.
    let (_, log) = gw.get("alice", "/v1/audit/entries?start=0&limit=10").await;
    let submitted: Vec<&serde_json::Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["type"] == "submitted")
        .collect();
    assert_eq!(submitted.len(), 2);
    assert_eq!(submitted[1]["event"]["analysis"], *analysis);
    // An action with nothing to analyze has no analysis.
    let v = gw
        .submit("bot", json!({"action": "logs.read", "resource": "r"}))
        .await;
    let (_, full) = gw.get("bot", &format!("/v1/actions/{}", id(&v))).await;
    assert!(full.get("analysis").is_none(), "{full}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_modify_is_analyzed_afresh() {
    let gw = Gw::start().await;
    let v = gw
        .submit(
            "bot",
            json!({"action": "db.query", "resource": "postgres://prod", "params": {"sql": "TRUNCATE events"}}),
        )
        .await;
    assert_eq!(v["status"], "pending", "{v}");
    let (s, r) = gw
        .vote(
            "alice",
            &id(&v),
            json!({"verdict": "modify", "params": {"sql": "SELECT count(*) FROM events"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "approved", "{r}");
    assert_eq!(r["analysis"]["risk"], "low", "{r}");
    assert_eq!(r["analysis"]["tags"], json!(["sql:read"]));
    let (_, log) = gw.get("alice", "/v1/audit/entries?start=0&limit=10").await;
    let voted = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["entry"])
        .find(|e| e["type"] == "voted")
        .unwrap();
    assert_eq!(voted["event"]["analysis"]["tags"], json!(["sql:read"]));
}

/// `[analysis]` in the configuration makes an analyzer read more parameter names; an unknown
/// analyzer or a name that is not one is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_configured_parameter_names_are_analyzed_too() {
    let gw = Gw::start_with("[analysis]\nsql = [\"migration\"]\n").await;
    let v = gw
        .submit(
            "bot",
            json!({"action": "db.query", "resource": "postgres://prod",
                   "params": {"migration": "DROP TABLE users"}}),
        )
        .await;
    assert_eq!(v["status"], "pending", "{v}");
    assert_eq!(v["decision"]["policies"], json!(["sql-ddl"]));
    let (_, full) = gw.get("alice", &format!("/v1/actions/{}", id(&v))).await;
    assert_eq!(full["analysis"]["tags"], json!(["sql:ddl", "sql:drop"]));

    let dir = tempfile::tempdir().unwrap();
    for (extra, needle) in [
        (
            "[analysis]\nyaml = [\"doc\"]\n",
            "`yaml` is not an analyzer",
        ),
        (
            "[analysis]\nsql = [\"two words\"]\n",
            "must be a parameter name",
        ),
    ] {
        let path = crate::support::write_config(dir.path(), extra);
        let err = countersign_gateway::config::Config::load(&path).unwrap_err();
        assert!(err.to_string().contains(needle), "{extra}: {err}");
    }
}
