//! Who is acting: a human, or an automated agent or service. Only humans can ever vote.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

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
}

impl Identity {
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
        }
    }
}
