//! What each write means, once for every backend: a batch of queued operations is decided
//! against the rows it needs, read under the backend's write lock (SQLite's `BEGIN IMMEDIATE`,
//! PostgreSQL's `audit_head` row lock), then written and committed together. A backend only
//! reads the rows a batch [`Needs`] into [`Loaded`], and writes what the [`Batch`] decided.
//!
//! The log's frontier is kept between batches ([`Head`]) but trusted only when the log, read
//! under the lock, is still the size the frontier is of: another process (another replica,
//! `countersign keys create --config` beside a running gateway) may have appended since.

use countersign_audit::merkle::{stored_hash_owner, Frontier};
use countersign_audit::{Hash, TreeError};
use countersign_core::{ActionRecord, Event, Timestamp};
use std::collections::{HashMap, HashSet};
use tokio::sync::oneshot;

use crate::entry::EntryParts;
use crate::health::WriteHealth;
use crate::op::Op;
use crate::outbox::{NewNotification, Notification, OutboxState};
use crate::{
    IdentityBinding, Inserted, ManagedKey, OutboxChange, StoreError, StoredCheckpoint,
    StoredSecret, UpdateError,
};

/// Most operations committed in one transaction.
const MAX_BATCH: usize = 1024;

/// A batch: `first`, then what else is queued (`next`), up to [`MAX_BATCH`].
pub(crate) fn gather(first: Op, mut next: impl FnMut() -> Option<Op>) -> Vec<Op> {
    let mut ops = vec![first];
    while ops.len() < MAX_BATCH {
        match next() {
            Some(op) => ops.push(op),
            None => break,
        }
    }
    ops
}

/// After a batch's commit (or its failure): keeps its frontier for the next batch if it
/// committed, records the writer's health, and only now sends the replies.
pub(crate) fn finish(
    committed: Result<Frontier, StoreError>,
    head: &mut Head,
    health: &WriteHealth,
    done: Vec<Done>,
) {
    let committed = match committed {
        Ok(tree) => {
            head.set(Some(tree));
            health.succeeded();
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "group commit failed; nothing in the batch was recorded");
            head.set(None);
            health.failed(&e);
            Err(e)
        }
    };
    for d in done {
        d.send(&committed);
    }
}

/// What a batch must read, under the write lock, before it decides.
#[derive(Debug, Default)]
pub(crate) struct Needs {
    /// `(requester, idempotency key)` of inserts with a key.
    pub idempotency: Vec<(String, String)>,
    /// `(requester, submitted digest)` of `reuse_open` inserts.
    pub reusable: Vec<(String, String)>,
    /// Requesters of capped inserts that open a review, whose open reviews are counted.
    pub open_reviews: Vec<String>,
    /// Ids of records to update (locked where the backend locks rows).
    pub records: Vec<String>,
    /// Ids and hashes of the managed keys key operations name.
    pub key_ids: Vec<String>,
    pub key_hashes: Vec<[u8; 32]>,
    /// Normalised ids to bind.
    pub bindings: Vec<String>,
    /// Outbox notifications to claim.
    pub outbox: Vec<i64>,
}

impl Needs {
    pub(crate) fn of(ops: &[Op]) -> Needs {
        let mut needs = Needs::default();
        let mut reuse_seen = HashSet::new();
        for op in ops {
            match op {
                Op::Insert { record, rules, .. } => {
                    if let Some(k) = &record.idempotency_key {
                        needs
                            .idempotency
                            .push((record.requester.clone(), k.clone()));
                    }
                    // Only an insert that opens a review is checked against the cap (see
                    // `decide`); an allowed action's batch counts nothing.
                    if rules.max_open_reviews.is_some()
                        && record.status.is_open_review()
                        && !needs.open_reviews.contains(&record.requester)
                    {
                        needs.open_reviews.push(record.requester.clone());
                    }
                    if rules.reuse_open
                        && reuse_seen.insert((&record.requester, record.submitted_digest))
                    {
                        needs.reusable.push((
                            record.requester.clone(),
                            record.submitted_digest.to_string(),
                        ));
                    }
                }
                Op::Update { id, .. } => needs.records.push(id.clone()),
                Op::CreateKey { key, .. } => {
                    needs.key_ids.push(key.id.clone());
                    needs.key_hashes.push(key.hash);
                }
                Op::RevokeKey { id, .. } => needs.key_ids.push(id.clone()),
                Op::BindIdentity { binding, .. } => needs.bindings.push(binding.id_key.clone()),
                Op::OutboxClaim { ids, .. } => needs.outbox.extend(ids.iter().copied()),
                Op::Checkpoint { .. }
                | Op::Append { .. }
                | Op::Outbox { .. }
                | Op::SetSecret { .. }
                | Op::StartSession { .. }
                | Op::RecordContact { .. }
                | Op::EndSession { .. } => {}
            }
        }
        needs
    }
}

