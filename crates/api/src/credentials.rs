//! `POST /v1/actions/{id}/credentials`: the credentials policy releases to the redeemer of an
//! action's grant (issue #18), answered once. The answer holds secrets: a client hands them to
//! the command it runs and keeps them nowhere else.

use countersign_core::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The body of `POST /v1/actions/{id}/credentials` (may be `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsRequest {
    /// An SSH public key (`ssh-ed25519 AAAA...`) to certify, for kinds that sign one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// The answer: every credential the decision names, and when they stop working.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedCredentials {
    /// The action.
    pub action_id: String,
    /// When the credentials' lifetime ends (RFC 3339).
    #[serde(with = "crate::time")]
    pub expires_at: Timestamp,
    /// The credentials.
    pub credentials: Vec<ReleasedCredential>,
}

impl std::fmt::Debug for ReleasedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleasedCredentials")
            .field("action_id", &self.action_id)
            .field("credentials", &self.credentials.len())
            .finish_non_exhaustive()
    }
}

/// One released credential (its `Debug` shows no secret).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedCredential {
    /// The configured name.
    pub name: String,
    /// Its kind (`postgres_role`, ...).
    pub kind: String,
    /// Environment variables for the command: name → secret value.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Files for the command: written to a private temporary directory; the variable `env`
    /// receives the file's path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<CredentialFile>,
}

impl std::fmt::Debug for ReleasedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleasedCredential")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A file a credential is delivered in.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialFile {
    /// The environment variable that receives the file's path.
    pub env: String,
    /// The file's name.
    pub name: String,
    /// Its contents.
    pub contents: String,
}
