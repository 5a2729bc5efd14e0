//! What this crate needs of storage, and no more: managed keys by hash (on every request, so a
//! revocation holds at once on every replica) and the registry's id bindings. The gateway
//! implements [`KeyLookup`] over its store; this crate does not depend on the store.

use async_trait::async_trait;
use countersign_core::{Identity, IdentityKind, Timestamp};
use std::collections::BTreeSet;

/// A managed API key, as authentication needs it (never the secret: it is looked up by hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Public key id (`key_...`).
    pub id: String,
    /// The identity the key authenticates as.
    pub identity: String,
    /// Agent or service.
    pub kind: IdentityKind,
    /// The identity's groups.
    pub groups: BTreeSet<String>,
    /// Unusable at and after this instant.
    pub expires_at: Option<Timestamp>,
    /// Unusable from this instant on.
    pub revoked_at: Option<Timestamp>,
    /// The human who sponsors the key's agent.
    pub sponsor: Option<String>,
}

/// One normalised id and the source it belongs to (see [`crate::registry`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// [`countersign_core::id_key`] of the id.
    pub id_key: String,
    /// The stable key of the source: `config:<id>`, `managed:<id>` or `oidc:<issuer>#<subject>`.
    pub source: String,
    /// The id as first seen.
    pub id: String,
    /// Its kind as first seen.
    pub kind: IdentityKind,
    /// When it was first seen.
    pub first_seen: Timestamp,
}

/// An Entra ID user: object id and tenant id, lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntraObject {
    /// The user's object id (`oid`; Teams' `aadObjectId`).
    pub oid: String,
    /// The tenant the object id is in (`tid`).
    pub tid: String,
}

/// What an identity provider's token proved about how a person is reached in chat (see
/// [`crate::claims::contact`]). Empty when it proved nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactFacts {
    /// The verified email address, lowercase.
    pub email: Option<String>,
    /// The Entra object id and tenant.
    pub entra: Option<EntraObject>,
}

/// A person from the identity provider as last admitted, with the [`ContactFacts`] their token
/// proved: what the chat channels map a Slack email or a Teams object id to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The stable key of the source, `oidc:<issuer>#<subject>`: one row per person.
    pub source: String,
    /// The identity as admitted (id, groups as the token had them).
    pub identity: Identity,
    /// The facts.
    pub facts: ContactFacts,
    /// When these facts were recorded.
    pub recorded_at: Timestamp,
}

/// A storage failure behind a [`KeyLookup`] (the implementation's own error, boxed).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct LookupError(pub Box<dyn std::error::Error + Send + Sync>);

/// Where managed keys and id bindings are kept.
#[async_trait]
pub trait KeyLookup: Send + Sync {
    /// The managed key whose secret hashes to `hash`, revoked or not.
    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>, LookupError>;
    /// Binds `binding.id_key` to `binding.source` unless already bound; returns the binding
    /// that holds (the given one, or the earlier one).
    async fn bind_identity(&self, binding: Binding) -> Result<Binding, LookupError>;
    /// The binding of a normalised id, if any.
    async fn identity_binding(&self, id_key: &str) -> Result<Option<Binding>, LookupError>;
    /// Records (replaces) the contact facts of `contact.source`. The default records nothing,
    /// for lookups without a place to keep them.
    async fn record_contact(&self, contact: Contact) -> Result<(), LookupError> {
        let _ = contact;
        Ok(())
    }
}