/// The rows a backend read for a batch's [`Needs`], under its write lock.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Records with one of the `(requester, idempotency key)` pairs asked for.
    pub idempotent: Vec<ActionRecord>,
    /// Records with one of the `(requester, digest)` pairs asked for, in a status that may
    /// answer a `reuse_open` insert (`REUSABLE_STATUSES`).
    pub reusable: Vec<ActionRecord>,
    /// The records to update that exist.
    pub records: Vec<ActionRecord>,
    /// Open reviews per requester asked for (a requester with none may be left out).
    pub open_reviews: Vec<(String, u64)>,
    /// Keys with one of the ids or hashes asked for.
    pub keys: Vec<ManagedKey>,
    /// Bindings of the ids asked for that exist.
    pub bindings: Vec<IdentityBinding>,
    /// The outbox notifications asked for that exist.
    pub outbox: Vec<Notification>,
}

/// The writer's frontier of the log between batches, trusted only after [`Head::frontier`]
/// compared it with the log's size read under the write lock.
#[derive(Debug, Default)]
pub(crate) struct Head(Option<Frontier>);

impl Head {
    /// The frontier of a log of `size` entries if this is it; `None` if it must be read
    /// ([`Frontier::indexes`]`(size)`): first use, a failed batch, or another writer appended.
    pub(crate) fn frontier(&self, size: u64) -> Option<Frontier> {
        match &self.0 {
            Some(f) if f.size() == size => Some(f.clone()),
            Some(f) => {
                tracing::info!(
                    was = f.size(),
                    now = size,
                    "another writer appended to the audit log; reading its head again"
                );
                None
            }
            None => None,
        }
    }

    /// After a batch: its frontier if it committed, else nothing.
    pub(crate) fn set(&mut self, frontier: Option<Frontier>) {
        self.0 = frontier;
    }
}

/// Audit rows a batch appends, column by column.
#[derive(Default)]
pub(crate) struct AuditRows {
    pub idx: Vec<i64>,
    pub action_id: Vec<Option<String>>,
    pub at: Vec<i64>,
    pub body: Vec<Vec<u8>>,
    pub hashes: Vec<Vec<u8>>,
}

