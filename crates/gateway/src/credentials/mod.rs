//! Credentials released by approval (issue #18): `[[credentials]]` in the configuration, each a
//! [`CredentialKind`] that mints a credential for one approved action, and revokes it when the
//! action reports or its lifetime ends.
//!
//! Who may receive a credential, once, and until when, is the core's rule
//! ([`countersign_core::ActionRecord::may_release`]: the redeemer of the grant of an action whose
//! decision names it). This module only mints and revokes. A secret is a [`Secret`]: it is never
//! printed by `Debug`, never logged, never stored in the record or the audit log; it leaves the
//! gateway once, in the answer to the one release.

pub mod postgres;
mod release;
pub mod sealed;
pub mod ssh;
pub mod static_secret;

pub use release::{Release, ReleasedOne};
pub use static_secret::{check_static_name, set_static};

use async_trait::async_trait;
use countersign_core::{ActionSpec, Timestamp};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A secret value: `Debug` shows `Secret(***)`, and there is no `Display`. Read it with
/// [`Secret::expose`] only where it is handed to its one recipient.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Why a credential could not be minted or revoked. The message never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The system behind the credential failed or refused (the database is down, the admin
    /// role lacks a privilege...).
    #[error("credential `{name}` is unavailable: {message}")]
    Unavailable {
        /// The configured credential.
        name: String,
        /// What went wrong (no secret).
        message: String,
    },
    /// The request cannot be served by this kind (e.g. a malformed public key).
    #[error("credential `{name}`: {message}")]
    Invalid {
        /// The configured credential.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// What a kind is asked to mint: for which action, for whom, until when.
#[derive(Debug, Clone, Copy)]
pub struct IssueRequest<'a> {
    /// The action's id (a kind names what it mints after it, to revoke it later).
    pub action_id: &'a str,
    /// The identity receiving it (the grant's redeemer).
    pub to: &'a str,
    /// The approved action.
    pub spec: &'a ActionSpec,
    /// Now.
    pub now: Timestamp,
    /// When the credential's lifetime ends.
    pub expires_at: Timestamp,
    /// A public key the caller asks to have certified (SSH), if any.
    pub public_key: Option<&'a str>,
    /// The address the release request came from, as the gateway's own connection saw it
    /// (`None`: not over the network, e.g. an embedded gateway).
    pub source: Option<std::net::IpAddr>,
}

/// A minted credential, as the child process of `countersign run` receives it: environment
/// variables, and files whose path goes in an environment variable.
#[derive(Debug, Clone, Default)]
pub struct Issued {
    /// `NAME = value` for the child's environment.
    pub env: Vec<(String, Secret)>,
    /// Files to write for the child (the variable gets the file's path).
    pub files: Vec<IssuedFile>,
}

/// A file the child receives: written to a private temporary directory, removed afterwards.
#[derive(Debug, Clone)]
pub struct IssuedFile {
    /// The environment variable that receives the file's path.
    pub env: String,
    /// The file's name inside the temporary directory.
    pub file_name: String,
    /// Its contents.
    pub contents: Secret,
}

/// A kind of credential: how to mint one for an approved action and how to take it back.
///
/// To add a kind (cloud STS, Vault, Kubernetes service-account tokens...): implement this trait,
/// add its `kind = "..."` and keys to [`CredentialsConfig`]'s parser (`config.rs`), and build it
/// in [`Credentials::from_config`]. A kind is told nothing it does not need: the action, the
/// recipient and the deadline. It must name what it mints after the action so that
/// [`revoke`](Self::revoke) and [`expired`](Self::expired) work without state of their own
/// (the gateway may restart, and another replica may revoke), must make `revoke` idempotent, and
/// must never put a secret in an error message.
#[async_trait]
pub trait CredentialKind: Send + Sync {
    /// The `kind` as configured (`postgres_role`, ...).
    fn kind(&self) -> &'static str;

    /// Mints the credential for `req.action_id`, valid until `req.expires_at` where the system
    /// behind it can enforce that itself.
    async fn issue(&self, req: &IssueRequest<'_>) -> Result<Issued, CredentialError>;

    /// Revokes what was minted for `action_id` (nothing to do is success). Kinds whose
    /// credentials cannot be taken back (a certificate, a static secret already handed out)
    /// do nothing: they are short-lived by construction or released once.
    async fn revoke(&self, action_id: &str) -> Result<(), CredentialError>;

    /// The action ids whose minted credential still exists past its lifetime at `now` (to be
    /// revoked by the sweeper). Kinds with nothing to revoke return none.
    async fn expired(&self, now: Timestamp) -> Result<Vec<String>, CredentialError>;

    /// Checked once when the gateway starts: an error stops it (e.g. a stored secret the
    /// configured key cannot open). Kinds with nothing to check keep the default.
    async fn check(&self) -> Result<(), CredentialError> {
        Ok(())
    }
}

/// One `source_address` entry of an SSH certificate credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceAddress {
    /// The address the release request came from (the gateway's TCP peer).
    Requester,
    /// A fixed address or CIDR block, normalised (`10.0.0.0/8`, `192.0.2.7/32`).
    Net(String),
}

