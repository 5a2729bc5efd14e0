//! Several replicas behind one database: opening any store, running background work on the
//! one replica holding the store's lease, and waking this replica's long polls when another
//! replica commits a change.

use std::sync::Arc;
use std::time::Duration;

use countersign_store::{Store, ANY_CHANGE};
use tokio::sync::broadcast::error::RecvError;

use crate::config::{Config, DatabaseUrl};
use crate::{Gateway, GatewayError};

/// How often a long poll re-reads its record even without a notification.
pub(crate) const SAFETY_RECHECK: Duration = Duration::from_secs(5);

/// How often a replica without the lease tries to take it, and the leader checks it still
/// holds it.
const LEASE_TICK: Duration = Duration::from_millis(500);

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
    /// Opens the store named by `config` (SQLite or PostgreSQL), then everything else.
    pub async fn open(config: &Config) -> Result<Arc<Gateway>, GatewayError> {
        let store = open_store(&config.database).await?;
        let gateway = Gateway::with_store(config, store)?;
        gateway.check_identities().await?;
        Ok(gateway)
    }

    /// Runs the expiry sweeper and the checkpoint signer whenever this process holds the
    /// store's lease, until the process ends. A replica that loses the lease (its session died)
    /// stops them and competes again; another takes over within about a second.
    pub async fn run_background(self: Arc<Self>) {
        loop {
            let lease = match self.store.try_lead().await {
                Ok(Some(l)) => l,
                Ok(None) => {
                    tokio::time::sleep(LEASE_TICK).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot ask for the background-work lease");
                    tokio::time::sleep(LEASE_TICK).await;
                    continue;
                }
            };
            tracing::info!("this replica now runs the expiry sweeper and checkpoint signer");
            let work = AbortOnDrop(vec![
                tokio::spawn(self.clone().run_sweeper()),
                tokio::spawn(self.clone().run_checkpointer()),
            ]);
            while lease.alive().await {
                tokio::time::sleep(LEASE_TICK).await;
            }
            tracing::warn!("lost the background-work lease; stopping background work");
            drop(work);
            drop(lease);
        }
    }

    /// Wakes this replica's long polls on changes other replicas commit (a no-op on a store
    /// only this process writes).
    pub async fn run_change_relay(self: Arc<Self>) {
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

/// Background tasks that stop when their owner does (also when the owner is aborted).
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}
