//! The audit log accepts only what every reader can read back: any request the API accepts
//! (random params within the input limits, edge numbers, unicode, nesting at the limit, a
//! justification) leaves a log that `audit verify`, the jsonl, csv and ocsf exports, the evidence
//! report and `/v1/audit/entries` all read, and whose `submitted` entries say exactly who asked
//! for what, where and why.

use countersign_core::{canonical, MAX_PARAMS_DEPTH, MAX_SAFE_INTEGER};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

use crate::support::Gw;

/// One accepted request.
#[derive(Debug, Clone)]
struct Request {
    action: &'static str,
    resource: String,
    environment: String,
    justification: String,
    on_behalf_of: Option<&'static str>,
    params: Map<String, Value>,
}

impl Request {
    fn body(&self) -> Value {
        let mut b = json!({
            "action": self.action, "resource": self.resource, "environment": self.environment,
            "justification": self.justification, "params": self.params,
        });
        if let Some(h) = self.on_behalf_of {
            b["on_behalf_of"] = json!(h);
        }
        b
    }
}

fn text() -> impl Strategy<Value = String> {
    // Quotes, backslashes, line separators, non-ASCII and astral characters; no controls (the
    // spec refuses them in resource and environment).
    "[a-z \"\\\\/<>=@\u{e9}\u{2028}\u{ff5e}\u{1f600}]{0,12}"
}

