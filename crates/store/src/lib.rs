//! Persistence for action records and their events.
//!
//! One store, [`Store`] (its aspects [`Actions`], [`AuditLog`], [`Keys`], [`Contacts`],
//! [`Outbox`] and [`Coordination`]),
//! that every backend implements and one shared test suite runs against. Mutations go through
//! [`Actions::update`], which hands the current record to a *pure* domain
//! function and persists the result atomically with the events it produced: the store decides
//! nothing, it only makes the core's decisions durable and serialises them.
//!
//! **Architecture Invariant:** no method returns before its write is durably committed, so a
//! response sent after a store call never reports a decision a crash could lose.

mod bindings;
mod contacts;
mod entry;
mod health;
mod keys;
mod migrate;
mod op;
mod outbox;
mod postgres;
mod secrets;
mod sessions;
mod sqlite;
mod write;

pub use bindings::IdentityBinding;
pub use contacts::{ContactQuery, IdentityContact};
pub use countersign_audit::Hash;
pub use entry::rfc3339;
pub use keys::ManagedKey;
pub use migrate::SchemaError;
pub use op::WriteQueue;
pub use sessions::ConsoleSession;

/// How long an ended or expired console session row is kept before a new session's write
/// deletes it, in milliseconds.
pub const fn sessions_keep_millis() -> i64 {
    sessions::KEEP_ENDED_MILLIS
}
pub use outbox::{Notification, OutboxChange, OutboxFilter, OutboxState};
pub use postgres::{
    migrate as migrate_postgres, LeaderLease, PostgresStore, ANY_CHANGE,
    SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION,
};
pub use secrets::StoredSecret;
pub use sqlite::{SqliteStore, SCHEMA_VERSION as SQLITE_SCHEMA_VERSION};

use async_trait::async_trait;
use countersign_core::{ActionRecord, DomainError, Event, Status, Timestamp};

/// The audit event of a key change, made from the key as changed.
pub type KeyEvent = Box<dyn FnOnce(&ManagedKey) -> Event + Send>;

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
    /// The database's schema is one this build cannot use: nothing was changed.
    #[error("{at}: {source}")]
    Schema {
        /// Which database (a SQLite file's path, or "the database").
        at: String,
        /// Why.
        source: SchemaError,
    },
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
    /// Asked with `reuse_open`: an earlier action of the requester [answers] the new one (the
    /// same request, still awaiting review or approved and unused); here it is, unchanged, and
    /// nothing was written.
    ///
    /// [answers]: ActionRecord::answers
    Reused(ActionRecord),
    /// The core refused to store it (the requester has too many open reviews); nothing was
    /// written.
    Refused(DomainError),
}

/// How an insert decides, in its atomic step, whether to write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InsertRules {
    /// Answer with an earlier action of the requester that
    /// [answers](ActionRecord::answers) the new one, if there is one.
    pub reuse_open: bool,
    /// At most this many open reviews per requester
    /// ([`ActionRecord::check_open_reviews`] decides).
    pub max_open_reviews: Option<u32>,
}

/// A page of the reviews a person may act on, newest first.
#[derive(Debug, Clone, Default)]
pub struct ReviewQuery {
    /// The approver entries admitting the person (`Approvers::keys_of`).
    pub approver_keys: Vec<String>,
    /// Only these statuses (never empty).
    pub statuses: Vec<Status>,
    /// The person: actions they requested or that were requested on their behalf are skipped.
    pub reviewer: String,
    /// Only actions older than this `(created_at, id)` (the previous page's last).
    pub before: Option<(Timestamp, String)>,
    /// At most this many.
    pub limit: usize,
}

/// Merges per-(entry, status) pages, each newest first, into one page without duplicates.
pub(crate) fn merge_pages(pages: Vec<Vec<(i64, String)>>, limit: usize) -> Vec<(i64, String)> {
    let mut all: Vec<(i64, String)> = pages.into_iter().flatten().collect();
    all.sort_unstable_by(|a, b| b.cmp(a));
    all.dedup();
    all.truncate(limit);
    all
}

/// Statuses an action that [answers](ActionRecord::answers) a new one can have: the SQL filter on
/// candidates, a superset the core's rule then narrows.
pub(crate) const REUSABLE_STATUSES: &str = "('pending', 'needs_clarification', 'approved')";

/// Which records to list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only these statuses (empty: all).
    pub statuses: Vec<Status>,
    /// At most this many, oldest first.
    pub limit: usize,
    /// Only actions after this `(created_at, id)` (the previous page's last): keyset pages.
    pub after: Option<(Timestamp, String)>,
}

