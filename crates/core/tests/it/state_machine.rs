//! The review state machine: examples for each rule, then property tests that throw random
//! sequences of votes, answers, cancellations, redemptions and clock jumps at it — by random
//! humans, agents and services whose groups change between steps — and check every invariant
//! after every step.

use countersign_core::{
    ActionRecord, Ballot, Decision, DomainError, Identity, IdentityKind, Status, Timestamp, Verdict,
};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::*;

#[test]
fn requester_and_on_behalf_of_cannot_vote() {
    let alice = human("alice", &["sre"]);
    let bob = human("bob", &["sre"]);
    let mut r = submit(
        &alice,
        review_decision(vec![requirement("group:sre", 1)]),
        None,
    );
    assert_eq!(
        vote(&mut r, &alice, approve(), T0),
        Err(DomainError::SelfApproval)
    );
    let bot = agent("bot");
    let mut r = submit(
        &bot,
        review_decision(vec![requirement("group:sre", 1)]),
        Some("bob"),
    );
    assert_eq!(
        vote(&mut r, &bob, approve(), T0),
        Err(DomainError::SelfApproval)
    );
    assert_eq!(r.status, Status::Pending);
}

#[test]
fn reviewable_by_agrees_with_the_vote_rules() {
    let bot = agent("bot");
    let mut r = submit(
        &bot,
        review_decision(vec![requirement("group:sre", 1)]),
        Some("carol"),
    );
    let alice = human("alice", &["sre"]);
    assert!(r.reviewable_by(&alice, T0));
    assert!(!r.reviewable_by(&bot, T0), "agents never");
    assert!(
        !r.reviewable_by(&human("carol", &["sre"]), T0),
        "the represented human never"
    );
    assert!(!r.reviewable_by(&human("dave", &[]), T0), "not an approver");
    let deadline = r.review.as_ref().unwrap().expires_at;
    assert!(!r.reviewable_by(&alice, deadline), "past the deadline");
    vote(
        &mut r,
        &alice,
        Ballot::Clarify {
            question: "why?".into(),
        },
        T0,
    )
    .unwrap();
    assert!(
        r.reviewable_by(&alice, T0),
        "still listed while waiting for an answer"
    );
    r.answer(&bot, "because".into(), T0).unwrap();
    vote(&mut r, &alice, approve(), T0).unwrap();
    assert!(
        !r.reviewable_by(&human("bob", &["sre"]), T0),
        "closed once approved"
    );
}

#[test]
fn who_sees_an_action_and_who_may_use_its_grant() {
    let bot = agent("bot");
    let mut r = submit(
        &bot,
        review_decision(vec![requirement("group:sre", 1)]),
        Some("carol"),
    );
    assert!(
        r.visible_to(&bot)
            && r.visible_to(&human("carol", &[]))
            && r.visible_to(&human("dave", &[]))
    );
    assert!(
        !r.visible_to(&agent("other-bot")),
        "agents see only their own"
    );
    vote(&mut r, &human("alice", &["sre"]), approve(), T0).unwrap();
    let g = r.grant.clone().unwrap();
    assert!(r.usable_grant(&bot, T0).is_some());
    assert!(
        r.usable_grant(&human("alice", &["sre"]), T0).is_none(),
        "only the requester's"
    );
    assert!(
        r.usable_grant(&bot, g.expires_at).is_none(),
        "not after its deadline"
    );
    let mut cancelled = r.clone();
    cancelled.cancel(&bot, T0).unwrap();
    assert!(
        cancelled.usable_grant(&bot, T0).is_none(),
        "revoked by cancelling"
    );
    r.redeem(&bot, &g.jti, &g.digest, T0).unwrap();
    assert!(r.usable_grant(&bot, T0).is_none(), "used once");
}

