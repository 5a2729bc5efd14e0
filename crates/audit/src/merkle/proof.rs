//! Inclusion proofs (RFC 9162 section 2.1.3, RFC 6962's "audit path") and consistency proofs
//! (section 2.1.4): producing them from stored hashes, and checking them with nothing but the
//! proof, the sizes and the roots.
//!
//! Both follow Go's `sumdb/tlog` (`ProveRecord`/`CheckRecord`, `ProveTree`/`CheckTree`): a
//! producer first lists every stored hash it needs, reads them in one batch, then walks the same
//! recursion again consuming them in order; a checker walks the recursion consuming the proof
//! from its end. Proof hashes are ordered from the leaf (or the old tree) upwards, as the RFC has
//! them.

use super::storage::{finish, max_pow2, read_exact, sub_tree_hash, sub_tree_index};
use super::{node_hash, Hash, HashReader, ProofError, TreeError, MAX_TREE_SIZE};

/// The inclusion proof that leaf `index` is in the tree of `tree_size` leaves: the hashes of the
/// siblings on the path from that leaf to the root, lowest first.
pub fn prove_record<R: HashReader + ?Sized>(
    tree_size: u64,
    index: u64,
    reader: &R,
) -> Result<Vec<Hash>, TreeError<R::Error>> {
    if index >= tree_size {
        return Err(TreeError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    }
    if tree_size > MAX_TREE_SIZE {
        return Err(TreeError::TooLarge { size: tree_size });
    }
    let mut indexes = Vec::new();
    leaf_proof_index(0, tree_size, index, &mut indexes);
    let hashes = read_exact(reader, &indexes)?;
    let mut it = hashes.iter();
    let mut proof = Vec::with_capacity(64);
    let built = leaf_proof(0, tree_size, index, &mut it, &mut proof);
    finish(built, &it, indexes.len())?;
    Ok(proof)
}

/// Checks that `proof` shows the leaf with hash `leaf_hash` at `index` in the tree of
/// `tree_size` leaves whose root is `root`.
///
/// The tree size is bound by `root`, not by the proof: a proof for one size can also fit another
/// size whose path to `index` has the same shape. Check `root` against a signed checkpoint of
/// exactly `tree_size`.
pub fn check_record(
    proof: &[Hash],
    tree_size: u64,
    root: &Hash,
    index: u64,
    leaf_hash: &Hash,
) -> Result<(), ProofError> {
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    }
    let computed = run_record_proof(proof, 0, tree_size, index, *leaf_hash)?;
    if computed == *root {
        Ok(())
    } else {
        Err(ProofError::Mismatch)
    }
}

/// The consistency proof that the tree of `old_size` leaves is a prefix of the tree of
/// `new_size` leaves. Empty when the sizes are equal, or when `old_size` is 0 (the empty tree is
/// a prefix of every tree; tlog refuses that case, RFC 9162 leaves it out).
pub fn prove_tree<R: HashReader + ?Sized>(
    new_size: u64,
    old_size: u64,
    reader: &R,
) -> Result<Vec<Hash>, TreeError<R::Error>> {
    if old_size > new_size {
        return Err(TreeError::SizesOutOfOrder {
            old: old_size,
            new: new_size,
        });
    }
    if new_size > MAX_TREE_SIZE {
        return Err(TreeError::TooLarge { size: new_size });
    }
    if old_size == 0 {
        return Ok(Vec::new());
    }
    let mut indexes = Vec::new();
    tree_proof_index(0, new_size, old_size, &mut indexes);
    let hashes = read_exact(reader, &indexes)?;
    let mut it = hashes.iter();
    let mut proof = Vec::with_capacity(64);
    let built = tree_proof(0, new_size, old_size, &mut it, &mut proof);
    finish(built, &it, indexes.len())?;
    Ok(proof)
}

