//! Masking a 4 KiB and a 1 MiB parameter document (issue #17: 4 KiB p50 ≤ 50 µs with the
//! analyzers; 1 MiB bounded and linear).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

use countersign_mask::{Masker, MaskingConfig};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Map, Value};

/// About 4 KiB as agents send it: a statement, some context, one person's address and one
/// secret among ordinary fields.
fn typical() -> Map<String, Value> {
    let v = json!({
        "sql": "UPDATE accounts SET status = 'closed', closed_at = now() WHERE id = $1 AND status = 'active'",
        "parameters": [4711],
        "ticket": "SUP-20931",
        "requested_by": "jane.doe@example.com",
        "db_url": "postgres://app:S3cr3t-P4ss@db.internal:5432/app",
        "reason": "customer asked for the account to be closed; refund processed separately. ".repeat(20),
        "context": {"service": "billing", "region": "eu-west-1", "replicas": 3, "dry_run": false,
                    "labels": ["prod", "billing", "tier-1"], "notes": "no downstream jobs depend on this row. ".repeat(40)},
    });
    v.as_object().cloned().unwrap_or_default()
}

fn doc(bytes: usize) -> Map<String, Value> {
    let mut rows = Vec::new();
    let mut size = 0;
    let mut i = 0;
    while size < bytes {
        let row = json!({
            "id": i,
            "name": format!("customer {i}"),
            "email": format!("user{i}@example.com"),
            "note": "called about the invoice; wants a refund by friday",
            "status": "active",
        });
        size += row.to_string().len();
        rows.push(row);
        i += 1;
    }
    let v = json!({"sql": "UPDATE accounts SET status = 'closed' WHERE id = $1", "rows": rows});
    v.as_object().cloned().unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let m = Masker::new(&MaskingConfig::default(), &[1u8; 32]).unwrap();
    let cases = [
        ("mask 4 KiB typical", typical()),
        ("mask 4 KiB, 30 emails", doc(4 << 10)),
        ("mask 1 MiB, 7k emails", doc(1 << 20)),
    ];
    let d = typical();
    c.bench_function("analyze + mask 4 KiB typical", |b| {
        b.iter(|| {
            let analysis = countersign_analyze::analyze(&d);
            let mut v = d.clone();
            let mut found = Vec::new();
            m.object("params", "/params", &mut v, &mut found);
            (analysis.is_some(), found.len())
        })
    });
    for (name, d) in cases {
        c.bench_function(name, |b| {
            b.iter(|| {
                let mut v = d.clone();
                let mut found = Vec::new();
                m.object("params", "/params", &mut v, &mut found);
                found.len()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
