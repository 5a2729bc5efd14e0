//! Persistence for action records and their events.
//!
//! One trait, [`Store`], that every backend implements and one shared test suite runs against.
//! Mutations go through [`Store::update`], which hands the current record to a *pure* domain
//! function and persists the result atomically with the events it produced: the store decides
//! nothing, it only makes the core's decisions durable and serialises them.
//!
//! **Architecture Invariant:** no method returns before its write is durably committed, so a
//! response sent after a store call never reports a decision a crash could lose.

mod sqlite;

pub use sqlite::SqliteStore;

use async_trait::async_trait;
use countersign_core::{ActionRecord, DomainError, Event, Status, Timestamp};

/// A pure transition applied to a stored record inside the store's transaction. It must check
/// everything before changing anything: on `Err`, the record must be left untouched.
pub type Transition = Box<dyn FnOnce(&mut ActionRecord) -> Result<Vec<Event>, DomainError> + Send>;

/// A storage failure (I/O, corruption, the writer gone). Never a domain refusal.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(String),
    /// A stored record could not be decoded.
    #[error("stored record {id} is unreadable: {message}")]
    Corrupt {
        /// The action id.
        id: String,
        /// What went wrong.
        message: String,
    },
    /// The store was shut down.
    #[error("the store is shutting down")]
    Closed,
}

/// Why an update did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// No action with that id.
    #[error("no such action")]
    NotFound,
    /// The domain refused the transition; nothing was written.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Storage failed; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The result of an insert.
#[derive(Debug, Clone)]
pub enum Inserted {
    /// A new record was stored.
    Created(ActionRecord),
    /// The requester already used this idempotency key: here is the first record, unchanged.
    Existing(ActionRecord),
}

/// Which records to list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only these statuses (empty: all).
    pub statuses: Vec<Status>,
    /// At most this many, oldest first.
    pub limit: usize,
}

/// A stored event with its position in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Position, from 1, gap-free.
    pub seq: i64,
    /// The action it belongs to.
    pub action_id: String,
    /// When it was recorded.
    pub at: Timestamp,
    /// What happened.
    pub event: Event,
}

/// Durable storage for action records.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new record and its events, unless the requester already used its idempotency key.
    async fn insert(
        &self,
        record: ActionRecord,
        events: Vec<Event>,
    ) -> Result<Inserted, StoreError>;

    /// Reads one record.
    async fn get(&self, id: &str) -> Result<Option<ActionRecord>, StoreError>;

    /// Applies `transition` to the current record and commits the new state with its events, or
    /// writes nothing if it fails. Concurrent updates of one record are serialised.
    async fn update(
        &self,
        id: &str,
        now: Timestamp,
        transition: Transition,
    ) -> Result<(ActionRecord, Vec<Event>), UpdateError>;

    /// Lists records, oldest first.
    async fn list(&self, filter: ListFilter) -> Result<Vec<ActionRecord>, StoreError>;

    /// Ids of open reviews whose deadline is at or before `now`.
    async fn due_for_expiry(&self, now: Timestamp, limit: usize)
        -> Result<Vec<String>, StoreError>;

    /// The earliest deadline of any open review.
    async fn next_expiry(&self) -> Result<Option<Timestamp>, StoreError>;

    /// Events from position `start` (inclusive), at most `limit`.
    async fn events(&self, start: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;
}