/// One entry of the audit log: its position and its canonical bytes (what is hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the log, from 0, gap-free.
    pub index: u64,
    /// The action it belongs to, if any.
    pub action_id: Option<String>,
    /// When it was recorded.
    pub at: Timestamp,
    /// RFC 8785 canonical JSON: `{"action_id","actor","event","index","time","type"}`.
    pub body: Vec<u8>,
}

/// A signed checkpoint (a C2SP signed note) of the log at `size` entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size it commits to.
    pub size: u64,
    /// When it was signed.
    pub at: Timestamp,
    /// The signed note text.
    pub note: String,
}

/// Durable storage for action records: every aspect of a store, as one trait object
/// (`Arc<dyn Store>`). Callers import the aspect they use ([`Actions`], [`AuditLog`], [`Keys`],
/// [`Coordination`]), and a consumer that needs one aspect takes that trait alone.
///
/// Every write goes to the store's single writer ([`Writes::writer`]) and means the same on
/// every backend (`write.rs`); a backend implements the reads and how its writer reads and
/// writes rows. The write methods are provided.
pub trait Store: Actions + AuditLog + Keys + Contacts + Outbox + Coordination {}

impl<T: Actions + AuditLog + Keys + Contacts + Outbox + Coordination + ?Sized> Store for T {}

/// The way to a store's single writer, which every provided write method takes.
pub trait Writes: Send + Sync + 'static {
    /// This store's writer.
    fn writer(&self) -> &WriteQueue;
}

/// Action records: inserts, transitions, and the reads of records and reviews.
#[async_trait]
pub trait Actions: Writes {
    /// Stores a new record and its events, unless the requester already used its idempotency key.
    async fn insert(
        &self,
        record: ActionRecord,
        events: Vec<Event>,
    ) -> Result<Inserted, StoreError> {
        self.insert_with(record, events, false).await
    }

    /// [`insert`](Actions::insert); with `reuse_open`, an earlier action of the same requester that
    /// [answers](ActionRecord::answers) the new one is returned as [`Inserted::Reused`] instead
    /// and nothing is written. The idempotency lookup comes first. Lookup and insert are one
    /// atomic step: concurrent identical submissions with `reuse_open` store one action.
    async fn insert_with(
        &self,
        record: ActionRecord,
        events: Vec<Event>,
        reuse_open: bool,
    ) -> Result<Inserted, StoreError> {
        let rules = InsertRules {
            reuse_open,
            max_open_reviews: None,
        };
        self.insert_ruled(record, events, rules).await
    }

    /// [`insert_with`](Actions::insert_with), and with `max_open_reviews` the requester's open
    /// reviews are counted in the same atomic step and the core's
    /// [`check_open_reviews`](ActionRecord::check_open_reviews) may refuse the insert
    /// ([`Inserted::Refused`]): concurrent submissions never exceed the cap.
    async fn insert_ruled(
        &self,
        record: ActionRecord,
        events: Vec<Event>,
        rules: InsertRules,
    ) -> Result<Inserted, StoreError> {
        op::insert(self.writer(), record, events, rules).await
    }

    /// One page of the actions whose review names one of `query.approver_keys` as an approver,
    /// in `query.statuses`, not requested by or for `query.reviewer`, newest first (by
    /// `created_at`, then id), found through an index of each review's approver entries
    /// without scanning other reviews. The caller still asks the core
    /// ([`ActionRecord::listed_for_reviewer`]) about each one.
    async fn reviews_for(&self, query: ReviewQuery) -> Result<Vec<ActionRecord>, StoreError>;

    /// Reads one record.
    async fn get(&self, id: &str) -> Result<Option<ActionRecord>, StoreError>;

    /// Applies `transition` to the current record and commits the new state with its events, or
    /// writes nothing if it fails. Concurrent updates of one record are serialised.
    async fn update(
        &self,
        id: &str,
        now: Timestamp,
        transition: Transition,
    ) -> Result<(ActionRecord, Vec<Event>), UpdateError> {
        op::update(self.writer(), id, now, transition).await
    }

    /// Appends events that change no record to the audit log: refused attempts, policy and
    /// configuration loads. Each names its action, if any.
    async fn record_events(
        &self,
        at: Timestamp,
        events: Vec<(Option<String>, Event)>,
    ) -> Result<(), StoreError> {
        op::record_events(self.writer(), at, events).await
    }

