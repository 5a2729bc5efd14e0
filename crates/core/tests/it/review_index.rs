//! The rules a store's review index relies on: approver entries, who a closed review is listed
//! for, and the cap on a requester's open reviews.

use countersign_core::{Approvers, Ballot, DomainError, Status};
use proptest::prelude::*;

use crate::support::*;

proptest! {
    /// `admits` holds exactly when the rule's entries include one of the person's keys, so an
    /// index of entries finds every review a person may approve and no other.
    #[test]
    fn keys_of_matches_admits(
        rule_groups in proptest::collection::btree_set("[a-c]", 0..3),
        rule_humans in proptest::collection::btree_set("[p-r]", 0..2),
        who_groups in proptest::collection::vec("[a-d]", 0..3),
        who_id in "[p-s]",
        is_human in any::<bool>(),
    ) {
        prop_assume!(!rule_groups.is_empty() || !rule_humans.is_empty());
        let rule = Approvers { groups: rule_groups, humans: rule_humans };
        let groups: Vec<&str> = who_groups.iter().map(String::as_str).collect();
        let who = if is_human { human(&who_id, &groups) } else { agent(&who_id) };
        let entries = rule.entries();
        let indexed = Approvers::keys_of(&who).iter().any(|k| entries.contains(k));
        prop_assert_eq!(indexed, rule.admits(&who));
    }
}

#[test]
fn closed_reviews_are_listed_for_those_who_could_have_voted() {
    let bot = agent("bot");
    let mut r = submit(
        &bot,
        review_decision(vec![requirement("group:sre", 1)]),
        Some("carol"),
    );
    assert_eq!(
        r.approver_keys().into_iter().collect::<Vec<_>>(),
        ["group:sre"]
    );
    let alice = human("alice", &["sre"]);
    r.vote(
        &alice,
        Ballot::Approve { comment: None },
        T0,
        "g".into(),
        std::time::Duration::from_secs(60),
        |_| countersign_core::Decision::allow(Vec::new()),
    )
    .unwrap();
    assert_eq!(r.status, Status::Approved);
    assert!(r.listed_for_reviewer(&alice, T0));
    assert!(r.listed_for_reviewer(&human("bob", &["sre"]), T0));
    assert!(
        !r.listed_for_reviewer(&human("carol", &["sre"]), T0),
        "the represented human"
    );
    assert!(
        !r.listed_for_reviewer(&human("dave", &[]), T0),
        "not an approver"
    );
    assert!(!r.listed_for_reviewer(&bot, T0), "agents never");
}

#[test]
fn a_requester_at_the_cap_opens_no_more_reviews() {
    let bot = agent("bot");
    let r = submit(
        &bot,
        review_decision(vec![requirement("group:sre", 1)]),
        None,
    );
    assert_eq!(r.check_open_reviews(99, 100), Ok(()));
    assert_eq!(
        r.check_open_reviews(100, 100),
        Err(DomainError::TooManyOpenReviews(100))
    );
    assert_eq!(
        DomainError::TooManyOpenReviews(100).code(),
        "too_many_open_reviews"
    );
    assert!(!DomainError::TooManyOpenReviews(100).is_security_relevant());
}
