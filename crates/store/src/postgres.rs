//! The PostgreSQL store: several gateway replicas share one database.
//!
//! Writes go through one writer task per process that commits queued operations together (group
//! commit), like the SQLite writer thread. Every write transaction first locks the single
//! `audit_head` row, so write transactions from all replicas are serialised *in the database*:
//! that one lock gives the audit log a single total order and one Merkle tree, makes each
//! read-modify-write of a record see the latest committed state (exactly-once redemption, one
//! quorum count, one `expired`), and costs one lock per batch rather than per row. Inside a
//! batch, every read and write is a set-based statement (`= ANY`, `unnest`), prepared once per
//! connection and sent together (pipelined): an allowed action's batch, however large, is four
//! round trips (`BEGIN`; the head lock; the record, audit and `NOTIFY` statements together;
//! `COMMIT`).
//!
//! Changes are announced with `NOTIFY` in the same transaction (delivered on commit), and
//! [`PostgresStore::changes`] relays them from a dedicated `LISTEN` connection.

use async_trait::async_trait;
use countersign_core::{ActionRecord, Status, Timestamp};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_postgres::NoTls;

use countersign_audit::merkle::{stored_hash_owner, Frontier};
use countersign_audit::{Hash, HashReader};

use crate::health::WriteHealth;
use crate::migrate::{self, Migration};
use crate::op::{encode, Op, WriteQueue};
use crate::write::{
    decide, decode, fail_all, finish, gather, review_deadline, stored_hash, tree_err, Batch, Done,
    Head, Loaded, Needs,
};
use crate::{
    Actions, AuditEntry, AuditLog, Coordination, Keys, ListFilter, Notification, Outbox,
    OutboxChange, OutboxFilter, OutboxState, ReviewQuery, StoreError, StoredCheckpoint, Writes,
};

/// The PostgreSQL schema's history, oldest first (see `migrate.rs`), each step applied once and
/// recorded in `countersign_migrations`.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        add_columns: &[],
        sql: "
CREATE TABLE actions (
    id TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    idempotency_key TEXT,
    status TEXT NOT NULL,
    review_expires_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX actions_idempotency
    ON actions(requester, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX actions_open_reviews
    ON actions(review_expires_at) WHERE status IN ('pending', 'needs_clarification');
CREATE INDEX actions_status ON actions(status, created_at, id);
CREATE INDEX actions_created ON actions(created_at, id);
CREATE TABLE audit_entries (
    idx BIGINT PRIMARY KEY,
    action_id TEXT,
    at BIGINT NOT NULL,
    body BYTEA NOT NULL,
    -- the Merkle hashes appending this entry stored (see the SQLite schema)
    hashes BYTEA NOT NULL
);
CREATE INDEX audit_entries_action ON audit_entries(action_id, idx) WHERE action_id IS NOT NULL;
CREATE TABLE audit_checkpoints (
    size BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    note TEXT NOT NULL
);
-- The one row every write transaction locks first: the log's size, and the serialisation point
-- of all writers across replicas.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL
);
INSERT INTO audit_head (id, size) VALUES (1, 0);
",
    },
    Migration {
        version: 2,
        add_columns: &[],
        sql: "
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    hash BYTEA NOT NULL UNIQUE,
    identity TEXT NOT NULL,
    kind TEXT NOT NULL,
    groups TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
",
    },
    Migration {
        version: 3,
        add_columns: &[],
        sql: "
-- The submitted digest (`sha256:<hex>`), for `reuse_open`.
ALTER TABLE actions ADD COLUMN digest TEXT;
UPDATE actions SET digest = body::jsonb ->> 'submitted_digest';
CREATE INDEX actions_requester_digest ON actions(requester, digest);
",
    },
    Migration {
        version: 4,
        add_columns: &[],
        sql: "
-- Each review's approver entries (`group:NAME`, `human:ID`), for a reviewer's page of reviews
-- (see the SQLite schema 5), and the requester's open reviews for the per-requester cap.
CREATE TABLE review_approvers (
    approver TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    id TEXT NOT NULL,
    requester TEXT NOT NULL,
    on_behalf_of TEXT,
    PRIMARY KEY (approver, status, created_at, id)
);
CREATE INDEX review_approvers_id ON review_approvers(id);
CREATE INDEX actions_open_by_requester ON actions(requester)
    WHERE status IN ('pending', 'needs_clarification');
INSERT INTO review_approvers (approver, status, created_at, id, requester, on_behalf_of)
SELECT DISTINCT 'group:' || g, a.status, a.created_at, a.id, a.requester,
       a.body::jsonb ->> 'on_behalf_of'
FROM actions a,
     jsonb_array_elements(a.body::jsonb -> 'review' -> 'requirements') q,
     jsonb_array_elements_text(q -> 'approvers' -> 'groups') g
ON CONFLICT DO NOTHING;
INSERT INTO review_approvers (approver, status, created_at, id, requester, on_behalf_of)
SELECT DISTINCT 'human:' || h, a.status, a.created_at, a.id, a.requester,
       a.body::jsonb ->> 'on_behalf_of'
FROM actions a,
     jsonb_array_elements(a.body::jsonb -> 'review' -> 'requirements') q,
     jsonb_array_elements_text(q -> 'approvers' -> 'humans') h
ON CONFLICT DO NOTHING;
",
    },
    Migration {
        version: 5,
        add_columns: &[],
        sql: "
-- The human who sponsors a managed key's agent, and the identity registry.
ALTER TABLE api_keys ADD COLUMN sponsor TEXT;
CREATE TABLE identity_bindings (
    id_key TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    first_seen BIGINT NOT NULL
);
",
    },
    Migration {
        version: 6,
        add_columns: &[],
        sql: "
-- The notification outbox and each chat channel's message per action (see the SQLite schema 7).
CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    audit_index BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    next_at BIGINT NOT NULL,
    delivered_at BIGINT,
    last_error TEXT
);
CREATE INDEX outbox_queued ON outbox(next_at, id) WHERE state = 'queued';
CREATE INDEX outbox_queued_action ON outbox(action_id, channel, id) WHERE state = 'queued';
CREATE TABLE channel_messages (
    action_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (action_id, channel)
);
",
    },
    // Static secrets (issue #18), sealed by the gateway: the store holds only the sealed bytes.
    // (Version 6 is another branch's step; the planner takes steps above a database's version.)
    Migration {
        version: 7,
        add_columns: &[],
        sql: "
CREATE TABLE stored_secrets (
    name TEXT PRIMARY KEY,
    sealed BYTEA NOT NULL,
    set_by TEXT NOT NULL,
    set_at BIGINT NOT NULL
);
",
    },
    // Console sessions (issue #16), as in SQLite's version 9. (Version 8: 6 and 7 are taken by
    // work landing beside it.)
    Migration {
        version: 8,
        add_columns: &[],
        sql: "
CREATE TABLE console_sessions (
    hash BYTEA PRIMARY KEY,
    identity TEXT NOT NULL,
    mfa BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT
);
",
    },
    // How people from the identity provider are reached in chat (issue #15), as in SQLite's
    // version 10.
    Migration {
        version: 9,
        add_columns: &[],
        sql: "
CREATE TABLE identity_contacts (
    source TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    email TEXT,
    entra_oid TEXT,
    entra_tid TEXT,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX identity_contacts_email ON identity_contacts(email) WHERE email IS NOT NULL;
CREATE INDEX identity_contacts_entra_oid ON identity_contacts(entra_oid)
    WHERE entra_oid IS NOT NULL;
",
    },
    // The digest index made partial, as SQLite's is since its version 4 (issue #20): only the
    // statuses `reuse_open` looks for (`REUSABLE_STATUSES`, written out here), so an allowed
    // action's commit writes one B-tree fewer (index maintenance was a third of PostgreSQL's
    // CPU on the allow path).
    Migration {
        version: 10,
        add_columns: &[],
        sql: "
CREATE INDEX actions_reusable_digest ON actions(requester, digest)
    WHERE status IN ('pending', 'needs_clarification', 'approved');
DROP INDEX actions_requester_digest;
",
    },
];