/// Checks that `proof` shows the tree of `old_size` leaves with root `old_root` is a prefix of
/// the tree of `new_size` leaves with root `new_root`.
///
/// For `old_size == 0` the proof must be empty and `old_root` must be the empty tree's root.
/// As with [`check_record`], the sizes are bound by the roots: check each root against a signed
/// checkpoint of exactly that size.
pub fn check_tree(
    proof: &[Hash],
    new_size: u64,
    new_root: &Hash,
    old_size: u64,
    old_root: &Hash,
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizesOutOfOrder {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if *old_root == super::empty_root() {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    let (old, new) = run_tree_proof(proof, 0, new_size, old_size, *old_root)?;
    if old == *old_root && new == *new_root {
        Ok(())
    } else {
        Err(ProofError::Mismatch)
    }
}

/// Appends the stored indexes needed to prove leaf `n` is in the leaves `[lo, hi)`.
fn leaf_proof_index(lo: u64, hi: u64, n: u64, need: &mut Vec<u64>) {
    debug_assert!(lo <= n && n < hi);
    if lo + 1 == hi {
        return;
    }
    let (k, _) = max_pow2(hi - lo);
    if n < lo + k {
        leaf_proof_index(lo, lo + k, n, need);
        sub_tree_index(lo + k, hi, need);
    } else {
        sub_tree_index(lo, lo + k, need);
        leaf_proof_index(lo + k, hi, n, need);
    }
}

/// Appends to `proof` the path from leaf `n` up to the root of `[lo, hi)`, consuming `hashes` in
/// the order [`leaf_proof_index`] listed them. `None` if they run out.
fn leaf_proof(
    lo: u64,
    hi: u64,
    n: u64,
    hashes: &mut std::slice::Iter<'_, Hash>,
    proof: &mut Vec<Hash>,
) -> Option<()> {
    if lo + 1 == hi {
        // The verifier has the leaf hash itself.
        return Some(());
    }
    let (k, _) = max_pow2(hi - lo);
    let sibling = if n < lo + k {
        leaf_proof(lo, lo + k, n, hashes, proof)?;
        sub_tree_hash(lo + k, hi, hashes)?
    } else {
        let left = sub_tree_hash(lo, lo + k, hashes)?;
        leaf_proof(lo + k, hi, n, hashes, proof)?;
        left
    };
    // The path not taken at this level, after the lower levels' siblings.
    proof.push(sibling);
    Some(())
}

/// The root of `[lo, hi)` implied by `proof` for leaf `n` with hash `leaf`. The last proof hash
/// belongs to this level; the rest to the levels below.
fn run_record_proof(
    proof: &[Hash],
    lo: u64,
    hi: u64,
    n: u64,
    leaf: Hash,
) -> Result<Hash, ProofError> {
    if lo + 1 == hi {
        // A proof with hashes to spare is not a proof of this leaf.
        return if proof.is_empty() {
            Ok(leaf)
        } else {
            Err(ProofError::WrongLength)
        };
    }
    let Some((sibling, below)) = proof.split_last() else {
        return Err(ProofError::WrongLength);
    };
    let (k, _) = max_pow2(hi - lo);
    if n < lo + k {
        let left = run_record_proof(below, lo, lo + k, n, leaf)?;
        Ok(node_hash(&left, sibling))
    } else {
        let right = run_record_proof(below, lo + k, hi, n, leaf)?;
        Ok(node_hash(sibling, &right))
    }
}

/// Appends the stored indexes needed for the consistency sub-proof of the old size `n` within
/// the leaves `[lo, hi)` (RFC 9162 SUBPROOF).
fn tree_proof_index(lo: u64, hi: u64, n: u64, need: &mut Vec<u64>) {
    debug_assert!(lo < n && n <= hi);
    if n == hi {
        if lo == 0 {
            // This subtree is the old tree itself, whose root the verifier has.
            return;
        }
        sub_tree_index(lo, hi, need);
        return;
    }
    let (k, _) = max_pow2(hi - lo);
    if n <= lo + k {
        tree_proof_index(lo, lo + k, n, need);
        sub_tree_index(lo + k, hi, need);
    } else {
        sub_tree_index(lo, lo + k, need);
        tree_proof_index(lo + k, hi, n, need);
    }
}

/// Appends to `proof` the consistency sub-proof of the old size `n` within `[lo, hi)`, consuming
/// `hashes` in the order [`tree_proof_index`] listed them. `None` if they run out.
fn tree_proof(
    lo: u64,
    hi: u64,
    n: u64,
    hashes: &mut std::slice::Iter<'_, Hash>,
    proof: &mut Vec<Hash>,
) -> Option<()> {
    if n == hi {
        if lo != 0 {
            proof.push(sub_tree_hash(lo, hi, hashes)?);
        }
        return Some(());
    }
    let (k, _) = max_pow2(hi - lo);
    let sibling = if n <= lo + k {
        tree_proof(lo, lo + k, n, hashes, proof)?;
        sub_tree_hash(lo + k, hi, hashes)?
    } else {
        let left = sub_tree_hash(lo, lo + k, hashes)?;
        tree_proof(lo + k, hi, n, hashes, proof)?;
        left
    };
    proof.push(sibling);
    Some(())
}

/// The (old, new) hashes of `[lo, hi)` implied by `proof`, where the old tree has `n` leaves and
/// root `old_root`.
fn run_tree_proof(
    proof: &[Hash],
    lo: u64,
    hi: u64,
    n: u64,
    old_root: Hash,
) -> Result<(Hash, Hash), ProofError> {
    if n == hi {
        if lo == 0 {
            // The old tree is this whole subtree: its hash is the old root, unchanged.
            return if proof.is_empty() {
                Ok((old_root, old_root))
            } else {
                Err(ProofError::WrongLength)
            };
        }
        // A subtree entirely inside the old tree: the same hash in both trees.
        return match proof {
            [h] => Ok((*h, *h)),
            _ => Err(ProofError::WrongLength),
        };
    }
    let Some((sibling, below)) = proof.split_last() else {
        return Err(ProofError::WrongLength);
    };
    let (k, _) = max_pow2(hi - lo);
    if n <= lo + k {
        // The old tree ends in the left part; the right part is new leaves only.
        let (old, new) = run_tree_proof(below, lo, lo + k, n, old_root)?;
        Ok((old, node_hash(&new, sibling)))
    } else {
        // The left part is entirely old, and shared by both trees.
        let (old, new) = run_tree_proof(below, lo + k, hi, n, old_root)?;
        Ok((node_hash(sibling, &old), node_hash(sibling, &new)))
    }
}
