//! PostgreSQL for the store tests: the server named by `COUNTERSIGN_TEST_POSTGRES`, one fresh
//! schema per test. A missing variable fails the test (scripts/test always sets it).

use async_trait::async_trait;
use countersign_core::{ActionRecord, Event, Timestamp};
use countersign_store::{
    AuditEntry, Hash, InsertRules, Inserted, Lease, ListFilter, ManagedKey, PostgresStore,
    ReviewQuery, Store, StoreError, StoredCheckpoint, Transition, UpdateError,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The test server's URL, or a failure that says how to get one.
pub fn url() -> String {
    std::env::var("COUNTERSIGN_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "COUNTERSIGN_TEST_POSTGRES is not set: the PostgreSQL tests need a server, e.g. \
             COUNTERSIGN_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test (scripts/test \
             sets it and starts the local server)"
        )
    })
}

/// A URL for a fresh, empty schema named after `test` (dropped first if a previous run left it).
pub async fn fresh_schema_url(test: &str) -> String {
    let base = url();
    let schema = format!("t_{}", test.to_lowercase())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(60)
        .collect::<String>();
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {base}: {e}"));
    let driver = tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
        ))
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-csearch_path%3D{schema}")
}

/// A store in a fresh schema.
pub async fn store(test: &str) -> Arc<dyn Store> {
    let url = fresh_schema_url(&format!("store_{test}")).await;
    Arc::new(PostgresStore::connect(&url).await.unwrap())
}

/// Two stores (as two replicas would open) on one fresh schema.
pub async fn replicas(test: &str) -> (PostgresStore, PostgresStore) {
    let url = fresh_schema_url(&format!("two_{test}")).await;
    let a = PostgresStore::connect(&url).await.unwrap();
    let b = PostgresStore::connect(&url).await.unwrap();
    (a, b)
}

/// A store that sends each call to the next of several replicas in turn, so the whole suite
/// runs with its concurrent writers spread over independent writer tasks and connections.
pub struct RoundRobin {
    replicas: Vec<Arc<dyn Store>>,
    next: AtomicUsize,
}

impl RoundRobin {
    pub async fn over_two(test: &str) -> Arc<dyn Store> {
        let (a, b) = replicas(test).await;
        Arc::new(RoundRobin {
            replicas: vec![Arc::new(a), Arc::new(b)],
            next: AtomicUsize::new(0),
        })
    }

    fn pick(&self) -> &dyn Store {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.replicas.len();
        &*self.replicas[i]
    }
}

