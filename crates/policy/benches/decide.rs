//! Policy decision latency with 200 policies: sliced (what the gateway does) against the whole
//! set (what Cedar does by default). `cargo bench -p countersign-policy --bench decide`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

use countersign_core::{ActionSpec, Identity, IdentityKind};
use countersign_policy::{DefaultEffect, PolicyEngine, PolicyRequest, Principal};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

/// 200 policies over 90 action names: permits, review rules with conditions, forbids, and a few
/// with an open action scope, like a real policy directory.
fn policies() -> String {
    let mut s = String::new();
    for i in 0..90 {
        s += &format!("@id(\"read{i}\") permit (principal in Group::\"automation\", action == Action::\"svc{i}.read\", resource);\n");
        s += &format!("@id(\"write{i}\") @effect(\"review\") @approvers(\"group:sre\") @reason(\"writes\") permit (principal, action == Action::\"svc{i}.write\", resource) when {{ context.environment == \"production\" && context.params has table }};\n");
    }
    for i in 0..15 {
        s += &format!("@id(\"forbid{i}\") @reason(\"no\") forbid (principal is Agent, action in [Action::\"svc{i}.write\", Action::\"svc{i}.drop\"], resource) when {{ context.params has table && context.params.table == \"users{i}\" }};\n");
    }
    for i in 0..5 {
        s += &format!("@id(\"open{i}\") @reason(\"global\") forbid (principal, action, resource) when {{ context.tags.contains(\"critical{i}\") }};\n");
    }
    s
}

fn bench(c: &mut Criterion) {
    let engine =
        PolicyEngine::from_sources(&[("bench.cedar".into(), policies())], DefaultEffect::Deny)
            .expect("bench policies");
    assert_eq!(engine.len(), 200);
    let who = Identity::new("deploy-bot", IdentityKind::Agent, ["automation"]);
    let principal = Principal::new(&who).expect("principal");
    let read = ActionSpec::new(
        "svc42.read",
        "app://svc42/logs",
        "production",
        Some(serde_json::json!({"since": "1h", "lines": 200})),
    )
    .expect("spec");
    let write = ActionSpec::new(
        "svc7.write",
        "postgres://prod/svc7",
        "production",
        Some(serde_json::json!({"table": "orders", "rows": 10, "dry_run": false})),
    )
    .expect("spec");
    let mut g = c.benchmark_group("decide_200_policies");
    for (name, spec) in [("allow", &read), ("review", &write)] {
        let req = PolicyRequest {
            principal: &principal,
            spec,
            justification: "nightly job",
            analysis: None,
        };
        g.bench_function(format!("sliced/{name}"), |b| {
            b.iter(|| black_box(engine.decide(black_box(req))))
        });
        g.bench_function(format!("full/{name}"), |b| {
            b.iter(|| black_box(engine.evaluate_unsliced(black_box(req))))
        });
    }
    g.finish();
    c.bench_function("principal_prepare", |b| {
        b.iter(|| black_box(Principal::new(black_box(&who))))
    });
    c.bench_function("action_digest", |b| {
        b.iter(|| black_box(black_box(&write).digest()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
