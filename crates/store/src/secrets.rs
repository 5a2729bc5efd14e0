//! Static secrets as stored (issue #18, `[[credentials]] kind = "static"`): only the sealed
//! bytes, which the gateway seals and opens with a key in a file beside the database. The store
//! never sees the key nor the value; a row holds the credential's name, the sealed bytes, and
//! who set it when.

use countersign_core::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::StoreError;

/// A static secret as stored: sealed (AEAD) by the gateway, opaque to the store.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSecret {
    /// The configured credential's name (the primary key).
    pub name: String,
    /// The sealed value (the gateway's format: key id, nonce, ciphertext and tag).
    pub sealed: Vec<u8>,
    /// Who set it (`operator:<user>`).
    pub set_by: String,
    /// When.
    pub set_at: Timestamp,
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSecret")
            .field("name", &self.name)
            .field("sealed", &format_args!("{} bytes", self.sealed.len()))
            .field("set_by", &self.set_by)
            .field("set_at", &self.set_at)
            .finish()
    }
}

pub(crate) const COLUMNS: &str = "name, sealed, set_by, set_at";

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<StoredSecret> {
    Ok(StoredSecret {
        name: r.get(0)?,
        sealed: r.get(1)?,
        set_by: r.get(2)?,
        set_at: Timestamp(r.get(3)?),
    })
}

/// The secret named `name` (SQLite).
pub(crate) fn get(conn: &Connection, name: &str) -> Result<Option<StoredSecret>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM stored_secrets WHERE name = ?1"
    ))
    .map_err(db_err)?
    .query_row(params![name], from_row)
    .optional()
    .map_err(db_err)
}

/// Stores `s`, replacing the value of the same name (SQLite).
pub(crate) fn put(conn: &Connection, s: &StoredSecret) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO stored_secrets ({COLUMNS}) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, \
         set_by = excluded.set_by, set_at = excluded.set_at"
    ))
    .map_err(db_err)?
    .execute(params![s.name, s.sealed, s.set_by, s.set_at.millis()])
    .map_err(db_err)?;
    Ok(())
}
