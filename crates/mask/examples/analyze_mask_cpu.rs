//! CPU time of analyzers + masking of the 4 KiB typical document (issue #17's target, p50 ≤
//! 50 µs), for `perf stat`: on a loaded machine wall-clock medians measure the queue for a
//! core, while `task-clock` counts only the time this loop ran.
//!   perf stat -e task-clock,instructions target/release/examples/analyze_mask_cpu [N] [what]
//! `what`: `both` (default), `analyze`, `mask`, `none` (the set-up alone, to subtract).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool may panic on bad setup

use countersign_mask::{Masker, MaskingConfig};
use serde_json::{json, Map, Value};

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

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse().unwrap()).unwrap_or(20_000);
    let what = args.next().unwrap_or_else(|| "both".into());
    let m = Masker::new(&MaskingConfig::default(), &[1u8; 32]).unwrap();
    let d = typical();
    let mut sink = 0usize;
    for _ in 0..n {
        if what == "both" || what == "analyze" {
            sink += usize::from(countersign_analyze::analyze(&d).is_some());
        }
        let mut v = d.clone();
        if what == "both" || what == "mask" {
            let mut found = Vec::new();
            m.object("params", "/params", &mut v, &mut found);
            sink += found.len();
        }
        sink += v.len();
    }
    println!("{n} iterations of {what} ({sink})");
}
