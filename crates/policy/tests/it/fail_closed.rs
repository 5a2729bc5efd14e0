//! Policy evaluation fails closed: an error in a policy that could apply denies, and parameters
//! reach Cedar as `Long`, `decimal` or not at all (never as a string standing in for a number).

use countersign_core::Effect;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::{agent, engine, eval};

const PAYMENTS: &str = r#"
@id("pay-review") @effect("review") @approvers("group:finance")
permit (principal, action == Action::"payment.send", resource);
@id("big-payments") @reason("payments over 1000 are never sent by an agent")
forbid (principal, action == Action::"payment.send", resource)
when { context.params.amount > 1000 };
"#;

fn pay(amount: Value) -> countersign_policy::Evaluation {
    eval(
        &engine(PAYMENTS),
        &agent(),
        "payment.send",
        "",
        json!({ "amount": amount }),
    )
}

#[test]
fn a_non_integer_amount_cannot_slip_past_a_forbid() {
    // The attack: 5000.5 used to reach Cedar as the string "5000.5"; `>` then errored, the forbid
    // was skipped and the permit's review applied (a reviewer could approve a forbidden payment).
    let ev = pay(json!(5000.5));
    assert_eq!(ev.decision.effect, Effect::Deny, "{:?}", ev.decision);
    assert_eq!(ev.decision.policies, vec!["big-payments"]);
    let reason = ev.decision.reason.unwrap_or_default();
    assert!(reason.contains("big-payments"), "{reason}");
    assert!(reason.contains("fail closed"), "{reason}");
    assert_eq!(ev.errors.len(), 1);
}

#[test]
fn a_string_amount_is_denied_not_reviewed() {
    let ev = pay(json!("5000"));
    assert_eq!(ev.decision.effect, Effect::Deny, "{:?}", ev.decision);
    assert!(ev.errors[0].contains("big-payments"));
}

#[test]
fn integers_compare_as_cedar_longs() {
    assert_eq!(pay(json!(5000)).decision.effect, Effect::Deny);
    assert_eq!(
        pay(json!(5000)).decision.reason.as_deref(),
        Some("payments over 1000 are never sent by an agent")
    );
    assert_eq!(pay(json!(999)).decision.effect, Effect::Review);
    assert!(pay(json!(999)).errors.is_empty());
}

#[test]
fn non_integers_are_cedar_decimals_when_exact_and_errors_otherwise() {
    let e = engine(
        r#"@id("small") permit (principal, action == Action::"c", resource)
           when { context.params.x.lessThan(decimal("2.5")) };"#,
    );
    let effect = |x: Value| {
        eval(&e, &agent(), "c", "", json!({ "x": x }))
            .decision
            .effect
    };
    assert_eq!(effect(json!(1.5)), Effect::Allow);
    assert_eq!(effect(json!(2.25)), Effect::Allow);
    assert_eq!(effect(json!(-1000.0001)), Effect::Allow);
    assert_eq!(effect(json!(3.5)), Effect::Deny);
    // More than four fractional digits, or beyond decimal's range: no Cedar form, so deny.
    assert_eq!(effect(json!(0.00001)), Effect::Deny);
    assert_eq!(effect(json!(1.0e300)), Effect::Deny);
    assert_eq!(effect(json!(-9.3e14)), Effect::Deny);
    let ev = eval(&e, &agent(), "c", "", json!({ "x": 0.123456 }));
    assert!(
        ev.decision
            .reason
            .unwrap_or_default()
            .contains("no exact Cedar form"),
        "{:?}",
        ev.errors
    );
    // The same holds inside sets and nested records.
    let e = engine(r#"@id("p") permit (principal, action == Action::"c", resource);"#);
    let effect = |v: Value| eval(&e, &agent(), "c", "", v).decision.effect;
    assert_eq!(effect(json!({"a": [1, 2.5, null]})), Effect::Allow);
    assert_eq!(effect(json!({"a": [1, 2.00001]})), Effect::Deny);
    assert_eq!(effect(json!({"a": {"b": 1e-9}})), Effect::Deny);
}

#[test]
fn an_erroring_permit_or_review_rule_denies_too() {
    let e = engine(
        r#"
        @id("ok") permit (principal, action == Action::"c", resource);
        @id("needs-table") @effect("review") @approvers("group:sre")
        permit (principal, action == Action::"c", resource) when { context.params.table == "x" };
        "#,
    );
    let ev = eval(&e, &agent(), "c", "", json!({}));
    assert_eq!(ev.decision.effect, Effect::Deny);
    assert_eq!(ev.decision.policies, vec!["needs-table"]);
    // Guarded with `has`, nothing errors.
    let e = engine(
        r#"
        @id("ok") permit (principal, action == Action::"c", resource);
        @id("needs-table") @effect("review") @approvers("group:sre")
        permit (principal, action == Action::"c", resource)
        when { context.params has table && context.params.table == "x" };
        "#,
    );
    assert_eq!(
        eval(&e, &agent(), "c", "", json!({})).decision.effect,
        Effect::Allow
    );
}

#[test]
fn a_policy_whose_scope_does_not_match_cannot_deny_by_erroring() {
    let e = engine(
        r#"
        @id("ok") permit (principal, action == Action::"c", resource);
        @id("other") forbid (principal, action == Action::"d", resource)
        when { context.params.nope > 1 };
        "#,
    );
    assert_eq!(
        eval(&e, &agent(), "c", "", json!({})).decision.effect,
        Effect::Allow
    );
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(|i| json!(i)),
        (-2000i64..2000).prop_map(|i| json!(i)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        (-2_000_000i64..2_000_000).prop_map(|i| json!(i as f64 / 1000.0)),
        any::<i64>().prop_map(|i| json!(i.to_string())),
        Just(json!(null)),
        Just(json!(true)),
        Just(json!([1001])),
        Just(json!({"amount": 1})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever the amount's JSON shape, the forbid either applies or provably does not: review
    /// only for an integer ≤ 1000, deny for everything else (never allow, never review by error).
    #[test]
    fn the_forbid_holds_for_any_amount(amount in number()) {
        let ev = pay(amount.clone());
        let small_integer = amount.as_i64().is_some_and(|i| i <= 1000);
        if small_integer {
            prop_assert_eq!(ev.decision.effect, Effect::Review);
        } else {
            prop_assert_eq!(ev.decision.effect, Effect::Deny, "{} -> {:?}", amount, ev.decision);
        }
    }
}
