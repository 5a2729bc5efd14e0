//! Masking a 4 KiB and a 1 MiB parameter document (issue #17: 4 KiB p50 ≤ 50 µs with the
//! analyzers; 1 MiB bounded and linear).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

use countersign_mask::{Masker, MaskingConfig};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Map, Value};

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
    for (name, bytes) in [("mask 4 KiB", 4 << 10), ("mask 1 MiB", 1 << 20)] {
        let d = doc(bytes);
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
