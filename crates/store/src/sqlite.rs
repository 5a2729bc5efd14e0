//! The embedded SQLite store: WAL with `synchronous=FULL`, one writer thread that commits queued
//! operations together (group commit), and a small pool of read connections.
//!
//! Why one writer thread: SQLite allows one writer at a time anyway, and batching many
//! operations into one durable commit turns thousands of fsyncs a second into a few hundred
//! (measured ~340k rows/s in batches against ~5k rows/s with one commit per row). It also
//! serialises read-modify-write transitions of a record without any locking protocol.

use async_trait::async_trait;
use countersign_core::{ActionRecord, Status, Timestamp};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

use countersign_audit::merkle::{stored_hash_owner, Frontier};
use countersign_audit::{Hash, HashReader};

use crate::health::WriteHealth;
use crate::migrate::{self, Column, Migration};
use crate::op::{Op, WriteQueue};
use crate::write::{
    decide, decode, fail_all, finish, gather, review_deadline, stored_hash, tree_err, Batch, Done,
    Head, Loaded, Needs,
};
use crate::{
    Actions, AuditEntry, AuditLog, ContactQuery, Contacts, Coordination, IdentityBinding,
    IdentityContact, Keys, ListFilter, ManagedKey, Notification, Outbox, OutboxFilter, OutboxState,
    ReviewQuery, StoreError, StoredCheckpoint, StoredSecret, Writes,
};

/// The SQLite schema's history, oldest first (see `migrate.rs`). Version 3 is the first release
/// (1 and 2 were development versions, refused); a new file gets every step. Every statement is
/// written to be harmless on a file that already has what it makes (`IF NOT EXISTS`,
/// `add_columns`), since an old file may or may not have the managed-key table.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 3,
        add_columns: &[],
        sql: "
