//! A store over several stores sharing one database (replicas, or processes on one SQLite
//! file), each call going to the next in turn.

use async_trait::async_trait;
use countersign_core::{ActionRecord, Timestamp};
use countersign_store::{
    Actions, AuditEntry, AuditLog, Contacts, Coordination, Hash, Keys, Lease, ListFilter,
    ManagedKey, Notification, Outbox, OutboxFilter, OutboxState, ReviewQuery, Store, StoreError,
    StoredCheckpoint, Writes,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A store that sends each call to the next of several replicas in turn, so the whole suite
/// runs with its concurrent writers spread over independent writer tasks and connections.
pub struct RoundRobin {
    replicas: Vec<Arc<dyn Store>>,
    next: AtomicUsize,
}

impl RoundRobin {
    /// One store over `replicas`.
    pub fn over(replicas: Vec<Arc<dyn Store>>) -> Arc<dyn Store> {
        Arc::new(RoundRobin {
            replicas,
            next: AtomicUsize::new(0),
        })
    }

    fn pick(&self) -> &dyn Store {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.replicas.len();
        &*self.replicas[i]
    }
}

impl Writes for RoundRobin {
    fn writer(&self) -> &countersign_store::WriteQueue {
        self.pick().writer()
    }
}

#[async_trait]
impl Actions for RoundRobin {
    async fn reviews_for(&self, query: ReviewQuery) -> Result<Vec<ActionRecord>, StoreError> {
        self.pick().reviews_for(query).await
    }

    async fn get(&self, id: &str) -> Result<Option<ActionRecord>, StoreError> {
        self.pick().get(id).await
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
}

#[async_trait]
impl AuditLog for RoundRobin {
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
}

#[async_trait]
impl Keys for RoundRobin {
    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ManagedKey>, StoreError> {
        self.pick().key_by_hash(hash).await
    }

    async fn list_keys(&self) -> Result<Vec<ManagedKey>, StoreError> {
        self.pick().list_keys().await
    }

    async fn identity_binding(
        &self,
        id_key: &str,
    ) -> Result<Option<countersign_store::IdentityBinding>, StoreError> {
        self.pick().identity_binding(id_key).await
    }

    async fn stored_secret(
        &self,
        name: &str,
    ) -> Result<Option<countersign_store::StoredSecret>, StoreError> {
        self.pick().stored_secret(name).await
    }

    async fn session_by_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<countersign_store::ConsoleSession>, StoreError> {
        self.pick().session_by_hash(hash).await
    }
}

#[async_trait]
impl Contacts for RoundRobin {
    async fn contacts(
        &self,
        query: &countersign_store::ContactQuery,
    ) -> Result<Vec<countersign_store::IdentityContact>, StoreError> {
        self.pick().contacts(query).await
    }
}

#[async_trait]
impl Outbox for RoundRobin {
    async fn outbox_due(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        self.pick().outbox_due(now, limit).await
    }

    async fn outbox_next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        self.pick().outbox_next_due().await
    }

    async fn outbox_list(&self, filter: OutboxFilter) -> Result<Vec<Notification>, StoreError> {
        self.pick().outbox_list(filter).await
    }

    async fn outbox_get(&self, id: i64) -> Result<Option<Notification>, StoreError> {
        self.pick().outbox_get(id).await
    }

    async fn outbox_counts(&self) -> Result<Vec<(OutboxState, String, u64)>, StoreError> {
        self.pick().outbox_counts().await
    }

    async fn channel_message(
        &self,
        action_id: &str,
        channel: &str,
    ) -> Result<Option<String>, StoreError> {
        self.pick().channel_message(action_id, channel).await
    }
}

#[async_trait]
impl Coordination for RoundRobin {
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        self.pick().changes()
    }

    fn changes_from_other_processes(&self) -> bool {
        self.pick().changes_from_other_processes()
    }

    async fn try_lead(&self) -> Result<Option<Box<dyn Lease>>, StoreError> {
        self.pick().try_lead().await
    }

    fn write_failure(&self) -> Option<String> {
        self.replicas.iter().find_map(|r| r.write_failure())
    }
}
