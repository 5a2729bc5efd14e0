//! Rules that used to live in the adapters (the gateway, the identity crate, the store, the
//! API's views), one example each: who may be named `on_behalf_of`, who reads the whole log,
//! who holds managed keys, as whom a `modify` is judged, the quorum a view shows, and which
//! earlier action answers a `reuse_open` submission.

use countersign_core::{
    may_be_on_behalf_of, ActionRecord, Ballot, Identity, IdentityKind, JudgedAs, Status,
};

use crate::support::*;

#[test]
fn only_a_known_person_may_be_named_on_behalf_of() {
    assert!(may_be_on_behalf_of(IdentityKind::Human, "config:carol"));
    assert!(may_be_on_behalf_of(
        IdentityKind::Human,
        "oidc:https://idp.example#sub-carol"
    ));
    // Agents and services are never the person an agent acts for.
    assert!(!may_be_on_behalf_of(IdentityKind::Agent, "config:bot"));
    assert!(!may_be_on_behalf_of(
        IdentityKind::Service,
        "oidc:https://idp#rule:ci"
    ));
    assert!(!may_be_on_behalf_of(IdentityKind::Agent, "managed:bot"));
    // A source that is no person's account.
    assert!(!may_be_on_behalf_of(IdentityKind::Human, "managed:carol"));
    assert!(!may_be_on_behalf_of(IdentityKind::Human, ""));
}

#[test]
fn only_people_read_the_whole_audit_log() {
    assert!(human("alice", &[]).may_read_audit_log());
    assert!(!agent("bot").may_read_audit_log());
    assert!(!Identity::new("ci", IdentityKind::Service, ["sre"]).may_read_audit_log());
}

#[test]
fn only_agents_and_services_hold_managed_keys() {
    assert!(IdentityKind::Agent.may_hold_managed_key());
    assert!(IdentityKind::Service.may_hold_managed_key());
    assert!(!IdentityKind::Human.may_hold_managed_key());
}

#[test]
fn a_modify_is_judged_as_the_requester_never_the_reviewer() {
    let mut config_bot = agent("bot");
    config_bot.source = Some("config".into());
    let r = submit(
        &config_bot,
        review_decision(vec![requirement("group:sre", 1)]),
        None,
    );
    assert_eq!(r.modify_judged_as(), JudgedAs::Configured("bot"));

    // Built in-process (no source): the configured identity too.
    let r = submit(
        &agent("bot"),
        review_decision(vec![requirement("group:sre", 1)]),
        None,
    );
    assert_eq!(r.modify_judged_as(), JudgedAs::Configured("bot"));

    // A managed key or an OIDC workload: as recorded at submission, groups and all.
    let mut keyed = agent("key-bot");
    keyed.source = Some("key:key_1".into());
    keyed.groups.insert("deployers".into());
    let r = submit(
        &keyed,
        review_decision(vec![requirement("group:sre", 1)]),
        None,
    );
    match r.modify_judged_as() {
        JudgedAs::Recorded(who) => {
            assert_eq!(who.id, "key-bot");
            assert!(who.groups.contains("deployers"));
        }
        other => panic!("judged as {other:?}"),
    }
}

#[test]
fn a_view_shows_the_largest_quorum_and_distinct_approvals_per_requirement() {
    let bot = agent("bot");
    let mut r = submit(
        &bot,
        review_decision(vec![
            requirement("group:sre", 1),
            requirement("group:data", 2),
        ]),
        None,
    );
    assert_eq!(r.review.as_ref().unwrap().quorum_shown(), 2);
    let bob = human("bob", &["sre", "data"]);
    vote(&mut r, &bob, approve(), T0).unwrap();
    let review = r.review.as_ref().unwrap();
    assert_eq!(review.approvals_for(0, &r.digest), 1);
    assert_eq!(review.approvals_for(1, &r.digest), 1);
    assert_eq!(r.status, Status::Pending, "data needs two people");
}

#[test]
fn an_approved_earlier_action_answers_before_a_newer_open_one() {
    let bot = agent("bot");
    let reqs = || review_decision(vec![requirement("group:sre", 1)]);
    let new = |id: &str| {
        let mut n = submit(&bot, reqs(), None);
        n.id = id.into();
        n
    };
    let mut approved = new("a1");
    vote(&mut approved, &human("alice", &["sre"]), approve(), T0).unwrap();
    let mut open = new("a2");
    open.created_at = T0.plus(std::time::Duration::from_secs(1));
    let mut incoming = new("a3");
    incoming.created_at = T0.plus(std::time::Duration::from_secs(2));
    let found = ActionRecord::best_answer([&open, &approved], &incoming).unwrap();
    assert_eq!(found.id, "a1", "approved first: usable at once");
    let found = ActionRecord::best_answer([&open], &incoming).unwrap();
    assert_eq!(found.id, "a2");
    assert!(
        ActionRecord::best_answer([&incoming], &incoming).is_none(),
        "never itself"
    );
    let mut denied = new("a4");
    vote(
        &mut denied,
        &human("alice", &["sre"]),
        Ballot::Deny { comment: None },
        T0,
    )
    .unwrap();
    assert!(ActionRecord::best_answer([&denied], &incoming).is_none());
}