/// The kinds of `[[credentials]]`, with each kind's own keys (validated by `config.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindConfig {
    /// A PostgreSQL login role made for the action.
    PostgresRole {
        /// The admin connection URL (it may hold a password).
        admin_url: Secret,
        /// The roles it is made a member of.
        member_of: Vec<String>,
    },
    /// SSH user certificates signed by the gateway's CA.
    SshCertificate {
        /// The CA's OpenSSH private key file (made on first start, its `.pub` beside it).
        ca_key: std::path::PathBuf,
        /// The principal (remote user name) the certificate is valid for.
        principal: String,
        /// The certificate's `source-address` (empty: none).
        source_address: Vec<SourceAddress>,
    },
    /// A secret set by an operator (`countersign credentials set`), stored sealed.
    Static,
}

/// One `[[credentials]]` entry, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialConfig {
    /// Its name (what `@credentials("...")` names).
    pub name: String,
    /// The kind and its keys.
    pub kind: KindConfig,
    /// The environment variable the child receives it in.
    pub env: String,
    /// How long it lives, counted from the grant's redemption (`ttl`, default the grant TTL).
    pub lifetime: Duration,
}

impl CredentialConfig {
    /// The kind's configured name.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            KindConfig::PostgresRole { .. } => "postgres_role",
            KindConfig::SshCertificate { .. } => "ssh_certificate",
            KindConfig::Static => "static",
        }
    }
}

/// One configured credential, ready to mint.
#[derive(Clone)]
pub struct Configured {
    /// Its name.
    pub name: String,
    /// How long it lives from the redemption.
    pub lifetime: Duration,
    /// The kind that mints it.
    pub kind: Arc<dyn CredentialKind>,
}

/// Every configured credential, by name.
#[derive(Clone, Default)]
pub struct Credentials {
    by_name: BTreeMap<String, Configured>,
}

impl Credentials {
    /// Builds each configured credential's kind (connecting to nothing yet). Static secrets
    /// are read from `store` and opened with the key at `secrets_key` (made on first use).
    pub fn from_config(
        configs: &[CredentialConfig],
        store: &Arc<dyn countersign_store::Store>,
        secrets_key: &std::path::Path,
    ) -> Result<Credentials, String> {
        let mut by_name = BTreeMap::new();
        let mut key: Option<Arc<sealed::SecretsKey>> = None;
        for c in configs {
            let kind: Arc<dyn CredentialKind> = match &c.kind {
                KindConfig::PostgresRole {
                    admin_url,
                    member_of,
                } => Arc::new(postgres::PostgresRole::new(
                    &c.name, admin_url, member_of, &c.env,
                )?),
                KindConfig::SshCertificate {
                    ca_key,
                    principal,
                    source_address,
                } => Arc::new(ssh::SshCertificate::new(
                    &c.name,
                    ca_key,
                    principal,
                    source_address,
                    &c.env,
                )?),
                KindConfig::Static => {
                    let key = match &key {
                        Some(k) => k.clone(),
                        None => {
                            let k = Arc::new(sealed::SecretsKey::load_or_create(secrets_key)?);
                            key = Some(k.clone());
                            k
                        }
                    };
                    Arc::new(static_secret::StaticSecret::new(
                        &c.name,
                        &c.env,
                        store.clone(),
                        key,
                    ))
                }
            };
            by_name.insert(
                c.name.clone(),
                Configured {
                    name: c.name.clone(),
                    lifetime: c.lifetime,
                    kind,
                },
            );
        }
        Ok(Credentials { by_name })
    }

    /// Adds a credential with a kind of the caller's (tests, embedders with their own kinds).
    pub fn insert(&mut self, name: &str, lifetime: Duration, kind: Arc<dyn CredentialKind>) {
        self.by_name.insert(
            name.to_string(),
            Configured {
                name: name.to_string(),
                lifetime,
                kind,
            },
        );
    }

    /// The credential named `name`.
    pub fn get(&self, name: &str) -> Option<&Configured> {
        self.by_name.get(name)
    }

    /// Every configured credential.
    pub fn all(&self) -> impl Iterator<Item = &Configured> {
        self.by_name.values()
    }

    /// Whether none is configured.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Checks that every credential a policy names is configured: the gateway refuses to start
/// otherwise, and `policy validate --config` reports the same.
pub fn check_policy_names(
    named: &[(String, String)],
    configured: &[CredentialConfig],
) -> Result<(), String> {
    let missing: Vec<String> = named
        .iter()
        .filter(|(n, _)| !configured.iter().any(|c| &c.name == n))
        .map(|(n, policy)| format!("`{n}` (policy `{policy}`)"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "@credentials names credentials that are not configured: {}; add a [[credentials]] entry with that name",
        missing.join(", ")
    ))
}
