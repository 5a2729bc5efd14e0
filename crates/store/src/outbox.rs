//! The notification outbox as stored: one row per notification and channel, written by
//! `write.rs` in the same transaction as the change it tells of (so a committed change is never
//! left unannounced, and an uncommitted one never announced), then delivered, retried or
//! dead-lettered by the one delivery worker through [`OutboxChange`]s, which go through the same
//! single writer.
//!
//! A row holds no content: the action id, the channel, the kind of notification and the index of
//! the audit entry it tells of. What is sent is built at delivery from the action's masked view
//! and that (masked) audit entry, so the table holds nothing a reviewer may not see.

use countersign_core::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::StoreError;

/// Where a notification is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxState {
    /// Waiting for its (next) attempt.
    Queued,
    /// Sent and acknowledged by the channel.
    Delivered,
    /// Given up on after `max_attempts` (or a permanent refusal); `countersign outbox retry`
    /// queues it again.
    Dead,
}

impl OutboxState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Queued => "queued",
            OutboxState::Delivered => "delivered",
            OutboxState::Dead => "dead",
        }
    }

    /// The state of a stored name.
    pub fn parse(s: &str) -> Option<OutboxState> {
        match s {
            "queued" => Some(OutboxState::Queued),
            "delivered" => Some(OutboxState::Delivered),
            "dead" => Some(OutboxState::Dead),
            _ => None,
        }
    }
}

/// One notification for one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Its id (also the Standard Webhooks `webhook-id`, stable across retries).
    pub id: i64,
    /// The action it is about.
    pub action_id: String,
    /// `kind:name` (`webhook:pagerduty`, `slack:#ops`).
    pub channel: String,
    /// What happened (`countersign_core::Event::notification`).
    pub kind: String,
    /// The audit entry it tells of.
    pub audit_index: u64,
    /// Where it is.
    pub state: OutboxState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the change was committed.
    pub created_at: Timestamp,
    /// Not before this (the backoff after a failed attempt).
    pub next_at: Timestamp,
    /// When it was delivered.
    pub delivered_at: Option<Timestamp>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// A notification `write.rs` decided to queue, before it has an id.
#[derive(Debug, Clone)]
pub(crate) struct NewNotification {
    pub action_id: String,
    pub channel: String,
    pub kind: &'static str,
    pub audit_index: u64,
    pub at: Timestamp,
}

/// What the delivery worker (or an operator) records about a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxChange {
    /// Sent; `message` is the channel's id of the message it made, to update it in place later.
    Delivered {
        /// The notification.
        id: i64,
        /// When.
        at: Timestamp,
        /// The channel's message id, if the channel has one.
        message: Option<String>,
    },
    /// Failed; try again at `next_at`.
    Retry {
        /// The notification.
        id: i64,
        /// When to try again.
        next_at: Timestamp,
        /// Why it failed (no secret, no payload).
        error: String,
    },
    /// Failed for good.
    Dead {
        /// The notification.
        id: i64,
        /// Why.
        error: String,
    },
    /// Claimed by a delivery worker for one attempt: not due again before `until` (a worker
    /// that dies mid-attempt leaves it to be tried again then). Decided by `write.rs` only
    /// ([`crate::Outbox::outbox_claim`]).
    Claim {
        /// The notification.
        id: i64,
        /// Not due before.
        until: Timestamp,
    },
    /// Queued again from any state, attempts reset (`countersign outbox retry ID`).
    Requeue {
        /// The notification.
        id: i64,
        /// Due at.
        at: Timestamp,
    },
}

/// Which notifications to list.
#[derive(Debug, Clone, Default)]
pub struct OutboxFilter {
    /// Only this state.
    pub state: Option<OutboxState>,
    /// Only ids greater than this.
    pub after: Option<i64>,
    /// At most this many, oldest first.
    pub limit: usize,
}

/// The columns every read selects, in [`row`]'s order.
pub(crate) const COLUMNS: &str = "id, action_id, channel, kind, audit_index, state, attempts, \
     created_at, next_at, delivered_at, last_error";

/// Due notifications, oldest first, skipping any with an earlier queued notification of the
/// same action and channel (so each channel hears of an action's changes in order).
/// `?1` is the time (PostgreSQL's `$1`).
pub(crate) const DUE_WHERE: &str = "o.state = 'queued' AND o.next_at <= ?1 AND NOT EXISTS \
     (SELECT 1 FROM outbox p WHERE p.action_id = o.action_id AND p.channel = o.channel \
      AND p.state = 'queued' AND p.id < o.id)";

fn corrupt(id: i64, what: &str) -> StoreError {
    StoreError::Corrupt {
        id: format!("outbox {id}"),
        message: what.into(),
    }
}

/// A notification from its columns: `(id, action_id, channel, kind, audit_index, state,
/// attempts, created_at, next_at, delivered_at, last_error)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn from_columns(
    id: i64,
    action_id: String,
    channel: String,
    kind: String,
    audit_index: i64,
    state: &str,
    attempts: i64,
    created_at: i64,
    next_at: i64,
    delivered_at: Option<i64>,
    last_error: Option<String>,
) -> Result<Notification, StoreError> {
    Ok(Notification {
        id,
        action_id,
        channel,
        kind,
        audit_index: u64::try_from(audit_index).map_err(|_| corrupt(id, "negative index"))?,
        state: OutboxState::parse(state).ok_or_else(|| corrupt(id, "unknown state"))?,
        attempts: u32::try_from(attempts).map_err(|_| corrupt(id, "bad attempt count"))?,
        created_at: Timestamp(created_at),
        next_at: Timestamp(next_at),
        delivered_at: delivered_at.map(Timestamp),
        last_error,
    })
}

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn row(r: &Row<'_>) -> rusqlite::Result<(i64, Result<Notification, StoreError>)> {
    let id: i64 = r.get(0)?;
    let state: String = r.get(5)?;
    Ok((
        id,
        from_columns(
            id,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            &state,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
            r.get(10)?,
        ),
    ))
}