/// A vote bound to the digest the voter read (the console's form, the API's `digest`) is refused
/// inside the transition when another reviewer's modification changed the action since: nothing
/// is recorded, and the same voter's vote on the current digest counts.
#[test]
fn a_vote_on_an_out_of_date_view_is_refused_and_records_nothing() {
    use countersign_core::{Decision, DomainError, VoteContext};
    let mut r = submit(
        &agent("bot"),
        review_decision(vec![requirement("group:sre", 2)]),
        None,
    );
    let t = r.created_at;
    let (alice, bob) = (human("alice", &["sre"]), human("bob", &["sre"]));
    let read_by_bob = r.digest;
    let modify = Ballot::Modify {
        params: serde_json::json!({"replicas": 1}),
        comment: None,
    };
    vote(&mut r, &alice, modify, t).unwrap();
    assert_ne!(r.digest, read_by_bob);
    let before = r.clone();
    let bob_votes = |r: &mut ActionRecord, seen, b: Ballot| {
        r.vote_in(
            VoteContext {
                seen: Some(seen),
                ..Default::default()
            },
            &bob,
            b,
            t,
            "g-1".into(),
            GRANT_TTL,
            |_| Decision::allow(Vec::new()),
        )
        .map(|_| ())
    };
    for ballot in [approve(), Ballot::Deny { comment: None }] {
        let refused = bob_votes(&mut r, read_by_bob, ballot).unwrap_err();
        assert_eq!(refused, DomainError::DigestMismatch(r.digest));
        assert_eq!(refused.code(), "digest_mismatch");
        assert!(!refused.is_security_relevant(), "a race, not an attack");
        assert_eq!(r, before, "nothing recorded");
    }
    let current = r.digest;
    bob_votes(&mut r, current, approve()).unwrap();
    assert_eq!(r.status, Status::Approved);
}

/// `@require_mfa` (issue #16): approving needs a vote context proving multi-factor
/// authentication (the web console's MFA sessions); a deny or a question does not, and the
/// refusal is one auditors see.
#[test]
fn a_review_requiring_mfa_is_approved_only_with_mfa() {
    use countersign_core::{Decision, DomainError, VoteContext};
    let mut req = requirement("group:sre", 1);
    req.require_mfa = true;
    let mut r = submit(&agent("bot"), review_decision(vec![req]), None);
    assert!(r.requires_mfa());
    let t = r.created_at;
    let alice = human("alice", &["sre"]);
    let approve_in = |r: &mut ActionRecord, ctx: VoteContext, b: Ballot| {
        r.vote_in(ctx, &alice, b, t, "g-1".into(), GRANT_TTL, |_| {
            Decision::allow(Vec::new())
        })
        .map(|_| ())
    };
    // Through the API or chat (no context): refused, naming the action for the console link.
    let refused = vote(&mut r, &alice, approve(), t).unwrap_err();
    assert_eq!(refused, DomainError::MfaRequired(r.id.clone()));
    assert_eq!(refused.code(), "mfa_required");
    assert!(refused.is_security_relevant());
    assert!(refused
        .to_string()
        .contains(&format!("/console/actions/{}", r.id)));
    let modify = Ballot::Modify {
        params: serde_json::json!({"replicas": 1}),
        comment: None,
    };
    assert_eq!(
        approve_in(&mut r, VoteContext::default(), modify),
        Err(DomainError::MfaRequired(r.id.clone()))
    );
    assert_eq!(r.status, Status::Pending);
    // With MFA: approved.
    approve_in(
        &mut r,
        VoteContext {
            mfa: true,
            ..Default::default()
        },
        approve(),
    )
    .unwrap();
    assert_eq!(r.status, Status::Approved);

    // A deny needs no MFA: refusing is always safe.
    let mut req = requirement("group:sre", 1);
    req.require_mfa = true;
    let mut r = submit(&agent("bot"), review_decision(vec![req]), None);
    vote(&mut r, &alice, Ballot::Deny { comment: None }, t).unwrap();
    assert_eq!(r.status, Status::Rejected);

    // Without the annotation nothing changes.
    let r = submit(
        &agent("bot"),
        review_decision(vec![requirement("group:sre", 1)]),
        None,
    );
    assert!(!r.requires_mfa());
}
