//! The write operations both stores' single writers run, and the requests that make them.
//! Everything that can be done off the writer (canonical JSON of records and audit entries) is
//! done here, by the caller; a store only says how an operation reaches its writer
//! ([`WriteQueue`]).

use countersign_core::{ActionRecord, Event, Timestamp};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::entry::EntryParts;
use crate::{
    IdentityBinding, InsertRules, Inserted, KeyEvent, ManagedKey, OutboxChange, StoreError,
    StoredCheckpoint, StoredSecret, Transition, UpdateError,
};

/// One queued write and where its answer goes once the batch holding it is durable.
pub(crate) enum Op {
    Insert {
        record: Box<ActionRecord>,
        /// `reuse_open`, and the cap on the requester's open reviews.
        rules: InsertRules,
        /// `record` as JSON.
        body: String,
        events: Vec<EntryParts>,
        /// `(position in events, notification kind)` of the events reviewers hear of.
        notes: Vec<(usize, &'static str)>,
        reply: oneshot::Sender<Result<Inserted, StoreError>>,
    },
    Update {
        id: String,
        now: Timestamp,
        transition: Transition,
        reply: oneshot::Sender<Result<(ActionRecord, Vec<Event>), UpdateError>>,
    },
    /// Audit entries without a record change.
    Append {
        at: Timestamp,
        entries: Vec<(Option<String>, EntryParts)>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Checkpoint {
        checkpoint: StoredCheckpoint,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// A new managed key and its audit entry.
    CreateKey {
        key: ManagedKey,
        entry: EntryParts,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// An id bound to its source, unless already bound (the first binding wins).
    BindIdentity {
        binding: IdentityBinding,
        reply: oneshot::Sender<Result<IdentityBinding, StoreError>>,
    },
    /// A static secret (sealed) set or replaced, and its audit entry.
    SetSecret {
        secret: StoredSecret,
        entry: EntryParts,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// A console session started (`identity` is its identity as JSON).
    StartSession {
        session: Box<crate::ConsoleSession>,
        identity: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// A person's contact facts recorded (`identity` is their identity as JSON).
    RecordContact {
        contact: Box<crate::IdentityContact>,
        identity: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// A console session ended.
    EndSession {
        hash: [u8; 32],
        at: Timestamp,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// What happened to outbox notifications.
    Outbox {
        changes: Vec<OutboxChange>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Due notifications claimed for one delivery attempt.
    OutboxClaim {
        ids: Vec<i64>,
        now: Timestamp,
        until: Timestamp,
        reply: oneshot::Sender<Result<Vec<i64>, StoreError>>,
    },
    /// A key revoked, and its audit entry.
    RevokeKey {
        id: String,
        at: Timestamp,
        event_of: KeyEvent,
        reply: oneshot::Sender<Result<Option<ManagedKey>, StoreError>>,
    },
}

/// A store's way to its single writer, through which every write method of
/// [`Store`](crate::Store) goes. Only this crate's backends make one; another `Store` (a test's
/// wrapper over several stores) can only hand out theirs.
pub struct WriteQueue {
    send: Box<dyn Fn(Op) -> Result<(), StoreError> + Send + Sync>,
    /// Hears how long each write waited for its durable commit.
    commits: OnceLock<CommitObserver>,
}

type CommitObserver = Box<dyn Fn(Duration) + Send + Sync>;

impl WriteQueue {
    /// A queue that hands each operation to `send` (which fails only if the writer is gone).
    pub(crate) fn new(send: impl Fn(Op) -> Result<(), StoreError> + Send + Sync + 'static) -> Self {
        WriteQueue {
            send: Box::new(send),
            commits: OnceLock::new(),
        }
    }

    /// Hands `observe` the time each write then waits for its reply, from its queueing to its
    /// durable commit (the store commit latency the gateway's metrics show). Set once: returns
    /// `false`, keeping the first, if an observer was already set.
    pub fn observe_commits(&self, observe: impl Fn(Duration) + Send + Sync + 'static) -> bool {
        self.commits.set(Box::new(observe)).is_ok()
    }

    /// Queues `op`; fails only if the writer is gone.
    fn send(&self, op: Op) -> Result<(), StoreError> {
        (self.send)(op)
    }

    /// Waits for the reply to an operation just queued: the `store.commit` trace span, timed
    /// for the observer.
    async fn answer<T, E: From<StoreError>>(
        &self,
        rx: oneshot::Receiver<Result<T, E>>,
    ) -> Result<T, E> {
        let start = Instant::now();
        let reply = rx.instrument(tracing::debug_span!("store.commit")).await;
        if let Some(observe) = self.commits.get() {
            observe(start.elapsed());
        }
        reply.map_err(|_| E::from(StoreError::Closed))?
    }
}

pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Database(format!("encoding: {e}")))
}

pub(crate) async fn insert(
    w: &WriteQueue,
    record: ActionRecord,
    events: Vec<Event>,
    rules: InsertRules,
) -> Result<Inserted, StoreError> {
    let body = encode(&record)?;
    let notes = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.notification().map(|k| (i, k)))
        .collect();
    let events = events
        .iter()
        .map(|e| EntryParts::new(Some(&record.id), record.created_at, e))
        .collect::<Result<Vec<_>, _>>()?;
    let (reply, rx) = oneshot::channel();
    w.send(Op::Insert {
        record: Box::new(record),
        rules,
        body,
        events,
        notes,
        reply,
    })?;
    w.answer(rx).await
}

pub(crate) async fn update(
    w: &WriteQueue,
    id: &str,
    now: Timestamp,
    transition: Transition,
) -> Result<(ActionRecord, Vec<Event>), UpdateError> {
    let (reply, rx) = oneshot::channel();
    w.send(Op::Update {
        id: id.to_string(),
        now,
        transition,
        reply,
    })?;
    w.answer(rx).await
}

pub(crate) async fn record_events(
    w: &WriteQueue,
    at: Timestamp,
    events: Vec<(Option<String>, Event)>,
) -> Result<(), StoreError> {
    let entries = EntryParts::standalone(at, &events)?;
    let (reply, rx) = oneshot::channel();
    w.send(Op::Append { at, entries, reply })?;
    w.answer(rx).await
}

pub(crate) async fn add_checkpoint(
    w: &WriteQueue,
    checkpoint: StoredCheckpoint,
) -> Result<(), StoreError> {
    let (reply, rx) = oneshot::channel();
    w.send(Op::Checkpoint { checkpoint, reply })?;
    w.answer(rx).await
}

pub(crate) async fn create_key(
    w: &WriteQueue,
    key: ManagedKey,
    event: Event,
) -> Result<(), StoreError> {
    let entry = EntryParts::new(None, key.created_at, &event)?;
    let (reply, rx) = oneshot::channel();
    w.send(Op::CreateKey { key, entry, reply })?;
    w.answer(rx).await
}

pub(crate) async fn revoke_key(
    w: &WriteQueue,
    id: &str,
    at: Timestamp,
    event_of: KeyEvent,
) -> Result<Option<ManagedKey>, StoreError> {
    let (reply, rx) = oneshot::channel();
    w.send(Op::RevokeKey {
        id: id.to_string(),
        at,
        event_of,
        reply,
    })?;
    w.answer(rx).await
}

pub(crate) async fn bind_identity(
    w: &WriteQueue,
    binding: IdentityBinding,
) -> Result<IdentityBinding, StoreError> {
    let (reply, rx) = oneshot::channel();
    w.send(Op::BindIdentity { binding, reply })?;
    w.answer(rx).await
}

pub(crate) async fn set_secret(
    w: &WriteQueue,
    secret: StoredSecret,
    event: Event,
) -> Result<(), StoreError> {
    let entry = EntryParts::new(None, secret.set_at, &event)?;
    let (reply, rx) = oneshot::channel();
    w.send(Op::SetSecret {
        secret,
        entry,
        reply,
    })?;
    w.answer(rx).await
}

pub(crate) async fn outbox_record(
    w: &WriteQueue,
    changes: Vec<OutboxChange>,
) -> Result<(), StoreError> {
    let (reply, rx) = oneshot::channel();
    w.send(Op::Outbox { changes, reply })?;
    w.answer(rx).await
}

pub(crate) async fn outbox_claim(
    w: &WriteQueue,
    ids: Vec<i64>,
    now: Timestamp,
    until: Timestamp,
) -> Result<Vec<i64>, StoreError> {
    let (reply, rx) = oneshot::channel();
    w.send(Op::OutboxClaim {
        ids,
        now,
        until,
        reply,
    })?;
    w.answer(rx).await
}

pub(crate) async fn record_contact(
    w: &WriteQueue,
    mut contact: crate::IdentityContact,
) -> Result<(), StoreError> {
    // Compared lowercase by every reader: stored lowercase.
    contact.email = contact.email.map(|e| e.to_lowercase());
    contact.entra_oid = contact.entra_oid.map(|o| o.to_ascii_lowercase());
    contact.entra_tid = contact.entra_tid.map(|t| t.to_ascii_lowercase());
    let identity = encode(&contact.identity)?;
    let (reply, rx) = oneshot::channel();
    w.send(Op::RecordContact {
        contact: Box::new(contact),
        identity,
        reply,
    })?;
    w.answer(rx).await
}

pub(crate) async fn start_session(
    w: &WriteQueue,
    session: crate::ConsoleSession,
) -> Result<(), StoreError> {
    let identity = encode(&session.identity)?;
    let (reply, rx) = oneshot::channel();
    w.send(Op::StartSession {
        session: Box::new(session),
        identity,
        reply,
    })?;
    w.answer(rx).await
}

pub(crate) async fn end_session(
    w: &WriteQueue,
    hash: [u8; 32],
    at: Timestamp,
) -> Result<(), StoreError> {
    let (reply, rx) = oneshot::channel();
    w.send(Op::EndSession { hash, at, reply })?;
    w.answer(rx).await
}
