//! Durable insert throughput of the SQLite store (WAL, synchronous=FULL, group commit): batches of
//! 1,000 allowed actions submitted by 50 or 500 concurrent tasks, each `insert` returning only
//! after its commit. Each action is one record plus one audit entry and the Merkle hashes it
//! completes, so actions/s is also audit entries/s. `cargo bench -p countersign-store --bench append`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

use countersign_core::{
    ActionRecord, ActionSpec, Decision, Identity, IdentityKind, NewAction, Timestamp,
};
use countersign_store::{SqliteStore, Store};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// The allocator the `countersign` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: u64 = 1000;

fn record(n: u64) -> (ActionRecord, Vec<countersign_core::Event>) {
    let who = Identity::new("bot", IdentityKind::Agent, ["automation"]);
    ActionRecord::submit(
        &who,
        NewAction {
            id: format!("a{n}"),
            grant_jti: format!("g{n}"),
            spec: ActionSpec::new(
                "logs.read",
                format!("app://web/{n}"),
                "production",
                Some(serde_json::json!({"lines": 200})),
            )
            .expect("spec"),
            justification: "bench".into(),
            on_behalf_of: None,
            idempotency_key: None,
            decision: Decision::allow(vec!["reads".into()]),
            default_review_ttl: Duration::from_secs(60),
            grant_ttl: Duration::from_secs(60),
            grant_on_allow: false,
            analysis: None,
        },
        Timestamp(1_700_000_000_000),
    )
    .expect("submit")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("bench.db")).expect("open"));
    let next = Arc::new(AtomicU64::new(0));
    let mut g = c.benchmark_group("sqlite_durable_insert");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(20);
    for clients in [50u64, 500] {
        g.bench_function(format!("1000_actions_{clients}_clients"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    rt.block_on(async {
                        let tasks: Vec<_> = (0..clients)
                            .map(|_| {
                                let (store, next) = (store.clone(), next.clone());
                                tokio::spawn(async move {
                                    for _ in 0..BATCH / clients {
                                        let n = next.fetch_add(1, Ordering::Relaxed);
                                        let (rec, events) = record(n);
                                        store.insert(rec, events).await.expect("insert");
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.expect("task");
                        }
                    });
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.finish();

    // One allowed action at a time: the latency of one durable commit, which is what each
    // allowed MCP tools/call waits for before it is forwarded (issue #5's added-latency budget).
    let mut g = c.benchmark_group("sqlite_durable_insert_latency");
    g.sample_size(50);
    g.bench_function("1_action_1_client", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let (rec, events) = record(n);
                    store.insert(rec, events).await.expect("insert");
                }
                start.elapsed()
            })
        })
    });
    g.finish();

    // The audit log alone: 10 writers appending 100 entries per call (a batch), each call
    // returning only after its commit. Entries are `submitted` events with a realistic spec.
    let mut g = c.benchmark_group("sqlite_durable_audit_append");
    const ENTRIES: u64 = 10_000;
    g.throughput(Throughput::Elements(ENTRIES));
    g.sample_size(20);
    let (_, events) = record(0);
    let event = events.into_iter().next().expect("submitted");
    g.bench_function("10000_entries_10_writers_100_per_call", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                rt.block_on(async {
                    let tasks: Vec<_> = (0..10)
                        .map(|_| {
                            let (store, event) = (store.clone(), event.clone());
                            tokio::spawn(async move {
                                for _ in 0..ENTRIES / 10 / 100 {
                                    let batch = (0..100).map(|_| (None, event.clone())).collect();
                                    store
                                        .record_events(Timestamp(1_700_000_000_000), batch)
                                        .await
                                        .expect("append");
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("task");
                    }
                });
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