/// The newest schema version this build knows (the last step's).
pub const SCHEMA_VERSION: i32 = migrate::latest(MIGRATIONS);

fn db_err(e: tokio_postgres::Error) -> StoreError {
    // `Display` of a server error is only "db error"; the source carries the message.
    match e.as_db_error() {
        Some(d) => StoreError::Database(format!("{}: {}", d.code().code(), d.message())),
        None => StoreError::Database(e.to_string()),
    }
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db_err(e),
        other => StoreError::Database(other.to_string()),
    }
}

fn parse_config(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    url.parse()
        .map_err(|e| StoreError::Database(format!("bad PostgreSQL URL: {e}")))
}

/// Applies pending migrations to the database at `url`; returns `(before, after)` versions.
/// Safe to run from several replicas at once (an advisory transaction lock serialises them).
pub async fn migrate(url: &str) -> Result<(i32, i32), StoreError> {
    let (mut client, conn) = parse_config(url)?.connect(NoTls).await.map_err(db_err)?;
    let driver = tokio::spawn(conn);
    let out = migrate_client(&mut client).await;
    drop(client);
    let _ = driver.await;
    out
}

async fn migrate_client(client: &mut tokio_postgres::Client) -> Result<(i32, i32), StoreError> {
    let tx = client.transaction().await.map_err(db_err)?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(hashtext('countersign-migrate:' || current_schema()));
         CREATE TABLE IF NOT EXISTS countersign_migrations (
             version INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         );",
    )
    .await
    .map_err(db_err)?;
    let before: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM countersign_migrations",
            &[],
        )
        .await
        .map_err(db_err)?
        .get(0);
    let steps = migrate::plan(before, MIGRATIONS, 1).map_err(|source| StoreError::Schema {
        at: "the database".into(),
        source,
    })?;
    for step in steps {
        for column in step.add_columns {
            tx.batch_execute(&format!(
                "ALTER TABLE IF EXISTS {} ADD COLUMN IF NOT EXISTS {} {};",
                column.table, column.name, column.decl
            ))
            .await
            .map_err(db_err)?;
        }
        tx.batch_execute(step.sql).await.map_err(db_err)?;
        tx.execute(
            "INSERT INTO countersign_migrations (version) VALUES ($1)",
            &[&step.version],
        )
        .await
        .map_err(db_err)?;
    }
    tx.commit().await.map_err(db_err)?;
    Ok((before, SCHEMA_VERSION))
}

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    writer: WriteQueue,
    changes: broadcast::Sender<String>,
    config: tokio_postgres::Config,
    scope: String,
    listener: tokio::task::JoinHandle<()>,
    health: WriteHealth,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`, libpq-style parameters such as
    /// `options=-csearch_path%3Dname` allowed), runs pending migrations and starts the writer.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let config = parse_config(url)?;
        let mgr = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(8)
            .build()
            .map_err(|e| StoreError::Database(e.to_string()))?;
        let scope = {
            let mut client = pool.get().await.map_err(pool_err)?;
            migrate_client(&mut client).await?;
            let row = client
                .query_one("SELECT current_database() || '.' || current_schema()", &[])
                .await
                .map_err(db_err)?;
            row.get::<_, String>(0)
        };
        let channel = channel_name(&scope);
        let (changes, _) = broadcast::channel(4096);
        let (ready, listening) = oneshot::channel();
        let listener = tokio::spawn(listen_loop(
            config.clone(),
            channel.clone(),
            changes.clone(),
            ready,
        ));
        // Return only once LISTEN is in place, so no later commit goes unannounced.
        if !matches!(
            tokio::time::timeout(Duration::from_secs(30), listening).await,
            Ok(Ok(()))
        ) {
            listener.abort();
            return Err(StoreError::Database(
                "could not LISTEN for changes within 30 s".into(),
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let health = WriteHealth::default();
        tokio::spawn(writer_loop(pool.clone(), rx, channel, health.clone()));
        Ok(PostgresStore {
            pool,
            writer: WriteQueue::new(move |op| tx.send(op).map_err(|_| StoreError::Closed)),
            changes,
            config,
            scope,
            listener,
            health,
        })
    }

    /// `database.schema` this store works in (what its notification channel and leader lock
    /// are scoped to).
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Tries to become the leader for background work: a session-level advisory lock on a
    /// dedicated connection, released when that connection (or the process) dies. Returns the
    /// connection holding it, or `None` if another process holds the lease.
    pub async fn lead(&self) -> Result<Option<LeaderLease>, StoreError> {
        let (client, conn) = self.config.connect(NoTls).await.map_err(db_err)?;
        let driver = tokio::spawn(conn);
        let got: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext('countersign-leader:' || $1::text))",
                &[&self.scope],
            )
            .await
            .map_err(db_err)?
            .get(0);
        if got {
            Ok(Some(LeaderLease {
                client,
                driver: Some(driver),
            }))
        } else {
            drop(client);
            let _ = driver.await;
            Ok(None)
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_err)
    }
}

/// A held leader lease. Dropping it closes its connection, which releases the lock.
pub struct LeaderLease {
    client: tokio_postgres::Client,
    driver: Option<tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>>,
}

#[async_trait]
impl crate::Lease for LeaderLease {
    /// Whether the session holding the lock is still alive (a cheap round trip).
    async fn alive(&self) -> bool {
        if self.driver.as_ref().is_some_and(|d| d.is_finished()) {
            return false;
        }
        tokio::time::timeout(Duration::from_secs(5), self.client.simple_query("SELECT 1"))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for LeaderLease {
    fn drop(&mut self) {
        if let Some(d) = self.driver.take() {
            d.abort();
        }
    }
}

fn channel_name(scope: &str) -> String {
    // Channel names are identifiers (at most 63 bytes); a hash keeps any schema name valid.
    let h = countersign_audit::merkle::leaf_hash(scope.as_bytes());
    let hex: String = h[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("countersign_{hex}")
}

/// Relays `NOTIFY` payloads (comma-separated action ids) from a dedicated connection,
/// reconnecting after a failure. After each (re)connection it sends [`ANY_CHANGE`], since
/// notifications sent while it was not listening are lost.
async fn listen_loop(
    config: tokio_postgres::Config,
    channel: String,
    out: broadcast::Sender<String>,
    ready: oneshot::Sender<()>,
) {
    use tokio_postgres::AsyncMessage;
    let mut ready = Some(ready);
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut conn)) => {
                let (tx, mut rx) = mpsc::unbounded_channel::<String>();
                let driver = tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                if tx.send(n.payload().to_string()).is_err() {
                                    break;
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "the LISTEN connection failed");
                                break;
                            }
                            None => break,
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {channel}")).await {
                    Ok(()) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                        let _ = out.send(ANY_CHANGE.to_string());
                        while let Some(payload) = rx.recv().await {
                            for id in payload.split(',') {
                                let _ = out.send(id.to_string());
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "LISTEN failed"),
                }
                drop(client);
                driver.abort();
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the LISTEN connection; retrying");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sent on [`PostgresStore::changes`] when any record may have changed unseen.
pub const ANY_CHANGE: &str = "";

/// Stored hashes read from `audit_entries` rows (`idx` → `hashes`), by stored-hash index.
struct RowHashes(HashMap<i64, Vec<u8>>);

impl HashReader for RowHashes {
    type Error = StoreError;

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        indexes
            .iter()
            .map(|&k| {
                let row = self.0.get(&(stored_hash_owner(k).0 as i64));
                stored_hash(k, row.map(Vec::as_slice))
            })
            .collect()
    }
}

async fn writer_loop(
    pool: Pool,
    mut rx: mpsc::UnboundedReceiver<Op>,
    channel: String,
    health: WriteHealth,
) {
    let mut head = Head::default();
    while let Some(first) = rx.recv().await {
        let ops = gather(first, || rx.try_recv().ok());
        let mut done = Vec::with_capacity(ops.len());
        let committed = run_batch(&pool, ops, &mut done, &channel, &head).await;
        finish(committed, &mut head, &health, done);
    }
}

/// Runs `sql` in `tx` as a statement prepared once per pooled connection (deadpool's statement
/// cache): after a connection's first batch, each statement is one round trip (bind and
/// execute), not two (prepare, then execute), and the server does not parse or plan it again.
async fn exec(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let stmt = tx.prepare_cached(sql).await?;
    tx.execute(&stmt, params).await
}

/// As [`exec`], for a statement that returns rows.
async fn query(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let stmt = tx.prepare_cached(sql).await?;
    tx.query(&stmt, params).await
}

/// Decides and commits one batch. Replies are collected in `done` and sent by the caller once
/// the outcome of the commit is known.
async fn run_batch(
    pool: &Pool,
    ops: Vec<Op>,
    done: &mut Vec<Done>,
    channel: &str,
    head: &Head,
) -> Result<Frontier, StoreError> {
    // Decide nothing before the connection and the lock are held: a failure here must still
    // answer every operation, so the operations are only consumed below.
    let mut client = match pool.get().await {
        Ok(c) => c,
        Err(e) => return Err(fail_all(ops, done, pool_err(e))),
    };
    let tx = match client.transaction().await {
        Ok(t) => t,
        Err(e) => return Err(fail_all(ops, done, db_err(e))),
    };
    let needs = Needs::of(&ops);
    let (keys_r, keys_k): (Vec<&str>, Vec<&str>) = needs
        .idempotency
        .iter()
        .map(|(r, k)| (r.as_str(), k.as_str()))
        .unzip();
    let (reuse_r, reuse_d): (Vec<&str>, Vec<&str>) = needs
        .reusable
        .iter()
        .map(|(r, d)| (r.as_str(), d.as_str()))
        .unzip();
    let open_r = &needs.open_reviews;
    let ids = &needs.records;
    let key_ids = &needs.key_ids;
    let key_hashes: Vec<&[u8]> = needs.key_hashes.iter().map(|h| h.as_slice()).collect();
    let bind_ids = &needs.bindings;
    let prelude = async {
        let size: i64 = query(
            &tx,
            "SELECT size FROM audit_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await
        .map_err(db_err)?
        .first()
        .ok_or_else(|| StoreError::Database("the audit_head row is missing".into()))?
        .get(0);
        let size = size as u64;
        // The frontier this writer left, unless another replica appended since.
        let cached = head.frontier(size);
        let frontier_idx: Vec<i64> = match cached {
            Some(_) => Vec::new(),
            None => Frontier::indexes(size)
                .into_iter()
                .map(|k| stored_hash_owner(k).0 as i64)
                .collect(),
        };
        let reuse_sql = format!(
            "SELECT a.id, a.requester, a.digest, a.body FROM actions a \
             JOIN unnest($1::text[], $2::text[]) AS k(r, d) \
             ON a.requester = k.r AND a.digest = k.d WHERE a.status IN {}",
            crate::REUSABLE_STATUSES
        );
        let (existing, candidates, locked, front, keys, open, bound) = tokio::try_join!(
            async {
                if keys_r.is_empty() {
                    return Ok(Vec::new());
                }
                query(
                    &tx,
                    "SELECT a.id, a.requester, a.idempotency_key, a.body FROM actions a \
                     JOIN unnest($1::text[], $2::text[]) AS k(r, key) \
                     ON a.requester = k.r AND a.idempotency_key = k.key",
                    &[&keys_r, &keys_k],
                )
                .await
            },
            async {
                if reuse_r.is_empty() {
                    return Ok(Vec::new());
                }
                query(&tx, &reuse_sql, &[&reuse_r, &reuse_d]).await
            },
            async {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                query(
                    &tx,
                    "SELECT id, body FROM actions WHERE id = ANY($1) FOR UPDATE",
                    &[ids],
                )
                .await
            },
            async {
                if frontier_idx.is_empty() {
                    return Ok(Vec::new());
                }
                query(
                    &tx,
                    "SELECT idx, hashes FROM audit_entries WHERE idx = ANY($1)",
                    &[&frontier_idx],
                )
                .await
            },
            async {
                if key_ids.is_empty() {
                    return Ok(Vec::new());
                }
                query(
                    &tx,
                    &format!(
                        "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ANY($1) \
                         OR hash = ANY($2) FOR UPDATE"
                    ),
                    &[key_ids, &key_hashes],
                )
                .await
            },
            async {
                if open_r.is_empty() {
                    return Ok(Vec::new());
                }
                query(
                    &tx,
                    "SELECT requester, count(*) FROM actions WHERE requester = ANY($1) \
                     AND status IN ('pending', 'needs_clarification') GROUP BY requester",
                    &[open_r],
                )
                .await
            },
            async {
                if bind_ids.is_empty() {
                    return Ok(Vec::new());
                }
                query(
                    &tx,
                    "SELECT id_key, source, id, kind, first_seen FROM identity_bindings \
                     WHERE id_key = ANY($1)",
                    &[bind_ids],
                )
                .await
            },
        )
        .map_err(db_err)?;
        let frontier = match cached {
            Some(f) => f,
            None => {
                let owners: HashMap<i64, Vec<u8>> = front
                    .into_iter()
                    .map(|r| (r.get::<_, i64>(0), r.get::<_, Vec<u8>>(1)))
                    .collect();
                Frontier::load(size, &RowHashes(owners)).map_err(tree_err)?
            }
        };
        let outbox_rows = if needs.outbox.is_empty() {
            Vec::new()
        } else {
            tx.query(
                &format!(
                    "SELECT {} FROM outbox WHERE id = ANY($1) FOR UPDATE",
                    crate::outbox::COLUMNS
                ),
                &[&needs.outbox],
            )
            .await
            .map_err(db_err)?
        };
        let loaded = Loaded {
            outbox: outbox_rows
                .iter()
                .map(notification_row)
                .collect::<Result<_, _>>()?,
            idempotent: existing
                .iter()
                .map(|r| decode(r.get(0), r.get(3)))
                .collect::<Result<_, _>>()?,
            reusable: candidates
                .iter()
                .map(|r| decode(r.get(0), r.get(3)))
                .collect::<Result<_, _>>()?,
            records: locked
                .iter()
                .map(|r| decode(r.get(0), r.get(1)))
                .collect::<Result<_, _>>()?,
            open_reviews: open
                .iter()
                .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
                .collect(),
            keys: keys.iter().map(key_row).collect::<Result<_, _>>()?,
            bindings: bound.iter().map(binding_row).collect::<Result<_, _>>()?,
        };
        let batch = Batch::new(frontier, &needs, loaded);
        Ok::<_, StoreError>(batch)
    };
    let mut batch = match prelude.await {
        Ok(b) => b,
        Err(e) => return Err(fail_all(ops, done, e)),
    };

    for op in ops {
        decide(&mut batch, op, done);
    }
    write_batch(&tx, &batch, channel).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(batch.tree)
}

type Columns = (
    Vec<String>,
    Vec<String>,
    Vec<Option<String>>,
    Vec<String>,
    Vec<String>,
    Vec<Option<i64>>,
    Vec<i64>,
    Vec<i64>,
    Vec<String>,
);

/// `review_approvers` rows: approver, status, created_at, id, requester, on_behalf_of.
type ApproverColumns = (
    Vec<String>,
    Vec<String>,
    Vec<i64>,
    Vec<String>,
    Vec<String>,
    Vec<Option<String>>,
);

type UpdateColumns = (
    Vec<String>,
    Vec<String>,
    Vec<Option<i64>>,
    Vec<i64>,
    Vec<String>,
);

/// Writes what a batch decided: a handful of set-based statements.
async fn write_batch(
    tx: &deadpool_postgres::Transaction<'_>,
    batch: &Batch,
    channel: &str,
) -> Result<(), StoreError> {
    let mut ins: Columns = Default::default();
    let inserted = batch.inserted()?;
    for (r, body) in &inserted {
        ins.0.push(r.id.clone());
        ins.1.push(r.requester.clone());
        ins.2.push(r.idempotency_key.clone());
        ins.3.push(r.submitted_digest.to_string());
        ins.4.push(r.status.as_str().to_string());
        ins.5.push(review_deadline(r));
        ins.6.push(r.created_at.millis());
        ins.7.push(r.updated_at.millis());
        ins.8.push(body.clone());
    }
    let mut appr: ApproverColumns = Default::default();
    for (r, _) in &inserted {
        for key in r.approver_keys() {
            appr.0.push(key);
            appr.1.push(r.status.as_str().to_string());
            appr.2.push(r.created_at.millis());
            appr.3.push(r.id.clone());
            appr.4.push(r.requester.clone());
            appr.5.push(r.on_behalf_of.clone());
        }
    }
    let mut upd: UpdateColumns = Default::default();
    for (r, body) in batch.updated()? {
        upd.0.push(r.id.clone());
        upd.1.push(r.status.as_str().to_string());
        upd.2.push(review_deadline(r));
        upd.3.push(r.updated_at.millis());
        upd.4.push(body);
    }
    let a = &batch.audit;
    let size = batch.tree.size() as i64;
    let payloads = notify_payloads(&batch.changed());
    if let Some(now) = batch.new_sessions.iter().map(|(s, _)| s.created_at).max() {
        let before = now
            .millis()
            .saturating_sub(crate::sessions::KEEP_ENDED_MILLIS);
        exec(
            tx,
            "DELETE FROM console_sessions WHERE expires_at < $1 OR ended_at < $1",
            &[&before],
        )
        .await
        .map_err(db_err)?;
    }
    for (sess, identity) in &batch.new_sessions {
        exec(
            tx,
            "INSERT INTO console_sessions (hash, identity, mfa, created_at, expires_at, ended_at) \
             VALUES ($1, $2, $3, $4, $5, NULL)",
            &[
                &sess.hash.as_slice(),
                identity,
                &sess.mfa,
                &sess.created_at.millis(),
                &sess.expires_at.millis(),
            ],
        )
        .await
        .map_err(db_err)?;
    }
    for (hash, at) in &batch.ended_sessions {
        exec(
            tx,
            "UPDATE console_sessions SET ended_at = $2 WHERE hash = $1 AND ended_at IS NULL",
            &[&hash.as_slice(), &at.millis()],
        )
        .await
        .map_err(db_err)?;
    }
    for (c, identity) in &batch.contacts {
        exec(
            tx,
            "INSERT INTO identity_contacts \
             (source, identity, email, entra_oid, entra_tid, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (source) DO UPDATE SET identity = EXCLUDED.identity, \
             email = EXCLUDED.email, entra_oid = EXCLUDED.entra_oid, \
             entra_tid = EXCLUDED.entra_tid, recorded_at = EXCLUDED.recorded_at \
             WHERE EXCLUDED.recorded_at >= identity_contacts.recorded_at",
            &[
                &c.source,
                identity,
                &c.email,
                &c.entra_oid,
                &c.entra_tid,
                &c.recorded_at.millis(),
            ],
        )
        .await
        .map_err(db_err)?;
    }
    write_outbox(tx, batch).await?;
    for b in &batch.new_bindings {
        exec(
            tx,
            "INSERT INTO identity_bindings (id_key, source, id, kind, first_seen) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id_key) DO NOTHING",
            &[
                &b.id_key,
                &b.source,
                &b.id,
                &b.kind.as_str(),
                &b.first_seen.millis(),
            ],
        )
        .await
        .map_err(db_err)?;
    }
    for secret in &batch.secrets {
        exec(
            tx,
            "INSERT INTO stored_secrets (name, sealed, set_by, set_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET sealed = EXCLUDED.sealed, \
             set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at",
            &[
                &secret.name,
                &secret.sealed,
                &secret.set_by,
                &secret.set_at.millis(),
            ],
        )
        .await
        .map_err(db_err)?;
    }
    for key in batch.new_keys.iter().filter_map(|id| batch.keys.get(id)) {
        exec(tx,
            &format!(
                "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ),
            &[
                &key.id,
                &key.hash.as_slice(),
                &key.identity,
                &key.kind.as_str(),
                &encode(&key.groups)?,
                &key.created_by,
                &key.created_at.millis(),
                &key.expires_at.map(|t| t.millis()),
                &key.revoked_at.map(|t| t.millis()),
                &key.sponsor,
            ],
        )
        .await
        .map_err(db_err)?;
    }
    for key in batch
        .revoked_keys
        .iter()
        .filter_map(|id| batch.keys.get(id))
    {
        exec(
            tx,
            "UPDATE api_keys SET revoked_at = $2 WHERE id = $1",
            &[&key.id, &key.revoked_at.map(|t| t.millis())],
        )
        .await
        .map_err(db_err)?;
    }
    tokio::try_join!(
        async {
            if ins.0.is_empty() {
                return Ok(0);
            }
            exec(
                tx,
                "INSERT INTO actions (id, requester, idempotency_key, digest, status, \
                 review_expires_at, created_at, updated_at, body) SELECT * FROM \
                 unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], \
                 $7::int8[], $8::int8[], $9::text[])",
                &[
                    &ins.0, &ins.1, &ins.2, &ins.3, &ins.4, &ins.5, &ins.6, &ins.7, &ins.8,
                ],
            )
            .await
        },
        async {
            if upd.0.is_empty() {
                return Ok(0);
            }
            exec(
                tx,
                "UPDATE actions AS a SET status = v.status, review_expires_at = v.exp, \
                 updated_at = v.upd, body = v.body FROM unnest($1::text[], $2::text[], \
                 $3::int8[], $4::int8[], $5::text[]) AS v(id, status, exp, upd, body) \
                 WHERE a.id = v.id",
                &[&upd.0, &upd.1, &upd.2, &upd.3, &upd.4],
            )
            .await?;
            exec(
                tx,
                "UPDATE review_approvers AS r SET status = v.status \
                 FROM unnest($1::text[], $2::text[]) AS v(id, status) \
                 WHERE r.id = v.id AND r.status <> v.status",
                &[&upd.0, &upd.1],
            )
            .await
        },
        async {
            if appr.0.is_empty() {
                return Ok(0);
            }
            exec(
                tx,
                "INSERT INTO review_approvers \
                 (approver, status, created_at, id, requester, on_behalf_of) SELECT * FROM \
                 unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[]) \
                 ON CONFLICT DO NOTHING",
                &[&appr.0, &appr.1, &appr.2, &appr.3, &appr.4, &appr.5],
            )
            .await
        },
        async {
            if a.idx.is_empty() {
                return Ok(0);
            }
            exec(
                tx,
                "INSERT INTO audit_entries (idx, action_id, at, body, hashes) SELECT * FROM \
                 unnest($1::int8[], $2::text[], $3::int8[], $4::bytea[], $5::bytea[])",
                &[&a.idx, &a.action_id, &a.at, &a.body, &a.hashes],
            )
            .await
        },
        async {
            if a.idx.is_empty() {
                return Ok(0);
            }
            exec(tx, "UPDATE audit_head SET size = $1 WHERE id = 1", &[&size]).await
        },
        async {
            for cp in &batch.checkpoints {
                exec(
                    tx,
                    "INSERT INTO audit_checkpoints (size, at, note) VALUES ($1, $2, $3) \
                     ON CONFLICT (size) DO NOTHING",
                    &[&(cp.size as i64), &cp.at.millis(), &cp.note],
                )
                .await?;
            }
            Ok(0)
        },
        async {
            if payloads.is_empty() {
                return Ok(0);
            }
            exec(
                tx,
                "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
                &[&channel, &payloads],
            )
            .await
        },
    )
    .map_err(db_err)?;
    Ok(())
}

/// `outbox` rows: action_id, channel, kind, audit_index, created_at (= next_at).
type OutboxColumns<'a> = (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>, Vec<i64>, Vec<i64>);

/// The batch's new notifications (one set-based insert) and the worker's records of attempts.
async fn write_outbox(
    tx: &deadpool_postgres::Transaction<'_>,
    batch: &Batch,
) -> Result<(), StoreError> {
    if !batch.outbox.is_empty() {
        let mut cols: OutboxColumns = Default::default();
        for n in &batch.outbox {
            cols.0.push(&n.action_id);
            cols.1.push(&n.channel);
            cols.2.push(n.kind);
            cols.3.push(n.audit_index as i64);
            cols.4.push(n.at.millis());
        }
        tx.execute(
            "INSERT INTO outbox (action_id, channel, kind, audit_index, state, attempts, \
             created_at, next_at) SELECT a, c, k, i, 'queued', 0, t, t FROM \
             unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[]) AS v(a, c, k, i, t)",
            &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4],
        )
        .await
        .map_err(db_err)?;
    }
    for change in &batch.outbox_changes {
        match change {
            OutboxChange::Delivered { id, at, message } => {
                tx.execute(
                    "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, \
                     delivered_at = $2, last_error = NULL WHERE id = $1",
                    &[id, &at.millis()],
                )
                .await
                .map_err(db_err)?;
                if let Some(m) = message {
                    tx.execute(
                        "INSERT INTO channel_messages (action_id, channel, message) \
                         SELECT action_id, channel, $2 FROM outbox WHERE id = $1 \
                         ON CONFLICT (action_id, channel) DO UPDATE SET message = excluded.message",
                        &[id, m],
                    )
                    .await
                    .map_err(db_err)?;
                }
            }
            OutboxChange::Retry { id, next_at, error } => {
                tx.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_at = $2, last_error = $3 \
                     WHERE id = $1 AND state = 'queued'",
                    &[id, &next_at.millis(), error],
                )
                .await
                .map_err(db_err)?;
            }
            OutboxChange::Dead { id, error } => {
                tx.execute(
                    "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = $2 \
                     WHERE id = $1 AND state = 'queued'",
                    &[id, error],
                )
                .await
                .map_err(db_err)?;
            }
            OutboxChange::Claim { id, until } => {
                tx.execute(
                    "UPDATE outbox SET next_at = $2 WHERE id = $1",
                    &[id, &until.millis()],
                )
                .await
                .map_err(db_err)?;
            }
            OutboxChange::Requeue { id, at } => {
                tx.execute(
                    "UPDATE outbox SET state = 'queued', attempts = 0, next_at = $2, \
                     delivered_at = NULL WHERE id = $1",
                    &[id, &at.millis()],
                )
                .await
                .map_err(db_err)?;
            }
        }
    }
    Ok(())
}

fn notification_row(r: &tokio_postgres::Row) -> Result<Notification, StoreError> {
    crate::outbox::from_columns(
        r.get(0),
        r.get(1),
        r.get(2),
        r.get(3),
        r.get(4),
        r.get(5),
        i64::from(r.get::<_, i32>(6)),
        r.get(7),
        r.get(8),
        r.get(9),
        r.get(10),
    )
}

/// Comma-joined ids, each payload under PostgreSQL's 8000-byte limit.
fn notify_payloads(ids: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for id in ids {
        if !cur.is_empty() && cur.len() + id.len() + 1 > 7000 {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(',');
        }
        cur.push_str(id);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn status_list(statuses: &[Status]) -> Vec<String> {
    statuses.iter().map(|s| s.as_str().to_string()).collect()
}

const KEY_COLUMNS: &str =
    "id, hash, identity, kind, groups, created_by, created_at, expires_at, revoked_at, sponsor";

fn key_row(r: &tokio_postgres::Row) -> Result<crate::ManagedKey, StoreError> {
    let id: String = r.get(0);
    let corrupt = |m: &str| StoreError::Corrupt {
        id: id.clone(),
        message: m.into(),
    };
    let hash: Vec<u8> = r.get(1);
    let hash =
        <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| corrupt("key hash is not 32 bytes"))?;
    let kind = crate::keys::kind_from(r.get(3)).ok_or_else(|| corrupt("unknown key kind"))?;
    let groups = serde_json::from_str(r.get(4)).map_err(|_| corrupt("unreadable key groups"))?;
    Ok(crate::ManagedKey {
        hash,
        identity: r.get(2),
        kind,
        groups,
        created_by: r.get(5),
        created_at: Timestamp(r.get(6)),
        expires_at: r.get::<_, Option<i64>>(7).map(Timestamp),
        revoked_at: r.get::<_, Option<i64>>(8).map(Timestamp),
        sponsor: r.get(9),
        id,
    })
}

fn binding_row(r: &tokio_postgres::Row) -> Result<crate::IdentityBinding, StoreError> {
    let id_key: String = r.get(0);
    let kind = crate::keys::kind_from(r.get(3)).ok_or_else(|| StoreError::Corrupt {
        id: id_key.clone(),
        message: "unknown identity kind".into(),
    })?;
    Ok(crate::IdentityBinding {
        id_key,
        source: r.get(1),
        id: r.get(2),
        kind,
        first_seen: Timestamp(r.get(4)),
    })
}

fn checkpoint_row(r: &tokio_postgres::Row) -> StoredCheckpoint {
    StoredCheckpoint {
        size: r.get::<_, i64>(0) as u64,
        at: Timestamp(r.get(1)),
        note: r.get(2),
    }
}

impl Writes for PostgresStore {
    fn writer(&self) -> &WriteQueue {
        &self.writer
    }
}

#[async_trait]
impl Actions for PostgresStore {
    async fn reviews_for(&self, query: ReviewQuery) -> Result<Vec<ActionRecord>, StoreError> {
        if query.approver_keys.is_empty() || query.statuses.is_empty() || query.limit == 0 {
            return Ok(Vec::new());
        }
        let (before_at, before_id) = query
            .before
            .clone()
            .map_or((i64::MAX, String::new()), |(t, id)| (t.millis(), id));
        let statuses = status_list(&query.statuses);
        let limit = query.limit as i64;
        // One index range per (entry, status), each cut at the page size, then merged.
        let rows = self
            .client()
            .await?
            .query(
                "SELECT a.id, a.body FROM ( \
                   SELECT DISTINCT x.created_at, x.id FROM unnest($1::text[]) AS k(approver) \
                   CROSS JOIN unnest($2::text[]) AS s(status) \
                   CROSS JOIN LATERAL ( \
                     SELECT r.created_at, r.id FROM review_approvers r \
                     WHERE r.approver = k.approver AND r.status = s.status \
                     AND (r.created_at, r.id) < ($3, $4) \
                     AND r.requester <> $5 \
                     AND (r.on_behalf_of IS NULL OR r.on_behalf_of <> $5) \
                     ORDER BY r.created_at DESC, r.id DESC LIMIT $6) AS x \
                   ORDER BY x.created_at DESC, x.id DESC LIMIT $6) AS p \
                 JOIN actions a ON a.id = p.id ORDER BY p.created_at DESC, p.id DESC",
                &[
                    &query.approver_keys,
                    &statuses,
                    &before_at,
                    &before_id,
                    &query.reviewer,
                    &limit,
                ],
            )
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| decode(r.get(0), r.get(1))).collect()
    }

    async fn get(&self, id: &str) -> Result<Option<ActionRecord>, StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached("SELECT body FROM actions WHERE id = $1")
            .await
            .map_err(db_err)?;
        let row = c.query_opt(&stmt, &[&id]).await.map_err(db_err)?;
        row.map(|r| decode(id, r.get(0))).transpose()
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<ActionRecord>, StoreError> {
        let c = self.client().await?;
        let (after_at, after_id) = filter
            .after
            .map_or((i64::MIN, String::new()), |(t, id)| (t.millis(), id));
        // An empty status list means every status.
        let rows = c
            .query(
                "SELECT id, body FROM actions \
                 WHERE (cardinality($1::text[]) = 0 OR status = ANY($1)) \
                 AND (created_at, id) > ($3, $4) ORDER BY created_at, id LIMIT $2",
                &[
                    &status_list(&filter.statuses),
                    &(filter.limit as i64),
                    &after_at,
                    &after_id,
                ],
            )
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| decode(r.get::<_, &str>(0), r.get(1)))
            .collect()
    }

    async fn due_for_expiry(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT id FROM actions WHERE status IN ('pending', 'needs_clarification') \
                 AND review_expires_at <= $1 ORDER BY review_expires_at LIMIT $2",
                &[&now.millis(), &(limit as i64)],
            )
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn next_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT MIN(review_expires_at) FROM actions \
                 WHERE status IN ('pending', 'needs_clarification')",
                &[],
            )
            .await
            .map_err(db_err)?;
        Ok(row.get::<_, Option<i64>>(0).map(Timestamp))
    }

    async fn open_reviews(&self) -> Result<u64, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT count(*) FROM actions WHERE status IN ('pending', 'needs_clarification')",
                &[],
            )
            .await
            .map_err(db_err)?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}

#[async_trait]
impl AuditLog for PostgresStore {
    async fn audit_size(&self) -> Result<u64, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one("SELECT size FROM audit_head WHERE id = 1", &[])
            .await
            .map_err(db_err)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn audit_entries(&self, start: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT idx, action_id, at, body FROM audit_entries WHERE idx >= $1 \
                 ORDER BY idx LIMIT $2",
                &[&(start as i64), &(limit as i64)],
            )
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                index: r.get::<_, i64>(0) as u64,
                action_id: r.get(1),
                at: Timestamp(r.get(2)),
                body: r.get(3),
            })
            .collect())
    }

    async fn audit_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        let owners: Vec<(u64, u64)> = indexes.iter().map(|&k| stored_hash_owner(k)).collect();
        let wanted: Vec<i64> = owners
            .iter()
            .map(|(n, _)| *n as i64)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT idx, hashes FROM audit_entries WHERE idx = ANY($1)",
                &[&wanted],
            )
            .await
            .map_err(db_err)?;
        let blobs: HashMap<i64, Vec<u8>> = rows
            .into_iter()
            .map(|r| (r.get::<_, i64>(0), r.get::<_, Vec<u8>>(1)))
            .collect();
        RowHashes(blobs).read_hashes(indexes)
    }

    async fn action_audit_indexes(&self, action_id: &str) -> Result<Vec<u64>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT idx FROM audit_entries WHERE action_id = $1 ORDER BY idx",
                &[&action_id],
            )
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "SELECT size, at, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
                &[],
            )
            .await
            .map_err(db_err)?;
        Ok(row.as_ref().map(checkpoint_row))
    }

    async fn audit_checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT size, at, note FROM audit_checkpoints ORDER BY size",
                &[],
            )
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(checkpoint_row).collect())
    }
}

#[async_trait]
impl Keys for PostgresStore {
    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<crate::ManagedKey>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = $1"),
                &[&hash.as_slice()],
            )
            .await
            .map_err(db_err)?;
        row.as_ref().map(key_row).transpose()
    }

    async fn list_keys(&self) -> Result<Vec<crate::ManagedKey>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"),
                &[],
            )
            .await
            .map_err(db_err)?;
        rows.iter().map(key_row).collect()
    }

    async fn identity_binding(
        &self,
        id_key: &str,
    ) -> Result<Option<crate::IdentityBinding>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT id_key, source, id, kind, first_seen FROM identity_bindings \
                 WHERE id_key = $1",
                &[&id_key],
            )
            .await
            .map_err(db_err)?;
        row.as_ref().map(binding_row).transpose()
    }

    async fn stored_secret(&self, name: &str) -> Result<Option<crate::StoredSecret>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT name, sealed, set_by, set_at FROM stored_secrets WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| crate::StoredSecret {
            name: r.get(0),
            sealed: r.get(1),
            set_by: r.get(2),
            set_at: Timestamp(r.get(3)),
        }))
    }

    async fn session_by_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<crate::ConsoleSession>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT hash, identity, mfa, created_at, expires_at, ended_at \
                 FROM console_sessions WHERE hash = $1",
                &[&hash.as_slice()],
            )
            .await
            .map_err(db_err)?;
        row.map(|r| {
            crate::sessions::decode(
                r.get::<_, &[u8]>(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
            )
        })
        .transpose()
    }
}

#[async_trait]
impl crate::Contacts for PostgresStore {
    async fn contacts(
        &self,
        query: &crate::ContactQuery,
    ) -> Result<Vec<crate::IdentityContact>, StoreError> {
        let (column, value) = query.column_and_value();
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {} FROM identity_contacts WHERE {column} = $1 \
                     ORDER BY source LIMIT $2",
                    crate::contacts::COLUMNS
                ),
                &[&value, &crate::contacts::MAX_MATCHES],
            )
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                crate::contacts::decode(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))
            })
            .collect()
    }
}

#[async_trait]
impl Outbox for PostgresStore {
    async fn outbox_due(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let sql = format!(
            "SELECT {} FROM outbox o WHERE {} ORDER BY o.id LIMIT $2",
            crate::outbox::COLUMNS,
            crate::outbox::DUE_WHERE.replace("?1", "$1")
        );
        let rows = self
            .client()
            .await?
            .query(&sql, &[&now.millis(), &(limit as i64)])
            .await
            .map_err(db_err)?;
        rows.iter().map(notification_row).collect()
    }

    async fn outbox_next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT MIN(next_at) FROM outbox WHERE state = 'queued'",
                &[],
            )
            .await
            .map_err(db_err)?;
        Ok(row.get::<_, Option<i64>>(0).map(Timestamp))
    }

    async fn outbox_list(&self, filter: OutboxFilter) -> Result<Vec<Notification>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {} FROM outbox WHERE ($1::text IS NULL OR state = $1) AND id > $2 \
                     ORDER BY id LIMIT $3",
                    crate::outbox::COLUMNS
                ),
                &[
                    &filter.state.map(OutboxState::as_str),
                    &filter.after.unwrap_or(0),
                    &(filter.limit as i64),
                ],
            )
            .await
            .map_err(db_err)?;
        rows.iter().map(notification_row).collect()
    }

    async fn outbox_get(&self, id: i64) -> Result<Option<Notification>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "SELECT {} FROM outbox WHERE id = $1",
                    crate::outbox::COLUMNS
                ),
                &[&id],
            )
            .await
            .map_err(db_err)?;
        row.as_ref().map(notification_row).transpose()
    }

    async fn outbox_counts(&self) -> Result<Vec<(OutboxState, String, u64)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT state, channel, count(*) FROM outbox GROUP BY state, channel",
                &[],
            )
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                OutboxState::parse(r.get(0))
                    .map(|s| (s, r.get::<_, String>(1), r.get::<_, i64>(2) as u64))
            })
            .collect())
    }

    async fn channel_message(
        &self,
        action_id: &str,
        channel: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT message FROM channel_messages WHERE action_id = $1 AND channel = $2",
                &[&action_id, &channel],
            )
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| r.get(0)))
    }
}

#[async_trait]
impl Coordination for PostgresStore {
    fn changes(&self) -> Option<broadcast::Receiver<String>> {
        Some(self.changes.subscribe())
    }

    fn changes_from_other_processes(&self) -> bool {
        true
    }

    fn write_failure(&self) -> Option<String> {
        self.health.failure()
    }

    async fn try_lead(&self) -> Result<Option<Box<dyn crate::Lease>>, StoreError> {
        Ok(self
            .lead()
            .await?
            .map(|l| Box::new(l) as Box<dyn crate::Lease>))
    }
}