fn collect(
    rows: impl Iterator<Item = rusqlite::Result<(i64, Result<Notification, StoreError>)>>,
) -> Result<Vec<Notification>, StoreError> {
    rows.map(|r| r.map_err(db_err).and_then(|(_, n)| n))
        .collect()
}

/// SQLite: queues new notifications.
pub(crate) fn insert(conn: &Connection, n: &NewNotification) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO outbox (action_id, channel, kind, audit_index, state, attempts, \
         created_at, next_at) VALUES (?1, ?2, ?3, ?4, 'queued', 0, ?5, ?5)",
    )
    .map_err(db_err)?
    .execute(params![
        n.action_id,
        n.channel,
        n.kind,
        n.audit_index as i64,
        n.at.millis()
    ])
    .map_err(db_err)?;
    Ok(())
}

/// SQLite: records what happened to a notification.
pub(crate) fn apply(conn: &Connection, change: &OutboxChange) -> Result<(), StoreError> {
    let run = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<(), StoreError> {
        conn.prepare_cached(sql)
            .map_err(db_err)?
            .execute(p)
            .map_err(db_err)?;
        Ok(())
    };
    match change {
        OutboxChange::Delivered { id, at, message } => {
            run(
                "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, \
                 delivered_at = ?2, last_error = NULL WHERE id = ?1",
                &[id, &at.millis()],
            )?;
            if let Some(m) = message {
                run(
                    "INSERT INTO channel_messages (action_id, channel, message) \
                     SELECT action_id, channel, ?2 FROM outbox WHERE id = ?1 \
                     ON CONFLICT (action_id, channel) DO UPDATE SET message = excluded.message",
                    &[id, m],
                )?;
            }
            Ok(())
        }
        OutboxChange::Retry { id, next_at, error } => run(
            "UPDATE outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3 \
             WHERE id = ?1 AND state = 'queued'",
            &[id, &next_at.millis(), error],
        ),
        OutboxChange::Dead { id, error } => run(
            "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?2 \
             WHERE id = ?1 AND state = 'queued'",
            &[id, error],
        ),
        OutboxChange::Claim { id, until } => run(
            "UPDATE outbox SET next_at = ?2 WHERE id = ?1",
            &[id, &until.millis()],
        ),
        OutboxChange::Requeue { id, at } => run(
            "UPDATE outbox SET state = 'queued', attempts = 0, next_at = ?2, \
             delivered_at = NULL WHERE id = ?1",
            &[id, &at.millis()],
        ),
    }
}

/// SQLite: due notifications (see [`DUE_WHERE`]).
pub(crate) fn due(
    conn: &Connection,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<Notification>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM outbox o WHERE {} ORDER BY o.id LIMIT ?2",
        DUE_WHERE
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
    let rows = stmt
        .query_map(params![now.millis(), limit as i64], row)
        .map_err(db_err)?;
    collect(rows)
}

/// SQLite: the earliest `next_at` of a queued notification.
pub(crate) fn next_due(conn: &Connection) -> Result<Option<Timestamp>, StoreError> {
    conn.prepare_cached("SELECT MIN(next_at) FROM outbox WHERE state = 'queued'")
        .map_err(db_err)?
        .query_row([], |r| r.get::<_, Option<i64>>(0))
        .map(|v| v.map(Timestamp))
        .map_err(db_err)
}

/// SQLite: a page of notifications.
pub(crate) fn list(
    conn: &Connection,
    filter: &OutboxFilter,
) -> Result<Vec<Notification>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM outbox WHERE (?1 IS NULL OR state = ?1) AND id > ?2 \
             ORDER BY id LIMIT ?3"
        ))
        .map_err(db_err)?;
    let rows = stmt
        .query_map(
            params![
                filter.state.map(OutboxState::as_str),
                filter.after.unwrap_or(0),
                filter.limit as i64
            ],
            row,
        )
        .map_err(db_err)?;
    collect(rows)
}

/// SQLite: one notification.
pub(crate) fn get(conn: &Connection, id: i64) -> Result<Option<Notification>, StoreError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"))
        .map_err(db_err)?
        .query_row(params![id], row)
        .optional()
        .map_err(db_err)?
        .map(|(_, n)| n)
        .transpose()
}

/// SQLite: notifications per state and channel.
pub(crate) fn counts(conn: &Connection) -> Result<Vec<(OutboxState, String, u64)>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT state, channel, count(*) FROM outbox GROUP BY state, channel")
        .map_err(db_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(db_err)?;
    let mut out = Vec::new();
    for r in rows {
        let (state, channel, n) = r.map_err(db_err)?;
        if let Some(s) = OutboxState::parse(&state) {
            out.push((s, channel, n as u64));
        }
    }
    Ok(out)
}

/// SQLite: the channel's id of the message it made for an action.
pub(crate) fn message(
    conn: &Connection,
    action_id: &str,
    channel: &str,
) -> Result<Option<String>, StoreError> {
    conn.prepare_cached(
        "SELECT message FROM channel_messages WHERE action_id = ?1 AND channel = ?2",
    )
    .map_err(db_err)?
    .query_row(params![action_id, channel], |r| r.get(0))
    .optional()
    .map_err(db_err)
}