#[test]
fn agents_and_services_cannot_vote_even_when_listed_as_approvers() {
    let bot = agent("bot");
    let svc = Identity::new("ci", IdentityKind::Service, ["sre"]);
    let mut r = submit(
        &human("alice", &[]),
        review_decision(vec![requirement("group:sre, human:bot", 1)]),
        None,
    );
    assert_eq!(
        vote(&mut r, &bot, approve(), T0),
        Err(DomainError::AgentsCannotApprove)
    );
    assert_eq!(
        vote(&mut r, &svc, approve(), T0),
        Err(DomainError::AgentsCannotApprove)
    );
}

#[test]
fn one_person_in_two_approver_groups_counts_once() {
    let bob = human("bob", &["sre", "dba"]);
    let mut r = submit(
        &agent("bot"),
        review_decision(vec![requirement("group:sre, group:dba", 2)]),
        None,
    );
    vote(&mut r, &bob, approve(), T0).unwrap();
    assert_eq!(r.status, Status::Pending);
    assert_eq!(
        vote(&mut r, &bob, approve(), T0),
        Err(DomainError::AlreadyVoted)
    );
    vote(&mut r, &human("carol", &["dba"]), approve(), T0).unwrap();
    assert_eq!(r.status, Status::Approved);
    assert!(r.grant.is_some());
}

#[test]
fn every_matching_rule_must_be_met() {
    let mut r = submit(
        &agent("bot"),
        review_decision(vec![
            requirement("group:sre", 1),
            requirement("group:data", 1),
        ]),
        None,
    );
    vote(&mut r, &human("alice", &["sre"]), approve(), T0).unwrap();
    assert_eq!(r.status, Status::Pending);
    vote(&mut r, &human("dan", &["data"]), approve(), T0).unwrap();
    assert_eq!(r.status, Status::Approved);
}

#[test]
fn modify_creates_a_new_digest_and_old_approvals_stop_counting() {
    let mut r = submit(
        &agent("bot"),
        review_decision(vec![requirement("group:sre", 2)]),
        None,
    );
    let before = r.digest;
    vote(&mut r, &human("alice", &["sre"]), approve(), T0).unwrap();
    let modify = Ballot::Modify {
        params: serde_json::json!({"table": "customers", "limit": 1}),
        comment: Some("one row is enough".into()),
    };
    vote(&mut r, &human("bob", &["sre"]), modify, T0).unwrap();
    assert_ne!(r.digest, before);
    assert_eq!(r.spec.params["limit"], 1);
    assert_eq!(
        r.status,
        Status::Pending,
        "alice approved the old digest only"
    );
    vote(&mut r, &human("alice", &["sre"]), approve(), T0).unwrap();
    assert_eq!(r.status, Status::Approved);
    assert_eq!(r.grant.as_ref().unwrap().digest, r.digest);
}

#[test]
fn a_modification_policy_denies_is_refused_without_change() {
    let mut r = submit(
        &agent("bot"),
        review_decision(vec![requirement("group:sre", 1)]),
        None,
    );
    let snapshot = r.clone();
    let modify = Ballot::Modify {
        params: serde_json::json!({"table": "users"}),
        comment: None,
    };
    let err = r
        .vote(
            &human("bob", &["sre"]),
            modify,
            T0,
            "g".into(),
            GRANT_TTL,
            |_| Decision::deny(Vec::new(), "no"),
        )
        .unwrap_err();
    assert_eq!(err.code(), "modification_denied");
    assert_eq!(r, snapshot);
}

#[test]
fn one_deny_rejects_and_nothing_grants_afterwards() {
    let mut r = submit(
        &agent("bot"),
        review_decision(vec![requirement("group:sre", 2)]),
        None,
    );
    vote(&mut r, &human("alice", &["sre"]), approve(), T0).unwrap();
    vote(
        &mut r,
        &human("bob", &["sre"]),
        Ballot::Deny {
            comment: Some("no".into()),
        },
        T0,
    )
    .unwrap();
    assert_eq!(r.status, Status::Rejected);
    assert!(r.grant.is_none());
    let err = vote(&mut r, &human("carol", &["sre"]), approve(), T0).unwrap_err();
    assert_eq!(err, DomainError::NotPending(Status::Rejected));
}

