//! The store test suite. Every test is a function of `Arc<dyn Store>` so each backend runs the
//! same suite; `sqlite` instantiates it for the embedded store.

mod suite;

use countersign_store::{SqliteStore, Store};
use std::sync::Arc;

fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
    (dir, Arc::new(store))
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

sqlite_suite!(
    insert_then_get_round_trips,
    idempotency_key_returns_the_first_record,
    concurrent_idempotent_inserts_create_one_record,
    refused_transition_writes_nothing,
    update_of_unknown_id_is_not_found,
    concurrent_updates_are_serialised,
    concurrent_redemption_succeeds_once,
    list_filters_by_status_oldest_first,
    expiry_queries_find_due_reviews,
    audit_log_is_gap_free_canonical_and_hashed,
    checkpoints_are_append_only,
    many_concurrent_inserts_all_commit,
    managed_keys_round_trip_and_revoke_once,
);

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

#[test]
fn sqlite_refuses_a_path_it_cannot_create() {
    let err = SqliteStore::open(std::path::Path::new("/proc/nonexistent/x.db"));
    assert!(err.is_err());
}
