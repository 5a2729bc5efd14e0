//! The store test suite. Every test is a function of `Arc<dyn Store>` so each backend runs the
//! same suite; `sqlite` instantiates it for the embedded store, `postgres` for PostgreSQL (at
//! `COUNTERSIGN_TEST_POSTGRES`, each test in a schema of its own).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

mod pg;
mod round_robin;
mod suite;

use countersign_store::{Actions, AuditLog, Coordination, Keys, SqliteStore, Store};
use std::sync::Arc;

fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
    (dir, Arc::new(store))
}

/// Two stores on one SQLite file, as two processes would open it (each with its own writer).
fn sqlite_pair() -> (tempfile::TempDir, Arc<dyn Store>, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let a = SqliteStore::open(&dir.path().join("t.db")).unwrap();
    let b = SqliteStore::open(&dir.path().join("t.db")).unwrap();
    (dir, Arc::new(a), Arc::new(b))
}

macro_rules! sqlite_suite {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_dir, store) = sqlite();
            suite::$name(store).await;
        }
    )*};
}

macro_rules! both_suites {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            sqlite_suite!($($name),*);
        }
        mod sqlite_two_writers {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, a, b) = sqlite_pair();
                    suite::$name(round_robin::RoundRobin::over(vec![a, b])).await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let store = pg::store(stringify!($name)).await;
                    suite::$name(store).await;
                }
            )*
        }
        mod postgres_two_replicas {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let store = pg::RoundRobin::over_two(stringify!($name)).await;
                    suite::$name(store).await;
                }
            )*
        }
    };
}

both_suites!(
    insert_then_get_round_trips,
    idempotency_key_returns_the_first_record,
    concurrent_idempotent_inserts_create_one_record,
    reuse_open_answers_with_an_open_or_approved_action,
    concurrent_reuse_open_inserts_open_one_review,
    refused_transition_writes_nothing,
    update_of_unknown_id_is_not_found,
    concurrent_updates_are_serialised,
    concurrent_redemption_succeeds_once,
    list_filters_by_status_oldest_first,
    list_pages_with_a_cursor,
    expiry_queries_find_due_reviews,
    audit_log_is_gap_free_canonical_and_hashed,
    checkpoints_are_append_only,
    many_concurrent_inserts_all_commit,
    managed_keys_round_trip_and_revoke_once,
    concurrent_key_changes_write_one_entry_each,
    recorded_events_join_the_log_without_a_record,
    stored_hashes_match_a_recomputation_after_many_appends,
    reviews_for_pages_a_reviewers_reviews_newest_first,
    concurrent_inserts_respect_the_open_review_cap,
    identity_bindings_first_claim_wins,
    static_secrets_are_set_replaced_and_audited,
    console_sessions_start_end_and_expire,
    contact_facts_are_replaced_by_newer_ones_only,
    outbox_rows_are_written_with_the_change,
);

