//! Where each interior hash lives, which hashes a new leaf writes, and how a tree head is rebuilt
//! from a handful of stored hashes.
//!
//! A node is addressed by `(level, n)`: the `n`-th perfect subtree of `2^level` leaves, i.e. the
//! leaves `[n·2^level, (n+1)·2^level)`. Only perfect subtrees are stored; the hash of any other
//! range is recomputed from the perfect subtrees that tile it, largest first (RFC 6962's split at
//! the largest power of two).

use super::{node_hash, Hash, HashReader, TreeError, MAX_TREE_SIZE};

/// The position of node `(level, n)` in the dense, append-only sequence of stored hashes.
///
/// Appending leaf `m` writes the leaf hash, then the hash of every perfect subtree that leaf
/// completes, lowest level first. So leaf `m` lands at `m + m/2 + m/4 + ...` (each earlier leaf
/// `j` wrote `1 + trailing_ones(j)` hashes, and those sum to that), and node `(level, n)`, which
/// is completed by leaf `(n+1)·2^level − 1`, lands `level` places after that leaf's hash.
///
/// Defined for nodes of trees up to [`MAX_TREE_SIZE`] leaves (`(n+1)·2^level <= 2^62`).
pub fn stored_hash_index(level: u32, n: u64) -> u64 {
    // The last leaf under the node: n·2^level + 2^level − 1.
    let mut leaf = n;
    for _ in 0..level {
        leaf = 2 * leaf + 1;
    }
    let mut index = 0;
    while leaf > 0 {
        index += leaf;
        leaf >>= 1;
    }
    index + u64::from(level)
}

/// Which leaf's append wrote stored hash `index`, and at what offset: `(n, offset)` with
/// `stored_hash_index(0, n) + offset == index` and `offset <= trailing_ones(n)`. Lets a store keep
/// the hashes each append writes together with the entry that wrote them.
pub fn stored_hash_owner(index: u64) -> (u64, u64) {
    // stored_hash_index(0, n) strictly increases with n and is at least n: binary search.
    let (mut lo, mut hi) = (0u64, index);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if stored_hash_index(0, mid) <= index {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    (lo, index - stored_hash_index(0, lo))
}

/// How many hashes a tree of `size` leaves has stored.
pub fn stored_hash_count(size: u64) -> u64 {
    if size == 0 {
        return 0;
    }
    let last = size - 1;
    // Up to and including the last leaf's hash, then the subtrees that leaf completed.
    stored_hash_index(0, last) + 1 + u64::from(last.trailing_ones())
}

/// The hashes to store when leaf `n` (0-based; the tree has `n` leaves before it) with hash
/// `leaf` is appended, to be written from [`stored_hash_index`]`(0, n)` on: the leaf hash, then
/// one hash per perfect subtree the leaf completes (`trailing_ones(n)` of them, about one on
/// average). Reads the left siblings of those subtrees, at most log2(n) hashes, in one call.
pub fn stored_hashes_for_record<R: HashReader + ?Sized>(
    n: u64,
    leaf: Hash,
    reader: &R,
) -> Result<Vec<Hash>, TreeError<R::Error>> {
    if n >= MAX_TREE_SIZE {
        return Err(TreeError::TooLarge { size: n + 1 });
    }
    // Each trailing one bit of n is a perfect subtree of 2^i leaves that ends just before leaf n
    // and pairs with the new subtree of the same size that leaf n completes.
    let completed = n.trailing_ones();
    // Left siblings, highest level first so the indexes come out increasing.
    let indexes: Vec<u64> = (0..completed)
        .rev()
        .map(|level| stored_hash_index(level, (n >> level) - 1))
        .collect();
    let siblings = read_exact(reader, &indexes)?;

    let mut hashes = Vec::with_capacity(1 + siblings.len());
    let mut h = leaf;
    hashes.push(h);
    for left in siblings.iter().rev() {
        h = node_hash(left, &h);
        hashes.push(h);
    }
    Ok(hashes)
}

/// The root (Merkle Tree Hash) of the first `size` leaves, rebuilt from at most log2(size) + 1
/// stored hashes read in one call. The empty tree's root is [`super::empty_root`].
pub fn tree_hash<R: HashReader + ?Sized>(
    size: u64,
    reader: &R,
) -> Result<Hash, TreeError<R::Error>> {
    if size == 0 {
        return Ok(super::empty_root());
    }
    if size > MAX_TREE_SIZE {
        return Err(TreeError::TooLarge { size });
    }
    let mut indexes = Vec::new();
    sub_tree_index(0, size, &mut indexes);
    let hashes = read_exact(reader, &indexes)?;
    let mut it = hashes.iter();
    let root = sub_tree_hash(0, size, &mut it);
    finish(root, &it, indexes.len())
}

/// Asks the reader for `indexes` and insists on one hash per index, so the proof builders can
/// consume the result positionally.
pub(super) fn read_exact<R: HashReader + ?Sized>(
    reader: &R,
    indexes: &[u64],
) -> Result<Vec<Hash>, TreeError<R::Error>> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = reader.read_hashes(indexes).map_err(TreeError::Read)?;
    if hashes.len() != indexes.len() {
        return Err(TreeError::ShortRead {
            wanted: indexes.len(),
            got: hashes.len(),
        });
    }
    Ok(hashes)
}

