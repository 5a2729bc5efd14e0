//! The wire types read and write exactly the JSON the server has always sent.

use countersign_api::{Action, CreatedKey, ReviewList, Submitted};
use countersign_core::{Status, Verdict};
use serde_json::{json, Value};

pub(crate) const DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000abc";

pub(crate) fn action_json() -> Value {
    json!({
        "id": "01900000-0000-7000-8000-000000000001",
        "status": "pending",
        "digest": DIGEST,
        "action": "deploy",
        "resource": "k8s://prod",
        "environment": "production",
        "params": {"replicas": 3, "image": "web:1.2"},
        "justification": "fix",
        "requester": "deploy-bot",
        "on_behalf_of": "carol",
        "created_at": "2026-11-30T23:09:01.123Z",
        "updated_at": "2026-11-30T23:09:02Z",
        "decision": {"effect": "review", "policies": ["prod-deploys"], "reason": "prod"},
        "review": {
            "approvers": ["group:sre", "human:alice"],
            "quorum": 2,
            "requirements": [
                {"policy": "prod-deploys", "approvers": ["group:sre"], "quorum": 2, "approvals": 1},
                {"policy": "owners", "approvers": ["human:alice"], "quorum": 1, "approvals": 0}
            ],
            "expires_at": "2026-11-30T23:19:01.123Z",
            "votes": [
                {"voter": "bob", "verdict": "approve", "digest": DIGEST,
                 "at": "2026-11-30T23:09:02Z", "counts": true},
                {"voter": "dan", "verdict": "deny", "digest": DIGEST, "comment": "freeze",
                 "at": "2026-11-30T23:09:03.5Z", "counts": true}
            ],
            "clarifications": [
                {"asked_by": "bob", "question": "why?", "asked_at": "2026-11-30T23:09:02Z",
                 "answer": "a fix", "answered_at": "2026-11-30T23:09:02.001Z"}
            ]
        },
        "grant": {"token": "eyJ.x.y", "expires_at": "2026-11-30T23:14:01Z",
                  "redeemed_at": "2026-11-30T23:10:00Z"},
        "result": {"outcome": "failed", "exit_code": 2, "output_sha256": "ab", "detail": "d",
                   "reported_by": "deploy-bot", "reported_at": "2026-11-30T23:11:00Z"},
        "audit": {"indexes": [4, 7], "checkpoint": "note\n", "tree_size": 6,
                  "proofs": [{"index": 4, "hashes": ["AAAA"]}], "pending": [7]}
    })
}

#[test]
fn an_action_round_trips_unchanged() {
    let original = action_json();
    let action: Action<'static> = serde_json::from_value(original.clone()).unwrap();
    assert_eq!(serde_json::to_value(&action).unwrap(), original);
    assert_eq!(action.status(), Status::Pending);
    let review = action.review().unwrap();
    assert_eq!(review.least_approvals(), 0);
    assert_eq!(review.denial_comment(), Some("freeze"));
    assert_eq!(review.votes()[1].verdict(), Verdict::Deny);
    assert_eq!(action.grant().unwrap().token(), Some("eyJ.x.y"));
    assert_eq!(action.audit().unwrap().pending, Some(vec![7]));
}

#[test]
fn optional_members_stay_absent() {
    let mut original = action_json();
    let map = original.as_object_mut().unwrap();
    for key in ["on_behalf_of", "review", "grant", "result", "audit"] {
        map.remove(key);
    }
    map["decision"].as_object_mut().unwrap().remove("reason");
    let action: Action<'static> = serde_json::from_value(original.clone()).unwrap();
    assert_eq!(serde_json::to_value(&action).unwrap(), original);
}

#[test]
fn a_submission_answer_and_a_review_page_round_trip() {
    let submitted = json!({
        "id": "a1", "status": "allowed", "digest": DIGEST,
        "decision": {"effect": "allow", "policies": []},
        "grant": {"token": "t", "expires_at": "2026-11-30T23:14:01Z"}
    });
    let s: Submitted<'static> = serde_json::from_value(submitted.clone()).unwrap();
    assert_eq!(serde_json::to_value(&s).unwrap(), submitted);
    let page = json!({"reviews": [action_json()], "next_cursor": null});
    let p: ReviewList<'static> = serde_json::from_value(page.clone()).unwrap();
    assert_eq!(serde_json::to_value(&p).unwrap(), page);
}

#[test]
fn a_created_key_keeps_nulls_and_its_secret() {
    let created = json!({
        "id": "key_1", "identity": "bot", "kind": "agent", "groups": ["a", "b"],
        "created_by": "admin", "sponsor": null, "created_at": "2026-11-30T23:09:01Z",
        "expires_at": null, "revoked_at": null, "key": "csk_secret"
    });
    let k: CreatedKey = serde_json::from_value(created.clone()).unwrap();
    assert_eq!(k.secret, "csk_secret");
    assert_eq!(serde_json::to_value(&k).unwrap(), created);
}

#[test]
fn a_digest_that_is_not_one_is_refused() {
    let mut bad = action_json();
    bad["digest"] = json!("sha256:XYZ");
    assert!(serde_json::from_value::<Action<'static>>(bad).is_err());
}