/// One batch's view of the log and the records it touched: what it decided to write.
pub(crate) struct Batch {
    /// The log's frontier, as the batch has left it.
    pub tree: Frontier,
    pub audit: AuditRows,
    pub records: HashMap<String, ActionRecord>,
    /// Ids inserted by this batch, in order, with their encoded body if unchanged since.
    pub new: Vec<String>,
    pub fresh_body: HashMap<String, String>,
    new_set: HashSet<String>,
    /// Existing ids this batch changed.
    pub dirty: Vec<String>,
    dirty_set: HashSet<String>,
    idem: HashMap<(String, String), String>,
    /// Ids of the actions that may answer a `reuse_open` insert, by requester and submitted
    /// digest: the committed candidates, then what this batch inserts.
    reuse: HashMap<(String, String), Vec<String>>,
    /// Open reviews per requester of a capped insert: counted under the lock, then kept up to
    /// date by the batch's own inserts and transitions.
    open: HashMap<String, u64>,
    pub checkpoints: Vec<StoredCheckpoint>,
    /// Managed keys the batch's key operations name (read under the lock, which every key
    /// change takes), as the batch has left them.
    pub keys: HashMap<String, ManagedKey>,
    key_hashes: HashSet<[u8; 32]>,
    /// Ids of keys the batch creates, in order; then those it revokes that existed before.
    pub new_keys: Vec<String>,
    pub revoked_keys: Vec<String>,
    /// Identity bindings as the batch has left them, and those it adds, in order.
    bindings: HashMap<String, IdentityBinding>,
    pub new_bindings: Vec<IdentityBinding>,
    /// Static secrets the batch sets, in order (a later one of a name replaces an earlier).
    pub secrets: Vec<StoredSecret>,
    /// Console sessions the batch starts (each with its identity as JSON), and those it ends.
    pub new_sessions: Vec<(crate::ConsoleSession, String)>,
    pub ended_sessions: Vec<([u8; 32], Timestamp)>,
    /// Contact facts the batch records (each with its identity as JSON), in order: a later one
    /// of a source replaces an earlier one.
    pub contacts: Vec<(crate::IdentityContact, String)>,
    /// Notifications the batch's changes queue, in order (the outbox rows of their events).
    pub outbox: Vec<NewNotification>,
    /// What the delivery worker recorded about queued notifications.
    pub outbox_changes: Vec<OutboxChange>,
    /// Notifications to claim, read under the lock, as the batch has left them.
    outbox_rows: HashMap<i64, Notification>,
}

impl Batch {
    /// A batch starting from the log's `frontier` and the rows read for its needs.
    pub(crate) fn new(frontier: Frontier, needs: &Needs, loaded: Loaded) -> Batch {
        let mut batch = Batch {
            tree: frontier,
            audit: AuditRows::default(),
            records: HashMap::new(),
            new: Vec::new(),
            fresh_body: HashMap::new(),
            new_set: HashSet::new(),
            dirty: Vec::new(),
            dirty_set: HashSet::new(),
            idem: HashMap::new(),
            reuse: HashMap::new(),
            open: needs.open_reviews.iter().map(|r| (r.clone(), 0)).collect(),
            checkpoints: Vec::new(),
            keys: HashMap::new(),
            key_hashes: HashSet::new(),
            new_keys: Vec::new(),
            revoked_keys: Vec::new(),
            bindings: HashMap::new(),
            new_bindings: Vec::new(),
            secrets: Vec::new(),
            new_sessions: Vec::new(),
            ended_sessions: Vec::new(),
            contacts: Vec::new(),
            outbox: Vec::new(),
            outbox_changes: Vec::new(),
            outbox_rows: HashMap::new(),
        };
        for n in loaded.outbox {
            batch.outbox_rows.insert(n.id, n);
        }
        for (requester, n) in loaded.open_reviews {
            batch.open.insert(requester, n);
        }
        for key in loaded.keys {
            batch.key_hashes.insert(key.hash);
            batch.keys.insert(key.id.clone(), key);
        }
        for record in loaded.idempotent {
            if let Some(k) = &record.idempotency_key {
                batch
                    .idem
                    .insert((record.requester.clone(), k.clone()), record.id.clone());
            }
            batch.records.insert(record.id.clone(), record);
        }
        for record in loaded.reusable {
            batch
                .reuse
                .entry((
                    record.requester.clone(),
                    record.submitted_digest.to_string(),
                ))
                .or_default()
                .push(record.id.clone());
            batch.records.insert(record.id.clone(), record);
        }
        for record in loaded.records {
            batch.records.insert(record.id.clone(), record);
        }
        for b in loaded.bindings {
            batch.bindings.insert(b.id_key.clone(), b);
        }
        batch
    }