/// Turns the result of consuming the read hashes into the caller's result. The index and hash
/// walks mirror each other, so running short or leaving hashes over would be a bug here, not
/// bad input; it is reported as a short read rather than a panic.
pub(super) fn finish<T, E>(
    value: Option<T>,
    rest: &std::slice::Iter<'_, Hash>,
    wanted: usize,
) -> Result<T, TreeError<E>> {
    match value {
        Some(v) if rest.len() == 0 => Ok(v),
        _ => Err(TreeError::ShortRead {
            wanted,
            got: wanted - rest.len(),
        }),
    }
}

/// The largest power of two strictly below `n`, and its log2, for `n >= 2`; `(1, 0)` below that.
/// RFC 6962 splits a tree of `n` leaves into a left part of this many leaves and the rest.
pub(super) fn max_pow2(n: u64) -> (u64, u32) {
    if n <= 2 {
        return (1, 0);
    }
    let level = 63 - (n - 1).leading_zeros();
    (1 << level, level)
}

/// Appends the stored indexes of the perfect subtrees that tile the leaves `[lo, hi)`, largest
/// (leftmost) first. `lo` must be aligned to the first subtree's size, which holds for every
/// range the proofs ask about.
pub(super) fn sub_tree_index(mut lo: u64, hi: u64, need: &mut Vec<u64>) {
    while lo < hi {
        // The largest power of two that fits in what is left.
        let (k, level) = max_pow2(hi - lo + 1);
        debug_assert_eq!(lo & (k - 1), 0, "unaligned subtree [{lo}, {hi})");
        need.push(stored_hash_index(level, lo >> level));
        lo += k;
    }
}

/// The hash of the leaves `[lo, hi)`, from the hashes [`sub_tree_index`] asked for, taken from
/// `hashes`. `None` if they run out.
pub(super) fn sub_tree_hash(
    mut lo: u64,
    hi: u64,
    hashes: &mut std::slice::Iter<'_, Hash>,
) -> Option<Hash> {
    // The tiles, left to right; the RFC's recursion splits off the leftmost tile at each step, so
    // the hash folds from the right.
    let mut tiles = Vec::new();
    while lo < hi {
        let (k, _) = max_pow2(hi - lo + 1);
        tiles.push(*hashes.next()?);
        lo += k;
    }
    let mut from_right = tiles.iter().rev();
    let mut h = *from_right.next()?;
    for left in from_right {
        h = node_hash(left, &h);
    }
    Some(h)
}
