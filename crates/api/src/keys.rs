//! Managed API keys as the admin endpoints show them. The secret is in [`CreatedKey`] only.

use countersign_core::{IdentityKind, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A managed API key (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedKey {
    /// Public key id (`key_...`).
    pub id: String,
    /// The identity it authenticates as.
    pub identity: String,
    /// Agent or service.
    pub kind: IdentityKind,
    /// The identity's groups.
    pub groups: BTreeSet<String>,
    /// Who created it.
    pub created_by: String,
    /// The human who sponsors its agent.
    pub sponsor: Option<String>,
    /// When it was created.
    #[serde(with = "crate::time")]
    pub created_at: Timestamp,
    /// Unusable at and after this instant.
    #[serde(default, with = "crate::time::option")]
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    #[serde(default, with = "crate::time::option")]
    pub revoked_at: Option<Timestamp>,
}

/// The answer to `POST /v1/admin/api-keys`: the key and, this once, its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedKey {
    /// The key.
    #[serde(flatten)]
    pub key: ManagedKey,
    /// The secret, shown once.
    #[serde(rename = "key")]
    pub secret: String,
}

/// `GET /v1/admin/api-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyList {
    /// Every managed key.
    pub keys: Vec<ManagedKey>,
}

/// The body of `POST /v1/admin/api-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// The identity the key authenticates as.
    pub identity: String,
    /// Agent or service.
    pub kind: IdentityKind,
    /// Its groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// A duration such as `90d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}