CREATE TABLE IF NOT EXISTS actions (
    id TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    idempotency_key TEXT,
    status TEXT NOT NULL,
    review_expires_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS actions_idempotency
    ON actions(requester, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS actions_open_reviews
    ON actions(review_expires_at) WHERE status IN ('pending', 'needs_clarification');
CREATE INDEX IF NOT EXISTS actions_status ON actions(status, created_at);
CREATE TABLE IF NOT EXISTS audit_entries (
    idx INTEGER PRIMARY KEY,
    action_id TEXT,
    at INTEGER NOT NULL,
    body BLOB NOT NULL,
    -- the Merkle hashes appending this entry stored (its leaf hash, then one per perfect subtree
    -- it completed), i.e. stored hashes stored_hash_index(0, idx) on, 32 bytes each
    hashes BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_entries_action ON audit_entries(action_id) WHERE action_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    note TEXT NOT NULL
);
",
    },
    // The submitted digest (`sha256:<hex>`) as a column, for `reuse_open`, filled from each
    // record's body. The digest index is partial: only the statuses `reuse_open` looks for
    // (`REUSABLE_STATUSES`, written out here), so an allowed action's commit does not also write
    // an index page it will never be looked up by (an early schema-4 file's full index is
    // replaced).
    Migration {
        version: 4,
        add_columns: &[Column {
            table: "actions",
            name: "digest",
            decl: "TEXT",
        }],
        sql: "
UPDATE actions SET digest = json_extract(body, '$.submitted_digest');
DROP INDEX IF EXISTS actions_requester_digest;
CREATE INDEX IF NOT EXISTS actions_reusable_digest ON actions(requester, digest)
    WHERE status IN ('pending', 'needs_clarification', 'approved');
",
    },
    // Each review's approver entries (`group:NAME`, `human:ID`), one row per entry, with the
    // action's status and age, so a reviewer's page of reviews is an index range per entry they
    // hold, newest first, however many other reviews are open (filled from the stored bodies);
    // and the requester's open reviews counted through an index for
    // `max_open_reviews_per_requester`.
    Migration {
        version: 5,
        add_columns: &[],
        sql: "
CREATE TABLE IF NOT EXISTS review_approvers (
    approver TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    id TEXT NOT NULL,
    requester TEXT NOT NULL,
    on_behalf_of TEXT,
    PRIMARY KEY (approver, status, created_at, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS review_approvers_id ON review_approvers(id);
CREATE INDEX IF NOT EXISTS actions_open_by_requester ON actions(requester)
    WHERE status IN ('pending', 'needs_clarification');
INSERT OR IGNORE INTO review_approvers (approver, status, created_at, id, requester, on_behalf_of)
SELECT 'group:' || g.value, a.status, a.created_at, a.id, a.requester,
       json_extract(a.body, '$.on_behalf_of')
FROM actions a, json_each(a.body, '$.review.requirements') q,
     json_each(q.value, '$.approvers.groups') g;
INSERT OR IGNORE INTO review_approvers (approver, status, created_at, id, requester, on_behalf_of)
SELECT 'human:' || h.value, a.status, a.created_at, a.id, a.requester,
       json_extract(a.body, '$.on_behalf_of')
FROM actions a, json_each(a.body, '$.review.requirements') q,
     json_each(q.value, '$.approvers.humans') h;
",
    },
    // Managed keys (only their SHA-256) with the human who sponsors a key's agent, and the
    // identity registry. Files before this step may hold the key table without `sponsor`, or
    // none (it was added without a version of its own).
    Migration {
        version: 6,
        add_columns: &[Column {
            table: "api_keys",
            name: "sponsor",
            decl: "TEXT",
        }],
        sql: "
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    identity TEXT NOT NULL,
    kind TEXT NOT NULL,
    groups TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    sponsor TEXT
);
CREATE TABLE IF NOT EXISTS identity_bindings (
    id_key TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    first_seen INTEGER NOT NULL
);
",
    },
    // The notification outbox (issue #15): one row per notification and channel, written in
    // the transaction of the change it tells of; ids never reused (`AUTOINCREMENT`), since a
    // row's id is the `webhook-id` receivers deduplicate by. And the message each chat channel
    // made for an action, to update it in place.
    Migration {
        version: 7,
        add_columns: &[],
        sql: "
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    action_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    audit_index INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    next_at INTEGER NOT NULL,
    delivered_at INTEGER,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_queued ON outbox(next_at, id) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS outbox_queued_action ON outbox(action_id, channel, id)
    WHERE state = 'queued';
CREATE TABLE IF NOT EXISTS channel_messages (
    action_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (action_id, channel)
);
",
    },
    // Static secrets (issue #18), sealed by the gateway: the store holds only the sealed bytes.
    // (Version 7 is another branch's step; the planner takes steps above a file's version.)
    Migration {
        version: 8,
        add_columns: &[],
        sql: "
CREATE TABLE IF NOT EXISTS stored_secrets (
    name TEXT PRIMARY KEY,
    sealed BLOB NOT NULL,
    set_by TEXT NOT NULL,
    set_at INTEGER NOT NULL
);
",
    },
    // Console sessions (issue #16): the SHA-256 of each session's secret, the identity its ID
    // token proved (JSON), whether it showed MFA, and its life. (Version 9: 7 and 8 are taken
    // by work landing beside it.)
    Migration {
        version: 9,
        add_columns: &[],
        sql: "
CREATE TABLE IF NOT EXISTS console_sessions (
    hash BLOB PRIMARY KEY,
    identity TEXT NOT NULL,
    mfa INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ended_at INTEGER
);
",
    },
    // How people from the identity provider are reached in chat (issue #15): per OIDC source,
    // the identity as last admitted (JSON), its verified email and Entra object id and tenant,
    // all lowercase.
    Migration {
        version: 10,
        add_columns: &[],
        sql: "
CREATE TABLE IF NOT EXISTS identity_contacts (
    source TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    email TEXT,
    entra_oid TEXT,
    entra_tid TEXT,
    recorded_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS identity_contacts_email ON identity_contacts(email)
    WHERE email IS NOT NULL;
CREATE INDEX IF NOT EXISTS identity_contacts_entra_oid ON identity_contacts(entra_oid)
    WHERE entra_oid IS NOT NULL;
",
    },
];

/// The newest SQLite schema version this build knows (the last step's).
pub const SCHEMA_VERSION: i32 = migrate::latest(MIGRATIONS);

/// The oldest schema version a file can be migrated from (older ones were development builds).
const OLDEST_MIGRATABLE: i32 = 3;

/// Brings the file `conn` has open to the newest schema: reads its version and applies the
/// pending steps ([`migrate::plan`]) in one `BEGIN IMMEDIATE` transaction with the new
/// `user_version`, so two processes opening one file at once migrate it once.
fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let schema_err = |source| StoreError::Schema {
        at: path.display().to_string(),
        source,
    };
    exec(conn, "BEGIN IMMEDIATE").map_err(db_err)?;
    let applied = (|| -> Result<(), StoreError> {
        let stored: i32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db_err)?;
        let steps = migrate::plan(stored, MIGRATIONS, OLDEST_MIGRATABLE).map_err(schema_err)?;
        for step in steps {
            for column in step.add_columns {
                let columns: Vec<String> = conn
                    .prepare("SELECT name FROM pragma_table_info(?1)")
                    .and_then(|mut s| s.query_map([column.table], |r| r.get(0))?.collect())
                    .map_err(db_err)?;
                if !columns.is_empty() && !columns.iter().any(|c| c == column.name) {
                    conn.execute_batch(&format!(
                        "ALTER TABLE {} ADD COLUMN {} {};",
                        column.table, column.name, column.decl
                    ))
                    .map_err(db_err)?;
                }
            }
            conn.execute_batch(step.sql).map_err(db_err)?;
        }
        if let Some(last) = steps.last() {
            conn.pragma_update(None, "user_version", last.version)
                .map_err(db_err)?;
        }
        Ok(())
    })();
    match applied {
        Ok(()) => exec(conn, "COMMIT").map_err(db_err),
        Err(e) => {
            let _ = exec(conn, "ROLLBACK");
            Err(e)
        }
    }
}

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// The embedded SQLite store.
pub struct SqliteStore {
    writer: WriteQueue,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    health: WriteHealth,
    /// Ids of the actions each committed batch inserted or changed, sent after the commit.
    changes: broadcast::Sender<String>,
}