#[test]
fn clarify_then_answer_returns_to_pending() {
    let bot = agent("bot");
    let mut r = submit(
        &bot,
        review_decision(vec![requirement("group:sre", 1)]),
        None,
    );
    let alice = human("alice", &["sre"]);
    vote(
        &mut r,
        &alice,
        Ballot::Clarify {
            question: "why?".into(),
        },
        T0,
    )
    .unwrap();
    assert_eq!(r.status, Status::NeedsClarification);
    assert_eq!(
        vote(&mut r, &alice, approve(), T0),
        Err(DomainError::NotPending(Status::NeedsClarification))
    );
    assert_eq!(
        r.answer(&alice, "x".into(), T0),
        Err(DomainError::NotRequester)
    );
    r.answer(&bot, "quarterly audit".into(), T0).unwrap();
    assert_eq!(r.status, Status::Pending);
    vote(&mut r, &alice, approve(), T0).unwrap();
    assert_eq!(r.status, Status::Approved);
}

#[test]
fn expiry_is_a_state_and_closes_the_review() {
    let mut r = submit(
        &agent("bot"),
        review_decision(vec![requirement("group:sre", 1)]),
        None,
    );
    let deadline = r.review.as_ref().unwrap().expires_at;
    assert!(r.expire(Timestamp(deadline.millis() - 1)).is_empty());
    let late = deadline;
    assert_eq!(
        vote(&mut r, &human("alice", &["sre"]), approve(), late),
        Err(DomainError::ReviewExpired)
    );
    assert_eq!(r.expire(late).len(), 1);
    assert_eq!(r.status, Status::Expired);
    assert!(r.grant.is_none());
    assert!(
        r.expire(late).is_empty(),
        "expiring twice records one event"
    );
}

#[test]
fn grant_is_single_use_bound_to_digest_and_expires() {
    let bot = agent("bot");
    let mut r = submit(
        &bot,
        review_decision(vec![requirement("group:sre", 1)]),
        None,
    );
    vote(&mut r, &human("alice", &["sre"]), approve(), T0).unwrap();
    let g = r.grant.clone().unwrap();
    let other = spec()
        .with_params(serde_json::json!({"x": 1}))
        .unwrap()
        .digest();
    assert_eq!(
        r.redeem(&bot, &g.jti, &other, T0),
        Err(DomainError::GrantMismatch)
    );
    assert_eq!(
        r.redeem(&bot, "forged", &g.digest, T0),
        Err(DomainError::GrantMismatch)
    );
    assert_eq!(
        r.redeem(&human("eve", &[]), &g.jti, &g.digest, T0),
        Err(DomainError::NotRequester)
    );
    let mut late = r.clone();
    assert_eq!(
        late.redeem(&bot, &g.jti, &g.digest, g.expires_at),
        Err(DomainError::GrantExpired)
    );
    r.redeem(&bot, &g.jti, &g.digest, T0).unwrap();
    assert_eq!(
        r.redeem(&bot, &g.jti, &g.digest, T0),
        Err(DomainError::GrantAlreadyUsed)
    );
}

#[test]
fn cancelled_actions_never_redeem() {
    let bot = agent("bot");
    let mut r = submit(
        &bot,
        review_decision(vec![requirement("group:sre", 1)]),
        None,
    );
    vote(&mut r, &human("alice", &["sre"]), approve(), T0).unwrap();
    let g = r.grant.clone().unwrap();
    assert_eq!(
        r.cancel(&human("alice", &["sre"]), T0),
        Err(DomainError::NotRequester)
    );
    r.cancel(&bot, T0).unwrap();
    assert_eq!(
        r.redeem(&bot, &g.jti, &g.digest, T0),
        Err(DomainError::GrantRevoked(Status::Cancelled))
    );
}

