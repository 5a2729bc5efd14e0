//! Which source owns which id. Every identity has a stable key — `config:<id>`,
//! `managed:<id>` (the managed keys of one id), `oidc:<issuer>#<subject>`, or
//! `oidc:<issuer>#rule:<id>` for an id a workload rule assigns — and every id, compared
//! normalised ([`countersign_core::id_key`]: NFKC, case folding, UTS #39 skeleton), belongs to
//! the first source seen with it, for good: the binding is kept in the store, so it holds across
//! requests, restarts and replicas. A second source claiming the id, or a look-alike of it, is
//! refused (`identity_conflict`), unless the config links it (`oidc_subject` on a configured
//! human, which makes that OIDC subject the configured person).

use crate::lookup::{Binding, Contact, ContactFacts, KeyLookup, LookupError};
use countersign_core::{check_id, id_key, may_be_on_behalf_of, Identity, IdentityKind, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::AuthError;

/// Why an id cannot be bound to a source.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The id mixes scripts or contains invisible characters.
    #[error("`{id}`: {error}")]
    Invalid {
        /// The id.
        id: String,
        /// Why.
        error: countersign_core::IdError,
    },
    /// The id (or a look-alike) belongs to another source.
    #[error("`{id}` is already the id of another identity (`{other}`, from {source_key})")]
    Conflict {
        /// The id claimed.
        id: String,
        /// The id that holds it.
        other: String,
        /// The stable key of the source that holds it.
        source_key: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] LookupError),
}

/// Binds `id` to the source `stable_key` in `store` unless another source holds it (or a
/// look-alike of it).
pub async fn bind(
    store: &dyn KeyLookup,
    id: &str,
    kind: IdentityKind,
    stable_key: &str,
    now: Timestamp,
) -> Result<(), BindError> {
    check_id(id).map_err(|error| BindError::Invalid {
        id: id.to_string(),
        error,
    })?;
    let held = store
        .bind_identity(Binding {
            id_key: id_key(id),
            source: stable_key.to_string(),
            id: id.to_string(),
            kind,
            first_seen: now,
        })
        .await?;
    if held.source == stable_key {
        Ok(())
    } else {
        Err(BindError::Conflict {
            id: id.to_string(),
            other: held.id,
            source_key: held.source,
        })
    }
}

/// The configured identities (by normalised id and by linked OIDC subject) and a cache of the
/// store's bindings (a binding never changes once made).
pub struct Registry {
    store: Arc<dyn KeyLookup>,
    configured: HashMap<String, Arc<Identity>>,
    linked: HashMap<String, Arc<Identity>>,
    seen: Mutex<HashMap<String, String>>,
    /// The contact facts last recorded per OIDC source by this process, with the identity they
    /// were recorded with: a sign-in writes only when they changed.
    contacts: Mutex<HashMap<String, (Identity, ContactFacts, Timestamp)>>,
}

/// Most sources whose last recorded contact facts are remembered; past it, the cache starts
/// over (each person's facts are then written once more).
const MAX_REMEMBERED_CONTACTS: usize = 10_000;

/// How long recorded contact facts map a chat user to a person: a sign-in (API call or
/// console) older than this no longer does, so groups or an email the identity provider took
/// away stop counting within a day even for someone who only ever clicks in chat.
pub const CONTACT_MAX_AGE_MS: i64 = 24 * 60 * 60 * 1000;

/// Unchanged facts are written again after this long, so someone who keeps signing in keeps
/// being mapped ([`CONTACT_MAX_AGE_MS`] counts from the last write).
pub const CONTACT_REFRESH_MS: i64 = 60 * 60 * 1000;

impl Registry {
    /// `configured`: the config's identities; `linked`: `issuer#subject` → the configured
    /// human that OIDC subject is.
    pub fn new(
        store: Arc<dyn KeyLookup>,
        configured: impl IntoIterator<Item = Arc<Identity>>,
        linked: HashMap<String, Arc<Identity>>,
    ) -> Self {
        Registry {
            store,
            configured: configured.into_iter().map(|i| (id_key(&i.id), i)).collect(),
            linked,
            seen: Mutex::new(HashMap::new()),
            contacts: Mutex::new(HashMap::new()),
        }
    }

    /// The configured identity whose id is `id`, compared normalised.
    pub fn configured(&self, id: &str) -> Option<&Arc<Identity>> {
        self.configured.get(&id_key(id))
    }

    /// The configured human an OIDC `issuer#subject` is linked to.
    pub fn linked(&self, issuer_subject: &str) -> Option<&Arc<Identity>> {
        self.linked.get(issuer_subject)
    }

