//! Managed API keys: create (the secret is returned once), list, revoke. The operator does it
//! from the CLI against the store; admins do it through the API. Both go through [`create`].

use countersign_core::{Event, Identity, IdentityKind, Timestamp};
use countersign_identity::config::valid_name;
use countersign_identity::keys;
use countersign_store::{ManagedKey, Store};
use std::collections::BTreeSet;
use std::time::Duration;

use crate::error::GatewayError;
use crate::identities::Identities;
use crate::service::Gateway;
use countersign_identity::BindError;

/// What a new key is for.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    /// The identity id the key authenticates as.
    pub identity: String,
    /// `agent` or `service`.
    pub kind: IdentityKind,
    /// Its groups.
    pub groups: BTreeSet<String>,
    /// Lifetime (none: until revoked).
    pub expires_in: Option<Duration>,
    /// The human who sponsors the agent (never an approver of its requests); an admin creating
    /// a key through the API is its sponsor.
    pub sponsor: Option<String>,
}

/// Creates a key in `store`: returns the secret (show it once) and what was stored.
///
/// Keys are for agents and services only: a person signs in through the identity provider, and a
/// leaked key must never be able to approve anything. The key's id must not be (or look like) a
/// configured identity's (`configured`) or one another source holds (a person or workload
/// from the identity provider): the id is bound to `managed:<id>` in the store's registry first.
pub async fn create(
    store: &dyn Store,
    configured: &Identities,
    req: KeyRequest,
    created_by: &str,
    now: Timestamp,
) -> Result<(String, ManagedKey), GatewayError> {
    if !valid_name(&req.identity) {
        return Err(GatewayError::Invalid(
            "`identity` must be 1-256 characters without spaces".into(),
        ));
    }
    if let Err(e) = countersign_core::check_id(&req.identity) {
        return Err(GatewayError::Invalid(format!("`identity`: {e}")));
    }
    if let Some(c) = configured.registry_configured(&req.identity) {
        return Err(GatewayError::Invalid(format!(
            "`identity` = `{}` is the configured identity `{}`; a key must name an identity of \
             its own",
            req.identity, c.id
        )));
    }
    if let Some(s) = &req.sponsor {
        if let Some(c) = configured.registry_configured(s) {
            if c.kind != IdentityKind::Human {
                return Err(GatewayError::Invalid(format!(
                    "`sponsor` = `{s}` is a configured {}; a sponsor is a person",
                    c.kind.as_str()
                )));
            }
        }
    }
    if !req.kind.may_hold_managed_key() {
        return Err(GatewayError::Invalid(
            "API keys are for agents and services; people sign in through the identity provider"
                .into(),
        ));
    }
    if let Some(g) = req.groups.iter().find(|g| !valid_name(g)) {
        return Err(GatewayError::Invalid(format!(
            "group `{g}` must have no spaces"
        )));
    }
    let source = format!("managed:{}", req.identity);
    let lookup = crate::lookup::StoreLookup(store);
    match countersign_identity::registry::bind(&lookup, &req.identity, req.kind, &source, now).await
    {
        Ok(()) => {}
        Err(BindError::Store(e)) => return Err(GatewayError::Store(crate::lookup::store_error(e))),
        Err(e) => {
            return Err(GatewayError::Invalid(format!(
                "`identity`: {e}; a key must name an identity of its own"
            )))
        }
    }
    let (secret, hash) = keys::generate();
    let key = ManagedKey {
        id: keys::new_id(),
        hash,
        identity: req.identity,
        kind: req.kind,
        groups: req.groups,
        created_by: created_by.to_string(),
        created_at: now,
        expires_at: req.expires_in.map(|d| now.plus(d)),
        revoked_at: None,
        sponsor: req.sponsor,
    };
    let event = Event::KeyCreated {
        by: created_by.to_string(),
        key_id: key.id.clone(),
        identity: key.identity.clone(),
        kind: key.kind,
        groups: key.groups.iter().cloned().collect(),
        expires_at: key.expires_at,
    };
    store.create_key(key.clone(), event).await?;
    logged("key_created", created_by, &key);
    Ok((secret, key))
}

/// Revokes a key in `store`; effective on the next request on every replica.
pub async fn revoke(
    store: &dyn Store,
    id: &str,
    by: &str,
    now: Timestamp,
) -> Result<ManagedKey, GatewayError> {
    let actor = by.to_string();
    let event_of = Box::new(move |key: &ManagedKey| Event::KeyRevoked {
        by: actor,
        key_id: key.id.clone(),
        identity: key.identity.clone(),
    });
    let key = store
        .revoke_key(id, now, event_of)
        .await?
        .ok_or(GatewayError::KeyNotFound)?;
    logged("key_revoked", by, &key);
    Ok(key)
}

/// Logs a committed identity change. Its audit entry (key id and identity only; never the secret
/// or its hash) was written by the store in the same transaction as the change.
fn logged(event: &str, actor: &str, key: &ManagedKey) {
    tracing::info!(
        event,
        actor,
        key = %key.id,
        identity = %key.identity,
        "managed API key change"
    );
}

impl Gateway {
    /// `Ok` for a person in the configured `admin_group`; `Forbidden` otherwise.
    pub fn require_admin(&self, who: &Identity) -> Result<(), GatewayError> {
        let admin = who.kind == IdentityKind::Human
            && self
                .admin_group
                .as_ref()
                .is_some_and(|g| who.groups.contains(g));
        if admin {
            Ok(())
        } else {
            Err(GatewayError::Forbidden(
                "only people in the configured `admin_group` may manage API keys".into(),
            ))
        }
    }

    /// An admin creates a key.
    pub async fn create_key(
        &self,
        who: &Identity,
        req: KeyRequest,
    ) -> Result<(String, ManagedKey), GatewayError> {
        self.require_admin(who)?;
        let by = who.source.clone().unwrap_or_else(|| who.id.clone());
        // The admin who mints an agent's key sponsors it: they never approve its requests.
        let req = KeyRequest {
            sponsor: Some(who.id.clone()),
            ..req
        };
        create(
            self.store.as_ref(),
            self.identities(),
            req,
            &format!("{} ({by})", who.id),
            self.now_ts(),
        )
        .await
    }

    /// An admin lists keys.
    pub async fn list_keys(&self, who: &Identity) -> Result<Vec<ManagedKey>, GatewayError> {
        self.require_admin(who)?;
        Ok(self.store.list_keys().await?)
    }

    /// An admin revokes a key.
    pub async fn revoke_key(&self, who: &Identity, id: &str) -> Result<ManagedKey, GatewayError> {
        self.require_admin(who)?;
        revoke(self.store.as_ref(), id, &who.id, self.now_ts()).await
    }
}