/// Two stores on one SQLite file (a gateway, and `countersign keys create --config` run beside
/// it) take turns writing: each write lands on the log the other left (once, every write after
/// another process's failed with `UNIQUE constraint failed: audit_entries.idx`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writers_sharing_a_file_extend_one_log() {
    let (_dir, a, b) = sqlite_pair();
    suite::writers_sharing_a_database_extend_one_log(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_writers_sharing_a_database_extend_one_log() {
    let (a, b) = pg::replicas("sharing_one_log").await;
    suite::writers_sharing_a_database_extend_one_log(Arc::new(a), Arc::new(b)).await;
}

/// PostgreSQL's digest index is partial, as SQLite's is (migration 10): only the statuses
/// `reuse_open` looks for are indexed, and the reuse lookup can read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_digest_index_holds_only_reusable_statuses() {
    let url = pg::fresh_schema_url("partial_digest_index").await;
    let _store = countersign_store::PostgresStore::connect(&url)
        .await
        .unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT indexname, indexdef FROM pg_indexes \
             WHERE schemaname = current_schema() AND tablename = 'actions'",
            &[],
        )
        .await
        .unwrap();
    let defs: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(
        !defs.iter().any(|(n, _)| n == "actions_requester_digest"),
        "{defs:?}"
    );
    let (_, def) = defs
        .iter()
        .find(|(n, _)| n == "actions_reusable_digest")
        .unwrap_or_else(|| panic!("{defs:?}"));
    for status in ["pending", "needs_clarification", "approved"] {
        assert!(def.contains("WHERE") && def.contains(status), "{def}");
    }
    assert!(
        !def.contains("allowed") && !def.contains("executed"),
        "{def}"
    );
    client
        .batch_execute("SET enable_seqscan = off")
        .await
        .unwrap();
    let plan: Vec<String> = client
        .query(
            "EXPLAIN SELECT id, body FROM actions WHERE requester = 'bot' AND digest = 'd' \
             AND status IN ('pending', 'needs_clarification', 'approved')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.iter().any(|l| l.contains("actions_reusable_digest")),
        "{plan:?}"
    );
}

/// A store that cannot write says so (`Store::write_failure`, what `/readyz` reports) until a
/// write succeeds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reports_a_store_that_cannot_write_until_it_writes_again() {
    use countersign_core::{Event, Timestamp};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path).unwrap();
    let append = || store.record_events(Timestamp(0), vec![(None, Event::Expired)]);
    append().await.unwrap();
    assert_eq!(store.write_failure(), None);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER full BEFORE INSERT ON audit_entries \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    )
    .unwrap();
    assert!(append().await.is_err());
    let why = store.write_failure().expect("the failure is reported");
    assert!(why.contains("disk is full"), "{why}");
    // Reads still work; the failure stays reported until a write succeeds.
    assert_eq!(store.audit_size().await.unwrap(), 1);
    assert!(store.write_failure().is_some());
    conn.execute_batch("DROP TRIGGER full").unwrap();
    append().await.unwrap();
    assert_eq!(store.write_failure(), None);
    assert_eq!(store.audit_size().await.unwrap(), 2);
}

/// A schema 4 file (before key sponsors and the identity registry) is upgraded when opened: its
/// keys stay, without a sponsor, and ids can be bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_upgrades_a_schema_4_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    // Back to schema 4: what a schema-4 build made, without the tables and columns of 5 and 6
    // (every schema-4 file has the action and audit tables; the key table it may lack).
    drop(SqliteStore::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE api_keys; DROP TABLE identity_bindings; DROP TABLE review_approvers; \
             DROP INDEX actions_open_by_requester;",
        )
        .unwrap();
        conn.execute_batch(
            "CREATE TABLE api_keys (id TEXT PRIMARY KEY, hash BLOB NOT NULL UNIQUE, \
             identity TEXT NOT NULL, kind TEXT NOT NULL, groups TEXT NOT NULL, \
             created_by TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER, \
             revoked_at INTEGER); \
             INSERT INTO api_keys VALUES ('key_1', x'0101010101010101010101010101010101010101010101010101010101010101', \
             'bot', 'agent', '[]', 'operator:root', 1, NULL, NULL); \
             PRAGMA user_version = 4;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let key = store.key_by_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!((key.identity.as_str(), key.sponsor), ("bot", None));
    let b = countersign_store::IdentityBinding {
        id_key: "bot".into(),
        source: "managed:bot".into(),
        id: "bot".into(),
        kind: countersign_core::IdentityKind::Agent,
        first_seen: countersign_core::Timestamp(1),
    };
    assert_eq!(store.bind_identity(b.clone()).await.unwrap(), b);
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, i64::from(countersign_store::SQLITE_SCHEMA_VERSION));
}

/// A SQLite file's version and schema (every object's SQL, by name).
fn sqlite_schema(path: &std::path::Path) -> (i64, Vec<String>) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let version = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    let objects = conn
        .prepare("SELECT type || ' ' || name || ': ' || COALESCE(sql, '') FROM sqlite_master ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    (version, objects)
}