#[test]
fn approved_results_need_a_redeemed_grant() {
    let bot = agent("bot");
    let mut r = submit(
        &bot,
        review_decision(vec![requirement("group:sre", 1)]),
        None,
    );
    vote(&mut r, &human("alice", &["sre"]), approve(), T0).unwrap();
    use countersign_core::Outcome;
    assert_eq!(
        r.report(&bot, Outcome::Succeeded, Some(0), None, None, T0),
        Err(DomainError::GrantNotRedeemed)
    );
    let g = r.grant.clone().unwrap();
    r.redeem(&bot, &g.jti, &g.digest, T0).unwrap();
    r.report(&bot, Outcome::Succeeded, Some(0), None, None, T0)
        .unwrap();
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(
        r.report(&bot, Outcome::Failed, None, None, None, T0),
        Err(DomainError::ResultAlreadyReported)
    );
}

#[test]
fn humans_cannot_submit_on_behalf_of_someone_else() {
    let err = ActionRecord::submit(
        &human("alice", &[]),
        countersign_core::NewAction {
            id: "x".into(),
            grant_jti: "g".into(),
            spec: spec(),
            justification: String::new(),
            on_behalf_of: Some("bob".into()),
            idempotency_key: None,
            decision: review_decision(vec![requirement("group:sre", 1)]),
            default_review_ttl: REVIEW_TTL,
            grant_ttl: GRANT_TTL,
            grant_on_allow: true,
            analysis: None,
        },
        T0,
    )
    .unwrap_err();
    assert_eq!(err, DomainError::OnBehalfOfNotAllowed);
}

// ---------------------------------------------------------------------------------------------
// Property tests

const GROUPS: [&str; 3] = ["sre", "data", "sec"];
const PEOPLE: [&str; 6] = ["p0", "p1", "p2", "p3", "p4", "p5"];

#[derive(Debug, Clone)]
enum Step {
    Vote {
        who: usize,
        ballot: u8,
        flip_group: Option<(usize, usize)>,
    },
    Answer {
        who: usize,
    },
    Cancel {
        who: usize,
    },
    Redeem {
        who: usize,
        forge: bool,
    },
    Advance {
        ms: u32,
    },
}

fn identities(kinds: &[u8], groups: &[u8]) -> Vec<Identity> {
    PEOPLE
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let kind = match kinds[i] % 4 {
                0 => IdentityKind::Agent,
                1 => IdentityKind::Service,
                _ => IdentityKind::Human,
            };
            let gs: Vec<&str> = GROUPS
                .iter()
                .enumerate()
                .filter(|(g, _)| groups[i] & (1 << g) != 0)
                .map(|(_, n)| *n)
                .collect();
            Identity::new(*id, kind, gs)
        })
        .collect()
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..6usize, 0..4u8, proptest::option::of((0..6usize, 0..3usize)))
            .prop_map(|(who, ballot, flip_group)| Step::Vote { who, ballot, flip_group }),
        1 => (0..6usize).prop_map(|who| Step::Answer { who }),
        1 => (0..6usize).prop_map(|who| Step::Cancel { who }),
        2 => (0..6usize, any::<bool>()).prop_map(|(who, forge)| Step::Redeem { who, forge }),
        1 => (0..700_000u32).prop_map(|ms| Step::Advance { ms }),
    ]
}

