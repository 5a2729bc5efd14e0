//! Verifying OIDC tokens with a cached JWKS (the request path): RS256, ES256, EdDSA.
//! Run: `cargo bench -p countersign-identity --bench verify`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

use countersign_identity::OidcVerifier;
use criterion::{criterion_group, criterion_main, Criterion};

#[path = "../tests/it/support.rs"]
#[allow(dead_code)]
mod support;

fn verify(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (rsa, ec, ed) = (
        support::rsa_key(0, "r1"),
        support::ec_key("e1"),
        support::ed_key("d1"),
    );
    let idp = rt.block_on(support::TestIssuer::start(&[&rsa, &ec, &ed]));
    let v = OidcVerifier::new(vec![idp.config("groups_claim = \"groups\"")]).unwrap();
    let mut claims = idp.claims("alice");
    claims["groups"] = serde_json::json!(["sre", "dba", "everyone"]);
    for (name, key) in [("rs256", &rsa), ("es256", &ec), ("eddsa", &ed)] {
        let token = key.sign(&claims);
        rt.block_on(v.verify(&token, support::at())).unwrap();
        c.bench_function(&format!("oidc_verify_cached_{name}"), |b| {
            b.iter(|| rt.block_on(v.verify(&token, support::at())).unwrap())
        });
    }
    assert_eq!(
        idp.hits(),
        1,
        "the JWKS was fetched once, never on the measured path"
    );
}

criterion_group!(benches, verify);
criterion_main!(benches);
