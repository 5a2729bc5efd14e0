//! What the channel latency benches (`slack_latency`, `teams_latency`, `webhook_latency`)
//! share: the moments a local double saw things, waiting for one, and the percentile line.
#![allow(dead_code)] // each bench uses what it needs

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// When a double saw each keyed event, and a wake-up for those waiting on one.
pub type Seen = Arc<(Mutex<HashMap<String, Instant>>, Notify)>;

/// When `key` was seen (waits up to 30 s for it).
pub async fn until_seen(seen: &Seen, key: &str) -> Instant {
    loop {
        let notified = seen.1.notified();
        if let Some(t) = seen.0.lock().unwrap().get(key) {
            return *t;
        }
        tokio::time::timeout(Duration::from_secs(30), notified)
            .await
            .expect("notification within 30 s");
    }
}

/// Prints `label`'s sample count and p50/p90/p99/max in milliseconds.
pub fn pct(mut v: Vec<Duration>, label: &str) {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "{label}, {} samples: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        v.len(),
        p(0.5),
        p(0.9),
        p(0.99),
        p(1.0)
    );
}
