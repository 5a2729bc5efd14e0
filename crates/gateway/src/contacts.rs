//! Who a chat user is, when no identity names their chat id explicitly (issue #15): the
//! configured humans whose `email` is the chat profile's confirmed email, and the people from
//! the identity provider whose last sign-in proved it (`email_verified`) or proved the Entra
//! object id a Teams click carries, in the bot's tenant. Exactly one distinct person maps; two
//! or more is an ambiguity, refused (fail closed); agents and services never map.
//!
//! The facts are recorded by `countersign_identity::Registry::record_contact` when a person is
//! admitted (an API call with their token, a console sign-in), through the store's one write
//! path, and refreshed hourly while they keep signing in; here they are only read, and facts
//! older than `countersign_identity::CONTACT_MAX_AGE_MS` (a day) map nobody.

use countersign_core::{id_key, Identity, IdentityKind};
use countersign_store::{ContactQuery, IdentityContact};
use std::collections::BTreeMap;

use crate::{Gateway, GatewayError};

/// What a chat user's email or object id maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatHuman {
    /// One human: vote as them.
    Mapped(Identity),
    /// Nobody.
    Unmapped,
    /// More than one distinct identity (their ids): refused.
    Ambiguous(Vec<String>),
}

impl ChatHuman {
    fn of(found: BTreeMap<String, Identity>) -> ChatHuman {
        let mut all = found.into_values();
        match (all.next(), all.next()) {
            (None, _) => ChatHuman::Unmapped,
            (Some(one), None) => ChatHuman::Mapped(one),
            (Some(a), Some(b)) => {
                ChatHuman::Ambiguous([a.id, b.id].into_iter().chain(all.map(|i| i.id)).collect())
            }
        }
    }
}

impl Gateway {
    /// The human whose email is `email` (a Slack profile's confirmed email, compared
    /// lowercase): configured humans with that `email`, and people from the identity provider
    /// whose last token said it was verified.
    pub async fn chat_human_by_email(&self, email: &str) -> Result<ChatHuman, GatewayError> {
        let email = email.to_lowercase();
        let mut found = BTreeMap::new();
        for c in self.identities().all() {
            let same = c
                .email
                .as_deref()
                .is_some_and(|e| e.to_lowercase() == email);
            if same && c.kind == IdentityKind::Human {
                found.insert(id_key(&c.id), (**c).clone());
            }
        }
        let recorded = self.store.contacts(&ContactQuery::Email(email)).await?;
        self.add_recorded(&mut found, recorded);
        Ok(ChatHuman::of(found))
    }

    /// The human whose Entra object id is `oid` in the tenant `tenant` (a Teams click's
    /// `aadObjectId`, the bot's `tenant_id`; both compared lowercase): people from the
    /// identity provider whose last token carried that `oid` with that `tid`.
    pub async fn chat_human_by_entra(
        &self,
        oid: &str,
        tenant: &str,
    ) -> Result<ChatHuman, GatewayError> {
        let tenant = tenant.to_ascii_lowercase();
        let recorded = self
            .store
            .contacts(&ContactQuery::EntraObject(oid.to_ascii_lowercase()))
            .await?
            .into_iter()
            .filter(|c| c.entra_tid.as_deref() == Some(tenant.as_str()))
            .collect();
        let mut found = BTreeMap::new();
        self.add_recorded(&mut found, recorded);
        Ok(ChatHuman::of(found))
    }

    /// Adds the people `recorded` names to `found` (by normalised id): humans only, from an
    /// issuer the configuration still trusts (a removed issuer's people map no more); one
    /// whose subject the config has since linked to a configured human (`oidc_subject`) is that
    /// human.
    fn add_recorded(&self, found: &mut BTreeMap<String, Identity>, recorded: Vec<IdentityContact>) {
        let linked = self.identities().linked();
        let now = self.now();
        for c in recorded {
            // A sign-in older than a day maps nobody (groups or an email taken away since
            // would otherwise count forever): the person signs in again.
            if now.millis().saturating_sub(c.recorded_at.millis())
                > countersign_identity::CONTACT_MAX_AGE_MS
            {
                continue;
            }
            let trusted = c
                .identity
                .issuer
                .as_deref()
                .is_some_and(|iss| self.auth.oidc().trusts(iss));
            let own = c.identity.stable_key.as_deref() == Some(c.source.as_str());
            if c.identity.kind != IdentityKind::Human || !trusted || !own {
                continue;
            }
            if let Some(person) = c.source.strip_prefix("oidc:").and_then(|s| linked.get(s)) {
                found.insert(id_key(&person.id), (**person).clone());
                continue;
            }
            // An id the config has since taken (not by linking) is the configured identity's:
            // the start-up check refuses that, but a recorded row never outranks the config.
            if self
                .identities()
                .registry_configured(&c.identity.id)
                .is_some()
            {
                continue;
            }
            found.insert(id_key(&c.identity.id), c.identity);
        }
    }
}
