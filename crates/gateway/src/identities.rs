//! Who a bearer token belongs to (only SHA-256 hashes of tokens are kept in memory or config),
//! and the start-up check that configured identities and managed keys name distinct identities.

use countersign_core::Identity;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

use crate::config::ConfiguredIdentity;
use crate::error::GatewayError;
use crate::service::Gateway;

/// The identities the gateway knows, by token hash and by id.
#[derive(Debug, Default)]
pub struct Identities {
    by_key: HashMap<[u8; 32], Arc<Identity>>,
    by_id: HashMap<String, Arc<Identity>>,
    linked: HashMap<String, Arc<Identity>>,
    slack: HashMap<String, Arc<Identity>>,
    teams: HashMap<String, Arc<Identity>>,
}

impl Identities {
    /// From configuration.
    pub fn from_config(list: &[ConfiguredIdentity]) -> Self {
        let mut me = Identities::default();
        for c in list {
            let ident = Arc::new(c.identity());
            if let Some(subject) = &c.oidc_subject {
                me.linked.insert(subject.clone(), ident.clone());
            }
            if let Some(user) = &c.slack_user_id {
                me.slack.insert(user.clone(), ident.clone());
            }
            if let Some(oid) = &c.teams_aad_object_id {
                me.teams.insert(oid.to_ascii_lowercase(), ident.clone());
            }
            me.by_key.insert(c.api_key_sha256, ident.clone());
            me.by_id.insert(c.id.clone(), ident);
        }
        me
    }

    /// The identity whose API key is `token`, if any.
    pub fn authenticate(&self, token: &str) -> Option<Arc<Identity>> {
        if token.is_empty() || token.len() > 512 {
            return None;
        }
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.by_key.get(&hash).cloned()
    }

    /// Token hash → identity, for the [`countersign_identity::Authenticator`].
    pub fn by_token_hash(&self) -> HashMap<[u8; 32], Arc<Identity>> {
        self.by_key.clone()
    }

    /// `issuer#subject` → the configured human that OIDC subject is (`oidc_subject`).
    pub fn linked(&self) -> HashMap<String, Arc<Identity>> {
        self.linked.clone()
    }

    /// The configured identity whose id is `id` once normalised (`alice`, `Alice`, `аlice`).
    pub fn registry_configured(&self, id: &str) -> Option<&Arc<Identity>> {
        let key = countersign_core::id_key(id);
        self.by_id
            .values()
            .find(|i| countersign_core::id_key(&i.id) == key)
    }

    /// The (human) identity whose `slack_user_id` is `user`.
    pub fn by_slack_user(&self, user: &str) -> Option<&Arc<Identity>> {
        self.slack.get(user)
    }

    /// The (human) identity whose `teams_aad_object_id` is `oid` (case ignored).
    pub fn by_teams_user(&self, oid: &str) -> Option<&Arc<Identity>> {
        self.teams.get(&oid.to_ascii_lowercase())
    }

    /// The identity with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<Identity>> {
        self.by_id.get(id)
    }

    /// Every identity.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Identity>> {
        self.by_id.values()
    }
}

impl Gateway {
    /// Checks, before serving, that configured identities and managed keys name distinct
    /// identities (compared normalised): each configured id and each active managed key's id is
    /// bound to its source in the store's registry, and a clash refuses the start.
    pub async fn check_identities(&self) -> Result<(), GatewayError> {
        let now = self.now_ts();
        let keys = self.store.list_keys().await?;
        for key in keys.iter().filter(|k| k.revoked_at.is_none()) {
            if let Some(c) = self.identities().registry_configured(&key.identity) {
                return Err(GatewayError::Startup(format!(
                    "managed key {} authenticates as `{}`, which is the configured identity \
                     `{}`; revoke the key (`countersign keys revoke {}`) or rename the identity",
                    key.id, key.identity, c.id, key.id
                )));
            }
            let source = format!("managed:{}", key.identity);
            countersign_identity::registry::bind(
                &crate::lookup::StoreLookup(self.store.as_ref()),
                &key.identity,
                key.kind,
                &source,
                now,
            )
            .await
            .map_err(|e| {
                GatewayError::Startup(format!(
                    "managed key {}: {e}; revoke it (`countersign keys revoke {}`)",
                    key.id, key.id
                ))
            })?;
        }
        let linked = self.identities().linked();
        for ident in self.identities().all() {
            let source = format!("config:{}", ident.id);
            let bound = countersign_identity::registry::bind(
                &crate::lookup::StoreLookup(self.store.as_ref()),
                &ident.id,
                ident.kind,
                &source,
                now,
            )
            .await;
            // A person who signed in through the identity provider before the config linked
            // their account (`oidc_subject`) holds the id as that subject: the same person.
            let linked_holder = |holder: &str| {
                holder
                    .strip_prefix("oidc:")
                    .and_then(|subject| linked.get(subject))
                    .is_some_and(|l| l.id == ident.id)
            };
            if let Err(countersign_identity::BindError::Conflict { source_key, .. }) = &bound {
                if linked_holder(source_key) {
                    continue;
                }
            }
            bound.map_err(|e| {
                GatewayError::Startup(format!(
                    "configured identity: {e}; ids are never reused by another source, so \
                     rename the configured identity (or, for a person, link their account with \
                     `oidc_subject`)"
                ))
            })?;
        }
        Ok(())
    }
}
