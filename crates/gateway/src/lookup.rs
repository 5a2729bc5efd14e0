//! The store as the identity crate's [`KeyLookup`]: managed keys, id bindings and the contact
//! facts of people from the identity provider, and nothing else of the store (identity does not
//! depend on it).

use async_trait::async_trait;
use countersign_identity::{Binding, Contact, KeyLookup, KeyRecord, LookupError};
use countersign_store::{Contacts, IdentityBinding, IdentityContact, Keys, StoreError};

/// The store's keys, bindings and contacts, for authentication: over anything that points to
/// a [`Keys`] and [`Contacts`] (an `Arc<dyn Store>`, a `&dyn Store`), the two aspects of the
/// store it needs.
pub struct StoreLookup<S>(pub S);

fn lookup_error(e: StoreError) -> LookupError {
    LookupError(Box::new(e))
}

/// The store's own error back out of a [`LookupError`].
pub(crate) fn store_error(e: LookupError) -> StoreError {
    match e.0.downcast::<StoreError>() {
        Ok(s) => *s,
        Err(other) => StoreError::Database(other.to_string()),
    }
}

fn binding(b: IdentityBinding) -> Binding {
    Binding {
        id_key: b.id_key,
        source: b.source,
        id: b.id,
        kind: b.kind,
        first_seen: b.first_seen,
    }
}

#[async_trait]
impl<S> KeyLookup for StoreLookup<S>
where
    S: std::ops::Deref + Send + Sync,
    S::Target: Keys + Contacts,
{
    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>, LookupError> {
        let key = self.0.key_by_hash(hash).await.map_err(lookup_error)?;
        Ok(key.map(|k| KeyRecord {
            id: k.id,
            identity: k.identity,
            kind: k.kind,
            groups: k.groups,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            sponsor: k.sponsor,
        }))
    }

    async fn bind_identity(&self, b: Binding) -> Result<Binding, LookupError> {
        let held = self
            .0
            .bind_identity(IdentityBinding {
                id_key: b.id_key,
                source: b.source,
                id: b.id,
                kind: b.kind,
                first_seen: b.first_seen,
            })
            .await
            .map_err(lookup_error)?;
        Ok(binding(held))
    }

    async fn identity_binding(&self, id_key: &str) -> Result<Option<Binding>, LookupError> {
        let b = self
            .0
            .identity_binding(id_key)
            .await
            .map_err(lookup_error)?;
        Ok(b.map(binding))
    }

    async fn record_contact(&self, c: Contact) -> Result<(), LookupError> {
        let (entra_oid, entra_tid) = match c.facts.entra {
            Some(e) => (Some(e.oid), Some(e.tid)),
            None => (None, None),
        };
        self.0
            .record_contact(IdentityContact {
                source: c.source,
                identity: c.identity,
                email: c.facts.email,
                entra_oid,
                entra_tid,
                recorded_at: c.recorded_at,
            })
            .await
            .map_err(lookup_error)
    }
}
