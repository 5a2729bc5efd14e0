//! Audit log costs: an inclusion proof at tree size 1,000,000 (produce and check), and verifying
//! a full 1,000,000-entry bundle offline. `cargo bench -p countersign-audit --bench audit`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

use countersign_audit::checkpoint::Checkpoint;
use countersign_audit::merkle::{check_record, leaf_hash, prove_record, tree_hash, MemoryHashes};
use countersign_audit::note::{self, generate_key};
use countersign_audit::verify::{checkpoint_line, entry_line, header_line, verify_bundle};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

const N: u64 = 1_000_000;

fn entry(i: u64) -> Vec<u8> {
    // The shape and size of a real entry (a `submitted` event).
    format!(
        "{{\"action_id\":\"01a1fea5-0c84-709f-b891-{i:012}\",\"actor\":\"deploy-bot\",\"event\":{{\"digest\":\"sha256:db3701821f8db750bb6865f6c82a1208f0c145e8fe158ec9fc96121d6d89522e\",\"effect\":\"allow\",\"on_behalf_of\":null,\"policies\":[\"routine-reads\"],\"reason\":null,\"requester\":\"deploy-bot\"}},\"index\":{i},\"time\":\"2026-11-21T15:06:31.94Z\",\"type\":\"submitted\"}}"
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let entries: Vec<Vec<u8>> = (0..N).map(entry).collect();
    let mut tree = MemoryHashes::new();
    for e in &entries {
        tree.append(e).expect("append");
    }
    let root = tree_hash(N, &tree).expect("root");

    let mut i = 0u64;
    c.bench_function("inclusion_proof_1m/prove", |b| {
        b.iter(|| {
            i = (i + 7_919) % N;
            black_box(prove_record(N, i, &tree).expect("proof"))
        })
    });
    let proof = prove_record(N, 123_456, &tree).expect("proof");
    let leaf = leaf_hash(&entries[123_456]);
    c.bench_function("inclusion_proof_1m/check", |b| {
        b.iter(|| black_box(check_record(&proof, N, &root, 123_456, &leaf).is_ok()))
    });

    let (signer, verifier) = generate_key("bench/audit", &mut rand::rngs::OsRng).expect("key");
    let cp = note::sign(
        &Checkpoint::new("bench/audit", N, root)
            .expect("cp")
            .to_text(),
        &signer,
    )
    .expect("sign");
    let mut bundle = String::with_capacity(entries.len() * 420);
    bundle += &header_line("bench/audit", N, 0, N);
    bundle.push('\n');
    bundle += &checkpoint_line(&cp);
    bundle.push('\n');
    for (i, e) in entries.iter().enumerate() {
        bundle += &entry_line(i as u64, e, None);
        bundle.push('\n');
    }
    let mut g = c.benchmark_group("verify_bundle_1m");
    g.sample_size(10);
    g.bench_function("full", |b| {
        b.iter(|| black_box(verify_bundle(&bundle, &verifier, None).expect("verifies")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
