//! `@credentials("NAME, ...")`: which configured credentials a decision releases.

use crate::{agent, engine, eval};
use countersign_core::Effect;
use countersign_policy::{DefaultEffect, PolicyEngine};
use serde_json::json;

#[test]
fn matching_permits_and_review_rules_release_the_union_of_their_credentials() {
    let e = engine(
        r#"
@id("a") @credentials("prod-db, deploy-ssh") permit (principal, action == Action::"db.migrate", resource);
@id("b") @effect("review") @approvers("group:sre") @credentials("prod-db,audit-token")
permit (principal, action == Action::"db.migrate", resource) when { context.environment == "prod" };
@id("c") permit (principal, action == Action::"logs.read", resource);
"#,
    );
    let d = eval(&e, &agent(), "db.migrate", "dev", json!({})).decision;
    assert_eq!(d.effect, Effect::Allow);
    assert_eq!(d.credentials, ["deploy-ssh", "prod-db"]);
    let d = eval(&e, &agent(), "db.migrate", "prod", json!({})).decision;
    assert_eq!(d.effect, Effect::Review);
    assert_eq!(d.credentials, ["audit-token", "deploy-ssh", "prod-db"]);
    assert!(eval(&e, &agent(), "logs.read", "", json!({}))
        .decision
        .credentials
        .is_empty());
    assert_eq!(
        e.credential_names(),
        [
            ("audit-token".to_string(), "b".to_string()),
            ("deploy-ssh".to_string(), "a".to_string()),
            ("prod-db".to_string(), "a".to_string())
        ]
    );
}

#[test]
fn a_forbid_or_a_malformed_name_cannot_carry_credentials() {
    for (src, needle) in [
        (
            r#"@credentials("x") forbid (principal, action, resource);"#,
            "forbid releases nothing",
        ),
        (
            r#"@credentials("prod db") permit (principal, action, resource);"#,
            "not a credential name",
        ),
        (
            r#"@credentials("") permit (principal, action, resource);"#,
            "not a credential name",
        ),
    ] {
        let err =
            PolicyEngine::from_sources(&[("t.cedar".into(), src.into())], DefaultEffect::Deny)
                .expect_err(needle)
                .to_string();
        assert!(err.contains(needle), "{err}");
    }
}
