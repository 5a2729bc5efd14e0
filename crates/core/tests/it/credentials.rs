//! Credentials released by approval (issue #18): one example per rule of
//! `ActionRecord::may_release`, `release_credentials`, `credentials_to_revoke` and
//! `credential_revoked`.

use crate::support::*;
use countersign_core::{
    ActionRecord, CredentialTerms, Decision, DomainError, Event, NewAction, RevokeReason, Status,
    Timestamp,
};
use std::time::Duration;

const LIFE: Duration = Duration::from_secs(60);

fn terms() -> Vec<CredentialTerms> {
    vec![CredentialTerms {
        name: "prod-db".into(),
        kind: "postgres_role".into(),
        lifetime: LIFE,
    }]
}

fn allowed_with_credentials(grant_on_allow: bool) -> ActionRecord {
    let mut d = Decision::allow(vec!["p".into()]);
    d.credentials = vec!["prod-db".into()];
    ActionRecord::submit(
        &agent("bot"),
        NewAction {
            id: "a1".into(),
            grant_jti: "g0".into(),
            spec: spec(),
            justification: String::new(),
            on_behalf_of: None,
            idempotency_key: None,
            decision: d,
            default_review_ttl: REVIEW_TTL,
            grant_ttl: GRANT_TTL,
            grant_on_allow,
            analysis: None,
        },
        T0,
    )
    .unwrap()
    .0
}

fn redeemed() -> ActionRecord {
    let mut r = allowed_with_credentials(false);
    let digest = r.digest;
    r.redeem(&agent("bot"), "g0", &digest, T0).unwrap();
    r
}

fn at(ms: i64) -> Timestamp {
    Timestamp(T0.0 + ms)
}

#[test]
fn a_decision_naming_credentials_gets_a_grant_even_where_allowed_actions_get_none() {
    assert!(allowed_with_credentials(false).grant.is_some());
}

#[test]
fn nothing_is_released_before_redemption_or_for_a_decision_naming_none() {
    let r = allowed_with_credentials(false);
    assert_eq!(
        r.may_release(&agent("bot"), &terms(), T0),
        Err(DomainError::GrantNotRedeemed)
    );
    let plain = submit(&agent("bot"), Decision::allow(vec![]), None);
    assert_eq!(
        plain.may_release(&agent("bot"), &terms(), T0),
        Err(DomainError::NoCredentials)
    );
    // A name the decision does not release is not released either.
    let mut other = terms();
    other[0].name = "other".into();
    assert_eq!(
        redeemed().may_release(&agent("bot"), &other, T0),
        Err(DomainError::NoCredentials)
    );
}

#[test]
fn a_cancelled_action_releases_nothing() {
    let mut r = allowed_with_credentials(false);
    r.cancel(&agent("bot"), T0).unwrap();
    assert_eq!(
        r.may_release(&agent("bot"), &terms(), T0),
        Err(DomainError::GrantRevoked(Status::Cancelled))
    );
}

#[test]
fn only_the_redeemer_receives_them_compared_normalised() {
    let r = redeemed();
    assert_eq!(
        r.may_release(&human("alice", &["sre"]), &terms(), T0),
        Err(DomainError::NotRedeemer)
    );
    assert!(r.may_release(&agent("BOT"), &terms(), T0).is_ok());
    assert!(DomainError::NotRedeemer.is_security_relevant());
}

#[test]
fn they_are_released_once_until_the_lifetime_counted_from_redemption() {
    let mut r = redeemed();
    let events = r
        .release_credentials(&agent("bot"), &terms(), at(10))
        .unwrap();
    assert_eq!(
        events,
        vec![Event::CredentialReleased {
            credential: "prod-db".into(),
            kind: "postgres_role".into(),
            to: "bot".into(),
            expires_at: T0.plus(LIFE),
        }]
    );
    assert_eq!(
        r.release_credentials(&agent("bot"), &terms(), at(20)),
        Err(DomainError::CredentialsAlreadyReleased)
    );
    let late = redeemed();
    assert_eq!(
        late.may_release(&agent("bot"), &terms(), T0.plus(LIFE)),
        Err(DomainError::CredentialsExpired)
    );
}

#[test]
fn after_the_report_nothing_is_released_and_what_was_is_due_for_revocation() {
    let mut r = redeemed();
    r.release_credentials(&agent("bot"), &terms(), T0).unwrap();
    assert!(r.credentials_to_revoke(at(1)).is_empty());
    assert_eq!(
        r.credentials_to_revoke(T0.plus(LIFE)),
        vec![("prod-db".to_string(), RevokeReason::Expired)]
    );
    r.report(
        &agent("bot"),
        countersign_core::Outcome::Succeeded,
        None,
        None,
        None,
        at(5),
    )
    .unwrap();
    assert_eq!(
        r.credentials_to_revoke(at(6)),
        vec![("prod-db".to_string(), RevokeReason::Reported)]
    );
    let events = r.credential_revoked("prod-db", RevokeReason::Reported, at(7));
    assert_eq!(events.len(), 1);
    // Idempotent: a second revocation records nothing.
    assert!(r
        .credential_revoked("prod-db", RevokeReason::Reported, at(8))
        .is_empty());
    assert!(r.credentials_to_revoke(at(9)).is_empty());
    let mut fresh = redeemed();
    fresh
        .report(
            &agent("bot"),
            countersign_core::Outcome::Succeeded,
            None,
            None,
            None,
            at(1),
        )
        .unwrap();
    assert_eq!(
        fresh.may_release(&agent("bot"), &terms(), at(2)),
        Err(DomainError::NotPending(Status::Succeeded))
    );
}

#[test]
fn a_reviewers_modification_can_take_a_credential_away_never_add_one() {
    let mut d = review_decision(vec![requirement("group:sre", 1)]);
    d.credentials = vec!["a".into(), "b".into()];
    let mut r = submit(&agent("bot"), d, None);
    let ballot = countersign_core::Ballot::Modify {
        params: serde_json::json!({"table": "other"}),
        comment: None,
    };
    r.vote(
        &human("alice", &["sre"]),
        ballot,
        T0,
        "g1".into(),
        GRANT_TTL,
        |_| {
            let mut d = Decision::allow(vec![]);
            d.credentials = vec!["b".into(), "c".into()];
            d
        },
    )
    .unwrap();
    assert_eq!(r.decision.credentials, vec!["b".to_string()]);
}