    /// The identity `ident` (from a managed key or OIDC) may act as, or why not: its id must be
    /// well formed, not a configured identity's (unless linked) and bound to its own source.
    pub async fn admit(&self, ident: Identity, now: Timestamp) -> Result<Identity, AuthError> {
        let claimer = format!(
            "{} ({})",
            ident.id,
            ident.stable_key.as_deref().unwrap_or("unknown source")
        );
        let Some(stable) = ident.stable_key.clone() else {
            return Err(AuthError::IdentityConflict(claimer));
        };
        if let Some(link) = stable.strip_prefix("oidc:").and_then(|s| self.linked(s)) {
            if ident.kind != IdentityKind::Human {
                return Err(AuthError::IdentityConflict(claimer));
            }
            // The same person as the configured one: its id, its groups and the token's.
            let mut me = ident;
            me.id = link.id.clone();
            me.groups.extend(link.groups.iter().cloned());
            me.email = me.email.or_else(|| link.email.clone());
            me.stable_key = link.stable_key.clone();
            return Ok(me);
        }
        if check_id(&ident.id).is_err() {
            return Err(AuthError::IdentityInvalid(claimer));
        }
        let key = id_key(&ident.id);
        if self.configured.contains_key(&key) {
            return Err(AuthError::IdentityConflict(claimer));
        }
        let cached = self.seen.lock().ok().and_then(|m| m.get(&key).cloned());
        match cached {
            Some(source) if source == stable => return Ok(ident),
            Some(_) => return Err(AuthError::IdentityConflict(claimer)),
            None => {}
        }
        match bind(self.store.as_ref(), &ident.id, ident.kind, &stable, now).await {
            Ok(()) => {}
            Err(BindError::Invalid { .. }) => return Err(AuthError::IdentityInvalid(claimer)),
            Err(BindError::Conflict { .. }) => return Err(AuthError::IdentityConflict(claimer)),
            Err(BindError::Store(e)) => return Err(AuthError::Store(e)),
        }
        if let Ok(mut m) = self.seen.lock() {
            m.insert(key, stable);
        }
        Ok(ident)
    }

    /// Records what `ident`'s token proved about how they are reached in chat (`facts`), for
    /// a person from the identity provider admitted as such (`oidc:<issuer>#<subject>`, a
    /// human, not linked to a configured one: a configured identity's email and chat ids are
    /// the config's). Written only when the facts, or the identity they map to, changed since
    /// this process last recorded them, so a sign-in or API call costs no write in the steady
    /// state; a token proving no facts any more clears what an earlier one recorded.
    pub async fn record_contact(
        &self,
        ident: &Identity,
        facts: ContactFacts,
        now: Timestamp,
    ) -> Result<(), AuthError> {
        let Some(source) = ident.stable_key.as_deref() else {
            return Ok(());
        };
        if ident.kind != IdentityKind::Human
            || !source.starts_with("oidc:")
            || source.contains("#rule:")
        {
            return Ok(());
        }
        let unchanged = self.contacts.lock().ok().is_some_and(|m| {
            m.get(source).is_some_and(|(i, f, at)| {
                i == ident
                    && *f == facts
                    && now.millis().saturating_sub(at.millis()) < CONTACT_REFRESH_MS
            })
        });
        if unchanged {
            return Ok(());
        }
        self.store
            .record_contact(Contact {
                source: source.to_string(),
                identity: ident.clone(),
                facts: facts.clone(),
                recorded_at: now,
            })
            .await?;
        if let Ok(mut m) = self.contacts.lock() {
            if m.len() >= MAX_REMEMBERED_CONTACTS {
                m.clear();
            }
            m.insert(source.to_string(), (ident.clone(), facts, now));
        }
        Ok(())
    }

    /// Whether `id` names a human the gateway knows: a configured human, or a person from the
    /// identity provider seen before. Returns the id as it is known.
    pub async fn known_human(&self, id: &str) -> Result<Option<String>, AuthError> {
        if let Some(c) = self.configured(id) {
            let known = may_be_on_behalf_of(c.kind, &format!("config:{}", c.id));
            return Ok(known.then(|| c.id.clone()));
        }
        if check_id(id).is_err() {
            return Ok(None);
        }
        let bound = self.store.identity_binding(&id_key(id)).await?;
        Ok(bound
            .filter(|b| may_be_on_behalf_of(b.kind, &b.source))
            .map(|b| b.id))
    }
}
