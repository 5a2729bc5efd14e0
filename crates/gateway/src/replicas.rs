//! Several replicas behind one database: opening any store, and waking this replica's long
//! polls when another replica commits a change. Which replica runs the background work is the
//! server bootstrap's leased-worker registry (`countersign-server`).

use std::sync::Arc;
use std::time::Duration;

use countersign_store::{Store, ANY_CHANGE};
use tokio::sync::broadcast::error::RecvError;

use crate::config::DatabaseUrl;
use crate::{Gateway, GatewayError};

/// How often a long poll re-reads its record even without a notification.
pub(crate) const SAFETY_RECHECK: Duration = Duration::from_secs(5);

/// Opens the store `db` names (running PostgreSQL migrations first).
pub async fn open_store(db: &DatabaseUrl) -> Result<Arc<dyn Store>, GatewayError> {
    match db {
        DatabaseUrl::Sqlite(path) => Ok(Arc::new(
            countersign_store::SqliteStore::open(path)
                .map_err(|e| GatewayError::Startup(format!("{}: {e}", path.display())))?,
        )),
        DatabaseUrl::Postgres(url) => Ok(Arc::new(
            countersign_store::PostgresStore::connect(url)
                .await
                .map_err(|e| GatewayError::Startup(format!("PostgreSQL: {e}")))?,
        )),
    }
}

impl Gateway {
    /// Wakes this replica's long polls on changes other replicas commit (a no-op on a store
    /// whose feed carries only this process's commits, whose waiters `transition` woke).
    pub async fn run_change_relay(self: Arc<Self>) {
        if !self.store.changes_from_other_processes() {
            return;
        }
        let Some(mut changes) = self.store.changes() else {
            return;
        };
        loop {
            match changes.recv().await {
                Ok(id) if id == ANY_CHANGE => self.wakeups.wake_all(),
                Ok(id) => self.wakeups.wake(&id),
                Err(RecvError::Lagged(_)) => self.wakeups.wake_all(),
                Err(RecvError::Closed) => return,
            }
        }
    }
}
