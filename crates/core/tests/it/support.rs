//! Builders shared by the core's tests.

use countersign_core::{
    ActionRecord, ActionSpec, Approvers, Ballot, Decision, DomainError, Effect, Identity,
    IdentityKind, NewAction, Quorum, Requirement, Timestamp,
};
use std::time::Duration;

pub const T0: Timestamp = Timestamp(1_700_000_000_000);
pub const REVIEW_TTL: Duration = Duration::from_secs(900);
pub const GRANT_TTL: Duration = Duration::from_secs(300);

pub fn human(id: &str, groups: &[&str]) -> Identity {
    Identity::new(id, IdentityKind::Human, groups.iter().copied())
}

pub fn agent(id: &str) -> Identity {
    Identity::new(id, IdentityKind::Agent, ["automation"])
}

pub fn requirement(approvers: &str, quorum: u32) -> Requirement {
    Requirement {
        policy: format!("p-{approvers}"),
        approvers: approvers.parse::<Approvers>().expect("test approvers"),
        quorum: Quorum::try_from(quorum).expect("test quorum"),
        require_mfa: false,
    }
}

pub fn review_decision(reqs: Vec<Requirement>) -> Decision {
    Decision {
        effect: Effect::Review,
        policies: reqs.iter().map(|r| r.policy.clone()).collect(),
        reason: Some("needs review".into()),
        requirements: reqs,
        review_ttl: None,
        executors: Vec::new(),
        credentials: Vec::new(),
        reveal: None,
        notify: Vec::new(),
    }
}

pub fn spec() -> ActionSpec {
    ActionSpec::new(
        "db.export",
        "postgres://prod/customers",
        "production",
        Some(serde_json::json!({"table": "customers", "limit": 10})),
    )
    .expect("test spec")
}

pub fn submit(
    requester: &Identity,
    decision: Decision,
    on_behalf_of: Option<&str>,
) -> ActionRecord {
    ActionRecord::submit(
        requester,
        NewAction {
            id: "a1".into(),
            grant_jti: "g0".into(),
            spec: spec(),
            justification: "monthly report".into(),
            on_behalf_of: on_behalf_of.map(str::to_string),
            idempotency_key: None,
            decision,
            default_review_ttl: REVIEW_TTL,
            grant_ttl: GRANT_TTL,
            grant_on_allow: true,
            analysis: None,
        },
        T0,
    )
    .expect("submit")
    .0
}

pub fn approve() -> Ballot {
    Ballot::Approve { comment: None }
}

pub fn vote(
    r: &mut ActionRecord,
    who: &Identity,
    b: Ballot,
    now: Timestamp,
) -> Result<(), DomainError> {
    r.vote(
        who,
        b,
        now,
        format!("g-{}", now.millis()),
        GRANT_TTL,
        |_| Decision::allow(Vec::new()),
    )
    .map(|_| ())
}
