//! A reviewer's `modify` is a new request, judged by policy afresh; who may redeem a grant.

use countersign_core::{
    Ballot, Decision, DomainError, Event, Identity, IdentityKind, Status, Timestamp,
};
use std::time::Duration;

use crate::support::*;

fn modify_to(limit: i64) -> Ballot {
    Ballot::Modify {
        params: serde_json::json!({"table": "customers", "limit": limit}),
        comment: None,
    }
}

fn vote_judged(
    r: &mut countersign_core::ActionRecord,
    who: &Identity,
    b: Ballot,
    now: Timestamp,
    judge: impl FnOnce(&countersign_core::ActionSpec) -> Decision,
) -> Result<Vec<Event>, DomainError> {
    r.vote(who, b, now, format!("g-{}", now.millis()), GRANT_TTL, judge)
}

/// The attack: one reviewer turned `limit: 10` (a rule needing one approver) into
/// `limit: 100000` (a rule needing two) and approved it alone.
#[test]
fn a_modify_needs_what_policy_asks_of_the_modified_action() {
    let mut r = submit(
        &agent("bot"),
        review_decision(vec![requirement("group:sre", 1)]),
        None,
    );
    let alice = human("alice", &["sre", "data"]);
    let events = vote_judged(&mut r, &alice, modify_to(100_000), T0, |spec| {
        assert_eq!(spec.params["limit"], 100_000);
        review_decision(vec![requirement("group:data", 2)])
    })
    .unwrap();
    assert_eq!(
        r.status,
        Status::Pending,
        "one person cannot approve a bulk export"
    );
    let review = r.review.as_ref().unwrap();
    assert_eq!(
        review.requirements.len(),
        2,
        "the old and the new requirement"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::ReviewWidened { quorum, .. } if quorum == &vec![1, 2])));
    // A second distinct data owner completes it; votes count only on the new digest.
    vote(&mut r, &human("dan", &["data"]), approve(), T0).unwrap();
    assert_eq!(r.status, Status::Approved);
    assert_eq!(r.grant.as_ref().unwrap().digest, r.digest);
}

#[test]
fn approvals_of_the_old_digest_do_not_count_for_the_new_requirements() {
    let mut r = submit(
        &agent("bot"),
        review_decision(vec![requirement("group:sre", 1)]),
        None,
    );
    // dan approves the original first (quorum 1 would approve it) — so use quorum 2 to keep open.
    let mut r2 = submit(
        &agent("bot"),
        review_decision(vec![requirement("group:sre", 2)]),
        None,
    );
    vote(&mut r2, &human("dan", &["sre", "data"]), approve(), T0).unwrap();
    vote_judged(&mut r2, &human("eve", &["sre"]), modify_to(5), T0, |_| {
        review_decision(vec![requirement("group:data", 1)])
    })
    .unwrap();
    assert_eq!(
        r2.status,
        Status::Pending,
        "dan approved the old digest only"
    );
    vote(&mut r2, &human("dan", &["sre", "data"]), approve(), T0).unwrap();
    assert_eq!(r2.status, Status::Approved);
    // An allowed modified action adds no requirement: the old review still applies.
    vote_judged(&mut r, &human("eve", &["sre"]), modify_to(5), T0, |_| {
        Decision::allow(vec!["p".into()])
    })
    .unwrap();
    assert_eq!(r.status, Status::Approved);
    assert_eq!(r.review.as_ref().unwrap().requirements.len(), 1);
}

#[test]
fn a_modify_takes_the_earlier_deadline() {
    let mut r = submit(
        &agent("bot"),
        review_decision(vec![requirement("group:sre", 2)]),
        None,
    );
    let mut d = review_decision(vec![requirement("group:sre", 2)]);
    d.review_ttl = Some(Duration::from_secs(60));
    vote_judged(&mut r, &human("eve", &["sre"]), modify_to(5), T0, |_| d).unwrap();
    assert_eq!(
        r.review.as_ref().unwrap().expires_at,
        T0.plus(Duration::from_secs(60))
    );
    let err = vote(
        &mut r,
        &human("bob", &["sre"]),
        approve(),
        T0.plus(Duration::from_secs(61)),
    )
    .unwrap_err();
    assert_eq!(err, DomainError::ReviewExpired);
}

#[test]
fn a_denied_modify_changes_nothing_and_a_refused_one_does_not_widen() {
    let mut r = submit(
        &agent("bot"),
        review_decision(vec![requirement("group:sre", 1)]),
        None,
    );
    let before = r.clone();
    let err = vote_judged(&mut r, &human("eve", &["sre"]), modify_to(5), T0, |_| {
        Decision::deny(vec!["big".into()], "too big")
    })
    .unwrap_err();
    assert_eq!(err, DomainError::ModificationDenied("too big".into()));
    assert_eq!(r, before);
    // Someone who may not vote never gets policy asked, and changes nothing.
    let err = vote_judged(
        &mut r,
        &human("mallory", &["other"]),
        modify_to(5),
        T0,
        |_| panic!("policy must not be asked for a vote that is refused anyway"),
    )
    .unwrap_err();
    assert_eq!(err.code(), "not_an_approver");
    assert_eq!(r, before);
}

fn approved_with_executors(executors: &[&str]) -> countersign_core::ActionRecord {
    let mut d = review_decision(vec![requirement("group:sre", 1)]);
    d.executors = executors.iter().map(|s| s.to_string()).collect();
    let mut r = submit(&agent("bot"), d, None);
    vote(&mut r, &human("alice", &["sre"]), approve(), T0).unwrap();
    assert_eq!(r.status, Status::Approved);
    r
}

/// The attack: any service redeemed any grant.
#[test]
fn only_the_requester_or_a_named_executor_service_redeems() {
    let service = |id: &str| Identity::new(id, IdentityKind::Service, Vec::<String>::new());
    let r = approved_with_executors(&[]);
    let g = r.grant.clone().unwrap();
    for stranger in [service("ci"), agent("other-bot"), human("alice", &["sre"])] {
        let mut r = r.clone();
        assert_eq!(
            r.redeem(&stranger, &g.jti, &g.digest, T0),
            Err(DomainError::NotRequester),
            "{} must not redeem",
            stranger.id
        );
    }
    let mut named = approved_with_executors(&["deployer"]);
    let g = named.grant.clone().unwrap();
    assert_eq!(
        named.clone().redeem(&service("ci"), &g.jti, &g.digest, T0),
        Err(DomainError::NotRequester)
    );
    // An agent (or a human) named like the executor is not the executor service.
    assert_eq!(
        named
            .clone()
            .redeem(&agent("deployer"), &g.jti, &g.digest, T0),
        Err(DomainError::NotRequester)
    );
    named
        .redeem(&service("deployer"), &g.jti, &g.digest, T0)
        .unwrap();
    let mut own = approved_with_executors(&["deployer"]);
    let g = own.grant.clone().unwrap();
    own.redeem(&agent("bot"), &g.jti, &g.digest, T0).unwrap();
}

#[test]
fn a_modify_keeps_only_executors_both_decisions_name() {
    let mut d = review_decision(vec![requirement("group:sre", 1)]);
    d.executors = vec!["deployer".into(), "runner".into()];
    let mut r = submit(&agent("bot"), d, None);
    vote_judged(&mut r, &human("eve", &["sre"]), modify_to(5), T0, |_| {
        let mut d = Decision::allow(Vec::new());
        d.executors = vec!["runner".into()];
        d
    })
    .unwrap();
    assert_eq!(r.decision.executors, vec!["runner".to_string()]);
}