fn open(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(db_err)?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(db_err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db_err)?;
    Ok(conn)
}

/// Creates the database file, empty (a valid SQLite database), readable and writable only by
/// its owner (0600), if it does not exist: SQLite would create it world-readable (0644), and
/// gives the `-wal` and `-shm` files it makes beside it the database file's mode.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Database(format!("{}: {e}", path.display()))),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Database(format!("{}: {e}", dir.display())))?;
        }
        create_private(path)?;
        let conn = open(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(db_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database(format!(
                "could not enable WAL (journal_mode is {mode})"
            )));
        }
        migrate(&conn, path)?;
        let (tx, rx) = mpsc::channel();
        let health = WriteHealth::default();
        let writer_health = health.clone();
        let (changes, _) = broadcast::channel(4096);
        let writer_changes = changes.clone();
        std::thread::Builder::new()
            .name("countersign-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, writer_health, writer_changes))
            .map_err(|e| StoreError::Database(format!("cannot start writer thread: {e}")))?;
        Ok(SqliteStore {
            writer: WriteQueue::new(move |op| tx.send(op).map_err(|_| StoreError::Closed)),
            readers: Arc::new(Mutex::new(Vec::new())),
            path: path.to_path_buf(),
            health,
            changes,
        })
    }

    /// Runs `f` with a pooled read connection.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.readers.lock().ok().and_then(|mut p| p.pop());
        let conn = match pooled {
            Some(c) => c,
            None => open(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?,
        };
        let out = f(&conn);
        if let Ok(mut pool) = self.readers.lock() {
            if pool.len() < 8 {
                pool.push(conn);
            }
        }
        out
    }
}

/// Stored Merkle hashes read through a connection (inside the writer's transaction, so hashes
/// appended earlier in the same batch are visible).
struct ConnHashes<'a>(&'a Connection);