/// A new file gets every migration step and ends at the newest version; opening it again
/// changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_new_file_ends_at_the_newest_schema_and_reopening_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    drop(SqliteStore::open(&path).unwrap());
    let first = sqlite_schema(&path);
    assert_eq!(first.0, i64::from(countersign_store::SQLITE_SCHEMA_VERSION));
    for table in [
        "actions",
        "audit_entries",
        "audit_checkpoints",
        "review_approvers",
        "stored_secrets",
    ] {
        assert!(first
            .1
            .iter()
            .any(|o| o.starts_with(&format!("table {table}:"))));
    }
    for (table, column) in [("actions", "digest"), ("api_keys", "sponsor")] {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
                [table, column],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "{table}.{column}");
    }
    drop(SqliteStore::open(&path).unwrap());
    assert_eq!(sqlite_schema(&path), first);
}

/// A file a newer build made is refused, naming both versions, and so is one a development build
/// made; neither is changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_a_file_newer_than_the_build_or_unmigratable() {
    use countersign_store::{SchemaError, StoreError};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    drop(SqliteStore::open(&path).unwrap());
    let set = |v: i64| {
        rusqlite::Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", v)
            .unwrap()
    };
    let latest = countersign_store::SQLITE_SCHEMA_VERSION;
    set(i64::from(latest) + 1);
    let before = sqlite_schema(&path);
    let Err(refused) = SqliteStore::open(&path) else {
        panic!("a newer file was opened")
    };
    assert!(
        matches!(
            &refused,
            StoreError::Schema {
                source: SchemaError::Newer { found, latest: l },
                ..
            } if *found == latest + 1 && *l == latest
        ),
        "{refused:?}"
    );
    let text = refused.to_string();
    assert!(
        text.contains(&(latest + 1).to_string()) && text.contains(&latest.to_string()),
        "{text}"
    );
    assert_eq!(sqlite_schema(&path), before);
    set(2);
    let Err(refused) = SqliteStore::open(&path) else {
        panic!("a development file was opened")
    };
    assert!(
        matches!(
            &refused,
            StoreError::Schema {
                source: SchemaError::Unmigratable { found: 2, .. },
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("development"), "{refused}");
}

/// A schema 5 file made before managed keys had a table gets one, with sponsors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_upgrades_a_schema_5_file_without_a_key_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "DROP TABLE api_keys; DROP TABLE identity_bindings; PRAGMA user_version = 5;",
        )
        .unwrap();
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.list_keys().await.unwrap(), vec![]);
    drop(store);
    let fresh = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(&fresh.path().join("t.db")).unwrap());
    let keys = |p: &std::path::Path| {
        sqlite_schema(p)
            .1
            .into_iter()
            .filter(|o| o.contains("api_keys") || o.contains("identity_bindings"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        sqlite_schema(&path).0,
        i64::from(countersign_store::SQLITE_SCHEMA_VERSION)
    );
    assert_eq!(keys(&path), keys(&fresh.path().join("t.db")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let rec = suite::review_record("persist", "bot");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.insert(rec.clone(), vec![]).await.unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.get("persist").await.unwrap(), Some(rec));
}

/// A schema 3 file (before the digest column) is upgraded when opened: the column is filled
/// from the stored bodies, so an open review made before the upgrade answers `reuse_open`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_upgrades_a_schema_3_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let params = || serde_json::json!({"a": 1});
    {
        let store = SqliteStore::open(&path).unwrap();
        let (rec, events) = suite::submission("old", "bot", params(), suite::T0);
        store.insert(rec, events).await.unwrap();
    }
    {
        // Back to schema 3, as a file made before the digest column.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP INDEX actions_reusable_digest; ALTER TABLE actions DROP COLUMN digest; \
             DROP TABLE review_approvers; DROP INDEX actions_open_by_requester; \
             PRAGMA user_version = 3;",
        )
        .unwrap();
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let again = suite::submission("new", "bot", params(), suite::T0);
    assert_eq!(
        suite::reuse(&store, again).await,
        ("old".to_string(), false)
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, i64::from(countersign_store::SQLITE_SCHEMA_VERSION));
    // Schema 5 indexed the stored review's approver entries.
    let sre =
        countersign_core::Identity::new("alice", countersign_core::IdentityKind::Human, ["sre"]);
    let page = store
        .reviews_for(countersign_store::ReviewQuery {
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
    // The reuse lookup reads the partial digest index, which allowed actions stay out of.
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT id, body FROM actions WHERE requester = 'bot' \
             AND digest = 'd' AND status IN ('pending', 'needs_clarification', 'approved')",
        )
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        plan.iter().any(|p| p.contains("actions_reusable_digest")),
        "{plan:?}"
    );
    let indexed: i64 = conn
        .query_row(
            "SELECT count(*) FROM actions INDEXED BY actions_reusable_digest \
             WHERE requester = 'bot' AND digest IS NOT NULL \
             AND status IN ('pending', 'needs_clarification', 'approved')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        indexed, 1,
        "the pending action from before the upgrade is indexed"
    );
}

#[test]
fn sqlite_refuses_a_path_it_cannot_create() {
    let err = SqliteStore::open(std::path::Path::new("/proc/nonexistent/x.db"));
    assert!(err.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_appends_after_reopening_extend_the_same_tree() {
    use countersign_core::{Event, Timestamp};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    for round in 0..3 {
        let store = SqliteStore::open(&path).unwrap();
        for _ in 0..(7 + round) {
            store
                .record_events(Timestamp(0), vec![(None, Event::Expired)])
                .await
                .unwrap();
        }
    }
    let store = SqliteStore::open(&path).unwrap();
    let entries = store.audit_entries(0, 100).await.unwrap();
    assert_eq!(entries.len(), 7 + 8 + 9);
    let mut tree = countersign_audit::MemoryHashes::new();
    for e in &entries {
        tree.append(&e.body).unwrap();
    }
    let all: Vec<u64> = (0..tree.hashes().len() as u64).collect();
    assert_eq!(store.audit_hashes(&all).await.unwrap(), tree.hashes());
}

/// The SQLite writer announces the ids of the actions each batch inserted with a review or
/// changed once the batch is durable, so long polls and live pages wake without polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_announces_committed_changes() {
    let (_dir, store) = sqlite();
    let mut changes = store.changes().expect("SQLite has a change feed");
    // An action inserted without a review (allowed at once) has no watcher: not announced.
    store
        .insert(suite::allowed_record("a0", "bot"), vec![])
        .await
        .unwrap();
    let rec = suite::review_record("c1", "bot");
    store.insert(rec, vec![]).await.unwrap();
    // Durable before announced: the record is readable when its id arrives.
    let id = tokio::time::timeout(std::time::Duration::from_secs(10), changes.recv())
        .await
        .expect("announced")
        .unwrap();
    assert_eq!(id, "c1");
    assert!(store.get("c1").await.unwrap().is_some());
    // An update is announced too; a write that changes no action is not.
    store
        .record_events(
            countersign_core::Timestamp(0),
            vec![(None, countersign_core::Event::Expired)],
        )
        .await
        .unwrap();
    let later = countersign_core::Timestamp(suite::T0.millis() + 3_600_000);
    let (expired, _) = store
        .update("c1", later, Box::new(move |r| Ok(r.expire(later))))
        .await
        .unwrap();
    assert_eq!(expired.status, countersign_core::Status::Expired);
    let id = tokio::time::timeout(std::time::Duration::from_secs(10), changes.recv())
        .await
        .expect("announced")
        .unwrap();
    assert_eq!(id, "c1");
}
