//! How people from the identity provider are reached in chat (issue #15): per OIDC source
//! (`oidc:<issuer>#<subject>`), the identity as last admitted and what its token proved — the
//! verified email, the Entra object id and tenant. The chat channels map a Slack user's
//! confirmed email, or a Teams user's object id, to these rows. One row per source, replaced
//! whenever a sign-in proves different facts (never by older facts: the newest `recorded_at`
//! wins), written through the one write path (`write.rs`) like everything else.

use countersign_core::{Identity, Timestamp};
use rusqlite::{params, Connection, Row};

use crate::StoreError;

/// A person's contact facts as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityContact {
    /// The stable key of the source, `oidc:<issuer>#<subject>`: the primary key.
    pub source: String,
    /// The identity as admitted when the facts were recorded (groups as its token had them).
    pub identity: Identity,
    /// The verified email, lowercase.
    pub email: Option<String>,
    /// The Entra object id, lowercase (with `entra_tid`).
    pub entra_oid: Option<String>,
    /// The Entra tenant of `entra_oid`, lowercase.
    pub entra_tid: Option<String>,
    /// When these facts were recorded.
    pub recorded_at: Timestamp,
}

/// Which recorded contacts to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactQuery {
    /// Those whose verified email is this one (compared lowercase).
    Email(String),
    /// Those whose Entra object id is this one (compared lowercase), in any tenant: the caller
    /// checks the tenant.
    EntraObject(String),
}

impl ContactQuery {
    /// The column compared and the lowercase value.
    pub(crate) fn column_and_value(&self) -> (&'static str, String) {
        match self {
            ContactQuery::Email(e) => ("email", e.to_lowercase()),
            ContactQuery::EntraObject(o) => ("entra_oid", o.to_ascii_lowercase()),
        }
    }
}

/// Most rows one query returns: more people than this sharing one email or object id is
/// already an ambiguity the caller refuses.
pub(crate) const MAX_MATCHES: i64 = 16;

pub(crate) const COLUMNS: &str = "source, identity, email, entra_oid, entra_tid, recorded_at";

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// A contact from its stored columns (the identity as JSON).
pub(crate) fn decode(
    source: String,
    identity: &str,
    email: Option<String>,
    entra_oid: Option<String>,
    entra_tid: Option<String>,
    recorded_at: i64,
) -> Result<IdentityContact, StoreError> {
    let identity = serde_json::from_str(identity).map_err(|e| StoreError::Corrupt {
        id: source.clone(),
        message: format!("contact identity: {e}"),
    })?;
    Ok(IdentityContact {
        source,
        identity,
        email,
        entra_oid,
        entra_tid,
        recorded_at: Timestamp(recorded_at),
    })
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Result<IdentityContact, StoreError>> {
    let identity: String = r.get(1)?;
    Ok(decode(
        r.get(0)?,
        &identity,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

/// The contacts `query` names (SQLite), at most [`MAX_MATCHES`], by source.
pub(crate) fn find(
    conn: &Connection,
    query: &ContactQuery,
) -> Result<Vec<IdentityContact>, StoreError> {
    let (column, value) = query.column_and_value();
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM identity_contacts WHERE {column} = ?1 ORDER BY source LIMIT ?2"
        ))
        .map_err(db_err)?;
    let rows = stmt
        .query_map(params![value, MAX_MATCHES], from_row)
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(db_err)??);
    }
    Ok(out)
}

/// Records `c` (its identity as JSON), replacing the row of its source unless that one is
/// newer (SQLite).
pub(crate) fn put(
    conn: &Connection,
    c: &IdentityContact,
    identity: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO identity_contacts ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (source) DO UPDATE SET identity = excluded.identity, \
         email = excluded.email, entra_oid = excluded.entra_oid, \
         entra_tid = excluded.entra_tid, recorded_at = excluded.recorded_at \
         WHERE excluded.recorded_at >= identity_contacts.recorded_at"
    ))
    .map_err(db_err)?
    .execute(params![
        c.source,
        identity,
        c.email,
        c.entra_oid,
        c.entra_tid,
        c.recorded_at.millis()
    ])
    .map_err(db_err)?;
    Ok(())
}
