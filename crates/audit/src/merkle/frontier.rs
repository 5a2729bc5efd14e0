//! The right edge of a tree: what a writer keeps to append without reading stored hashes back.

use super::storage::{read_exact, stored_hashes_for_record, sub_tree_index};
use super::{leaf_hash, Hash, HashReader, TreeError};

/// The stored hashes of the perfect subtrees that tile the first `size` leaves, largest first:
/// exactly the left siblings any later append reads (the level-`l` sibling of leaf `n` is the
/// newest level-`l` subtree completed before it), so a writer holding the frontier appends with
/// no read. Both stores keep one; a writer that may not be the only one must check the tree's
/// size in the database before trusting it (see [`Frontier::size`]) and [`load`](Frontier::load)
/// it again when another writer moved the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `(stored-hash index, hash)` of each tile, largest (leftmost) first.
    tiles: Vec<(u64, Hash)>,
}

/// A hash that is not on the frontier (a bug, or a frontier of another tree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stored hash {index} is not on the frontier of a tree of size {size}")]
pub struct NotOnFrontier {
    /// The stored-hash index asked for.
    pub index: u64,
    /// The frontier's tree size.
    pub size: u64,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored-hash indexes of the frontier of a tree of `size` leaves, largest subtree
    /// first: what [`load`](Frontier::load) reads.
    pub fn indexes(size: u64) -> Vec<u64> {
        let mut out = Vec::new();
        sub_tree_index(0, size, &mut out);
        out
    }

    /// Reads the frontier of the first `size` leaves (at most 64 stored hashes, in one call).
    pub fn load<R: HashReader + ?Sized>(
        size: u64,
        reader: &R,
    ) -> Result<Self, TreeError<R::Error>> {
        if size > super::MAX_TREE_SIZE {
            return Err(TreeError::TooLarge { size });
        }
        let indexes = Self::indexes(size);
        let hashes = read_exact(reader, &indexes)?;
        Ok(Frontier {
            size,
            tiles: indexes.into_iter().zip(hashes).collect(),
        })
    }

    /// The number of leaves of the tree this is the frontier of.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends an entry: returns the hashes to store from
    /// [`stored_hash_index`](super::stored_hash_index)`(0, size)` on (its leaf hash, then one per
    /// perfect subtree it completes) and moves the frontier past it. On error nothing changed.
    pub fn append(&mut self, entry: &[u8]) -> Result<Vec<Hash>, TreeError<NotOnFrontier>> {
        let n = self.size;
        let hashes = stored_hashes_for_record(n, leaf_hash(entry), &*self)?;
        // The new leaf completes subtrees at levels 0..hashes.len(); the largest of them is a tile
        // of the grown tree and replaces the tiles it covers (those of the lower levels).
        let completed = hashes.len() - 1;
        let keep = self.tiles.len().saturating_sub(completed);
        self.tiles.truncate(keep);
        let top = super::stored_hash_index(completed as u32, n >> completed);
        if let Some(h) = hashes.last() {
            self.tiles.push((top, *h));
        }
        self.size = n + 1;
        Ok(hashes)
    }
}

impl HashReader for Frontier {
    type Error = NotOnFrontier;

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, NotOnFrontier> {
        indexes
            .iter()
            .map(|&index| {
                self.tiles
                    .iter()
                    .find(|(i, _)| *i == index)
                    .map(|(_, h)| *h)
                    .ok_or(NotOnFrontier {
                        index,
                        size: self.size,
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::merkle::{tree_hash, MemoryHashes};

    #[test]
    fn appends_store_what_the_full_tree_stores_and_loads_match() {
        let mut full = MemoryHashes::new();
        let mut frontier = Frontier::new();
        for i in 0..300u32 {
            let entry = i.to_be_bytes();
            let before = full.hashes().len();
            full.append(&entry).unwrap();
            let stored = frontier.append(&entry).unwrap();
            assert_eq!(stored.as_slice(), &full.hashes()[before..], "leaf {i}");
            assert_eq!(frontier, Frontier::load(full.size(), &full).unwrap());
            assert_eq!(
                tree_hash(frontier.size(), &frontier).unwrap(),
                tree_hash(full.size(), &full).unwrap()
            );
        }
    }

    #[test]
    fn a_hash_off_the_frontier_is_an_error_not_a_panic() {
        let mut frontier =
            Frontier::load(5, &MemoryHashes::from_entries([[0u8]; 5]).unwrap()).unwrap_or_default();
        assert_eq!(frontier.size(), 5);
        assert!(frontier.read_hashes(&[0]).is_err());
        // A frontier that lost its tiles cannot append where a sibling is needed.
        frontier.tiles.clear();
        assert!(frontier.append(b"x").is_err());
        assert_eq!(frontier.size(), 5);
    }
}
