//! Slicing by action never changes a decision: random policy sets and random requests, evaluated
//! on the slice and on the whole set, must agree exactly.

use countersign_core::{ActionSpec, Identity, IdentityKind};
use countersign_policy::{DefaultEffect, PolicyEngine, PolicyRequest, Principal};
use proptest::prelude::*;

const ACTIONS: [&str; 5] = ["a.read", "b.write", "c.export", "d.delete", "e.grant"];

#[derive(Debug, Clone)]
struct Gen {
    kind: u8,
    scope: u8,
    a: usize,
    b: usize,
    principal: u8,
    cond: u8,
}

fn policy_text(i: usize, g: &Gen) -> String {
    let action = match g.scope % 3 {
        0 => format!("action == Action::\"{}\"", ACTIONS[g.a]),
        1 => format!(
            "action in [Action::\"{}\", Action::\"{}\"]",
            ACTIONS[g.a], ACTIONS[g.b]
        ),
        _ => "action".to_string(),
    };
    let principal = match g.principal % 4 {
        0 => "principal".to_string(),
        1 => "principal in Group::\"sre\"".to_string(),
        2 => "principal is Agent".to_string(),
        _ => "principal == Human::\"alice\"".to_string(),
    };
    let when = match g.cond % 4 {
        0 => String::new(),
        1 => " when { context.environment == \"prod\" }".to_string(),
        2 => " when { context.params has n && context.params.n > 5 }".to_string(),
        _ => " when { context.params.n > 5 }".to_string(), // errors when n is missing
    };
    let (annotations, effect) = match g.kind % 3 {
        0 => (String::new(), "permit"),
        1 => (
            format!(
                "@effect(\"review\") @approvers(\"group:sre\") @quorum(\"{}\")",
                1 + i % 3
            ),
            "permit",
        ),
        _ => (format!("@reason(\"r{i}\")"), "forbid"),
    };
    format!("@id(\"p{i}\") {annotations} {effect} ({principal}, {action}, resource){when};\n")
}

fn gen() -> impl Strategy<Value = Gen> {
    (0..3u8, 0..3u8, 0..5usize, 0..5usize, 0..4u8, 0..4u8).prop_map(
        |(kind, scope, a, b, principal, cond)| Gen {
            kind,
            scope,
            a,
            b,
            principal,
            cond,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn sliced_and_full_evaluation_agree(
        gens in proptest::collection::vec(gen(), 0..25),
        requests in proptest::collection::vec((0..6usize, 0..3u8, any::<bool>(), proptest::option::of(0..10i64)), 1..12),
    ) {
        let text: String = gens.iter().enumerate().map(|(i, g)| policy_text(i, g)).collect();
        let engine = PolicyEngine::from_sources(&[("g.cedar".into(), text)], DefaultEffect::Deny)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (action, who, prod, n) in requests {
            let action = if action < ACTIONS.len() { ACTIONS[action] } else { "z.unknown" };
            let ident = match who {
                0 => Identity::new("bot", IdentityKind::Agent, ["automation"]),
                1 => Identity::new("alice", IdentityKind::Human, ["sre"]),
                _ => Identity::new("ci", IdentityKind::Service, Vec::<String>::new()),
            };
            let params = match n { Some(n) => serde_json::json!({"n": n}), None => serde_json::json!({}) };
            let spec = ActionSpec::new(action, "r://x", if prod { "prod" } else { "dev" }, Some(params)).unwrap();
            let principal = Principal::new(&ident).unwrap();
            let req = PolicyRequest { principal: &principal, spec: &spec, justification: "", analysis: None };
            let sliced = engine.evaluate(req);
            let full = engine.evaluate_unsliced(req);
            prop_assert_eq!(sliced.decision, full.decision);
        }
    }
}
