//! `examples/grafana/countersign.json` queries only metrics that `/metrics` exposes, covers what
//! issue #20 asks of it (decisions, review latency, open reviews, store commit latency), and the
//! exposed names follow Prometheus' conventions.

use crate::support::{get_text, Gw};
use serde_json::{json, Value};
use std::collections::BTreeSet;

const DASHBOARD: &str = include_str!("../../../../examples/grafana/countersign.json");

/// Every sample name the exposition can hold: from its `# TYPE` lines (a counter's samples end
/// in `_total`, a histogram's in `_bucket`, `_sum`, `_count`) and from its sample lines.
fn exposed(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            match kind {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_string());
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// Every PromQL text of the dashboard: panel targets' `expr`, template variables' queries.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// The `countersign_*` metric names a PromQL text names.
fn metric_names(promql: &str) -> BTreeSet<String> {
    promql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("countersign_"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_one_metrics_exposes() {
    // A webhook that fails once, then accepts: the outbox families get series too.
    let (receiver, url) = crate::outbox::Receiver::start(500).await;
    let gw = Gw::start_with(&format!(
        "[[webhooks]]\nname = \"ops\"\nurl = \"{url}\"\nsecret = \"{}\"\n\n\
         [outbox]\nbackoff_base = \"10ms\"\n",
        crate::outbox::SECRET
    ))
    .await;
    // A decision and a request, so that labelled families have series too.
    gw.submit("bot", json!({"action": "logs.read", "resource": "app"}))
        .await;
    gw.submit("bot", json!({"action": "deploy", "resource": "app"}))
        .await;
    let start = std::time::Instant::now();
    while receiver.got.lock().unwrap().is_empty() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "no attempt"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    *receiver.status.lock().unwrap() = 200;
    while receiver.accepted().is_empty() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "not delivered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The worker records the delivery (and its latency) just after the receiver answers: wait
    // for that record rather than race it.
    let text = loop {
        let text = get_text(&gw.http, format!("{}/metrics", gw.url)).await;
        if text.contains("countersign_outbox_delivery_latency_seconds_bucket") {
            break text;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the delivery was never recorded:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let exposed = exposed(&text);

    let dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
    let mut texts = Vec::new();
    queries(&dashboard, &mut texts);
    assert!(texts.len() >= 10, "{texts:?}");
    let mut queried = BTreeSet::new();
    for q in &texts {
        let names = metric_names(q);
        assert!(
            !names.is_empty() || !q.contains("countersign"),
            "a query naming no countersign metric: {q}"
        );
        queried.extend(names);
    }
    let missing: Vec<_> = queried.difference(&exposed).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which /metrics does not expose:\n{text}"
    );
    // What the issue asks the dashboard to cover.
    for needed in [
        "countersign_decisions_total",
        "countersign_time_to_decision_seconds_bucket",
        "countersign_reviews_open",
        "countersign_store_commit_duration_seconds_bucket",
    ] {
        assert!(queried.contains(needed), "the dashboard shows no {needed}");
    }
    // Every panel asks the data source chosen on import.
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
            assert!(!panel["targets"].as_array().unwrap().is_empty());
        }
    }
}

/// Prometheus naming: one `countersign_` prefix, counters' samples in `_total`, durations in
/// base units (`_seconds`), and a store commit and a time-to-decision histogram among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_names_follow_prometheus_conventions() {
    let gw = Gw::start().await;
    // A labelled family is exposed once it has a series.
    gw.submit("bot", json!({"action": "logs.read", "resource": "app"}))
        .await;
    let text = get_text(&gw.http, format!("{}/metrics", gw.url)).await;
    let mut kinds = Vec::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut parts = line.split_whitespace();
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        assert!(name.starts_with("countersign_"), "{name}");
        assert!(
            !name.ends_with("_total"),
            "{name}: the encoder adds `_total`"
        );
        if kind == "histogram" {
            assert!(name.ends_with("_seconds"), "{name}: a duration in seconds");
        }
        kinds.push((name.to_string(), kind.to_string()));
    }
    for (name, kind) in [
        ("countersign_store_commit_duration_seconds", "histogram"),
        ("countersign_time_to_decision_seconds", "histogram"),
        ("countersign_decisions", "counter"),
        ("countersign_reviews_open", "gauge"),
    ] {
        assert!(
            kinds.contains(&(name.to_string(), kind.to_string())),
            "{name} {kind} in {kinds:?}"
        );
    }
    for sample in text.lines().filter(|l| !l.starts_with('#')) {
        if sample.starts_with("countersign_decisions") {
            assert!(
                sample.starts_with("countersign_decisions_total"),
                "{sample}"
            );
        }
    }
}
