//! `@reveal` (issue #17): who may see the values masking hides.

use crate::support::*;
use countersign_core::{Approvers, DomainError, Event, Identity, IdentityKind};

fn revealing(entries: &str) -> countersign_core::ActionRecord {
    let mut decision = review_decision(vec![requirement("group:sre", 1)]);
    decision.reveal = Some(entries.parse::<Approvers>().unwrap());
    submit(&agent("bot"), decision, Some("carol"))
}

#[test]
fn only_the_people_reveal_names_see_masked_values_and_each_reveal_is_an_event() {
    let rec = revealing("group:data-owners, human:dave");
    for who in [human("erin", &["data-owners"]), human("dave", &[])] {
        assert_eq!(
            rec.reveal(&who, vec!["/params/email".into()]).unwrap(),
            vec![Event::Revealed {
                by: who.id.clone(),
                values: vec!["/params/email".into()],
            }]
        );
    }
    // Ids compare normalised, as approvers' do.
    assert!(rec.may_reveal(&human("DAVE", &[])).is_ok());
    for who in [
        human("sam", &["sre"]),
        agent("bot"),
        Identity::new("data-owners-svc", IdentityKind::Service, ["data-owners"]),
        Identity::new("dave", IdentityKind::Agent, ["data-owners"]),
    ] {
        let err = rec.reveal(&who, Vec::new()).unwrap_err();
        assert!(matches!(err, DomainError::RevealNotAllowed(_)), "{who:?}");
        assert_eq!(err.code(), "reveal_not_allowed");
        assert!(err.is_security_relevant());
    }
}

#[test]
fn without_a_reveal_annotation_nobody_sees_masked_values() {
    let rec = submit(
        &agent("bot"),
        review_decision(vec![requirement("group:sre", 1)]),
        None,
    );
    for who in [human("sam", &["sre"]), human("admin", &["admins"])] {
        assert!(matches!(
            rec.may_reveal(&who),
            Err(DomainError::RevealNotAllowed(_))
        ));
    }
}

/// A reviewer's change can narrow who may see masked values, never widen it: after a `modify`,
/// only the people both decisions name may.
#[test]
fn a_modify_keeps_only_the_revealers_both_decisions_name() {
    let mut rec = revealing("group:data-owners, human:dave");
    let mut judged = review_decision(vec![requirement("group:sre", 2)]);
    judged.reveal = Some("group:data-owners, group:everyone".parse().unwrap());
    rec.vote(
        &human("sam", &["sre"]),
        countersign_core::Ballot::Modify {
            params: serde_json::json!({"table": "customers", "limit": 11}),
            comment: None,
        },
        T0,
        "g1".into(),
        GRANT_TTL,
        |_| judged,
    )
    .unwrap();
    assert!(rec.may_reveal(&human("erin", &["data-owners"])).is_ok());
    assert!(rec.may_reveal(&human("dave", &[])).is_err(), "dropped");
    assert!(
        rec.may_reveal(&human("eve", &["everyone"])).is_err(),
        "never added"
    );

    let mut rec = revealing("human:dave");
    rec.vote(
        &human("sam", &["sre"]),
        countersign_core::Ballot::Modify {
            params: serde_json::json!({"table": "customers", "limit": 12}),
            comment: None,
        },
        T0,
        "g2".into(),
        GRANT_TTL,
        |_| review_decision(vec![requirement("group:sre", 2)]),
    )
    .unwrap();
    assert!(rec.may_reveal(&human("dave", &[])).is_err());
}
