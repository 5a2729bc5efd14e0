//! Console sessions (issue #16): a browser signed in through the console's OpenID Connect flow.
//! Only the SHA-256 of the session secret the cookie carries is stored, with the identity the
//! ID token proved and whether it showed multi-factor authentication. Rows are written through
//! the one write path (`write.rs`) like everything else and are shared by every replica, so a
//! session survives restarts, works on any replica behind a load balancer, and a logout holds
//! everywhere at once. Ended and long-expired rows are deleted when new sessions start.

use countersign_core::{Identity, Timestamp};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::StoreError;

/// How long an expired or ended session row is kept (for nothing but a later look by an
/// operator) before a new session's write deletes it.
pub const KEEP_ENDED_MILLIS: i64 = 24 * 3600 * 1000;

/// One signed-in console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// SHA-256 of the secret in the session cookie: the primary key.
    pub hash: [u8; 32],
    /// Who signed in, as the ID token proved it (groups at sign-in).
    pub identity: Identity,
    /// Whether the ID token showed multi-factor authentication.
    pub mfa: bool,
    /// When it started.
    pub created_at: Timestamp,
    /// When it ends by itself.
    pub expires_at: Timestamp,
    /// When it was ended (logout), if it was.
    pub ended_at: Option<Timestamp>,
}

impl ConsoleSession {
    /// Whether the session may be used at `now`: not ended, not expired.
    pub fn live_at(&self, now: Timestamp) -> bool {
        self.ended_at.is_none() && now < self.expires_at
    }
}

pub(crate) const COLUMNS: &str = "hash, identity, mfa, created_at, expires_at, ended_at";

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// A session from its stored columns (the identity as JSON).
pub(crate) fn decode(
    hash: &[u8],
    identity: &str,
    mfa: bool,
    created_at: i64,
    expires_at: i64,
    ended_at: Option<i64>,
) -> Result<ConsoleSession, StoreError> {
    let corrupt = |message: &str| StoreError::Corrupt {
        id: "console session".into(),
        message: message.into(),
    };
    let hash: [u8; 32] = hash
        .try_into()
        .map_err(|_| corrupt("hash is not 32 bytes"))?;
    let identity = serde_json::from_str(identity).map_err(|e| corrupt(&e.to_string()))?;
    Ok(ConsoleSession {
        hash,
        identity,
        mfa,
        created_at: Timestamp(created_at),
        expires_at: Timestamp(expires_at),
        ended_at: ended_at.map(Timestamp),
    })
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Result<ConsoleSession, StoreError>> {
    let hash: Vec<u8> = r.get(0)?;
    let identity: String = r.get(1)?;
    Ok(decode(
        &hash,
        &identity,
        r.get::<_, i64>(2)? != 0,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

pub(crate) fn get(
    conn: &Connection,
    hash: &[u8; 32],
) -> Result<Option<ConsoleSession>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM console_sessions WHERE hash = ?1"
    ))
    .map_err(db_err)?
    .query_row(params![hash.as_slice()], from_row)
    .optional()
    .map_err(db_err)?
    .transpose()
}

pub(crate) fn insert(
    conn: &Connection,
    s: &ConsoleSession,
    identity: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO console_sessions (hash, identity, mfa, created_at, expires_at, ended_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
    )
    .map_err(db_err)?
    .execute(params![
        s.hash.as_slice(),
        identity,
        i64::from(s.mfa),
        s.created_at.millis(),
        s.expires_at.millis()
    ])
    .map_err(db_err)?;
    Ok(())
}

pub(crate) fn end(conn: &Connection, hash: &[u8; 32], at: Timestamp) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE console_sessions SET ended_at = ?2 WHERE hash = ?1 AND ended_at IS NULL",
    )
    .map_err(db_err)?
    .execute(params![hash.as_slice(), at.millis()])
    .map_err(db_err)?;
    Ok(())
}

pub(crate) fn purge(conn: &Connection, now: Timestamp) -> Result<(), StoreError> {
    let before = now.millis().saturating_sub(KEEP_ENDED_MILLIS);
    conn.prepare_cached("DELETE FROM console_sessions WHERE expires_at < ?1 OR ended_at < ?1")
        .map_err(db_err)?
        .execute(params![before])
        .map_err(db_err)?;
    Ok(())
}
