//! Ids compared as people read them, and the people barred from voting: an id and its case,
//! width or script look-alikes are one person; a sponsor never approves their agent's requests.

use countersign_core::{
    check_id, id_key, same_id, Ballot, DomainError, IdError, Identity, Status, Timestamp,
};

use crate::support::*;

fn approve(r: &mut countersign_core::ActionRecord, who: &Identity) -> Result<(), DomainError> {
    r.vote(
        who,
        Ballot::Approve { comment: None },
        Timestamp(T0.millis() + 1),
        "g1".into(),
        GRANT_TTL,
        |_| countersign_core::Decision::allow(Vec::new()),
    )
    .map(|_| ())
}

#[test]
fn look_alike_ids_share_one_key() {
    for twin in ["Alice", "ALICE", "ａｌｉｃｅ", "\u{0430}lice", "alice"] {
        assert_eq!(id_key(twin), id_key("alice"), "{twin}");
        assert!(same_id(twin, "alice"), "{twin}");
    }
    assert!(!same_id("alice", "bob"));
    // German sharp s case-folds to "ss".
    assert!(same_id("STRASSE", "straße"));
}

#[test]
fn unreadable_ids_are_refused() {
    assert_eq!(check_id("alice"), Ok(()));
    assert_eq!(check_id("alice@example.com"), Ok(()));
    assert_eq!(check_id("deploy-bot_2"), Ok(()));
    assert_eq!(check_id("山田太郎"), Ok(()));
    // Cyrillic а among Latin letters.
    assert_eq!(check_id("\u{0430}lice"), Err(IdError::MixedScript));
    // Zero-width space, zero-width joiner, right-to-left override, left-to-right mark.
    for bad in [
        "al\u{200B}ice",
        "al\u{200D}ice",
        "\u{202E}ecila",
        "alice\u{200E}",
    ] {
        assert_eq!(check_id(bad), Err(IdError::Invisible), "{bad:?}");
    }
    assert_eq!(check_id("al ice"), Err(IdError::Malformed));
    assert_eq!(check_id(""), Err(IdError::Malformed));
}

/// Attack: config `alice` and `Alice` (or a full-width `ａｌｉｃｅ`) approving as two people.
#[test]
fn a_quorum_counts_people_not_spellings() {
    let mut r = submit(
        &agent("bot"),
        review_decision(vec![requirement("group:sre", 2)]),
        None,
    );
    approve(&mut r, &human("alice", &["sre"])).unwrap();
    assert_eq!(
        approve(&mut r, &human("Alice", &["sre"])),
        Err(DomainError::AlreadyVoted)
    );
    assert_eq!(
        approve(&mut r, &human("ａｌｉｃｅ", &["sre"])),
        Err(DomainError::AlreadyVoted)
    );
    assert_eq!(r.status, Status::Pending);
    approve(&mut r, &human("bob", &["sre"])).unwrap();
    assert_eq!(r.status, Status::Approved);
}

/// Attack: the human an agent acts for approves it under another spelling of their id.
#[test]
fn on_behalf_of_is_compared_normalised() {
    let mut r = submit(
        &agent("bot"),
        review_decision(vec![requirement("group:sre", 1)]),
        Some("alice"),
    );
    assert_eq!(
        approve(&mut r, &human("ALICE", &["sre"])),
        Err(DomainError::SelfApproval)
    );
}

/// Attack: the person who minted an agent's key approves the agent's request.
#[test]
fn a_sponsor_never_approves_their_agents_requests() {
    let mut bot = agent("bot");
    bot.sponsor = Some("alice".into());
    let mut r = submit(
        &bot,
        review_decision(vec![requirement("group:sre", 1)]),
        None,
    );
    assert_eq!(r.sponsor.as_deref(), Some("alice"));
    let alice = human("alice", &["sre"]);
    assert!(!r.reviewable_by(&alice, T0));
    assert_eq!(approve(&mut r, &alice), Err(DomainError::SelfApproval));
    assert_eq!(
        approve(&mut r, &human("Alice", &["sre"])),
        Err(DomainError::SelfApproval)
    );
    // Stored with the record: it still holds after a round trip through the store's JSON.
    let mut again: countersign_core::ActionRecord =
        serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(approve(&mut again, &alice), Err(DomainError::SelfApproval));
    let bob = human("bob", &["sre"]);
    assert!(r.reviewable_by(&bob, T0));
    approve(&mut r, &bob).unwrap();
    assert_eq!(r.status, Status::Approved);
}

proptest::proptest! {
    /// Case and width never make a second person: any ASCII id equals its upper-case and its
    /// full-width (NFKC-compatible) spellings.
    #[test]
    fn case_and_width_variants_are_one_id(id in "[a-z0-9][a-z0-9._@-]{0,20}") {
        proptest::prop_assert!(same_id(&id, &id.to_uppercase()));
        let wide: String = id
            .chars()
            .map(|c| match c {
                '!'..='~' => char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap_or(c),
                other => other,
            })
            .collect();
        proptest::prop_assert!(same_id(&id, &wide), "{} vs {}", id, wide);
        proptest::prop_assert_eq!(check_id(&id), Ok(()));
    }
}

#[test]
fn an_idempotent_replay_must_ask_the_same_thing_for_the_same_human() {
    let r = submit(
        &agent("bot"),
        review_decision(vec![requirement("group:sre", 1)]),
        Some("carol"),
    );
    assert!(r.replayed_by(&r.submitted_digest, Some("carol")));
    assert!(r.replayed_by(&r.submitted_digest, Some("CAROL")));
    assert!(!r.replayed_by(&r.submitted_digest, Some("dave")));
    assert!(!r.replayed_by(&r.submitted_digest, None));
    let other = countersign_core::ActionSpec::new("x", "y", "", None)
        .unwrap()
        .digest();
    assert!(!r.replayed_by(&other, Some("carol")));
}
