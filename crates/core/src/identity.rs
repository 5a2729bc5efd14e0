//! Who is acting: a human, or an automated agent or service. Only humans can ever vote.
//!
//! Ids are compared as people read them, not byte for byte: [`id_key`] is the UTS #39 skeleton
//! of the id after NFKC and case folding, so `alice`, `Alice`, `ａｌｉｃｅ` and a Cyrillic `аlice`
//! are one key. [`check_id`] refuses ids no person can read reliably (mixed scripts, bidi
//! controls, zero-width and other invisible characters).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_security::MixedScript;

/// Why an id cannot name anyone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty, too long, or with spaces or control characters.
    #[error("an id must be 1-256 characters without spaces or control characters")]
    Malformed,
    /// A bidi control, a zero-width or another invisible formatting character.
    #[error("an id must not contain invisible characters (bidi controls, zero-width characters)")]
    Invisible,
    /// Letters from scripts that are not used together (e.g. Latin with Cyrillic).
    #[error("an id must not mix scripts (e.g. Latin letters with Cyrillic look-alikes)")]
    MixedScript,
}

/// Whether `id` may name an identity: 1-256 characters, no whitespace, control or format
/// characters (bidi controls, zero-width joiners and spaces, soft hyphens), one script.
pub fn check_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(IdError::Malformed);
    }
    if id.chars().any(|c| {
        matches!(
            c.general_category(),
            GeneralCategory::Format
                | GeneralCategory::Control
                | GeneralCategory::Unassigned
                | GeneralCategory::PrivateUse
                | GeneralCategory::Surrogate
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
                | GeneralCategory::SpaceSeparator
        )
    }) {
        return Err(IdError::Invisible);
    }
    let folded: String = id.nfkc().collect();
    if !folded.as_str().is_single_script() {
        return Err(IdError::MixedScript);
    }
    Ok(())
}

/// The key ids are compared by: the UTS #39 skeleton of the NFKC case fold of `id`. Two ids with
/// the same key name the same person as far as every rule is concerned.
pub fn id_key(id: &str) -> String {
    let folded: String = caseless::default_case_fold_str(&id.nfkc().collect::<String>())
        .nfkc()
        .collect();
    unicode_security::skeleton(&folded).collect()
}

/// Whether `a` and `b` are the same id once normalised ([`id_key`]).
pub fn same_id(a: &str, b: &str) -> bool {
    a == b || id_key(a) == id_key(b)
}

/// The kind of an identity. Agents and services may request actions but never review them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    /// An AI agent or other automated requester.
    Agent,
    /// A workload such as a CI pipeline or a downstream executor.
    Service,
    /// A person.
    Human,
}

impl IdentityKind {
    /// The lowercase wire name (`agent`, `service`, `human`).
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Agent => "agent",
            IdentityKind::Service => "service",
            IdentityKind::Human => "human",
        }
    }

    /// Whether this kind of identity may ever cast a review vote.
    pub fn can_vote(self) -> bool {
        matches!(self, IdentityKind::Human)
    }

    /// Whether this kind of identity may hold a managed API key: agents and services. People
    /// sign in through the identity provider.
    pub fn may_hold_managed_key(self) -> bool {
        matches!(self, IdentityKind::Agent | IdentityKind::Service)
    }
}

/// Whether the identity of `kind` whose id the source `stable_key` owns (`config:<id>`,
/// `oidc:...`, `managed:<id>`) may be named as the human an agent acts for (`on_behalf_of`): a
/// person known to the gateway, configured or seen through the identity provider. An unknown
/// name could later be claimed by anyone, who would then be barred from voting in the
/// requester's stead (or the real person would not be).
pub fn may_be_on_behalf_of(kind: IdentityKind, stable_key: &str) -> bool {
    kind == IdentityKind::Human
        && (stable_key.starts_with("config:") || stable_key.starts_with("oidc:"))
}

/// An authenticated caller, with the groups it belongs to *at the moment of the request*.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Stable identifier, unique across kinds (e.g. `alice`, `deploy-bot`).
    pub id: String,
    /// Human, agent or service.
    pub kind: IdentityKind,
    /// Group names, without the `group:` prefix.
    pub groups: BTreeSet<String>,
    /// Contact address, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// How the caller proved who it is, for the audit trail: `config`, `key:<key id>` or
    /// `oidc:<issuer>#<subject>`. Never a secret. `None` for identities built in-process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The token issuer, for identities from OIDC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Configured token claims (e.g. a pipeline's `repository`, `ref`), for policies.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
    /// For an agent or service with a managed key: the human who created the key. A sponsor
    /// never approves their agent's requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sponsor: Option<String>,
    /// The source's stable key, which owns the id (see `countersign_identity::registry`):
    /// `config:<id>`, `managed:<id>`, `oidc:<issuer>#<subject>` or, for an id a workload rule
    /// assigns, `oidc:<issuer>#rule:<id>`. `None` for identities built in-process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_key: Option<String>,
}

impl Identity {
    /// Whether this caller may read the whole audit log: people only (entries describe
    /// everyone's actions); agents and services read their own actions' entries with proofs.
    pub fn may_read_audit_log(&self) -> bool {
        self.kind == IdentityKind::Human
    }

    /// A convenience constructor.
    pub fn new<I, S>(id: impl Into<String>, kind: IdentityKind, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Identity {
            id: id.into(),
            kind,
            groups: groups.into_iter().map(Into::into).collect(),
            email: None,
            source: None,
            issuer: None,
            claims: BTreeMap::new(),
            sponsor: None,
            stable_key: None,
        }
    }
}
