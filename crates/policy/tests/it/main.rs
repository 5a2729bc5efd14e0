//! Integration tests of the policy engine (one test binary per crate).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

mod credentials;
mod decisions;
mod fail_closed;
mod loading;
mod notify;
mod reveal;
mod slicing;

use countersign_core::{ActionSpec, Identity, IdentityKind};
use countersign_policy::{DefaultEffect, Evaluation, PolicyEngine, PolicyRequest, Principal};

pub fn engine(src: &str) -> PolicyEngine {
    PolicyEngine::from_sources(&[("test.cedar".into(), src.into())], DefaultEffect::Deny)
        .unwrap_or_else(|e| panic!("{e}"))
}

pub fn eval(
    e: &PolicyEngine,
    who: &Identity,
    action: &str,
    env: &str,
    params: serde_json::Value,
) -> Evaluation {
    let p = Principal::new(who).unwrap();
    let spec = ActionSpec::new(action, "res://x", env, Some(params)).unwrap();
    e.evaluate(PolicyRequest {
        principal: &p,
        spec: &spec,
        justification: "because",
        analysis: None,
    })
}

pub fn agent() -> Identity {
    Identity::new("bot", IdentityKind::Agent, ["automation"])
}