    fn append(
        &mut self,
        action_id: Option<&str>,
        at: Timestamp,
        entries: &[EntryParts],
    ) -> Result<(), StoreError> {
        for parts in entries {
            let index = self.tree.size();
            let body = parts.bytes(index);
            let hashes = self
                .tree
                .append(&body)
                .map_err(|e| StoreError::Database(format!("audit tree: {e}")))?;
            self.audit.idx.push(index as i64);
            self.audit.action_id.push(action_id.map(str::to_string));
            self.audit.at.push(at.millis());
            self.audit.body.push(body);
            self.audit.hashes.push(hashes.concat());
        }
        Ok(())
    }

    /// Queues the notifications of a reviewed action's events just appended from log index
    /// `first` on: one row per event reviewers hear of (`notes`: position among the events and
    /// kind) and per route of the decision that wants it. An action without a review (allowed
    /// or denied outright) notifies nobody.
    fn notify(
        &mut self,
        record: &ActionRecord,
        first: u64,
        notes: &[(usize, &'static str)],
        at: Timestamp,
    ) {
        if record.review.is_none() {
            return;
        }
        for &(i, kind) in notes {
            for route in record.decision.notify.iter().filter(|r| r.wants(kind)) {
                self.outbox.push(NewNotification {
                    action_id: record.id.clone(),
                    channel: route.channel.clone(),
                    kind,
                    audit_index: first + i as u64,
                    at,
                });
            }
        }
    }

    /// The records the batch inserts, each with its encoded body.
    pub(crate) fn inserted(&self) -> Result<Vec<(&ActionRecord, String)>, StoreError> {
        self.new
            .iter()
            .filter_map(|id| self.records.get(id))
            .map(|r| {
                let body = match self.fresh_body.get(&r.id) {
                    Some(b) => b.clone(),
                    None => crate::op::encode(r)?,
                };
                Ok((r, body))
            })
            .collect()
    }

    /// The existing records the batch changes, each with its encoded body.
    pub(crate) fn updated(&self) -> Result<Vec<(&ActionRecord, String)>, StoreError> {
        self.dirty
            .iter()
            .filter_map(|id| self.records.get(id))
            .map(|r| Ok((r, crate::op::encode(r)?)))
            .collect()
    }

    /// Ids of the actions to announce on the change feed once committed: those the batch
    /// changes, and those it inserts with a review. An action inserted without one (allowed or
    /// denied at once) is left out: nothing can be watching it yet (no long poll waits on it,
    /// no review lists it), and the allow path then wakes no listener — with 200 console pages
    /// open, announcing every allowed action halved the allow path's throughput.
    pub(crate) fn changed(&self) -> Vec<&str> {
        let reviewed = |id: &&String| self.records.get(*id).is_some_and(|r| r.review.is_some());
        self.dirty
            .iter()
            .chain(self.new.iter().filter(reviewed))
            .map(String::as_str)
            .collect()
    }
}

/// Stored hash `index` from the `hashes` column of the audit row that holds it (`blob`, of row
/// `stored_hash_owner(index).0`, if there is one).
pub(crate) fn stored_hash(index: u64, blob: Option<&[u8]>) -> Result<Hash, StoreError> {
    let (n, offset) = stored_hash_owner(index);
    let at = offset as usize * 32;
    blob.and_then(|b| b.get(at..at + 32))
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| StoreError::Corrupt {
            id: format!("audit entry {n}"),
            message: format!("no stored hash at offset {offset}"),
        })
}

/// A failure to read or extend the tree, as a storage failure.
pub(crate) fn tree_err(e: TreeError<StoreError>) -> StoreError {
    match e {
        TreeError::Read(inner) => inner,
        other => StoreError::Database(format!("audit tree: {other}")),
    }
}

/// The review deadline column of a record: set while its review is open.
pub(crate) fn review_deadline(r: &ActionRecord) -> Option<i64> {
    r.review
        .as_ref()
        .filter(|_| r.status.is_open_review())
        .map(|rv| rv.expires_at.millis())
}

/// Decodes a stored record body.
pub(crate) fn decode(id: &str, body: &str) -> Result<ActionRecord, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
        id: id.to_string(),
        message: e.to_string(),
    })
}

