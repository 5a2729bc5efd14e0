//! `@notify("slack:#CHANNEL, teams:NAME, webhook:NAME")`: where a review rule's notifications go.

use crate::{agent, engine, eval};
use countersign_core::{Effect, Route};
use countersign_policy::{DefaultEffect, PolicyEngine};
use serde_json::json;

#[test]
fn matching_review_rules_route_to_the_union_of_their_channels_in_order() {
    let e = engine(
        r#"
@id("a") @effect("review") @approvers("group:sre") @notify("webhook:pagerduty, slack:#prod-approvals")
permit (principal, action == Action::"db.migrate", resource);
@id("b") @effect("review") @approvers("group:dba") @notify("slack:#prod-approvals,teams:dba")
permit (principal, action == Action::"db.migrate", resource) when { context.environment == "prod" };
@id("c") permit (principal, action == Action::"logs.read", resource);
"#,
    );
    let d = eval(&e, &agent(), "db.migrate", "prod", json!({})).decision;
    assert_eq!(d.effect, Effect::Review);
    let channels: Vec<&str> = d.notify.iter().map(|r| r.channel.as_str()).collect();
    assert_eq!(
        channels,
        ["webhook:pagerduty", "slack:#prod-approvals", "teams:dba"]
    );
    assert!(d.notify.iter().all(|r| r.events.is_empty()));
    // An allowed action carries no route.
    let d = eval(&e, &agent(), "logs.read", "", json!({})).decision;
    assert!(d.notify.is_empty());
    assert_eq!(
        e.notify_channels(),
        [
            ("slack:#prod-approvals".to_string(), "a".to_string()),
            ("teams:dba".to_string(), "b".to_string()),
            ("webhook:pagerduty".to_string(), "a".to_string()),
        ]
    );
    assert!(Route::all("webhook:x").wants("decided"));
}

#[test]
fn notify_belongs_on_review_rules_and_names_well_formed_channels() {
    for (src, needle) in [
        (
            r#"@notify("webhook:x") forbid (principal, action, resource);"#,
            "forbid opens no review",
        ),
        (
            r#"@notify("webhook:x") permit (principal, action, resource);"#,
            "only makes sense with @effect",
        ),
        (
            r#"@effect("review") @approvers("group:sre") @notify("email:ops")
permit (principal, action, resource);"#,
            "not a channel",
        ),
        (
            r#"@effect("review") @approvers("group:sre") @notify("webhook:")
permit (principal, action, resource);"#,
            "not a channel",
        ),
        (
            r#"@effect("review") @approvers("group:sre") @notify("slack:#a b")
permit (principal, action, resource);"#,
            "not a channel",
        ),
    ] {
        let err =
            PolicyEngine::from_sources(&[("t.cedar".into(), src.into())], DefaultEffect::Deny)
                .expect_err(needle)
                .to_string();
        assert!(err.contains(needle), "{err}");
    }
}