#[async_trait]
impl Store for RoundRobin {
    async fn insert_ruled(
        &self,
        record: ActionRecord,
        events: Vec<Event>,
        rules: InsertRules,
    ) -> Result<Inserted, StoreError> {
        self.pick().insert_ruled(record, events, rules).await
    }
    async fn reviews_for(&self, query: ReviewQuery) -> Result<Vec<ActionRecord>, StoreError> {
        self.pick().reviews_for(query).await
    }
    async fn get(&self, id: &str) -> Result<Option<ActionRecord>, StoreError> {
        self.pick().get(id).await
    }
    async fn update(
        &self,
        id: &str,
        now: Timestamp,
        transition: Transition,
    ) -> Result<(ActionRecord, Vec<Event>), UpdateError> {
        self.pick().update(id, now, transition).await
    }
    async fn record_events(
        &self,
        at: Timestamp,
        events: Vec<(Option<String>, Event)>,
    ) -> Result<(), StoreError> {
        self.pick().record_events(at, events).await
    }
    async fn list(&self, filter: ListFilter) -> Result<Vec<ActionRecord>, StoreError> {
        self.pick().list(filter).await
    }
    async fn due_for_expiry(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.pick().due_for_expiry(now, limit).await
    }
    async fn next_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        self.pick().next_expiry().await
    }
    async fn open_reviews(&self) -> Result<u64, StoreError> {
        self.pick().open_reviews().await
    }
    async fn audit_size(&self) -> Result<u64, StoreError> {
        self.pick().audit_size().await
    }
    async fn audit_entries(&self, start: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.pick().audit_entries(start, limit).await
    }
    async fn audit_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        self.pick().audit_hashes(indexes).await
    }
    async fn action_audit_indexes(&self, action_id: &str) -> Result<Vec<u64>, StoreError> {
        self.pick().action_audit_indexes(action_id).await
    }
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.pick().latest_checkpoint().await
    }
    async fn audit_checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.pick().audit_checkpoints().await
    }
    async fn add_checkpoint(&self, checkpoint: StoredCheckpoint) -> Result<(), StoreError> {
        self.pick().add_checkpoint(checkpoint).await
    }
    async fn create_key(&self, key: ManagedKey, event: Event) -> Result<(), StoreError> {
        self.pick().create_key(key, event).await
    }
    async fn revoke_key(
        &self,
        id: &str,
        at: Timestamp,
        event_of: countersign_store::KeyEvent,
    ) -> Result<Option<ManagedKey>, StoreError> {
        self.pick().revoke_key(id, at, event_of).await
    }
    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ManagedKey>, StoreError> {
        self.pick().key_by_hash(hash).await
    }
    async fn list_keys(&self) -> Result<Vec<ManagedKey>, StoreError> {
        self.pick().list_keys().await
    }
    async fn bind_identity(
        &self,
        binding: countersign_store::IdentityBinding,
    ) -> Result<countersign_store::IdentityBinding, StoreError> {
        self.pick().bind_identity(binding).await
    }
    async fn identity_binding(
        &self,
        id_key: &str,
    ) -> Result<Option<countersign_store::IdentityBinding>, StoreError> {
        self.pick().identity_binding(id_key).await
    }
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        self.pick().changes()
    }
    async fn try_lead(&self) -> Result<Option<Box<dyn Lease>>, StoreError> {
        self.pick().try_lead().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_committed_by_one_replica_is_announced_to_the_other() {
    let (a, b) = replicas("announce").await;
    let mut changes = b.changes().expect("PostgreSQL announces changes");
    let rec = crate::suite::review_record("n1", "bot");
    a.insert(rec, vec![]).await.unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match changes.recv().await {
                Ok(id) if id == "n1" => return,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    assert!(got.is_ok(), "replica b never heard of n1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_lease_is_held_once_and_moves_when_released() {
    let (a, b) = replicas("lease").await;
    let lease = a.try_lead().await.unwrap().expect("a leads");
    assert!(lease.alive().await);
    assert!(b.try_lead().await.unwrap().is_none(), "two leaders");
    assert!(
        a.try_lead().await.unwrap().is_none(),
        "a second lease in one process"
    );
    drop(lease);
    let mut took = None;
    for _ in 0..50 {
        if let Some(l) = b.try_lead().await.unwrap() {
            took = Some(l);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(took.is_some(), "the lease never moved to b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_and_report_versions() {
    let url = fresh_schema_url("migrate").await;
    let first = countersign_store::migrate_postgres(&url).await.unwrap();
    assert_eq!(first, (0, countersign_store::POSTGRES_SCHEMA_VERSION));
    let again = countersign_store::migrate_postgres(&url).await.unwrap();
    assert_eq!(again.0, again.1);
}

#[tokio::test]
async fn a_bad_url_is_a_store_error_not_a_panic() {
    assert!(
        PostgresStore::connect("postgres://nobody@127.0.0.1:1/x?connect_timeout=1")
            .await
            .is_err()
    );
    assert!(PostgresStore::connect("not a url").await.is_err());
}

/// Migration 3 adds the digest column to a database that already holds actions, filling it
/// from their bodies, so an open review made before the upgrade answers `reuse_open` after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_3_fills_the_digest_of_existing_actions() {
    use crate::suite::{reuse, submission, T0};
    let url = fresh_schema_url("migrate_3").await;
    {
        let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url).await.unwrap());
        let (rec, events) = submission("old", "bot", serde_json::json!({"a": 1}), T0);
        store.insert(rec, events).await.unwrap();
    }
    // Back to schema 2, as a database made before this migration.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    client
        .batch_execute(
            "DROP INDEX actions_requester_digest; ALTER TABLE actions DROP COLUMN digest; \
             DROP TABLE review_approvers; DROP INDEX actions_open_by_requester; \
             DROP TABLE identity_bindings; ALTER TABLE api_keys DROP COLUMN sponsor; \
             DELETE FROM countersign_migrations WHERE version >= 3;",
        )
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    assert_eq!(
        countersign_store::migrate_postgres(&url).await.unwrap(),
        (2, countersign_store::POSTGRES_SCHEMA_VERSION)
    );
    let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url).await.unwrap());
    // Migration 4 indexed the stored review's approver entries.
    let sre =
        countersign_core::Identity::new("alice", countersign_core::IdentityKind::Human, ["sre"]);
    let page = store
        .reviews_for(ReviewQuery {
            approver_keys: countersign_core::Approvers::keys_of(&sre),
            statuses: vec![countersign_core::Status::Pending],
            reviewer: "alice".into(),
            before: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, "old");
    let again = submission("new", "bot", serde_json::json!({"a": 1}), T0);
    assert_eq!(reuse(&store, again).await, ("old".to_string(), false));
}