impl HashReader for ConnHashes<'_> {
    type Error = StoreError;

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT hashes FROM audit_entries WHERE idx = ?1")
            .map_err(db_err)?;
        indexes
            .iter()
            .map(|&k| {
                let blob: Option<Vec<u8>> = stmt
                    .query_row(params![stored_hash_owner(k).0 as i64], |r| r.get(0))
                    .optional()
                    .map_err(db_err)?;
                stored_hash(k, blob.as_deref())
            })
            .collect()
    }
}

fn audit_size(conn: &Connection) -> Result<u64, StoreError> {
    conn.prepare_cached("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_entries")
        .map_err(db_err)?
        .query_row([], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(db_err)
}

/// Runs a fixed statement (transaction control) from the statement cache.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// The records `sql` (selecting `id, body`) finds for each of `args`.
fn records<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    args: impl Iterator<Item = P>,
) -> Result<Vec<ActionRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let mut out = Vec::new();
    for p in args {
        let rows = stmt
            .query_map(p, |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(db_err)?;
        for row in rows {
            let (id, body) = row.map_err(db_err)?;
            out.push(decode(&id, &body)?);
        }
    }
    Ok(out)
}

/// Reads, inside the write transaction, the rows a batch needs (each lookup through an index).
fn load(conn: &Connection, needs: &Needs) -> Result<Loaded, StoreError> {
    let mut loaded = Loaded {
        idempotent: records(
            conn,
            "SELECT id, body FROM actions WHERE requester = ?1 AND idempotency_key = ?2",
            needs.idempotency.iter().map(|(r, k)| (r, k)),
        )?,
        reusable: records(
            conn,
            &format!(
                "SELECT id, body FROM actions WHERE requester = ?1 AND digest = ?2 \
                 AND status IN {}",
                crate::REUSABLE_STATUSES
            ),
            needs.reusable.iter().map(|(r, d)| (r, d)),
        )?,
        records: records(
            conn,
            "SELECT id, body FROM actions WHERE id = ?1",
            needs.records.iter().map(|id| [id]),
        )?,
        ..Loaded::default()
    };
    let mut count = conn
        .prepare_cached(
            "SELECT count(*) FROM actions WHERE requester = ?1 \
             AND status IN ('pending', 'needs_clarification')",
        )
        .map_err(db_err)?;
    for requester in &needs.open_reviews {
        let n: i64 = count
            .query_row(params![requester], |r| r.get(0))
            .map_err(db_err)?;
        loaded.open_reviews.push((requester.clone(), n as u64));
    }
    for id in &needs.key_ids {
        loaded.keys.extend(crate::keys::by_id(conn, id)?);
    }
    for hash in &needs.key_hashes {
        loaded.keys.extend(crate::keys::by_hash(conn, hash)?);
    }
    for id_key in &needs.bindings {
        loaded.bindings.extend(crate::bindings::get(conn, id_key)?);
    }
    for id in &needs.outbox {
        loaded.outbox.extend(crate::outbox::get(conn, *id)?);
    }
    Ok(loaded)
}

