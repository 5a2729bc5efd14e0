//! Offline verification, trusting nothing but the log's public key: of an exported JSON Lines
//! bundle, and of a log's stored rows (entries, tree hashes, signed checkpoints).
//!
//! A bundle is: a header line, a checkpoint line, then one line per entry in index order:
//!
//! ```text
//! {"format":"countersign-audit-bundle/1","origin":"…","tree_size":N,"start":A,"end":B}
//! {"checkpoint":"<signed note>"}
//! {"entry":{…canonical entry…},"index":A,"leaf_hash":"<base64>","proof":["<base64>",…]}
//! ```
//!
//! A full bundle (`start` 0, `end` = the checkpoint's size) needs no proofs: the entries rebuild the
//! tree, whose root must be the signed one. A partial bundle carries an inclusion proof per entry.
//! Each entry's own leaf hash lets a verifier name the first entry that was changed.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use crate::checkpoint::Checkpoint;
use crate::merkle::{check_record, leaf_hash, stored_hash_index, tree_hash, MemoryHashes};
use crate::note::{self, Verifier};
use crate::Hash;

/// The bundle format's name, in its header.
pub const BUNDLE_FORMAT: &str = "countersign-audit-bundle/1";

/// What a successful verification establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Entries checked.
    pub entries: u64,
    /// The signed tree size.
    pub tree_size: u64,
    /// The signed root.
    pub root: Hash,
    /// Checkpoints checked (stored-log verification; 1 for a bundle).
    pub checkpoints: usize,
}