/// A decided operation waiting for the commit before its reply goes out.
pub(crate) enum Done {
    Insert(
        oneshot::Sender<Result<Inserted, StoreError>>,
        Result<Inserted, StoreError>,
    ),
    Update(
        oneshot::Sender<Result<(ActionRecord, Vec<Event>), UpdateError>>,
        Result<(ActionRecord, Vec<Event>), UpdateError>,
    ),
    Checkpoint(oneshot::Sender<Result<(), StoreError>>),
    Append(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
    KeyRevoked(
        oneshot::Sender<Result<Option<ManagedKey>, StoreError>>,
        Result<Option<ManagedKey>, StoreError>,
    ),
    Bound(
        oneshot::Sender<Result<IdentityBinding, StoreError>>,
        IdentityBinding,
    ),
    Claimed(oneshot::Sender<Result<Vec<i64>, StoreError>>, Vec<i64>),
}

impl Done {
    /// Sends the reply, now that the batch's commit is known to have succeeded or failed.
    pub(crate) fn send(self, committed: &Result<(), StoreError>) {
        let failed = || StoreError::Database("the commit failed; nothing was recorded".into());
        match (self, committed) {
            (Done::Insert(tx, r), Ok(())) => drop(tx.send(r)),
            (Done::Insert(tx, r), Err(e)) => drop(tx.send(match r {
                Ok(_) => Err(StoreError::Database(format!("{}: {e}", failed()))),
                err => err,
            })),
            (Done::Update(tx, r), Ok(())) => drop(tx.send(r)),
            (Done::Update(tx, r), Err(e)) => drop(tx.send(match r {
                Ok(_) => Err(UpdateError::Store(StoreError::Database(format!(
                    "{}: {e}",
                    failed()
                )))),
                err => err,
            })),
            (Done::Checkpoint(tx), Ok(())) => drop(tx.send(Ok(()))),
            (Done::Append(tx, r), Ok(())) => drop(tx.send(r)),
            (Done::Append(tx, r), Err(e)) => drop(tx.send(match r {
                Ok(()) => Err(StoreError::Database(format!("{}: {e}", failed()))),
                err => err,
            })),
            (Done::Checkpoint(tx), Err(e)) => {
                drop(tx.send(Err(StoreError::Database(format!("{}: {e}", failed())))))
            }
            (Done::KeyRevoked(tx, r), Ok(())) => drop(tx.send(r)),
            (Done::KeyRevoked(tx, r), Err(e)) => drop(tx.send(match r {
                Ok(Some(_)) => Err(StoreError::Database(format!("{}: {e}", failed()))),
                other => other,
            })),
            (Done::Bound(tx, b), Ok(())) => drop(tx.send(Ok(b))),
            (Done::Claimed(tx, ids), Ok(())) => drop(tx.send(Ok(ids))),
            (Done::Claimed(tx, _), Err(e)) => {
                drop(tx.send(Err(StoreError::Database(format!("{}: {e}", failed())))))
            }
            (Done::Bound(tx, _), Err(e)) => {
                drop(tx.send(Err(StoreError::Database(format!("{}: {e}", failed())))))
            }
        }
    }
}

/// Answers every operation of a batch that failed before it could decide (no connection, no
/// lock, unreadable rows), with `err`; returns `err` for the commit's outcome.
pub(crate) fn fail_all(ops: Vec<Op>, done: &mut Vec<Done>, err: StoreError) -> StoreError {
    for op in ops {
        match op {
            Op::Insert { reply, .. } => done.push(Done::Insert(reply, Err(StoreError::Closed))),
            Op::Update { reply, .. } => done.push(Done::Update(
                reply,
                Err(UpdateError::Store(StoreError::Closed)),
            )),
            Op::Checkpoint { reply, .. } => done.push(Done::Checkpoint(reply)),
            Op::Append { reply, .. }
            | Op::CreateKey { reply, .. }
            | Op::Outbox { reply, .. }
            | Op::SetSecret { reply, .. }
            | Op::StartSession { reply, .. }
            | Op::RecordContact { reply, .. }
            | Op::EndSession { reply, .. } => done.push(Done::Append(reply, Ok(()))),
            Op::RevokeKey { reply, .. } => done.push(Done::KeyRevoked(
                reply,
                Err(StoreError::Database(err.to_string())),
            )),
            Op::BindIdentity { reply, .. } => {
                drop(reply.send(Err(StoreError::Database(err.to_string()))))
            }
            Op::OutboxClaim { reply, .. } => done.push(Done::Claimed(reply, Vec::new())),
        }
    }
    // Every reply above is overridden by the failed commit's error in `Done::send`, except the
    // placeholder errors, which must carry the real cause too.
    for d in done.iter_mut() {
        match d {
            Done::Insert(_, r @ Err(StoreError::Closed)) => {
                *r = Err(StoreError::Database(err.to_string()))
            }
            Done::Update(_, r @ Err(UpdateError::Store(StoreError::Closed))) => {
                *r = Err(UpdateError::Store(StoreError::Database(err.to_string())))
            }
            _ => {}
        }
    }
    err
}

/// Decides one operation against the batch's in-memory state (the rows are read under the
/// write lock): the meaning of each write, for every backend.
pub(crate) fn decide(batch: &mut Batch, op: Op, done: &mut Vec<Done>) {
    match op {
        Op::Insert {
            record,
            rules,
            body,
            events,
            notes,
            reply,
        } => {
            let key = record
                .idempotency_key
                .as_ref()
                .map(|k| (record.requester.clone(), k.clone()));
            if let Some(first) = key.as_ref().and_then(|k| batch.idem.get(k)) {
                let existing = batch.records.get(first).cloned();
                done.push(Done::Insert(
                    reply,
                    existing
                        .map(Inserted::Existing)
                        .ok_or_else(|| StoreError::Database("idempotent record vanished".into())),
                ));
                return;
            }
            // Candidates read at the batch's start under the head lock, as this batch has left
            // them (a vote earlier in the batch counts), plus what it inserted.
            let digest_key = (
                record.requester.clone(),
                record.submitted_digest.to_string(),
            );
            if rules.reuse_open {
                let candidates = batch
                    .reuse
                    .get(&digest_key)
                    .into_iter()
                    .flatten()
                    .filter_map(|id| batch.records.get(id));
                if let Some(found) = ActionRecord::best_answer(candidates, &record) {
                    done.push(Done::Insert(reply, Ok(Inserted::Reused(found.clone()))));
                    return;
                }
            }
            if batch.records.contains_key(&record.id) {
                done.push(Done::Insert(
                    reply,
                    Err(StoreError::Database(format!(
                        "duplicate action id {}",
                        record.id
                    ))),
                ));
                return;
            }
            let opens = record.status.is_open_review();
            if let Some(max) = rules.max_open_reviews.filter(|_| opens) {
                let open = batch.open.get(&record.requester).copied().unwrap_or(0);
                if let Err(e) = record.check_open_reviews(open, max) {
                    done.push(Done::Insert(reply, Ok(Inserted::Refused(e))));
                    return;
                }
            }
            let start = (batch.tree.clone(), batch.audit.idx.len());
            let first = batch.tree.size();
            if let Err(e) = batch.append(Some(&record.id), record.created_at, &events) {
                rollback_audit(batch, start);
                done.push(Done::Insert(reply, Err(e)));
                return;
            }
            batch.notify(&record, first, &notes, record.created_at);
            if let Some(n) = batch.open.get_mut(&record.requester).filter(|_| opens) {
                *n += 1;
            }
            if let Some(k) = key {
                batch.idem.insert(k, record.id.clone());
            }
            batch
                .reuse
                .entry(digest_key)
                .or_default()
                .push(record.id.clone());
            batch.new.push(record.id.clone());
            batch.new_set.insert(record.id.clone());
            batch.fresh_body.insert(record.id.clone(), body);
            batch.records.insert(record.id.clone(), (*record).clone());
            done.push(Done::Insert(reply, Ok(Inserted::Created(*record))));
        }
        Op::Update {
            id,
            now,
            transition,
            reply,
        } => {
            let Some(current) = batch.records.get(&id) else {
                done.push(Done::Update(reply, Err(UpdateError::NotFound)));
                return;
            };
            let mut record = current.clone();
            let was_open = current.status.is_open_review();
            let events = match transition(&mut record) {
                Ok(ev) => ev,
                Err(e) => {
                    done.push(Done::Update(reply, Err(UpdateError::Domain(e))));
                    return;
                }
            };
            if events.is_empty() {
                done.push(Done::Update(reply, Ok((record, events))));
                return;
            }
            let parts = match events
                .iter()
                .map(|e| EntryParts::new(Some(&id), now, e))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(p) => p,
                Err(e) => {
                    done.push(Done::Update(reply, Err(UpdateError::Store(e))));
                    return;
                }
            };
            let start = (batch.tree.clone(), batch.audit.idx.len());
            let first = batch.tree.size();
            if let Err(e) = batch.append(Some(&id), now, &parts) {
                rollback_audit(batch, start);
                done.push(Done::Update(reply, Err(UpdateError::Store(e))));
                return;
            }
            let notes: Vec<(usize, &'static str)> = events
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.notification().map(|k| (i, k)))
                .collect();
            batch.notify(&record, first, &notes, now);
            let (was, is) = (was_open, record.status.is_open_review());
            if let Some(n) = batch.open.get_mut(&record.requester) {
                match (was, is) {
                    (true, false) => *n = n.saturating_sub(1),
                    (false, true) => *n += 1,
                    _ => {}
                }
            }
            batch.fresh_body.remove(&id);
            if !batch.new_set.contains(&id) && batch.dirty_set.insert(id.clone()) {
                batch.dirty.push(id.clone());
            }
            batch.records.insert(id, record.clone());
            done.push(Done::Update(reply, Ok((record, events))));
        }
        Op::BindIdentity { binding, reply } => {
            // The first binding of an id wins: the stored one, or one earlier in the batch.
            let held = batch
                .bindings
                .entry(binding.id_key.clone())
                .or_insert_with(|| {
                    batch.new_bindings.push(binding.clone());
                    binding
                })
                .clone();
            done.push(Done::Bound(reply, held));
        }
        Op::StartSession {
            session,
            identity,
            reply,
        } => {
            // A fresh random secret: a clash means a broken random source, refused.
            if batch
                .new_sessions
                .iter()
                .any(|(s, _)| s.hash == session.hash)
            {
                let clash = "a console session with the same secret exists".to_string();
                done.push(Done::Append(reply, Err(StoreError::Database(clash))));
                return;
            }
            batch.new_sessions.push((*session, identity));
            done.push(Done::Append(reply, Ok(())));
        }
        Op::RecordContact {
            contact,
            identity,
            reply,
        } => {
            // Recording facts always succeeds; the backends keep the newest per source.
            batch.contacts.push((*contact, identity));
            done.push(Done::Append(reply, Ok(())));
        }
        Op::EndSession { hash, at, reply } => {
            batch.ended_sessions.push((hash, at));
            done.push(Done::Append(reply, Ok(())));
        }
        Op::OutboxClaim {
            ids,
            now,
            until,
            reply,
        } => {
            // Only what is still queued and due: another worker's claim (or a delivery
            // recorded since the read) wins.
            let mut claimed = Vec::new();
            for id in ids {
                if let Some(row) = batch
                    .outbox_rows
                    .get_mut(&id)
                    .filter(|r| r.state == OutboxState::Queued && r.next_at <= now)
                {
                    row.next_at = until;
                    batch.outbox_changes.push(OutboxChange::Claim { id, until });
                    claimed.push(id);
                }
            }
            done.push(Done::Claimed(reply, claimed));
        }
        Op::Outbox { changes, reply } => {
            for change in &changes {
                match change {
                    OutboxChange::Delivered { id, .. } => {
                        if let Some(r) = batch.outbox_rows.get_mut(id) {
                            r.state = OutboxState::Delivered;
                        }
                    }
                    OutboxChange::Dead { id, .. } => {
                        if let Some(r) = batch.outbox_rows.get_mut(id) {
                            r.state = OutboxState::Dead;
                        }
                    }
                    OutboxChange::Retry { id, next_at, .. }
                    | OutboxChange::Claim { id, until: next_at } => {
                        if let Some(r) = batch.outbox_rows.get_mut(id) {
                            r.next_at = *next_at;
                        }
                    }
                    OutboxChange::Requeue { id, at } => {
                        if let Some(r) = batch.outbox_rows.get_mut(id) {
                            r.state = OutboxState::Queued;
                            r.next_at = *at;
                        }
                    }
                }
            }
            batch.outbox_changes.extend(changes);
            done.push(Done::Append(reply, Ok(())));
        }
        Op::Checkpoint { checkpoint, reply } => {
            batch.checkpoints.push(checkpoint);
            done.push(Done::Checkpoint(reply));
        }
        Op::Append { at, entries, reply } => {
            let start = (batch.tree.clone(), batch.audit.idx.len());
            let result = entries.iter().try_for_each(|(id, parts)| {
                batch.append(id.as_deref(), at, std::slice::from_ref(parts))
            });
            if result.is_err() {
                rollback_audit(batch, start);
            }
            done.push(Done::Append(reply, result));
        }
        Op::CreateKey { key, entry, reply } => {
            if batch.keys.contains_key(&key.id) || batch.key_hashes.contains(&key.hash) {
                let exists = format!("a key with id {} or the same secret exists", key.id);
                done.push(Done::Append(reply, Err(StoreError::Database(exists))));
                return;
            }
            let start = (batch.tree.clone(), batch.audit.idx.len());
            let result = batch.append(None, key.created_at, std::slice::from_ref(&entry));
            if result.is_err() {
                rollback_audit(batch, start);
            } else {
                batch.key_hashes.insert(key.hash);
                batch.new_keys.push(key.id.clone());
                batch.keys.insert(key.id.clone(), key);
            }
            done.push(Done::Append(reply, result));
        }
        Op::SetSecret {
            secret,
            entry,
            reply,
        } => {
            // Setting a secret always succeeds: the newest value of a name is the one.
            let start = (batch.tree.clone(), batch.audit.idx.len());
            let result = batch.append(None, secret.set_at, std::slice::from_ref(&entry));
            if result.is_err() {
                rollback_audit(batch, start);
            } else {
                batch.secrets.push(secret);
            }
            done.push(Done::Append(reply, result));
        }
        Op::RevokeKey {
            id,
            at,
            event_of,
            reply,
        } => {
            let Some(key) = batch.keys.get(&id).filter(|k| k.revoked_at.is_none()) else {
                done.push(Done::KeyRevoked(reply, Ok(None)));
                return;
            };
            let mut key = key.clone();
            key.revoked_at = Some(at);
            let start = (batch.tree.clone(), batch.audit.idx.len());
            let result = EntryParts::new(None, at, &event_of(&key))
                .and_then(|entry| batch.append(None, at, std::slice::from_ref(&entry)));
            if let Err(e) = result {
                rollback_audit(batch, start);
                done.push(Done::KeyRevoked(reply, Err(e)));
                return;
            }
            if !batch.new_keys.contains(&id) {
                batch.revoked_keys.push(id.clone());
            }
            batch.keys.insert(id, key.clone());
            done.push(Done::KeyRevoked(reply, Ok(Some(key))));
        }
    }
}

/// Forgets audit rows appended after `start`.
fn rollback_audit(batch: &mut Batch, (tree, rows): (Frontier, usize)) {
    batch.tree = tree;
    batch.audit.idx.truncate(rows);
    batch.audit.action_id.truncate(rows);
    batch.audit.at.truncate(rows);
    batch.audit.body.truncate(rows);
    batch.audit.hashes.truncate(rows);
}