    /// Lists records, oldest first (by `created_at`, then id), filtered and paged in the
    /// database.
    async fn list(&self, filter: ListFilter) -> Result<Vec<ActionRecord>, StoreError>;

    /// Ids of open reviews whose deadline is at or before `now`.
    async fn due_for_expiry(&self, now: Timestamp, limit: usize)
        -> Result<Vec<String>, StoreError>;

    /// The earliest deadline of any open review.
    async fn next_expiry(&self) -> Result<Option<Timestamp>, StoreError>;

    /// How many reviews are open (pending or waiting for a clarification), across every
    /// replica writing to this store.
    async fn open_reviews(&self) -> Result<u64, StoreError>;
}

/// The audit log: its entries, stored Merkle hashes and signed checkpoints.
#[async_trait]
pub trait AuditLog: Writes {
    /// Number of entries in the audit log.
    async fn audit_size(&self) -> Result<u64, StoreError>;

    /// Audit entries from index `start`, at most `limit`.
    async fn audit_entries(&self, start: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;

    /// Stored Merkle tree hashes by their stored-hash index (see `countersign_audit::merkle`).
    async fn audit_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError>;

    /// Indexes of an action's audit entries, in order.
    async fn action_audit_indexes(&self, action_id: &str) -> Result<Vec<u64>, StoreError>;

    /// The newest signed checkpoint.
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError>;

    /// Every signed checkpoint, oldest (smallest) first.
    async fn audit_checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError>;

    /// Stores a signed checkpoint. Checkpoints are append-only: one per size, first one wins.
    async fn add_checkpoint(&self, checkpoint: StoredCheckpoint) -> Result<(), StoreError> {
        op::add_checkpoint(self.writer(), checkpoint).await
    }
}

/// Managed API keys, the identity registry, and sealed static secrets.
#[async_trait]
pub trait Keys: Writes {
    /// Stores a new managed API key (its hash only) and appends `event`, its audit entry, in
    /// the same transaction: a key never exists without the entry that says who made it. Fails,
    /// writing nothing, if the id or hash exists.
    async fn create_key(&self, key: ManagedKey, event: Event) -> Result<(), StoreError> {
        op::create_key(self.writer(), key, event).await
    }

    /// Marks a key revoked at `at` and appends the audit entry `event_of` makes of the revoked
    /// key, in the same transaction. `None`, writing nothing, if there is no such unrevoked key.
    async fn revoke_key(
        &self,
        id: &str,
        at: Timestamp,
        event_of: KeyEvent,
    ) -> Result<Option<ManagedKey>, StoreError> {
        op::revoke_key(self.writer(), id, at, event_of).await
    }

    /// The key whose secret hashes to `hash`, revoked or not (read on every request, so a
    /// revocation holds on every replica at once).
    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ManagedKey>, StoreError>;

    /// Every key, oldest first.
    async fn list_keys(&self) -> Result<Vec<ManagedKey>, StoreError>;

    /// Binds `binding.id_key` to `binding.source` unless it is bound already, atomically across
    /// every process sharing the store; returns the binding that holds (the first one wins).
    async fn bind_identity(&self, binding: IdentityBinding) -> Result<IdentityBinding, StoreError> {
        op::bind_identity(self.writer(), binding).await
    }

    /// The binding of a normalised id, if any.
    async fn identity_binding(&self, id_key: &str) -> Result<Option<IdentityBinding>, StoreError>;

    /// Stores a static secret, sealed by the caller (the store never sees its value), replacing
    /// any of the same name, and appends `event`, its audit entry, in the same transaction.
    async fn set_secret(&self, secret: StoredSecret, event: Event) -> Result<(), StoreError> {
        op::set_secret(self.writer(), secret, event).await
    }

    /// The sealed static secret named `name`, if set.
    async fn stored_secret(&self, name: &str) -> Result<Option<StoredSecret>, StoreError>;

    /// Starts a console session (its row, durable on return); ended and long-expired rows are
    /// deleted in the same transaction.
    async fn start_session(&self, session: ConsoleSession) -> Result<(), StoreError> {
        op::start_session(self.writer(), session).await
    }

    /// Ends the console session whose secret hashes to `hash` (logout), on every replica at
    /// once; ending an unknown or ended session does nothing.
    async fn end_session(&self, hash: [u8; 32], at: Timestamp) -> Result<(), StoreError> {
        op::end_session(self.writer(), hash, at).await
    }

