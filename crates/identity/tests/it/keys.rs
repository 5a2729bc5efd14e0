//! Managed API keys through the authenticator, against a real SQLite store.

use countersign_core::{IdentityKind, Timestamp};
use countersign_identity::{
    keys, Authenticator, Binding, KeyLookup, KeyRecord, LookupError, OidcVerifier,
};
use countersign_store::{IdentityBinding, Keys, ManagedKey, SqliteStore, Store};
use std::collections::HashMap;
use std::sync::Arc;

fn key(id: &str, hash: [u8; 32], expires_at: Option<Timestamp>) -> ManagedKey {
    ManagedKey {
        id: id.into(),
        hash,
        identity: "deploy-bot".into(),
        kind: IdentityKind::Agent,
        groups: ["automation".to_string()].into(),
        created_by: "operator".into(),
        created_at: Timestamp(1_000),
        expires_at,
        revoked_at: None,
        sponsor: Some("alice".into()),
    }
}

/// The store as this crate's key lookup (the gateway's adapter, which this crate cannot use).
struct Lookup(Arc<dyn Store>);

fn lookup_error(e: countersign_store::StoreError) -> LookupError {
    LookupError(Box::new(e))
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

#[async_trait::async_trait]
impl KeyLookup for Lookup {
    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>, LookupError> {
        let k = self.0.key_by_hash(hash).await.map_err(lookup_error)?;
        Ok(k.map(|k| KeyRecord {
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
        let b = IdentityBinding {
            id_key: b.id_key,
            source: b.source,
            id: b.id,
            kind: b.kind,
            first_seen: b.first_seen,
        };
        Ok(binding(
            self.0.bind_identity(b).await.map_err(lookup_error)?,
        ))
    }
    async fn identity_binding(&self, id_key: &str) -> Result<Option<Binding>, LookupError> {
        let b = self
            .0
            .identity_binding(id_key)
            .await
            .map_err(lookup_error)?;
        Ok(b.map(binding))
    }
}

/// Any audit event (what the store records with a key change is not this crate's concern).
fn expired() -> countersign_core::Event {
    countersign_core::Event::Expired
}

#[tokio::test]
async fn managed_keys_authenticate_until_revoked_or_expired() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
    let auth = Authenticator::new(
        HashMap::new(),
        Arc::new(Lookup(store.clone())),
        OidcVerifier::new(vec![]).unwrap(),
    );
    let (secret, hash) = keys::generate();
    assert!(secret.starts_with("csk_") && secret.len() == 47);
    store
        .create_key(key("key_1", hash, Some(Timestamp(10_000))), expired())
        .await
        .unwrap();

    let who = auth.authenticate(&secret, Timestamp(2_000)).await.unwrap();
    assert_eq!(
        (who.id.as_str(), who.kind),
        ("deploy-bot", IdentityKind::Agent)
    );
    assert_eq!(who.source.as_deref(), Some("key:key_1"));
    assert!(who.groups.contains("automation"));

    let err = auth
        .authenticate(&secret, Timestamp(10_000))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "key_expired");
    let err = auth
        .authenticate(&format!("{secret}x"), Timestamp(2_000))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "unauthenticated");

    assert!(store
        .revoke_key("key_1", Timestamp(3_000), Box::new(|_| expired()))
        .await
        .unwrap()
        .is_some());
    assert!(
        store
            .revoke_key("key_1", Timestamp(3_500), Box::new(|_| expired()))
            .await
            .unwrap()
            .is_none(),
        "revoked once"
    );
    let err = auth
        .authenticate(&secret, Timestamp(4_000))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "key_revoked");

    // A second store handle on the same database (another replica) sees the revocation.
    let other = SqliteStore::open(&dir.path().join("db")).unwrap();
    let listed = other.list_keys().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked_at, Some(Timestamp(3_000)));
    assert_eq!(listed[0].hash, hash);
}

#[tokio::test]
async fn duplicate_key_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db")).unwrap();
    let (_, h1) = keys::generate();
    let (_, h2) = keys::generate();
    store
        .create_key(key("key_1", h1, None), expired())
        .await
        .unwrap();
    assert!(store
        .create_key(key("key_1", h2, None), expired())
        .await
        .is_err());
    assert_eq!(store.list_keys().await.unwrap().len(), 1);
}
