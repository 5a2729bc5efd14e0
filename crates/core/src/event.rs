//! What happened to an action, one event per state change. The audit log records these.

use serde::{Deserialize, Serialize};

use crate::action::{ActionDigest, ActionSpec};
use crate::analysis::Analysis;
use crate::decision::Effect;
use crate::masked::MaskedValue;
use crate::time::Timestamp;

/// A state change of an action. Every transition of [`crate::ActionRecord`] returns the events it
/// caused; the gateway appends them to the audit trail in the same commit as the new state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An action was submitted and policy decided.
    Submitted {
        /// Who asked.
        requester: String,
        /// How the requester authenticated (`key:<id>`, `oidc:<issuer>#<subject>`, `config`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requester_source: Option<String>,
        /// The human the agent acts for, if any.
        on_behalf_of: Option<String>,
        /// Why, in the requester's words (empty when none was given), so the log alone says who
        /// asked for what, where and why. Entries written before it was recorded have none.
        #[serde(default)]
        justification: String,
        /// Digest of what was asked.
        digest: ActionDigest,
        /// What was asked: action, resource, environment and parameters, as auditors will see
        /// them (the digest is over exactly this).
        spec: ActionSpec,
        /// The decision's effect.
        effect: Effect,
        /// The policies that decided.
        policies: Vec<String>,
        /// The decision's reason.
        reason: Option<String>,
        /// What the analyzers found (policy saw it as `context.risk`/`context.tags`); absent
        /// when no analyzer applied, and in entries written before analyzers existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        analysis: Option<Analysis>,
        /// What masking hid from this entry (paths relative to the event), each with a keyed
        /// commitment; empty when nothing was masked.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        masked: Vec<MaskedValue>,
    },
    /// A review was opened.
    ReviewOpened {
        /// Approver entries per requirement.
        approvers: Vec<Vec<String>>,
        /// Quorum per requirement.
        quorum: Vec<u32>,
        /// When it expires.
        expires_at: Timestamp,
    },
    /// A reviewer voted.
    Voted {
        /// The reviewer.
        voter: String,
        /// How the reviewer authenticated (`oidc:<issuer>#<subject>`, `config`...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        voter_source: Option<String>,
        /// approve, deny, modify or clarify.
        verdict: String,
        /// The digest the vote applies to (for `modify`, the new digest).
        digest: ActionDigest,
        /// For `modify`, the reviewer's parameters (the new digest is over them).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        params: Option<serde_json::Map<String, serde_json::Value>>,
        /// For `modify`, what the analyzers found in the modified action.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        analysis: Option<Analysis>,
        /// The reviewer's comment.
        comment: Option<String>,
        /// What masking hid from this entry (see `Submitted`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        masked: Vec<MaskedValue>,
    },
    /// A reviewer's `modify` made an action that policy, judging it afresh, sends to more
    /// reviewers: the review now needs every requirement listed here (the old ones and the new).
    ReviewWidened {
        /// The policies behind each requirement.
        policies: Vec<String>,
        /// Approver entries per requirement.
        approvers: Vec<Vec<String>>,
        /// Quorum per requirement.
        quorum: Vec<u32>,
        /// When the review now expires.
        expires_at: Timestamp,
    },
    /// The requester answered a reviewer's question.
    ClarificationAnswered {
        /// Who answered.
        by: String,
    },
    /// The review reached its quorum.
    Approved {
        /// The approved digest.
        digest: ActionDigest,
    },
    /// A reviewer denied.
    Rejected {
        /// Who denied.
        by: String,
    },
    /// Nobody decided in time.
    Expired,
    /// The requester withdrew the action.
    Cancelled {
        /// Who cancelled.
        by: String,
    },
    /// A single-use grant was issued.
    GrantIssued {
        /// Its unique id.
        jti: String,
        /// The digest it is bound to.
        digest: ActionDigest,
        /// Its deadline.
        expires_at: Timestamp,
    },
    /// The grant was redeemed.
    GrantRedeemed {
        /// Its unique id.
        jti: String,
        /// Who redeemed it.
        by: String,
    },
    /// The executor reported what happened.
    ResultReported {
        /// succeeded or failed.
        outcome: String,
        /// Who reported.
        by: String,
    },
    /// A credential was released to the redeemer of the action's grant (never its value).
    CredentialReleased {
        /// The configured credential's name.
        credential: String,
        /// Its kind.
        kind: String,
        /// Who received it.
        to: String,
        /// When its lifetime ends.
        expires_at: Timestamp,
    },
    /// A released credential was revoked (a role dropped, a secret's release closed).
    CredentialRevoked {
        /// The configured credential's name.
        credential: String,
        /// `reported`, `cancelled` or `expired`.
        reason: String,
    },
    /// A person was shown the values masking hides in this action's views (`@reveal`).
    Revealed {
        /// Who saw them.
        by: String,
        /// JSON pointers (into the view) of the values shown.
        values: Vec<String>,
    },
    /// An attempt that matters to security was refused (see
    /// [`crate::DomainError::is_security_relevant`]); it changed nothing else.
    Refused {
        /// Who tried.
        by: String,
        /// What they tried: `vote`, `answer`, `cancel`, `redeem`, `report`, `submit`,
        /// `credentials`.
        attempted: String,
        /// The refusal's machine-readable code (`self_approval`, `grant_already_used`, ...).
        code: String,
    },
    /// The gateway loaded its policy set.
    PolicyLoaded {
        /// SHA-256 over the policy files, as `PolicyEngine::hash` computes it.
        hash: String,
        /// How many policies.
        policies: usize,
    },
    /// A managed API key was created (its secret and hash are never recorded).
    KeyCreated {
        /// Who created it (an admin's id and source, or `operator:<user>` from the CLI).
        by: String,
        /// The public key id.
        key_id: String,
        /// The identity the key authenticates as.
        identity: String,
        /// `agent` or `service`.
        kind: crate::identity::IdentityKind,
        /// Its groups.
        groups: Vec<String>,
        /// When it stops working, if ever.
        expires_at: Option<Timestamp>,
    },
    /// A managed API key was revoked.
    KeyRevoked {
        /// Who revoked it.
        by: String,
        /// The public key id.
        key_id: String,
        /// The identity it authenticated as.
        identity: String,
    },
    /// An operator set (or replaced) the stored value of a static credential (never the value).
    SecretSet {
        /// Who set it (`operator:<user>`).
        by: String,
        /// The configured credential's name.
        credential: String,
        /// The id of the key it was sealed under (a digest of the key, not the key).
        key_id: String,
    },
    /// The gateway loaded its configuration.
    ConfigLoaded {
        /// SHA-256 of the configuration file's bytes.
        sha256: String,
        /// The configured identities, `id (kind)`.
        identities: Vec<String>,
    },
}

