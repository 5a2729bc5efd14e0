//! Kind `static`: a secret for a system with no short-lived credentials, set by an operator
//! (`countersign credentials set NAME --config FILE`, the value read from stdin) and stored
//! sealed ([`super::sealed`]) in the store's `stored_secrets` table through the one write path,
//! with a `secret_set` audit entry that never holds the value. Released like every kind, once
//! per grant to its redeemer (the core's rule), as one environment variable. It cannot be taken
//! back once handed out: revoking does nothing, and an operator rotates it by setting it again.

use async_trait::async_trait;
use countersign_core::{Event, Timestamp};
use countersign_store::{Store, StoredSecret};
use std::sync::Arc;

use super::sealed::SecretsKey;
use super::{CredentialError, CredentialKind, IssueRequest, Issued, KindConfig, Secret};
use crate::config::Config;

/// The longest value accepted (it travels in an environment variable).
pub const MAX_VALUE: usize = 64 * 1024;

/// A configured static secret.
pub struct StaticSecret {
    name: String,
    env: String,
    store: Arc<dyn Store>,
    key: Arc<SecretsKey>,
}

impl StaticSecret {
    /// The static credential `name`, read from `store` and opened with `key`.
    pub fn new(name: &str, env: &str, store: Arc<dyn Store>, key: Arc<SecretsKey>) -> Self {
        StaticSecret {
            name: name.to_string(),
            env: env.to_string(),
            store,
            key,
        }
    }

    fn unavailable(&self, message: impl Into<String>) -> CredentialError {
        CredentialError::Unavailable {
            name: self.name.clone(),
            message: message.into(),
        }
    }

    /// The stored value, opened (`None`: never set).
    async fn value(&self) -> Result<Option<Secret>, CredentialError> {
        let Some(stored) = self
            .store
            .stored_secret(&self.name)
            .await
            .map_err(|e| self.unavailable(format!("the store: {e}")))?
        else {
            return Ok(None);
        };
        let bytes = self
            .key
            .open(&self.name, &stored.sealed)
            .map_err(|e| self.unavailable(format!("its stored value cannot be opened: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| self.unavailable("its stored value is not text"))?;
        Ok(Some(Secret::new(text)))
    }
}

#[async_trait]
impl CredentialKind for StaticSecret {
    fn kind(&self) -> &'static str {
        "static"
    }

    async fn issue(&self, _req: &IssueRequest<'_>) -> Result<Issued, CredentialError> {
        let value = self.value().await?.ok_or_else(|| {
            self.unavailable(format!(
                "no value is set; an operator sets it with `countersign credentials set {} --config FILE`",
                self.name
            ))
        })?;
        Ok(Issued {
            env: vec![(self.env.clone(), value)],
            files: Vec::new(),
        })
    }

    async fn revoke(&self, _action_id: &str) -> Result<(), CredentialError> {
        Ok(())
    }

    async fn expired(&self, _now: Timestamp) -> Result<Vec<String>, CredentialError> {
        Ok(Vec::new())
    }

    async fn check(&self) -> Result<(), CredentialError> {
        if self.value().await?.is_none() {
            tracing::warn!(credential = %self.name,
                "static credential has no value yet; releases fail until `countersign credentials set` sets one");
        }
        Ok(())
    }
}

/// Why a static secret could not be set. Never holds the value.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// The name is not a configured static credential, or the value is unusable.
    #[error("{0}")]
    Invalid(String),
    /// The key file or the store failed.
    #[error("{0}")]
    Failed(String),
}

/// Whether `name` is a static credential of `config` (what `set` can set).
pub fn check_static_name(config: &Config, name: &str) -> Result<(), SetError> {
    let Some(c) = config.credentials.iter().find(|c| c.name == name) else {
        return Err(SetError::Invalid(format!(
            "no [[credentials]] named \"{name}\" in {}",
            config.file.display()
        )));
    };
    if c.kind != KindConfig::Static {
        return Err(SetError::Invalid(format!(
            "[[credentials]] \"{name}\" is kind \"{}\"; only kind \"static\" has a stored value",
            c.kind_name()
        )));
    }
    Ok(())
}

/// Sets (or replaces) the value of the static credential `name` of `config`: sealed with the
/// key at `config.secrets_key` (made if missing) and stored with its `secret_set` audit entry.
/// One trailing newline (as `echo` and editors add) is removed. Returns the key's id.
pub async fn set_static(
    store: &dyn Store,
    config: &Config,
    name: &str,
    value: &[u8],
    by: &str,
    now: Timestamp,
) -> Result<String, SetError> {
    check_static_name(config, name)?;
    let value = value
        .strip_suffix(b"\r\n")
        .or_else(|| value.strip_suffix(b"\n"))
        .unwrap_or(value);
    if value.is_empty() {
        return Err(SetError::Invalid(
            "the value (read from stdin) is empty".into(),
        ));
    }
    if value.len() > MAX_VALUE {
        return Err(SetError::Invalid(format!(
            "the value is {} bytes; at most {MAX_VALUE} (it is passed in an environment variable)",
            value.len()
        )));
    }
    if std::str::from_utf8(value).is_err() || value.contains(&0) {
        return Err(SetError::Invalid(
            "the value must be UTF-8 text without NUL bytes (it is passed in an environment variable)"
                .into(),
        ));
    }
    let key = SecretsKey::load_or_create(&config.secrets_key).map_err(SetError::Failed)?;
    let sealed = key.seal(name, value).map_err(SetError::Failed)?;
    let event = Event::SecretSet {
        by: by.to_string(),
        credential: name.to_string(),
        key_id: key.id(),
    };
    store
        .set_secret(
            StoredSecret {
                name: name.to_string(),
                sealed,
                set_by: by.to_string(),
                set_at: now,
            },
            event,
        )
        .await
        .map_err(|e| SetError::Failed(e.to_string()))?;
    tracing::info!(event = "secret_set", actor = by, credential = %name, key_id = %key.id(),
        "static credential value set");
    Ok(key.id())
}
