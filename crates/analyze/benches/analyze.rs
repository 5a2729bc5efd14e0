//! Analysis of a 4 KiB parameter document (target p50 ≤ 50 µs) and of a 1 MiB one (bounded:
//! over the limit, not parsed).
#![allow(clippy::unwrap_used, clippy::expect_used)] // benches may panic on bad setup

use countersign_analyze::analyze;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Map, Value};
use std::hint::black_box;

/// About 4 KiB of parameters as an action carries them: one SQL statement, a command line, a
/// small Terraform plan, an IAM policy and a few plain fields.
fn four_kib_mixed() -> Map<String, Value> {
    let changes: Vec<Value> = (0..16)
        .map(|i| {
            json!({"address": format!("aws_instance.web[{i}]"), "type": "aws_instance",
                   "change": {"actions": if i % 3 == 0 { json!(["delete", "create"]) } else { json!(["update"]) }}})
        })
        .collect();
    let params = json!({
        "sql": "UPDATE accounts SET balance = balance - 10, updated_at = now() WHERE id = 42 AND region = 'eu' RETURNING id, balance",
        "command": "cd /srv/app && git pull --ff-only && ./build.sh --release | tee /var/log/build.log",
        "plan": {"format_version": "1.2", "resource_changes": changes},
        "policy_document": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::app/*"},
            {"Effect": "Allow", "Action": "logs:*", "Resource": "*"}
        ]},
        "ticket": "OPS-1234",
        "notes": "nightly maintenance window; ".repeat(75),
    });
    sized(params)
}

/// About 4 KiB of SQL: 49 statements.
fn four_kib_sql() -> Map<String, Value> {
    let mut sql = String::new();
    for i in 0..48 {
        sql.push_str(&format!(
            "UPDATE accounts_{i} SET balance = balance - 10 WHERE id = {i} AND region = 'eu';\n"
        ));
    }
    sql.push_str("SELECT a.id, b.total FROM accounts a JOIN invoices b ON b.account = a.id WHERE b.total > 100;\n");
    sized(json!({ "sql": sql }))
}

fn sized(params: Value) -> Map<String, Value> {
    let params = params.as_object().unwrap().clone();
    let size = serde_json::to_vec(&params).unwrap().len();
    assert!((3500..=4600).contains(&size), "{size} bytes");
    params
}

/// 1 MiB and a little more of SQL: over the limit, so not parsed.
fn one_mib() -> Map<String, Value> {
    let sql = "INSERT INTO t (a, b) VALUES (1, 'x');\n".repeat((1 << 20) / 38 + 1);
    json!({ "sql": sql }).as_object().unwrap().clone()
}

/// Just under 64 KiB of SQL (`MAX_SQL`): parsed whole (the most work one SQL parameter can
/// cost).
fn just_under_the_sql_limit() -> Map<String, Value> {
    let sql = "INSERT INTO t (a, b) VALUES (1, 'x');\n".repeat((64 << 10) / 38 - 8);
    json!({ "sql": sql }).as_object().unwrap().clone()
}

fn bench(c: &mut Criterion) {
    let mixed = four_kib_mixed();
    c.bench_function("analyze 4 KiB mixed", |b| {
        b.iter(|| analyze(black_box(&mixed)))
    });
    let sql = four_kib_sql();
    c.bench_function("analyze 4 KiB of SQL", |b| {
        b.iter(|| analyze(black_box(&sql)))
    });
    let big = one_mib();
    c.bench_function("analyze 1 MiB (over the limit)", |b| {
        b.iter(|| analyze(black_box(&big)))
    });
    let under = just_under_the_sql_limit();
    let mut g = c.benchmark_group("large");
    g.sample_size(10);
    g.bench_function("analyze 64 KiB - 300 B of SQL (parsed)", |b| {
        b.iter(|| analyze(black_box(&under)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