fn requirements() -> impl Strategy<Value = Vec<(u8, u8, u32)>> {
    // (group bitmask, person bitmask, quorum); at least one entry each
    proptest::collection::vec((0..8u8, 0..64u8, 1..4u32), 1..3)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_under_random_operations(
        kinds in proptest::collection::vec(0..4u8, 6),
        groups in proptest::collection::vec(0..8u8, 6),
        reqs in requirements(),
        requester in 0..6usize,
        obo in proptest::option::of(0..6usize),
        steps in proptest::collection::vec(step(), 1..40),
    ) {
        let mut people = identities(&kinds, &groups);
        let reqs: Vec<_> = reqs.iter().filter_map(|(g, p, q)| {
            let mut entries: Vec<String> = GROUPS.iter().enumerate()
                .filter(|(i, _)| g & (1 << i) != 0).map(|(_, n)| format!("group:{n}")).collect();
            entries.extend(PEOPLE.iter().enumerate()
                .filter(|(i, _)| p & (1 << i) != 0).map(|(_, n)| format!("human:{n}")));
            (!entries.is_empty()).then(|| requirement(&entries.join(","), *q))
        }).collect();
        prop_assume!(!reqs.is_empty());
        let requester_id = people[requester].clone();
        // Only agents and services may act on behalf of a human.
        let obo = obo.filter(|_| requester_id.kind != IdentityKind::Human)
            .map(|i| PEOPLE[i].to_string());
        let mut r = submit(&requester_id, review_decision(reqs), obo.as_deref());
        let mut now = T0;
        let mut redemptions = 0;
        let mut approvers_seen: Vec<(String, BTreeSet<usize>)> = Vec::new();

        for s in steps {
            let before = r.clone();
            let result = match &s {
                Step::Vote { who, ballot, flip_group } => {
                    if let Some((p, g)) = flip_group {
                        let name = GROUPS[*g].to_string();
                        let set = &mut people[*p].groups;
                        if !set.remove(&name) { set.insert(name); }
                    }
                    let voter = &people[*who];
                    let b = match ballot {
                        0 | 1 => approve(),
                        2 => Ballot::Deny { comment: None },
                        _ => Ballot::Modify {
                            params: serde_json::json!({"n": now.millis()}),
                            comment: None,
                        },
                    };
                    let res = r.vote(voter, b, now, format!("g{}", now.millis()), GRANT_TTL, |_| Decision::allow(Vec::new()));
                    if res.is_ok() {
                        // Invariant: only a human who is not the requester or the represented
                        // human, and who is an approver at this moment, ever gets a vote in.
                        prop_assert_eq!(voter.kind, IdentityKind::Human);
                        prop_assert_ne!(&voter.id, &r.requester);
                        prop_assert_ne!(Some(voter.id.as_str()), r.on_behalf_of.as_deref());
                        let rv = r.review.as_ref().unwrap();
                        let admitted: BTreeSet<usize> = rv.requirements.iter().enumerate()
                            .filter(|(_, q)| q.approvers.admits(voter)).map(|(i, _)| i).collect();
                        prop_assert!(!admitted.is_empty());
                        prop_assert!(now < rv.expires_at);
                        approvers_seen.push((voter.id.clone(), admitted));
                    }
                    res.map(|_| ())
                }
                Step::Answer { who } => r.answer(&people[*who], "because".into(), now).map(|_| ()),
                Step::Cancel { who } => r.cancel(&people[*who], now).map(|_| ()),
                Step::Redeem { who, forge } => {
                    let (jti, digest) = match &r.grant {
                        Some(g) if !forge => (g.jti.clone(), g.digest),
                        Some(g) => (format!("{}x", g.jti), g.digest),
                        None => ("none".into(), r.digest),
                    };
                    let res = r.redeem(&people[*who], &jti, &digest, now);
                    if res.is_ok() {
                        redemptions += 1;
                        prop_assert!(!forge);
                        prop_assert!(matches!(r.status, Status::Allowed | Status::Approved));
                        let g = r.grant.as_ref().unwrap();
                        prop_assert!(now < g.expires_at);
                        prop_assert_eq!(g.digest, r.digest);
                    }
                    res.map(|_| ())
                }
                Step::Advance { ms } => {
                    now = Timestamp(now.millis() + i64::from(*ms));
                    r.expire(now);
                    Ok(())
                }
            };
            // Invariant: a refused transition changes nothing.
            if result.is_err() {
                prop_assert_eq!(&r, &before);
            }
            // Invariant: a grant is used at most once.
            prop_assert!(redemptions <= 1);
            // Invariant: expired, rejected, or cancelled-before-approval never hold a grant.
            if matches!(r.status, Status::Expired | Status::Rejected) {
                prop_assert!(r.grant.is_none());
            }
            // Invariant: approval means every requirement has its quorum of distinct eligible
            // humans on the current digest, and the grant is bound to that digest.
            if let Some(g) = &r.grant {
                prop_assert_eq!(g.digest, r.digest);
                let rv = r.review.as_ref().unwrap();
                for (i, q) in rv.requirements.iter().enumerate() {
                    let distinct: BTreeSet<&str> = rv.votes.iter()
                        .filter(|v| v.digest == r.digest
                            && matches!(v.verdict, Verdict::Approve | Verdict::Modify)
                            && v.counts_for.contains(&i))
                        .map(|v| v.voter.as_str()).collect();
                    prop_assert!(distinct.len() >= q.quorum.get() as usize);
                    for d in distinct {
                        prop_assert_ne!(d, r.requester.as_str());
                        prop_assert_ne!(Some(d), r.on_behalf_of.as_deref());
                        prop_assert!(approvers_seen.iter().any(|(who, reqs)| who == d && reqs.contains(&i)));
                    }
                }
            }
            // Invariant: terminal states stay terminal (except a result after an approval).
            if matches!(before.status, Status::Rejected | Status::Expired | Status::Cancelled | Status::Succeeded | Status::Failed) {
                prop_assert_eq!(before.status, r.status);
            }
        }
    }
}

