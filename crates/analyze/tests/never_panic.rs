//! The analyzers never panic, whatever they are given.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on bad setup

use countersign_analyze::analyze;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        ".{0,24}".prop_map(Value::String),
        prop::sample::select(vec![
            "*",
            "iam:PassRole",
            "delete",
            "create",
            "kubectl",
            "rm",
            "-rf",
            "/",
            "Allow",
            "Deny",
            "Pod",
            "cluster-admin",
            "aws_db_instance",
            "$(",
            "`",
            "|",
            "sh",
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "Statement",
                    "Effect",
                    "Action",
                    "Resource",
                    "NotAction",
                    "kind",
                    "spec",
                    "metadata",
                    "items",
                    "replicas",
                    "resource_changes",
                    "change",
                    "actions",
                    "type",
                    "address",
                    "template",
                    "containers",
                    "securityContext",
                    "roleRef",
                    "name",
                    "x",
                ]),
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

const NAMES: [&str; 9] = [
    "sql",
    "statement",
    "query",
    "argv",
    "command",
    "plan",
    "manifest",
    "policy_document",
    "dialect",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn never_panics_on_strings(name in prop::sample::select(NAMES.to_vec()), text in "\\PC{0,200}") {
        let mut params = Map::new();
        params.insert(name.to_string(), Value::String(text));
        let _ = analyze(&params);
    }

    #[test]
    fn never_panics_on_shell_like_strings(text in "[a-z $`'\"|;&<>(){}#\\\\/=*~.\\-\n]{0,120}") {
        for name in ["command", "sql"] {
            let mut params = Map::new();
            params.insert(name.to_string(), Value::String(text.clone()));
            let a = analyze(&params).unwrap();
            prop_assert!(a.impact.len() <= countersign_analyze::MAX_IMPACT_LINES);
        }
    }

    #[test]
    fn never_panics_on_json(name in prop::sample::select(NAMES.to_vec()), value in arb_json()) {
        let mut params = Map::new();
        params.insert(name.to_string(), value.clone());
        let _ = analyze(&params);
        // Also as a string of JSON, as documents may come.
        params.insert(name.to_string(), Value::String(value.to_string()));
        let _ = analyze(&params);
    }

    #[test]
    fn argv_of_anything(words in prop::collection::vec("\\PC{0,16}", 0..12), kubectl in any::<bool>()) {
        let mut words = words;
        if kubectl {
            words.insert(0, "kubectl".into());
        }
        let mut params = Map::new();
        params.insert("argv".into(), json!(words));
        let _ = analyze(&params);
    }
}

#[test]
fn deep_sql_nesting_is_unparsed_not_a_crash() {
    // PostgreSQL folds redundant parentheses, as the server does: a plain read.
    let sql = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    let a = analyze(json!({ "sql": sql }).as_object().unwrap()).unwrap();
    assert!(a.has("sql:read"), "{a:?}");
    // Subqueries nested as deep as the 64 KiB limit allows, on a thread with a tokio worker's
    // 2 MiB stack: refused by the parser's own depth check, not a crash.
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let n = ((64 << 10) - 1) / ("SELECT (".len() + 1);
            let sql = format!("{}1{}", "SELECT (".repeat(n), ")".repeat(n));
            analyze(json!({ "sql": sql }).as_object().unwrap()).unwrap()
        })
        .unwrap();
    let a = handle.join().unwrap();
    assert!(a.has("sql:unparsed"), "{a:?}");
    let cmd = format!("echo {}x{}", "$(".repeat(500), ")".repeat(500));
    let a = analyze(json!({ "command": cmd }).as_object().unwrap()).unwrap();
    assert!(a.has("shell:unparsed"), "{a:?}");
}
