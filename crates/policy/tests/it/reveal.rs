//! `@reveal("group:NAME, human:ID")`: who may see an action's masked values (issue #17).

use crate::{agent, engine, eval};
use countersign_core::Effect;
use countersign_policy::{DefaultEffect, PolicyEngine};
use serde_json::json;

#[test]
fn matching_policies_reveal_to_the_union_of_the_people_they_name() {
    let e = engine(
        r#"
@id("a") @reveal("group:data-owners") permit (principal, action == Action::"db.export", resource);
@id("b") @effect("review") @approvers("group:sre") @reveal("human:dave, group:dpo")
permit (principal, action == Action::"db.export", resource) when { context.environment == "prod" };
@id("c") permit (principal, action == Action::"logs.read", resource);
"#,
    );
    let d = eval(&e, &agent(), "db.export", "dev", json!({})).decision;
    assert_eq!(d.effect, Effect::Allow);
    assert_eq!(d.reveal.unwrap().entries(), ["group:data-owners"]);
    let d = eval(&e, &agent(), "db.export", "prod", json!({})).decision;
    assert_eq!(d.effect, Effect::Review);
    assert_eq!(
        d.reveal.unwrap().entries(),
        ["group:data-owners", "group:dpo", "human:dave"]
    );
    assert!(eval(&e, &agent(), "logs.read", "", json!({}))
        .decision
        .reveal
        .is_none());
}

#[test]
fn a_forbid_or_a_malformed_entry_cannot_reveal() {
    for (src, needle) in [
        (
            r#"@reveal("group:x") forbid (principal, action, resource);"#,
            "@reveal belongs on a permit",
        ),
        (
            r#"@reveal("data-owners") permit (principal, action, resource);"#,
            "not `group:NAME` or `human:ID`",
        ),
        (
            r#"@reveal("") permit (principal, action, resource);"#,
            "empty",
        ),
    ] {
        let err =
            PolicyEngine::from_sources(&[("t.cedar".into(), src.into())], DefaultEffect::Deny)
                .expect_err(needle)
                .to_string();
        assert!(err.contains(needle), "{err}");
    }
}