/// Writes what a batch decided, inside the write transaction.
fn write(conn: &Connection, batch: &Batch) -> Result<(), StoreError> {
    for (r, body) in batch.inserted()? {
        conn.prepare_cached(
            "INSERT INTO actions (id, requester, idempotency_key, digest, status, \
             review_expires_at, created_at, updated_at, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(db_err)?
        .execute(params![
            r.id,
            r.requester,
            r.idempotency_key,
            r.submitted_digest.to_string(),
            r.status.as_str(),
            review_deadline(r),
            r.created_at.millis(),
            r.updated_at.millis(),
            body,
        ])
        .map_err(db_err)?;
        for approver in r.approver_keys() {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO review_approvers \
                 (approver, status, created_at, id, requester, on_behalf_of) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(db_err)?
            .execute(params![
                approver,
                r.status.as_str(),
                r.created_at.millis(),
                r.id,
                r.requester,
                r.on_behalf_of,
            ])
            .map_err(db_err)?;
        }
    }
    for (r, body) in batch.updated()? {
        conn.prepare_cached(
            "UPDATE actions SET status = ?2, review_expires_at = ?3, updated_at = ?4, body = ?5 \
             WHERE id = ?1",
        )
        .map_err(db_err)?
        .execute(params![
            r.id,
            r.status.as_str(),
            review_deadline(r),
            r.updated_at.millis(),
            body,
        ])
        .map_err(db_err)?;
        if r.review.is_some() {
            conn.prepare_cached(
                "UPDATE review_approvers SET status = ?2 WHERE id = ?1 AND status <> ?2",
            )
            .map_err(db_err)?
            .execute(params![r.id, r.status.as_str()])
            .map_err(db_err)?;
        }
    }
    let a = &batch.audit;
    for i in 0..a.idx.len() {
        conn.prepare_cached(
            "INSERT INTO audit_entries (idx, action_id, at, body, hashes) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(db_err)?
        .execute(params![
            a.idx[i],
            a.action_id[i],
            a.at[i],
            a.body[i],
            a.hashes[i]
        ])
        .map_err(db_err)?;
    }
    for cp in &batch.checkpoints {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO audit_checkpoints (size, at, note) VALUES (?1, ?2, ?3)",
        )
        .map_err(db_err)?
        .execute(params![cp.size as i64, cp.at.millis(), cp.note])
        .map_err(db_err)?;
    }
    for key in batch.new_keys.iter().filter_map(|id| batch.keys.get(id)) {
        crate::keys::insert(conn, key)?;
    }
    for key in batch
        .revoked_keys
        .iter()
        .filter_map(|id| batch.keys.get(id))
    {
        if let Some(at) = key.revoked_at {
            crate::keys::revoke(conn, &key.id, at)?;
        }
    }
    for b in &batch.new_bindings {
        crate::bindings::bind(conn, b)?;
    }
    for secret in &batch.secrets {
        crate::secrets::put(conn, secret)?;
    }
    if let Some(now) = batch.new_sessions.iter().map(|(s, _)| s.created_at).max() {
        crate::sessions::purge(conn, now)?;
    }
    for (session, identity) in &batch.new_sessions {
        crate::sessions::insert(conn, session, identity)?;
    }
    for (hash, at) in &batch.ended_sessions {
        crate::sessions::end(conn, hash, *at)?;
    }
    for (contact, identity) in &batch.contacts {
        crate::contacts::put(conn, contact, identity)?;
    }
    for n in &batch.outbox {
        crate::outbox::insert(conn, n)?;
    }
    for change in &batch.outbox_changes {
        crate::outbox::apply(conn, change)?;
    }
    Ok(())
}

/// Decides and writes one batch inside `BEGIN IMMEDIATE`; the caller commits.
fn run_batch(
    conn: &Connection,
    ops: Vec<Op>,
    done: &mut Vec<Done>,
    head: &Head,
) -> Result<Batch, StoreError> {
    // The log's head as the database has it: another process may have appended since this
    // writer's last batch.
    let prelude = || {
        let size = audit_size(conn)?;
        let frontier = match head.frontier(size) {
            Some(f) => f,
            None => Frontier::load(size, &ConnHashes(conn)).map_err(tree_err)?,
        };
        let needs = Needs::of(&ops);
        let loaded = load(conn, &needs)?;
        Ok::<_, StoreError>(Batch::new(frontier, &needs, loaded))
    };
    let mut batch = match prelude() {
        Ok(b) => b,
        Err(e) => return Err(fail_all(ops, done, e)),
    };
    for op in ops {
        decide(&mut batch, op, done);
    }
    write(conn, &batch)?;
    Ok(batch)
}

fn writer_loop(
    conn: Connection,
    rx: mpsc::Receiver<Op>,
    health: WriteHealth,
    changes: broadcast::Sender<String>,
) {
    let mut head = Head::default();
    while let Ok(first) = rx.recv() {
        let ops = gather(first, || rx.try_recv().ok());
        let mut done = Vec::with_capacity(ops.len());
        let mut changed = Vec::new();
        let committed = match exec(&conn, "BEGIN IMMEDIATE") {
            Err(e) => Err(fail_all(ops, &mut done, db_err(e))),
            Ok(()) => run_batch(&conn, ops, &mut done, &head).and_then(|batch| {
                exec(&conn, "COMMIT").map_err(db_err)?;
                if changes.receiver_count() > 0 {
                    changed = batch.changed().into_iter().map(str::to_string).collect();
                }
                Ok(batch.tree)
            }),
        };
        if committed.is_err() && !conn.is_autocommit() {
            let _ = exec(&conn, "ROLLBACK");
        }
        // Replies go out only now, after the commit is durable; then the change feed.
        finish(committed, &mut head, &health, done);
        for id in changed {
            let _ = changes.send(id);
        }
    }
}

fn status_list(statuses: &[Status]) -> String {
    statuses
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}

impl Writes for SqliteStore {
    fn writer(&self) -> &WriteQueue {
        &self.writer
    }
}

#[async_trait]
impl Actions for SqliteStore {
    async fn reviews_for(&self, query: ReviewQuery) -> Result<Vec<ActionRecord>, StoreError> {
        self.read(|c| {
            let (before_at, before_id) = query
                .before
                .as_ref()
                .map_or((i64::MAX, ""), |(t, id)| (t.millis(), id.as_str()));
            let mut stmt = c
                .prepare_cached(
                    "SELECT created_at, id FROM review_approvers \
                     WHERE approver = ?1 AND status = ?2 AND (created_at, id) < (?3, ?4) \
                     AND requester <> ?5 AND (on_behalf_of IS NULL OR on_behalf_of <> ?5) \
                     ORDER BY created_at DESC, id DESC LIMIT ?6",
                )
                .map_err(db_err)?;
            let mut pages = Vec::new();
            for key in &query.approver_keys {
                for status in &query.statuses {
                    let rows = stmt
                        .query_map(
                            params![
                                key,
                                status.as_str(),
                                before_at,
                                before_id,
                                query.reviewer,
                                query.limit as i64
                            ],
                            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                        )
                        .map_err(db_err)?;
                    pages.push(rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?);
                }
            }
            let mut body = c
                .prepare_cached("SELECT body FROM actions WHERE id = ?1")
                .map_err(db_err)?;
            crate::merge_pages(pages, query.limit)
                .into_iter()
                .map(|(_, id)| {
                    let text: String = body.query_row(params![id], |r| r.get(0)).map_err(db_err)?;
                    decode(&id, &text)
                })
                .collect()
        })
    }

    async fn get(&self, id: &str) -> Result<Option<ActionRecord>, StoreError> {
        self.read(|c| {
            let body: Option<String> = c
                .prepare_cached("SELECT body FROM actions WHERE id = ?1")
                .map_err(db_err)?
                .query_row(params![id], |r| r.get(0))
                .optional()
                .map_err(db_err)?;
            body.map(|b| decode(id, &b)).transpose()
        })
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<ActionRecord>, StoreError> {
        let (after_at, after_id) = filter
            .after
            .as_ref()
            .map_or((i64::MIN, ""), |(t, id)| (t.millis(), id.as_str()));
        self.read(|c| {
            // Status names come from a closed enum, never from the caller's text.
            let status = if filter.statuses.is_empty() {
                String::new()
            } else {
                format!("status IN ({}) AND ", status_list(&filter.statuses))
            };
            let sql = format!(
                "SELECT id, body FROM actions WHERE {status}(created_at, id) > (?2, ?3) \
                 ORDER BY created_at, id LIMIT ?1"
            );
            records(
                c,
                &sql,
                std::iter::once(params![filter.limit as i64, after_at, after_id]),
            )
        })
    }

    async fn next_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT MIN(review_expires_at) FROM actions \
                 WHERE status IN ('pending', 'needs_clarification')",
            )
            .map_err(db_err)?
            .query_row([], |r| r.get::<_, Option<i64>>(0))
            .map(|v| v.map(Timestamp))
            .map_err(db_err)
        })
    }

    async fn due_for_expiry(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id FROM actions WHERE status IN ('pending', 'needs_clarification') \
                     AND review_expires_at <= ?1 ORDER BY review_expires_at LIMIT ?2",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![now.millis(), limit as i64], |r| r.get(0))
                .map_err(db_err)?;
            rows.map(|r| r.map_err(db_err)).collect()
        })
    }

    async fn open_reviews(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT count(*) FROM actions WHERE status IN ('pending', 'needs_clarification')",
            )
            .map_err(db_err)?
            .query_row([], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(db_err)
        })
    }
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn audit_size(&self) -> Result<u64, StoreError> {
        self.read(audit_size)
    }

    async fn audit_entries(&self, start: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT idx, action_id, at, body FROM audit_entries WHERE idx >= ?1 \
                     ORDER BY idx LIMIT ?2",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![start as i64, limit as i64], |r| {
                    Ok(AuditEntry {
                        index: r.get::<_, i64>(0)? as u64,
                        action_id: r.get(1)?,
                        at: Timestamp(r.get(2)?),
                        body: r.get(3)?,
                    })
                })
                .map_err(db_err)?;
            rows.map(|r| r.map_err(db_err)).collect()
        })
    }

    async fn audit_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        self.read(|c| ConnHashes(c).read_hashes(indexes))
    }

    async fn action_audit_indexes(&self, action_id: &str) -> Result<Vec<u64>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT idx FROM audit_entries WHERE action_id = ?1 ORDER BY idx")
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![action_id], |r| r.get::<_, i64>(0))
                .map_err(db_err)?;
            rows.map(|r| r.map(|i| i as u64).map_err(db_err)).collect()
        })
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT size, at, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
            )
            .map_err(db_err)?
            .query_row([], |r| {
                Ok(StoredCheckpoint {
                    size: r.get::<_, i64>(0)? as u64,
                    at: Timestamp(r.get(1)?),
                    note: r.get(2)?,
                })
            })
            .optional()
            .map_err(db_err)
        })
    }

    async fn audit_checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT size, at, note FROM audit_checkpoints ORDER BY size")
                .map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(StoredCheckpoint {
                        size: r.get::<_, i64>(0)? as u64,
                        at: Timestamp(r.get(1)?),
                        note: r.get(2)?,
                    })
                })
                .map_err(db_err)?;
            rows.map(|r| r.map_err(db_err)).collect()
        })
    }
}

