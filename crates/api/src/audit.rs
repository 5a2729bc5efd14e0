//! The audit log as API v1 shows it: entries, inclusion and consistency proofs (hashes in
//! standard base64), and the `audit` member of an action.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `audit` member of `GET /v1/actions/{id}`: the action's entry indexes and, with
/// `proof=true`, inclusion proofs against the latest checkpoint (entries newer than it are
/// `pending`; with no checkpoint yet, all are).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionAudit {
    /// The indexes of the action's entries.
    pub indexes: Vec<u64>,
    /// The checkpoint the proofs are against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// Its tree size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_size: Option<u64>,
    /// One proof per entry the checkpoint covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proofs: Option<Vec<EntryProof>>,
    /// Entries newer than the checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Vec<u64>>,
}

/// The inclusion proof of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryProof {
    /// The entry's index.
    pub index: u64,
    /// The proof's hashes, base64.
    pub hashes: Vec<String>,
}

/// `GET /v1/audit/entries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entries {
    /// The entries, in index order.
    pub entries: Vec<Entry>,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Its index in the log.
    pub index: u64,
    /// RFC 6962 leaf hash of its canonical bytes, base64.
    pub leaf_hash: String,
    /// The entry (`null` if its stored bytes do not parse).
    pub entry: Value,
    /// The stored bytes as text, when they do not parse as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_text: Option<String>,
}

/// `GET /v1/audit/proof/inclusion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The entry's index.
    pub index: u64,
    /// The tree size proved against.
    pub tree_size: u64,
    /// The proof's hashes, base64.
    pub hashes: Vec<String>,
}

/// `GET /v1/audit/proof/consistency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The smaller tree size.
    pub first: u64,
    /// The larger tree size.
    pub second: u64,
    /// The proof's hashes, base64.
    pub hashes: Vec<String>,
}

/// Query of `GET /v1/audit/entries`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntriesQuery {
    /// First index (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
    /// At most this many (default 100, 1-1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// Query of `GET /v1/audit/proof/inclusion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    /// The entry's index.
    pub index: u64,
    /// The tree size to prove against.
    pub tree_size: u64,
}

/// Query of `GET /v1/audit/proof/consistency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    /// The smaller tree size.
    pub first: u64,
    /// The larger tree size.
    pub second: u64,
}
