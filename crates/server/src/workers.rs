//! The registry of leased background workers: work that must run on exactly one replica at a
//! time (the expiry sweeper, the checkpoint signer, and whatever registers next, such as an
//! outbox) runs only while this process holds the store's lease. A worker registers once, by
//! name; the registry takes the lease, starts every worker, checks the lease every tick, and
//! stops them all when the lease is lost (then competes again).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use countersign_store::{Coordination, Lease, StoreError};

/// How often a replica without the lease tries to take it, and the leader checks it still
/// holds it (another replica takes over within about this long after a leader dies).
pub const LEASE_TICK: Duration = Duration::from_millis(500);

type Start = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Where the background-work lease comes from (the store; a fake in tests).
#[async_trait]
pub trait LeaseSource: Send + Sync {
    /// The lease if this process may take it now, `None` if another holds it.
    async fn try_lead(&self) -> Result<Option<Box<dyn Lease>>, StoreError>;
}

/// The store's lease (PostgreSQL's advisory lock; always granted on SQLite).
pub struct StoreLease(pub Arc<dyn Coordination>);

#[async_trait]
impl LeaseSource for StoreLease {
    async fn try_lead(&self) -> Result<Option<Box<dyn Lease>>, StoreError> {
        self.0.try_lead().await
    }
}

/// Workers that run only on the replica holding the lease.
#[derive(Default)]
pub struct Workers {
    leased: Vec<(&'static str, Start)>,
    tick: Option<Duration>,
}

impl Workers {
    /// An empty registry.
    pub fn new() -> Workers {
        Workers::default()
    }

    /// Registers a worker: `start` makes its future each time this replica takes the lease. The
    /// future runs until the lease is lost (it is then dropped at an `.await`).
    pub fn register<F, Fut>(&mut self, name: &'static str, start: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.leased
            .push((name, Box::new(move || Box::pin(start()))));
    }

    /// The registered workers' names, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.leased.iter().map(|(n, _)| *n).collect()
    }

    /// Checks the lease every `tick` instead of [`LEASE_TICK`].
    pub fn with_tick(mut self, tick: Duration) -> Workers {
        self.tick = Some(tick);
        self
    }

    /// Runs the registered workers whenever this process holds `leases`' lease, until the
    /// returned future is dropped (which stops the workers too).
    pub async fn run(self, leases: Arc<dyn LeaseSource>) {
        let tick = self.tick.unwrap_or(LEASE_TICK);
        if self.leased.is_empty() {
            return;
        }
        loop {
            let lease = match leases.try_lead().await {
                Ok(Some(l)) => l,
                Ok(None) => {
                    tokio::time::sleep(tick).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot ask for the background-work lease");
                    tokio::time::sleep(tick).await;
                    continue;
                }
            };
            tracing::info!(workers = ?self.names(), "this replica holds the background-work lease");
            let running = AbortOnDrop(
                self.leased
                    .iter()
                    .map(|(_, start)| tokio::spawn(start()))
                    .collect(),
            );
            while lease.alive().await {
                tokio::time::sleep(tick).await;
            }
            tracing::warn!("lost the background-work lease; stopping background work");
            drop(running);
            drop(lease);
        }
    }
}

/// Tasks that stop when their owner does (also when the owner is aborted).
pub(crate) struct AbortOnDrop(pub(crate) Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}
