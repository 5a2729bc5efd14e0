//! The log's Merkle tree, exactly as RFC 6962 / RFC 9162 section 2 defines it: leaf and node
//! hashes, the tree head of the first `n` entries, inclusion proofs ("this entry is in that tree")
//! and consistency proofs ("that tree is a prefix of this one").
//!
//! Interior hashes are not recomputed from the leaves: each appended leaf writes its own hash and
//! the hashes of the perfect subtrees it completes, at positions given by [`stored_hash_index`]
//! (the layout of Go's `golang.org/x/mod/sumdb/tlog`, from Crosby and Wallach). A tree head or a
//! proof then reads at most a few dozen stored hashes, in one batch, through a [`HashReader`], so
//! producing one costs O(log n) whatever the log's size. The store implements [`HashReader`];
//! [`MemoryHashes`] is the in-memory one for tests and small logs.
//!
//! The algorithms follow Go's tlog step by step so that the proofs are byte-for-byte the ones Go
//! (and Certificate Transparency) produce and accept. One deliberate difference: the tree of size
//! 0 has the RFC's root, SHA-256 of the empty string ([`empty_root`]), where tlog uses all zeros;
//! C2SP checkpoints carry the RFC root.

mod frontier;
mod proof;
mod storage;

pub use frontier::{Frontier, NotOnFrontier};

pub use proof::{check_record, check_tree, prove_record, prove_tree};
pub use storage::{
    stored_hash_count, stored_hash_index, stored_hash_owner, stored_hashes_for_record, tree_hash,
};

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree head (root).
pub type Hash = [u8; 32];

/// The largest tree size this module accepts when it reads stored hashes (2^62 leaves). It keeps
/// every stored-hash index below 2^63, so index arithmetic cannot overflow; no log comes near it.
pub const MAX_TREE_SIZE: u64 = 1 << 62;

/// The hash of a log entry: SHA-256(0x00 || entry). The 0x00 prefix keeps a leaf from ever being
/// mistaken for an interior node (RFC 6962 section 2.1, second-preimage resistance).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

/// The hash of an interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: SHA-256 of the empty string (RFC 9162 section 2.1.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Reads stored hashes by their [`stored_hash_index`]. The store implements this over its table;
/// every function here asks for all the hashes it needs in one call, indexes in a fixed order
/// (often, but not always, increasing).
pub trait HashReader {
    /// Why a read failed (I/O, a missing row, ...).
    type Error;

    /// Returns the hashes at `indexes`, in the same order and of the same length; anything else is
    /// reported as [`TreeError::ShortRead`].
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Self::Error>;
}

/// Why a tree head or a proof could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum TreeError<E> {
    /// An inclusion proof was asked for a leaf the tree does not have.
    #[error("leaf index {index} is not in a tree of size {size}; ask for an index below the size")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The tree size asked for.
        size: u64,
    },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("cannot prove tree size {old} is a prefix of tree size {new}: the old size must not exceed the new one")]
    SizesOutOfOrder {
        /// The old (prefix) tree size.
        old: u64,
        /// The new tree size.
        new: u64,
    },
    /// A size beyond [`MAX_TREE_SIZE`].
    #[error("tree size {size} is above the supported maximum of 2^62 leaves")]
    TooLarge {
        /// The size asked for.
        size: u64,
    },
    /// The reader returned a different number of hashes than it was asked for.
    #[error("the hash reader returned {got} hashes for {wanted} indexes; it must return one hash per index")]
    ShortRead {
        /// How many hashes were asked for.
        wanted: usize,
        /// How many came back.
        got: usize,
    },
    /// The reader failed.
    #[error("reading stored hashes failed: {0}")]
    Read(#[source] E),
}

impl<E> TreeError<E> {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            TreeError::IndexOutOfRange { .. } => "index_out_of_range",
            TreeError::SizesOutOfOrder { .. } => "sizes_out_of_order",
            TreeError::TooLarge { .. } => "tree_too_large",
            TreeError::ShortRead { .. } => "hash_read_short",
            TreeError::Read(_) => "hash_read_failed",
        }
    }
}

/// Why a proof was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size, so no proof can show it.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// The claimed leaf index.
        index: u64,
        /// The claimed tree size.
        size: u64,
    },
    /// The claimed old tree is larger than the claimed new one.
    #[error("tree size {old} cannot be a prefix of the smaller tree size {new}")]
    SizesOutOfOrder {
        /// The claimed old size.
        old: u64,
        /// The claimed new size.
        new: u64,
    },
    /// The proof has more or fewer hashes than a proof for these sizes and index has.
    #[error("the proof has the wrong number of hashes for these tree sizes and index")]
    WrongLength,
    /// The proof is well-formed but does not lead to the claimed root hash(es): the entry is not
    /// in that tree, or the trees are not consistent, or something was altered.
    #[error("the proof does not match the claimed root hash")]
    Mismatch,
}

impl ProofError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            ProofError::IndexOutOfRange { .. } => "index_out_of_range",
            ProofError::SizesOutOfOrder { .. } => "sizes_out_of_order",
            ProofError::WrongLength => "proof_wrong_length",
            ProofError::Mismatch => "proof_mismatch",
        }
    }
}

/// A stored hash that [`MemoryHashes`] does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no stored hash at index {index}: only {stored} hashes are stored")]
pub struct MissingHash {
    /// The index asked for.
    pub index: u64,
    /// How many hashes are stored.
    pub stored: u64,
}

/// All of a tree's stored hashes in one vector, in [`stored_hash_index`] order: the in-memory
/// [`HashReader`], for tests and small logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryHashes {
    hashes: Vec<Hash>,
    size: u64,
}

impl MemoryHashes {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree of the given entries, in order.
    pub fn from_entries<I, T>(entries: I) -> Result<Self, TreeError<MissingHash>>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        let mut tree = Self::new();
        for entry in entries {
            tree.append(entry.as_ref())?;
        }
        Ok(tree)
    }

    /// Appends an entry and returns its leaf index.
    pub fn append(&mut self, entry: &[u8]) -> Result<u64, TreeError<MissingHash>> {
        self.append_leaf_hash(leaf_hash(entry))
    }

    /// Appends a leaf by its [`leaf_hash`] and returns its leaf index.
    ///
    /// The only error is a tree already at [`MAX_TREE_SIZE`]: every hash the new leaf needs was
    /// written by an earlier append.
    pub fn append_leaf_hash(&mut self, leaf: Hash) -> Result<u64, TreeError<MissingHash>> {
        let index = self.size;
        let new = stored_hashes_for_record(index, leaf, &*self)?;
        self.hashes.extend(new);
        self.size += 1;
        Ok(index)
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The stored hashes, in [`stored_hash_index`] order.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }
}

impl HashReader for MemoryHashes {
    type Error = MissingHash;

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MissingHash> {
        let stored = self.hashes.len() as u64;
        indexes
            .iter()
            .map(|&index| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| self.hashes.get(i))
                    .copied()
                    .ok_or(MissingHash { index, stored })
            })
            .collect()
    }
}
