//! The identity registry: each normalised id ([`countersign_core::id_key`]) bound, at first
//! sight, to the one source that may use it (a configured identity, managed keys for that id,
//! or one OIDC `issuer#subject`). Rows are never changed or deleted, so a binding read once may
//! be cached for good.

use countersign_core::{IdentityKind, Timestamp};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::StoreError;

/// One normalised id and the source it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityBinding {
    /// [`countersign_core::id_key`] of the id: the primary key.
    pub id_key: String,
    /// The stable key of the source: `config:<id>`, `managed:<id>` or `oidc:<issuer>#<subject>`.
    pub source: String,
    /// The id as first seen.
    pub id: String,
    /// Its kind as first seen.
    pub kind: IdentityKind,
    /// When it was first seen.
    pub first_seen: Timestamp,
}

pub(crate) const COLUMNS: &str = "id_key, source, id, kind, first_seen";

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Result<IdentityBinding, StoreError>> {
    let id_key: String = r.get(0)?;
    let kind: String = r.get(3)?;
    let Some(kind) = crate::keys::kind_from(&kind) else {
        return Ok(Err(StoreError::Corrupt {
            id: id_key,
            message: "unknown identity kind".into(),
        }));
    };
    Ok(Ok(IdentityBinding {
        id_key,
        source: r.get(1)?,
        id: r.get(2)?,
        kind,
        first_seen: Timestamp(r.get(4)?),
    }))
}

pub(crate) fn get(conn: &Connection, id_key: &str) -> Result<Option<IdentityBinding>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM identity_bindings WHERE id_key = ?1"
    ))
    .map_err(db_err)?
    .query_row(params![id_key], from_row)
    .optional()
    .map_err(db_err)?
    .transpose()
}

/// Inserts `b` unless its id key is bound; returns the binding that holds afterwards.
pub(crate) fn bind(conn: &Connection, b: &IdentityBinding) -> Result<IdentityBinding, StoreError> {
    conn.prepare_cached(&format!(
        "INSERT OR IGNORE INTO identity_bindings ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
    ))
    .map_err(db_err)?
    .execute(params![
        b.id_key,
        b.source,
        b.id,
        b.kind.as_str(),
        b.first_seen.millis()
    ])
    .map_err(db_err)?;
    get(conn, &b.id_key)?
        .ok_or_else(|| StoreError::Database(format!("identity binding {} vanished", b.id_key)))
}
