//! Contact facts (issue #15): what the registry records of a person from the identity provider,
//! and when it writes.

use async_trait::async_trait;
use countersign_core::{Identity, IdentityKind, Timestamp};
use countersign_identity::{
    Binding, Contact, ContactFacts, EntraObject, KeyLookup, KeyRecord, LookupError, Registry,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Bindings in memory, and every contact write.
#[derive(Default)]
struct Memory {
    bindings: Mutex<HashMap<String, Binding>>,
    contacts: Mutex<Vec<Contact>>,
    fail: Mutex<bool>,
}

#[async_trait]
impl KeyLookup for Memory {
    async fn key_by_hash(&self, _: &[u8; 32]) -> Result<Option<KeyRecord>, LookupError> {
        Ok(None)
    }
    async fn bind_identity(&self, b: Binding) -> Result<Binding, LookupError> {
        let mut m = self.bindings.lock().unwrap();
        Ok(m.entry(b.id_key.clone()).or_insert(b).clone())
    }
    async fn identity_binding(&self, id_key: &str) -> Result<Option<Binding>, LookupError> {
        Ok(self.bindings.lock().unwrap().get(id_key).cloned())
    }
    async fn record_contact(&self, c: Contact) -> Result<(), LookupError> {
        if *self.fail.lock().unwrap() {
            return Err(LookupError("the store is down".into()));
        }
        self.contacts.lock().unwrap().push(c);
        Ok(())
    }
}

fn person(id: &str, kind: IdentityKind, stable_key: &str) -> Identity {
    let mut i = Identity::new(id, kind, ["sre"]);
    i.stable_key = Some(stable_key.into());
    i.source = Some(stable_key.into());
    i.issuer = Some("https://idp.example".into());
    i
}

fn facts(email: Option<&str>) -> ContactFacts {
    ContactFacts {
        email: email.map(str::to_string),
        entra: Some(EntraObject {
            oid: "0a".into(),
            tid: "t".into(),
        }),
    }
}

#[tokio::test]
async fn facts_are_written_when_they_change_and_only_for_people_from_the_provider() {
    let store = Arc::new(Memory::default());
    let linked_person = Arc::new(person("zoe", IdentityKind::Human, "config:zoe"));
    let registry = Registry::new(
        store.clone(),
        [linked_person.clone()],
        [("https://idp.example#sub-zoe".to_string(), linked_person)].into(),
    );
    let at = |ms| Timestamp(ms);
    let frank = person(
        "frank",
        IdentityKind::Human,
        "oidc:https://idp.example#sub-frank",
    );
    let frank = registry.admit(frank, at(1)).await.unwrap();
    let writes = || store.contacts.lock().unwrap().len();

    registry
        .record_contact(&frank, facts(Some("f@example.com")), at(1))
        .await
        .unwrap();
    assert_eq!(writes(), 1);
    // The same facts again (every API call with the token): no write.
    for n in 2..10 {
        registry
            .record_contact(&frank, facts(Some("f@example.com")), at(n))
            .await
            .unwrap();
    }
    assert_eq!(writes(), 1);
    // Changed facts, or changed groups: written.
    registry
        .record_contact(&frank, facts(None), at(10))
        .await
        .unwrap();
    assert_eq!(writes(), 2);
    assert_eq!(store.contacts.lock().unwrap()[1].facts.email, None);
    let mut more = frank.clone();
    more.groups.insert("data".into());
    registry
        .record_contact(&more, facts(None), at(11))
        .await
        .unwrap();
    assert_eq!(writes(), 3);
    let last = store.contacts.lock().unwrap()[2].clone();
    assert_eq!(last.source, "oidc:https://idp.example#sub-frank");
    assert_eq!(last.recorded_at, at(11));
    assert!(last.identity.groups.contains("data"));

    // Never recorded: agents and services, rule-assigned workloads, linked (configured)
    // people, identities of another source.
    for ident in [
        person(
            "robot",
            IdentityKind::Agent,
            "oidc:https://idp.example#sub-robot",
        ),
        person(
            "svc",
            IdentityKind::Service,
            "oidc:https://idp.example#rule:svc",
        ),
        person(
            "rule-human",
            IdentityKind::Human,
            "oidc:https://idp.example#rule:x",
        ),
        person("zoe", IdentityKind::Human, "config:zoe"),
        person("deploy", IdentityKind::Agent, "managed:deploy"),
    ] {
        registry
            .record_contact(&ident, facts(Some("f@example.com")), at(20))
            .await
            .unwrap();
    }
    let zoe = registry
        .admit(
            person(
                "zoe-idp",
                IdentityKind::Human,
                "oidc:https://idp.example#sub-zoe",
            ),
            at(21),
        )
        .await
        .unwrap();
    registry
        .record_contact(&zoe, facts(Some("z@example.com")), at(21))
        .await
        .unwrap();
    assert_eq!(writes(), 3);

    // A failed write fails the call and is tried again on the next one.
    let gina = person(
        "gina",
        IdentityKind::Human,
        "oidc:https://idp.example#sub-gina",
    );
    *store.fail.lock().unwrap() = true;
    assert!(registry
        .record_contact(&gina, facts(Some("g@example.com")), at(30))
        .await
        .is_err());
    *store.fail.lock().unwrap() = false;
    registry
        .record_contact(&gina, facts(Some("g@example.com")), at(31))
        .await
        .unwrap();
    assert_eq!(writes(), 4);
}

/// Unchanged facts are written again once an hour, so a person who keeps signing in stays within
/// the day recorded facts map for (`CONTACT_MAX_AGE_MS`, read by the gateway).
#[tokio::test]
async fn unchanged_facts_are_refreshed_hourly() {
    let store = Arc::new(Memory::default());
    let registry = Registry::new(store.clone(), [], HashMap::new());
    let frank = person(
        "frank",
        IdentityKind::Human,
        "oidc:https://idp.example#sub-frank",
    );
    let frank = registry.admit(frank, Timestamp(1)).await.unwrap();
    let hour = countersign_identity::CONTACT_REFRESH_MS;
    assert!(hour < countersign_identity::CONTACT_MAX_AGE_MS);
    for at in [1, 2, hour, 1 + hour, 2 + hour, 1 + 2 * hour] {
        registry
            .record_contact(&frank, facts(Some("f@example.com")), Timestamp(at))
            .await
            .unwrap();
    }
    let written: Vec<i64> = store
        .contacts
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.recorded_at.millis())
        .collect();
    assert_eq!(written, [1, 1 + hour, 1 + 2 * hour]);
}
