//! Managed API keys as stored: only the SHA-256 of each key, never the key itself.

use countersign_core::{IdentityKind, Timestamp};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::BTreeSet;

use crate::StoreError;

/// A managed API key (for an agent or a service that cannot use OIDC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedKey {
    /// Public key id (`key_...`), safe to log and to show in the audit trail.
    pub id: String,
    /// SHA-256 of the whole secret key.
    pub hash: [u8; 32],
    /// The identity the key authenticates as.
    pub identity: String,
    /// Agent or service.
    pub kind: IdentityKind,
    /// The identity's groups.
    pub groups: BTreeSet<String>,
    /// Who created it.
    pub created_by: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// Unusable at and after this instant.
    pub expires_at: Option<Timestamp>,
    /// Set when revoked; unusable from then on.
    pub revoked_at: Option<Timestamp>,
    /// The human who sponsors the key's agent (its creator): never an approver of its requests.
    pub sponsor: Option<String>,
}

const COLUMNS: &str =
    "id, hash, identity, kind, groups, created_by, created_at, expires_at, revoked_at, sponsor";

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

pub(crate) fn kind_from(s: &str) -> Option<IdentityKind> {
    match s {
        "agent" => Some(IdentityKind::Agent),
        "service" => Some(IdentityKind::Service),
        "human" => Some(IdentityKind::Human),
        _ => None,
    }
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Result<ManagedKey, StoreError>> {
    let id: String = r.get(0)?;
    let hash: Vec<u8> = r.get(1)?;
    let kind: String = r.get(3)?;
    let groups: String = r.get(4)?;
    let corrupt = |m: &str| StoreError::Corrupt {
        id: id.clone(),
        message: m.into(),
    };
    let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) else {
        return Ok(Err(corrupt("key hash is not 32 bytes")));
    };
    let Some(kind) = kind_from(&kind) else {
        return Ok(Err(corrupt("unknown key kind")));
    };
    let Ok(groups) = serde_json::from_str::<BTreeSet<String>>(&groups) else {
        return Ok(Err(corrupt("unreadable key groups")));
    };
    Ok(Ok(ManagedKey {
        hash,
        identity: r.get(2)?,
        kind,
        groups,
        created_by: r.get(5)?,
        created_at: Timestamp(r.get(6)?),
        expires_at: r.get::<_, Option<i64>>(7)?.map(Timestamp),
        revoked_at: r.get::<_, Option<i64>>(8)?.map(Timestamp),
        sponsor: r.get(9)?,
        id,
    }))
}

pub(crate) fn insert(conn: &Connection, key: &ManagedKey) -> Result<bool, StoreError> {
    let groups = serde_json::to_string(&key.groups).map_err(|e| StoreError::Corrupt {
        id: key.id.clone(),
        message: e.to_string(),
    })?;
    conn.prepare_cached(&format!(
        "INSERT INTO api_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))
    .map_err(db_err)?
    .execute(params![
        key.id,
        key.hash.as_slice(),
        key.identity,
        key.kind.as_str(),
        groups,
        key.created_by,
        key.created_at.millis(),
        key.expires_at.map(|t| t.millis()),
        key.revoked_at.map(|t| t.millis()),
        key.sponsor,
    ])
    .map_err(db_err)?;
    Ok(true)
}

pub(crate) fn revoke(conn: &Connection, id: &str, at: Timestamp) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")
        .map_err(db_err)?
        .execute(params![id, at.millis()])
        .map_err(db_err)?;
    Ok(n == 1)
}

pub(crate) fn by_id(conn: &Connection, id: &str) -> Result<Option<ManagedKey>, StoreError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1"))
        .map_err(db_err)?
        .query_row(params![id], from_row)
        .optional()
        .map_err(db_err)?
        .transpose()
}

pub(crate) fn by_hash(
    conn: &Connection,
    hash: &[u8; 32],
) -> Result<Option<ManagedKey>, StoreError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM api_keys WHERE hash = ?1"))
        .map_err(db_err)?
        .query_row(params![hash.as_slice()], from_row)
        .optional()
        .map_err(db_err)?
        .transpose()
}

pub(crate) fn list(conn: &Connection) -> Result<Vec<ManagedKey>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id"
        ))
        .map_err(db_err)?;
    let rows = stmt.query_map([], from_row).map_err(db_err)?;
    rows.map(|r| r.map_err(db_err).and_then(|k| k)).collect()
}
