//! `GET /v1/whoami`: the identity the caller's credential proves, as the gateway sees it now.

use countersign_core::IdentityKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Who the bearer credential is (never how it proved it: no key id, issuer or claims).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The identity's id.
    pub id: String,
    /// Human, agent or service.
    pub kind: IdentityKind,
    /// Its groups at the moment of the request.
    pub groups: BTreeSet<String>,
}
