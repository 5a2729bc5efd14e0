//! Grant token cost: signing (on every allowed or approved action) and verification (on redeem).
//! `cargo bench -p countersign-gateway --bench grants`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

use countersign_core::{ActionSpec, GrantState, Timestamp};
use countersign_gateway::grants::GrantSigner;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let signer = GrantSigner::new(key);
    let grant = GrantState {
        jti: "01a1fea5-0cb6-7790-85fd-26d37d9a9311".into(),
        digest: ActionSpec::new("logs.read", "app://web", "production", None)
            .expect("spec")
            .digest(),
        issued_at: Timestamp(1_795_273_591_000),
        expires_at: Timestamp(1_795_273_891_000),
        redeemed_at: None,
        redeemed_by: None,
    };
    let action = "01a1fea5-0c84-709f-b891-1fc647f6c29b";
    c.bench_function("grant_sign", |b| {
        b.iter(|| black_box(signer.sign(black_box(action), &grant)))
    });
    let token = signer.sign(action, &grant);
    c.bench_function("grant_verify", |b| {
        b.iter(|| black_box(signer.verify(black_box(&token)).is_ok()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
