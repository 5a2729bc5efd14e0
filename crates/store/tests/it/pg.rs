//! PostgreSQL for the store tests: the server named by `COUNTERSIGN_TEST_POSTGRES`, one fresh
//! schema per test. A missing variable fails the test (scripts/test always sets it).

use countersign_store::{Actions, Coordination, PostgresStore, ReviewQuery, Store};
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

pub use crate::round_robin::RoundRobin;

impl RoundRobin {
    /// Two PostgreSQL replicas on one fresh schema, taking calls in turn.
    pub async fn over_two(test: &str) -> Arc<dyn Store> {
        let (a, b) = replicas(test).await;
        RoundRobin::over(vec![Arc::new(a), Arc::new(b)])
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
            "DROP INDEX actions_reusable_digest; ALTER TABLE actions DROP COLUMN digest; \
             DROP TABLE review_approvers; DROP INDEX actions_open_by_requester; \
             DROP TABLE identity_bindings; ALTER TABLE api_keys DROP COLUMN sponsor; \
             DROP TABLE outbox; DROP TABLE channel_messages; \
             DROP TABLE stored_secrets; \
             DROP TABLE console_sessions; DROP TABLE identity_contacts; \
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

/// The migration ledger of the database at `url`: each applied version and when.
async fn ledger(url: &str) -> Vec<(i32, String)> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT version, applied_at::text FROM countersign_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// A new database gets every step, recorded once each, and ends at the newest version; opening
/// it again applies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_database_ends_at_the_newest_schema_and_reopening_changes_nothing() {
    let url = fresh_schema_url("migrate_fresh").await;
    drop(PostgresStore::connect(&url).await.unwrap());
    let first = ledger(&url).await;
    let versions: Vec<i32> = first.iter().map(|(v, _)| *v).collect();
    // Every step from 1 to the newest, in order (numbers may skip ones reserved by work
    // landing beside it).
    assert_eq!(versions.first(), Some(&1));
    assert_eq!(
        versions.last(),
        Some(&countersign_store::POSTGRES_SCHEMA_VERSION)
    );
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    drop(PostgresStore::connect(&url).await.unwrap());
    assert_eq!(
        countersign_store::migrate_postgres(&url).await.unwrap(),
        (
            countersign_store::POSTGRES_SCHEMA_VERSION,
            countersign_store::POSTGRES_SCHEMA_VERSION
        )
    );
    assert_eq!(ledger(&url).await, first);
}

/// A database a newer build migrated is refused, naming both versions, and left as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_newer_than_the_build_is_refused() {
    use countersign_store::{SchemaError, StoreError, POSTGRES_SCHEMA_VERSION};
    let url = fresh_schema_url("migrate_newer").await;
    countersign_store::migrate_postgres(&url).await.unwrap();
    let newer = POSTGRES_SCHEMA_VERSION + 1;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    client
        .execute(
            "INSERT INTO countersign_migrations (version) VALUES ($1)",
            &[&newer],
        )
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    let before = ledger(&url).await;
    let refused = countersign_store::migrate_postgres(&url).await.unwrap_err();
    assert!(
        matches!(
            &refused,
            StoreError::Schema { source: SchemaError::Newer { found, latest }, .. }
                if *found == newer && *latest == POSTGRES_SCHEMA_VERSION
        ),
        "{refused:?}"
    );
    let text = refused.to_string();
    assert!(
        text.contains(&newer.to_string()) && text.contains(&POSTGRES_SCHEMA_VERSION.to_string()),
        "{text}"
    );
    assert!(PostgresStore::connect(&url).await.is_err());
    assert_eq!(ledger(&url).await, before);
}