impl Event {
    /// The event type as written in the audit trail (`submitted`, `voted`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Submitted { .. } => "submitted",
            Event::ReviewOpened { .. } => "review_opened",
            Event::Voted { .. } => "voted",
            Event::ReviewWidened { .. } => "review_widened",
            Event::ClarificationAnswered { .. } => "clarification_answered",
            Event::Approved { .. } => "approved",
            Event::Rejected { .. } => "rejected",
            Event::Expired => "expired",
            Event::Cancelled { .. } => "cancelled",
            Event::GrantIssued { .. } => "grant_issued",
            Event::GrantRedeemed { .. } => "grant_redeemed",
            Event::ResultReported { .. } => "result_reported",
            Event::CredentialReleased { .. } => "credential_released",
            Event::CredentialRevoked { .. } => "credential_revoked",
            Event::Revealed { .. } => "revealed",
            Event::Refused { .. } => "refused",
            Event::PolicyLoaded { .. } => "policy_loaded",
            Event::ConfigLoaded { .. } => "config_loaded",
            Event::KeyCreated { .. } => "key_created",
            Event::KeyRevoked { .. } => "key_revoked",
            Event::SecretSet { .. } => "secret_set",
        }
    }

    /// The notification this event is for reviewers and the requester, if any: the kinds the
    /// outbox writes (`review_opened`, `voted`, `modified`, `question_asked`,
    /// `question_answered`, `decided`, `expired`, `cancelled`, `result_reported`) and a
    /// webhook's `events` list names. Grants, credentials, refusals and loads notify nobody.
    pub fn notification(&self) -> Option<&'static str> {
        match self {
            Event::ReviewOpened { .. } => Some("review_opened"),
            Event::Voted { verdict, .. } => Some(match verdict.as_str() {
                "modify" => "modified",
                "clarify" => "question_asked",
                _ => "voted",
            }),
            Event::ClarificationAnswered { .. } => Some("question_answered"),
            Event::Approved { .. } | Event::Rejected { .. } => Some("decided"),
            Event::Expired => Some("expired"),
            Event::Cancelled { .. } => Some("cancelled"),
            Event::ResultReported { .. } => Some("result_reported"),
            Event::Submitted { .. }
            | Event::ReviewWidened { .. }
            | Event::GrantIssued { .. }
            | Event::GrantRedeemed { .. }
            | Event::CredentialReleased { .. }
            | Event::CredentialRevoked { .. }
            | Event::Refused { .. }
            | Event::PolicyLoaded { .. }
            | Event::ConfigLoaded { .. }
            | Event::KeyCreated { .. }
            | Event::KeyRevoked { .. }
            | Event::Revealed { .. }
            | Event::SecretSet { .. } => None,
        }
    }

    /// Every kind [`Event::notification`] returns (what a webhook's `events` list may name).
    pub const NOTIFICATIONS: [&'static str; 9] = [
        "review_opened",
        "voted",
        "modified",
        "question_asked",
        "question_answered",
        "decided",
        "expired",
        "cancelled",
        "result_reported",
    ];

    /// Who caused it: a person or agent, or `None` when the gateway itself did (a review opened
    /// by policy, a quorum reached, a deadline passed, a grant issued).
    pub fn actor(&self) -> Option<&str> {
        match self {
            Event::Submitted { requester, .. } => Some(requester),
            Event::Voted { voter, .. } => Some(voter),
            Event::ClarificationAnswered { by }
            | Event::Rejected { by }
            | Event::Cancelled { by }
            | Event::GrantRedeemed { by, .. }
            | Event::ResultReported { by, .. }
            | Event::Refused { by, .. }
            | Event::Revealed { by, .. }
            | Event::KeyCreated { by, .. }
            | Event::KeyRevoked { by, .. }
            | Event::SecretSet { by, .. } => Some(by),
            Event::CredentialReleased { to, .. } => Some(to),
            Event::ReviewOpened { .. }
            | Event::ReviewWidened { .. }
            | Event::Approved { .. }
            | Event::Expired
            | Event::GrantIssued { .. }
            | Event::CredentialRevoked { .. }
            | Event::PolicyLoaded { .. }
            | Event::ConfigLoaded { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reviewers_hear_of_review_changes_only_and_every_kind_is_listed() {
        let digest = crate::ActionSpec::new("a", "r", "", None).unwrap().digest();
        let voted = |verdict: &str| Event::Voted {
            voter: "alice".into(),
            voter_source: None,
            verdict: verdict.into(),
            digest,
            params: None,
            analysis: None,
            comment: None,
            masked: Vec::new(),
        };
        let cases = [
            (voted("approve"), Some("voted")),
            (voted("deny"), Some("voted")),
            (voted("modify"), Some("modified")),
            (voted("clarify"), Some("question_asked")),
            (
                Event::ClarificationAnswered { by: "bot".into() },
                Some("question_answered"),
            ),
            (Event::Approved { digest }, Some("decided")),
            (Event::Rejected { by: "bob".into() }, Some("decided")),
            (Event::Expired, Some("expired")),
            (Event::Cancelled { by: "bot".into() }, Some("cancelled")),
            (
                Event::ResultReported {
                    outcome: "succeeded".into(),
                    by: "bot".into(),
                },
                Some("result_reported"),
            ),
            (
                Event::GrantIssued {
                    jti: "j".into(),
                    digest,
                    expires_at: Timestamp(0),
                },
                None,
            ),
            (
                Event::Refused {
                    by: "bot".into(),
                    attempted: "vote".into(),
                    code: "self_approval".into(),
                },
                None,
            ),
        ];
        for (event, kind) in &cases {
            assert_eq!(event.notification(), *kind, "{event:?}");
            if let Some(k) = kind {
                assert!(Event::NOTIFICATIONS.contains(k));
            }
        }
        let opened = Event::ReviewOpened {
            approvers: Vec::new(),
            quorum: Vec::new(),
            expires_at: Timestamp(0),
        };
        assert_eq!(opened.notification(), Some("review_opened"));
    }
}
