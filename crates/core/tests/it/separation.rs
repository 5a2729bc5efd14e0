//! Separation of duties across identity sources: whatever source a credential comes from (config
//! token, managed key, OIDC token from any issuer), whatever groups it carries (admin included)
//! and whoever the action is on behalf of, a requester, the human it acts for, or an agent or
//! service never gets an approval in. Ids are the one namespace the rules compare.

use countersign_core::{Ballot, Decision, DomainError, Identity, IdentityKind, Timestamp};
use proptest::prelude::*;

use crate::support::*;

const SOURCES: [Option<&str>; 4] = [
    None,
    Some("config"),
    Some("key:key_0001"),
    Some("oidc:https://idp.example#s1"),
];

fn ident(id: &str, kind: u8, groups: u8, source: usize) -> Identity {
    let kind = match kind % 3 {
        0 => IdentityKind::Agent,
        1 => IdentityKind::Service,
        _ => IdentityKind::Human,
    };
    let names = ["sre", "admins", "data"];
    let gs: Vec<&str> = (0..3)
        .filter(|i| groups & (1 << i) != 0)
        .map(|i| names[i])
        .collect();
    let mut who = Identity::new(id, kind, gs);
    who.source = SOURCES[source % 4].map(str::to_string);
    if who
        .source
        .as_deref()
        .is_some_and(|s| s.starts_with("oidc:"))
    {
        who.issuer = Some("https://idp.example".into());
    }
    who
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn no_source_group_or_on_behalf_of_lets_a_requester_or_an_agent_approve(
        req in (0..3u8, 0..8u8, 0..4usize),
        obo in proptest::option::of(0..3usize),
        voter in (0..3usize, 0..3u8, 0..8u8, 0..4usize),
        approvers in "(group:sre|group:admins|human:alice|human:bob|human:carol)(,(group:data|human:bob))?",
    ) {
        let people = ["alice", "bob", "carol"];
        let requester = ident("alice", req.0, req.1, req.2);
        let on_behalf_of = obo.map(|i| people[i]).filter(|_| requester.kind != IdentityKind::Human);
        let mut r = submit(&requester, review_decision(vec![requirement(&approvers, 1)]), on_behalf_of);
        let v = ident(people[voter.0], voter.1, voter.2, voter.3);
        let result = r.vote(&v, Ballot::Approve { comment: None }, Timestamp(T0.millis() + 1),
            "g1".into(), GRANT_TTL, |_| Decision::allow(Vec::new()));
        if v.kind != IdentityKind::Human {
            prop_assert_eq!(result, Err(DomainError::AgentsCannotApprove));
        } else if v.id == requester.id || Some(v.id.as_str()) == on_behalf_of {
            prop_assert_eq!(result, Err(DomainError::SelfApproval));
        } else if result.is_ok() {
            prop_assert!(r.review.as_ref().is_some_and(|rv| rv.requirements[0].approvers.admits(&v)));
        }
    }
}