#[test]
fn deadline_is_saturating() {
    let mut r = submit(
        &agent("bot"),
        review_decision(vec![requirement("group:sre", 1)]),
        None,
    );
    assert!(r.expire(Timestamp(i64::MAX)).len() == 1);
    assert_eq!(
        Timestamp(i64::MAX).plus(Duration::from_secs(u64::MAX)),
        Timestamp(i64::MAX)
    );
}

#[test]
fn an_earlier_action_answers_the_same_request_only_while_open_or_approved_and_unused() {
    let bot = agent("bot");
    let reqs = || review_decision(vec![requirement("group:sre", 1)]);
    let mut r = submit(&bot, reqs(), Some("carol"));
    let later = |at: Timestamp| {
        let mut n = submit(&bot, reqs(), Some("carol"));
        n.id = "a2".into();
        n.created_at = at;
        n
    };
    assert!(r.answers(&later(T0)));
    assert!(
        !r.answers(&submit(&agent("bot-2"), reqs(), Some("carol"))),
        "another requester"
    );
    assert!(!r.answers(&submit(&bot, reqs(), None)), "for another human");
    assert!(
        !r.answers(&submit(&bot, reqs(), Some("dave"))),
        "for another human"
    );
    let deadline = r.review.as_ref().unwrap().expires_at;
    assert!(!r.answers(&later(deadline)), "past the review's deadline");

    // A reviewer's modify: the action still answers what was submitted.
    let modify = Ballot::Modify {
        params: serde_json::json!({"table": "customers", "limit": 1}),
        comment: None,
    };
    vote(&mut r, &human("alice", &["sre"]), modify, T0).unwrap();
    assert_eq!(r.status, Status::Approved);
    assert!(r.answers(&later(T0)));
    let grant = r.grant.clone().unwrap();
    assert!(!r.answers(&later(grant.expires_at)), "the grant expired");
    r.redeem(&bot, &grant.jti, &grant.digest, T0).unwrap();
    assert!(!r.answers(&later(T0)), "the grant was used");

    let mut rejected = submit(&bot, reqs(), Some("carol"));
    vote(
        &mut rejected,
        &human("alice", &["sre"]),
        Ballot::Deny { comment: None },
        T0,
    )
    .unwrap();
    assert!(!rejected.answers(&later(T0)));
    let mut cancelled = submit(&bot, reqs(), Some("carol"));
    cancelled.cancel(&bot, T0).unwrap();
    assert!(!cancelled.answers(&later(T0)));
}
