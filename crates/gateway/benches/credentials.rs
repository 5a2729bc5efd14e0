//! Minting a PostgreSQL role for an approved action (issue #18's target: p50 ≤ 20 ms), against
//! the PostgreSQL in `COUNTERSIGN_TEST_POSTGRES` (as admin). Each iteration mints one role
//! (`CREATE ROLE ... LOGIN PASSWORD <SCRAM verifier> VALID UNTIL ... IN ROLE ...` through the
//! kind's warm connection pool); the roles are dropped outside the timed part.
//! `COUNTERSIGN_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test cargo bench -p countersign-gateway --bench credentials`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

use countersign_core::{ActionSpec, Timestamp};
use countersign_gateway::credentials::postgres::PostgresRole;
use countersign_gateway::credentials::{CredentialKind, IssueRequest, Secret};
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::{Duration, Instant};

fn bench(c: &mut Criterion) {
    let Ok(url) = std::env::var("COUNTERSIGN_TEST_POSTGRES") else {
        eprintln!("COUNTERSIGN_TEST_POSTGRES is not set: skipping the credential bench");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let _ = client
            .batch_execute("CREATE ROLE cs_bench_rw NOLOGIN")
            .await;
    });
    let kind = PostgresRole::new(
        "bench-db",
        &Secret::new(url),
        &["cs_bench_rw".to_string()],
        "DATABASE_URL",
    )
    .unwrap();
    let spec = ActionSpec::new("db.migrate", "postgres://bench", "", None).unwrap();
    let until = Timestamp(4_102_444_800_000); // 2100-01-01
    c.bench_function("postgres_role_mint", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let ids: Vec<String> = (0..iters)
                    .map(|_| uuid::Uuid::now_v7().to_string())
                    .collect();
                let mut total = Duration::ZERO;
                for id in &ids {
                    let req = IssueRequest {
                        action_id: id,
                        to: "bot",
                        spec: &spec,
                        now: Timestamp(0),
                        expires_at: until,
                        public_key: None,
                        source: None,
                    };
                    let started = Instant::now();
                    kind.issue(&req).await.unwrap();
                    total += started.elapsed();
                }
                for id in &ids {
                    kind.revoke(id).await.unwrap();
                }
                total
            })
        })
    });
    c.bench_function("postgres_role_revoke", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let ids: Vec<String> = (0..iters)
                    .map(|_| uuid::Uuid::now_v7().to_string())
                    .collect();
                for id in &ids {
                    let req = IssueRequest {
                        action_id: id,
                        to: "bot",
                        spec: &spec,
                        now: Timestamp(0),
                        expires_at: until,
                        public_key: None,
                        source: None,
                    };
                    kind.issue(&req).await.unwrap();
                }
                let started = Instant::now();
                for id in &ids {
                    kind.revoke(id).await.unwrap();
                }
                started.elapsed()
            })
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