/// What is wrong, naming the first bad index where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tamper {
    /// An entry's content does not match its hash, its proof or its position.
    #[error("entry {0} was modified")]
    Modified(u64),
    /// An entry is missing.
    #[error("entry {0} was deleted")]
    Deleted(u64),
    /// Entries are out of order.
    #[error("entries were reordered at index {0}")]
    Reordered(u64),
    /// An entry appears that the log never had.
    #[error("an entry was inserted at index {0}")]
    Inserted(u64),
    /// Entries are missing at the end.
    #[error("the log was truncated: entries from index {0} on are missing")]
    Truncated(u64),
    /// A checkpoint is not signed by the given key.
    #[error("bad checkpoint signature: {0}")]
    BadSignature(String),
    /// The entries rebuild a tree whose root is not the signed one.
    #[error("the entries do not produce the signed root of tree size {0}")]
    RootMismatch(u64),
    /// A stored interior tree hash was changed.
    #[error("stored tree hash {0} was modified")]
    HashModified(u64),
    /// The checkpoint is not consistent with an earlier one.
    #[error(
        "checkpoint of size {size} is inconsistent with the earlier checkpoint of size {earlier}"
    )]
    Inconsistent {
        /// The earlier checkpoint's size.
        earlier: u64,
        /// This checkpoint's size.
        size: u64,
    },
    /// The bundle is not in the expected format.
    #[error("line {line}: {why}")]
    Malformed {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        why: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    origin: String,
    tree_size: u64,
    start: u64,
    end: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointLine {
    checkpoint: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryLine<'a> {
    /// The entry's canonical bytes, exactly as the log hashed them.
    #[serde(borrow)]
    entry: &'a serde_json::value::RawValue,
    index: u64,
    leaf_hash: &'a str,
    #[serde(default)]
    proof: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct EntryIndex {
    index: u64,
}

/// The bundle header line.
pub fn header_line(origin: &str, tree_size: u64, start: u64, end: u64) -> String {
    serde_json::json!({
        "format": BUNDLE_FORMAT, "origin": origin, "tree_size": tree_size, "start": start, "end": end,
    })
    .to_string()
}

/// The checkpoint line.
pub fn checkpoint_line(note: &str) -> String {
    serde_json::json!({ "checkpoint": note }).to_string()
}

/// An entry line: `body`, the entry's canonical JSON, is embedded byte for byte (verifiers hash
/// exactly those bytes, so a bundle must not be re-formatted).
pub fn entry_line(index: u64, body: &[u8], proof: Option<&[Hash]>) -> String {
    let body = String::from_utf8_lossy(body);
    let mut line = format!(
        "{{\"entry\":{body},\"index\":{index},\"leaf_hash\":\"{}\"",
        B64.encode(leaf_hash(body.as_bytes()))
    );
    if let Some(p) = proof {
        let hashes: Vec<String> = p.iter().map(|h| format!("\"{}\"", B64.encode(h))).collect();
        line.push_str(&format!(",\"proof\":[{}]", hashes.join(",")));
    }
    line.push('}');
    line
}

fn decode_hash(s: &str) -> Option<Hash> {
    B64.decode(s).ok()?.try_into().ok()
}

fn open_checkpoint(text: &str, key: &Verifier) -> Result<Checkpoint, Tamper> {
    let opened = note::open(text, std::slice::from_ref(key))
        .map_err(|e| Tamper::BadSignature(e.to_string()))?;
    Checkpoint::parse(&opened.text).map_err(|e| Tamper::BadSignature(e.to_string()))
}

fn malformed(line: usize, why: impl Into<String>) -> Tamper {
    Tamper::Malformed {
        line,
        why: why.into(),
    }
}

/// Verifies a bundle against the log's verifier key, and, if given, its consistency with an
/// earlier checkpoint (a full bundle is needed for that).
pub fn verify_bundle(
    bundle: &str,
    key: &Verifier,
    previous: Option<&str>,
) -> Result<Verified, Tamper> {
    let mut lines = bundle
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines.next().ok_or_else(|| malformed(1, "empty bundle"))?;
    let header: Header =
        serde_json::from_str(first).map_err(|e| malformed(1, format!("header: {e}")))?;
    if header.format != BUNDLE_FORMAT {
        return Err(malformed(1, format!("unknown format `{}`", header.format)));
    }
    let (n, second) = lines
        .next()
        .ok_or_else(|| malformed(2, "no checkpoint line"))?;
    let cp_line: CheckpointLine =
        serde_json::from_str(second).map_err(|e| malformed(n + 1, format!("checkpoint: {e}")))?;
    let cp = open_checkpoint(&cp_line.checkpoint, key)?;
    if cp.size() != header.tree_size || cp.origin() != header.origin {
        return Err(malformed(
            1,
            "the header does not match the signed checkpoint",
        ));
    }
    if header.start > header.end || header.end > cp.size() {
        return Err(malformed(
            1,
            "the header's range is outside the signed tree",
        ));
    }
    let full = header.start == 0 && header.end == cp.size();

    let parsed: Vec<(usize, EntryLine)> = lines
        .map(|(n, l)| {
            serde_json::from_str::<EntryLine>(l)
                .map(|e| (n + 1, e))
                .map_err(|e| malformed(n + 1, format!("entry: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let mut leaves = Vec::with_capacity(parsed.len());
    let mut expected = header.start;
    for (pos, (line, e)) in parsed.iter().enumerate() {
        if e.index != expected {
            let next = parsed.get(pos + 1).map(|(_, n)| n.index);
            return Err(if e.index + 1 == expected {
                Tamper::Inserted(e.index)
            } else if e.index > expected && next == Some(expected) {
                Tamper::Reordered(expected)
            } else if e.index > expected {
                Tamper::Deleted(expected)
            } else {
                Tamper::Reordered(e.index)
            });
        }
        let body = e.entry.get().as_bytes();
        let leaf = leaf_hash(body);
        let claimed = decode_hash(e.leaf_hash)
            .ok_or_else(|| malformed(*line, "leaf_hash is not base64 of 32 bytes"))?;
        let inner = serde_json::from_str::<EntryIndex>(e.entry.get()).map(|x| x.index);
        if leaf != claimed || inner.ok() != Some(e.index) {
            return Err(Tamper::Modified(e.index));
        }
        if let Some(proof) = &e.proof {
            let proof: Vec<Hash> = proof
                .iter()
                .map(|h| {
                    decode_hash(h)
                        .ok_or_else(|| malformed(*line, "proof hash is not base64 of 32 bytes"))
                })
                .collect::<Result<_, _>>()?;
            check_record(&proof, cp.size(), cp.root(), e.index, &leaf)
                .map_err(|_| Tamper::Modified(e.index))?;
        } else if !full {
            return Err(malformed(
                *line,
                "a partial bundle needs a proof for every entry",
            ));
        }
        leaves.push(leaf);
        expected += 1;
    }
    if expected < header.end {
        return Err(Tamper::Truncated(expected));
    }
    if full {
        let mut tree = MemoryHashes::new();
        for leaf in &leaves {
            tree.append_leaf_hash(*leaf)
                .map_err(|e| malformed(0, e.to_string()))?;
        }
        let root = tree_hash(cp.size(), &tree).map_err(|e| malformed(0, e.to_string()))?;
        if &root != cp.root() {
            return Err(Tamper::RootMismatch(cp.size()));
        }
        if let Some(prev) = previous {
            let old = open_checkpoint(prev, key)?;
            let consistent = old.size() <= cp.size()
                && tree_hash(old.size(), &tree).is_ok_and(|r| &r == old.root());
            if !consistent {
                return Err(Tamper::Inconsistent {
                    earlier: old.size(),
                    size: cp.size(),
                });
            }
        }
    } else if previous.is_some() {
        return Err(malformed(
            1,
            "checking an earlier checkpoint needs a full bundle",
        ));
    }
    Ok(Verified {
        entries: leaves.len() as u64,
        tree_size: cp.size(),
        root: *cp.root(),
        checkpoints: 1,
    })
}

/// Verifies a log as stored: `entries` are `(index, canonical bytes)` in index order, `stored`
/// the stored tree hashes from index 0, `checkpoints` every signed checkpoint. Rebuilds the tree
/// from the entries and compares every stored hash and every checkpoint with it.
///
/// `previous`, a signed checkpoint kept from earlier (its signature checked with `key`), must
/// be consistent with the stored log: the log holds at least its entries and the first
/// `previous.size` of them rebuild its root (the rebuilt tree is the current one, so this is
/// the consistency of that checkpoint with the current tree). Stored checkpoints can be deleted
/// along with an edit whose hashes were recomputed; one the auditor kept cannot.
pub fn verify_stored<I>(
    entries: I,
    stored: &[Hash],
    checkpoints: &[String],
    key: &Verifier,
    previous: Option<&str>,
) -> Result<Verified, Tamper>
where
    I: IntoIterator<Item = (u64, Vec<u8>)>,
{
    let mut tree = MemoryHashes::new();
    let mut expected = 0u64;
    for (index, body) in entries {
        if index != expected {
            return Err(if index > expected {
                Tamper::Deleted(expected)
            } else {
                Tamper::Inserted(index)
            });
        }
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        let canonical = parsed
            .as_ref()
            .and_then(|v| serde_jcs::to_vec(v).ok())
            .is_some_and(|c| c == body);
        if !canonical || parsed.and_then(|v| v.get("index").and_then(Value::as_u64)) != Some(index)
        {
            return Err(Tamper::Modified(index));
        }
        tree.append(&body)
            .map_err(|e| malformed(0, e.to_string()))?;
        expected += 1;
    }
    let rebuilt = tree.hashes();
    for (i, (have, want)) in stored.iter().zip(rebuilt).enumerate() {
        if have != want {
            let i = i as u64;
            // A leaf hash sits at stored_hash_index(0, n): name the entry when it is one.
            let leaf = (0..expected).find(|n| stored_hash_index(0, *n) == i);
            return Err(match leaf {
                Some(n) => Tamper::Modified(n),
                None => Tamper::HashModified(i),
            });
        }
    }
    if stored.len() < rebuilt.len() {
        return Err(Tamper::HashModified(stored.len() as u64));
    }
    if stored.len() > rebuilt.len() {
        // Tree hashes for entries that are gone: the newest entries were deleted.
        return Err(Tamper::Truncated(expected));
    }
    let mut last: Option<Checkpoint> = None;
    for text in checkpoints {
        let cp = open_checkpoint(text, key)?;
        if cp.size() > expected {
            return Err(Tamper::Truncated(expected));
        }
        let root = tree_hash(cp.size(), &tree).map_err(|e| malformed(0, e.to_string()))?;
        if &root != cp.root() {
            return Err(match &last {
                Some(prev) => Tamper::Inconsistent {
                    earlier: prev.size(),
                    size: cp.size(),
                },
                None => Tamper::RootMismatch(cp.size()),
            });
        }
        last = Some(cp);
    }
    if let Some(prev) = previous {
        let old = open_checkpoint(prev, key)?;
        if old.size() > expected {
            return Err(Tamper::Truncated(expected));
        }
        let root = tree_hash(old.size(), &tree).map_err(|e| malformed(0, e.to_string()))?;
        if &root != old.root() {
            return Err(Tamper::Inconsistent {
                earlier: old.size(),
                size: expected,
            });
        }
    }
    let root = tree_hash(expected, &tree).map_err(|e| malformed(0, e.to_string()))?;
    Ok(Verified {
        entries: expected,
        tree_size: expected,
        root,
        checkpoints: checkpoints.len(),
    })
}