#[async_trait]
impl Keys for SqliteStore {
    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ManagedKey>, StoreError> {
        self.read(|c| crate::keys::by_hash(c, hash))
    }

    async fn list_keys(&self) -> Result<Vec<ManagedKey>, StoreError> {
        self.read(crate::keys::list)
    }

    async fn identity_binding(&self, id_key: &str) -> Result<Option<IdentityBinding>, StoreError> {
        self.read(|c| crate::bindings::get(c, id_key))
    }

    async fn stored_secret(&self, name: &str) -> Result<Option<StoredSecret>, StoreError> {
        self.read(|c| crate::secrets::get(c, name))
    }

    async fn session_by_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<crate::ConsoleSession>, StoreError> {
        self.read(|c| crate::sessions::get(c, hash))
    }
}

#[async_trait]
impl Contacts for SqliteStore {
    async fn contacts(&self, query: &ContactQuery) -> Result<Vec<IdentityContact>, StoreError> {
        self.read(|c| crate::contacts::find(c, query))
    }
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn outbox_due(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        self.read(|c| crate::outbox::due(c, now, limit))
    }

    async fn outbox_next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read(crate::outbox::next_due)
    }

    async fn outbox_list(&self, filter: OutboxFilter) -> Result<Vec<Notification>, StoreError> {
        self.read(|c| crate::outbox::list(c, &filter))
    }

    async fn outbox_get(&self, id: i64) -> Result<Option<Notification>, StoreError> {
        self.read(|c| crate::outbox::get(c, id))
    }

    async fn outbox_counts(&self) -> Result<Vec<(OutboxState, String, u64)>, StoreError> {
        self.read(crate::outbox::counts)
    }

    async fn channel_message(
        &self,
        action_id: &str,
        channel: &str,
    ) -> Result<Option<String>, StoreError> {
        self.read(|c| crate::outbox::message(c, action_id, channel))
    }
}

#[async_trait]
impl Coordination for SqliteStore {
    fn write_failure(&self) -> Option<String> {
        self.health.failure()
    }

    fn changes(&self) -> Option<broadcast::Receiver<String>> {
        Some(self.changes.subscribe())
    }
}