    /// The console session whose secret hashes to `hash`, if any (live or not: the caller
    /// checks [`ConsoleSession::live_at`]).
    async fn session_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ConsoleSession>, StoreError>;
}

/// How people from the identity provider are reached in chat (issue #15): the verified email
/// and Entra object id their last sign-in proved, per OIDC source.
#[async_trait]
pub trait Contacts: Writes {
    /// Records `contact`, replacing its source's row unless that one was recorded later.
    async fn record_contact(&self, contact: IdentityContact) -> Result<(), StoreError> {
        op::record_contact(self.writer(), contact).await
    }

    /// The recorded contacts `query` names (at most 16; more is an ambiguity anyway).
    async fn contacts(&self, query: &ContactQuery) -> Result<Vec<IdentityContact>, StoreError>;
}

/// The notification outbox: rows are queued by the write path itself (`write.rs`), in the
/// transaction of the change they tell of; the delivery worker reads what is due and records
/// each attempt's outcome through the single writer.
#[async_trait]
pub trait Outbox: Writes {
    /// Queued notifications due at `now`, oldest first, at most one per action and channel
    /// (the next one of each, so a channel hears of an action's changes in order).
    async fn outbox_due(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError>;

    /// The earliest time a queued notification is due.
    async fn outbox_next_due(&self) -> Result<Option<Timestamp>, StoreError>;

    /// A page of notifications, oldest first.
    async fn outbox_list(&self, filter: OutboxFilter) -> Result<Vec<Notification>, StoreError>;

    /// One notification.
    async fn outbox_get(&self, id: i64) -> Result<Option<Notification>, StoreError>;

    /// How many notifications there are per state and channel (across every replica).
    async fn outbox_counts(&self) -> Result<Vec<(OutboxState, String, u64)>, StoreError>;

    /// The channel's id of the message it made for an action (recorded at delivery), to
    /// update it in place.
    async fn channel_message(
        &self,
        action_id: &str,
        channel: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Claims due notifications for one delivery attempt each: of `ids`, those still queued
    /// and due at `now` are made not due before `until` and returned. Two workers (processes
    /// sharing a SQLite file, a replica losing its lease mid-round) never claim one row at once.
    async fn outbox_claim(
        &self,
        ids: Vec<i64>,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<i64>, StoreError> {
        op::outbox_claim(self.writer(), ids, now, until).await
    }

    /// Records what happened to notifications (durably, like every write).
    async fn outbox_record(&self, changes: Vec<OutboxChange>) -> Result<(), StoreError> {
        op::outbox_record(self.writer(), changes).await
    }
}

/// What processes sharing a store coordinate by: the change feed, the writer's health and the
/// background-work lease.
#[async_trait]
pub trait Coordination: Send + Sync + 'static {
    /// Ids of actions whose changes were committed, as they land, sent after the commit is
    /// durable ([`ANY_CHANGE`] when some may have been missed). PostgreSQL announces every
    /// replica's commits; SQLite this process's (its writer's batches). `None`: no feed.
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }

    /// Whether [`Coordination::changes`] carries other processes' commits (PostgreSQL's
    /// announcements), which a replica must relay to its long polls. SQLite's feed holds only
    /// this process's commits, whose waiters the gateway already woke: no relay (one wake-up
    /// hop less per commit on the allow path).
    fn changes_from_other_processes(&self) -> bool {
        false
    }

    /// Why this store cannot write right now: its writer's last storage failure (a failed
    /// commit, a transaction it could not begin, an operation the database refused), until a
    /// later write succeeds. `None` while writes succeed. What a readiness probe reports.
    fn write_failure(&self) -> Option<String> {
        None
    }

    /// Tries to take the lease for background work that must run on one process at a time
    /// (expiry sweeper, checkpoint signer). `None`: another process holds it. A store only this
    /// process opens grants it at once, for good.
    async fn try_lead(&self) -> Result<Option<Box<dyn Lease>>, StoreError> {
        Ok(Some(Box::new(SoleWriter)))
    }
}

/// A held lease for background work; dropping it gives the lease up.
#[async_trait]
pub trait Lease: Send + Sync {
    /// Whether the lease is still held (false once its holder's session is gone).
    async fn alive(&self) -> bool;
}

/// The lease of a store only one process opens.
struct SoleWriter;

#[async_trait]
impl Lease for SoleWriter {
    async fn alive(&self) -> bool {
        true
    }
}