fn number() -> impl Strategy<Value = Value> {
    let max = MAX_SAFE_INTEGER as i64;
    prop_oneof![
        Just(json!(max)),
        Just(json!(-max)),
        Just(json!(0)),
        Just(json!(-0.0)),
        Just(json!(1e300)),
        Just(json!(-5e-324)),
        Just(json!(f64::MAX)),
        (-max..=max).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        // Strings in params may hold anything, control characters included.
        "[a-z\"\\\\\u{0}-\u{1f}\u{7f}\u{2028}\u{e9}\u{1f600}]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 40, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Params nested exactly as deep as they may go (`leaves` at the deepest level), alternating
/// objects and arrays.
fn at_the_limit(leaves: Vec<Value>) -> Map<String, Value> {
    let mut v = Value::Array(leaves);
    for level in (2..MAX_PARAMS_DEPTH).rev() {
        v = if level % 2 == 0 {
            json!([v])
        } else {
            json!({ "\u{1f600}": v })
        };
    }
    let mut m = Map::new();
    m.insert("deep".into(), v);
    m
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop_oneof![Just("logs.read"), Just("deploy"), Just("db.drop")],
        "[a-z:/\u{e9}\u{1f600}]{1,12}",
        text(),
        text(),
        prop::option::of(Just("dave")),
        prop_oneof![
            prop::collection::vec((text(), value()), 0..5)
                .prop_map(|kv| kv.into_iter().collect::<Map<_, _>>()),
            prop::collection::vec(number(), 0..3).prop_map(at_the_limit),
        ],
    )
        .prop_map(
            |(action, resource, environment, justification, on_behalf_of, params)| Request {
                action,
                resource,
                environment,
                justification,
                on_behalf_of,
                params,
            },
        )
}

/// Nesting depth of a JSON text (strings skipped).
fn depth(text: &str) -> usize {
    let (mut d, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for c in text.chars() {
        match (in_str, esc, c) {
            (true, true, _) => esc = false,
            (true, false, '\\') => esc = true,
            (true, false, '"') | (false, _, '"') => in_str = !in_str,
            (false, _, '{' | '[') => {
                d += 1;
                max = max.max(d);
            }
            (false, _, '}' | ']') => d -= 1,
            _ => {}
        }
    }
    max
}

async fn run(args: &[&str]) -> (i32, String, String) {
    crate::cli::run(args, "", "").await
}

async fn check(requests: Vec<Request>) {
    let gw = Gw::start().await;
    let mut ids = Vec::new();
    for r in &requests {
        let v = gw.submit("bot", r.body()).await;
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    // Wait for a checkpoint over every entry: the exports stop at the latest one.
    let db = gw.dir.path().join("data/gw.db");
    let count = || -> i64 {
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM audit_entries", [], |r| r.get(0))
            .unwrap()
    };
    let started = Instant::now();
    loop {
        let covered: Option<i64> = rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("SELECT MAX(size) FROM audit_checkpoints", [], |r| r.get(0))
            .unwrap();
        if covered == Some(count()) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no checkpoint");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let n = count();
    let config = gw.dir.path().join("countersign.toml");
    let config = config.to_str().unwrap();
    let out = |name: &str| gw.dir.path().join(name).to_str().unwrap().to_string();

    let (code, stdout, err) = run(&["audit", "verify", "--config", config]).await;
    assert_eq!(code, 0, "verify: {err}");
    assert!(
        stdout.contains(&format!("verified {n} entries")),
        "{stdout}"
    );
    for format in ["jsonl", "csv", "ocsf"] {
        let (code, stdout, err) = run(&[
            "audit",
            "export",
            "--config",
            config,
            "--format",
            format,
            "--out",
            &out(format),
        ])
        .await;
        assert_eq!(code, 0, "{format}: {err}");
        assert!(
            stdout.contains(&format!("exported {n} entries")),
            "{stdout}"
        );
    }
    let (code, _, err) = run(&[
        "audit",
        "evidence",
        "--config",
        config,
        "--out",
        &out("report.html"),
    ])
    .await;
    assert_eq!(code, 0, "evidence: {err}");
    let key = crate::support::get_text(&gw.http, format!("{}/v1/audit/public-key", gw.url)).await;
    let (code, _, err) = run(&["audit", "verify", &out("jsonl"), "--key", key.trim()]).await;
    assert_eq!(code, 0, "bundle: {err}");

    // The bundle alone says who asked for what, where and why, exactly as submitted.
    let bundle = std::fs::read_to_string(out("jsonl")).unwrap();
    let entries: Vec<Value> = bundle
        .lines()
        .skip(2)
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["entry"].clone())
        .collect();
    assert_eq!(entries.len() as i64, n);
    for line in bundle.lines() {
        // Far under every reader's 128-level limit: params' limit + entry, event, spec.
        assert!(depth(line) <= MAX_PARAMS_DEPTH + 4, "{line:.200}");
    }
    for (r, id) in requests.iter().zip(&ids) {
        let e = entries
            .iter()
            .find(|e| e["type"] == "submitted" && e["action_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no submitted entry for {id}"));
        let ev = &e["event"];
        assert_eq!(e["actor"], "bot");
        assert_eq!(ev["requester"], "bot");
        assert_eq!(ev["on_behalf_of"], json!(r.on_behalf_of));
        assert_eq!(ev["justification"], r.justification.as_str());
        assert_eq!(ev["spec"]["action"], r.action);
        assert_eq!(ev["spec"]["resource"], r.resource.as_str());
        assert_eq!(ev["spec"]["environment"], r.environment.as_str());
        assert_eq!(
            canonical::to_string(&ev["spec"]["params"]).unwrap(),
            canonical::to_string(&Value::Object(r.params.clone())).unwrap(),
        );
    }
    // The API's view of the entries reads every one of them too.
    let (_, listed) = gw
        .get("alice", "/v1/audit/entries?start=0&limit=1000")
        .await;
    let listed = listed["entries"].as_array().unwrap();
    assert_eq!(listed.len() as i64, n);
    for (l, e) in listed.iter().zip(&entries) {
        assert_eq!(&l["entry"], e);
    }
    let csv = std::fs::read_to_string(out("csv")).unwrap();
    for r in &requests {
        if !r.justification.is_empty() && !r.justification.starts_with(['=', '+', '-', '@']) {
            assert!(
                csv.contains(&r.justification.replace('"', "\"\"")),
                "{:?}",
                r.justification
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_accepted_request_reads_back_from_every_reader(
        requests in prop::collection::vec(request(), 1..4),
    ) {
        // Always one request at the nesting limit with the largest integers.
        let mut all = vec![Request {
            action: "deploy",
            resource: "tf://prod/\u{1f600}".into(),
            environment: "production".into(),
            justification: "ticket OPS-1: \"rotate\" \u{2028} keys".into(),
            on_behalf_of: Some("dave"),
            params: at_the_limit(vec![
                json!(MAX_SAFE_INTEGER),
                json!(-(MAX_SAFE_INTEGER as i64)),
                json!(1e300),
            ]),
        }];
        all.extend(requests);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(check(all));
    }
}
