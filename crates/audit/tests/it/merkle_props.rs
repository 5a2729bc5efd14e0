//! Properties of the Merkle tree over random sizes (1..=2000) and indexes: stored hashes give the
//! naive RFC roots and proofs; every proof verifies against `tree_hash`; and any alteration of a
//! proof hash, the index, the size (with its root) or a root is caught.

use crate::support::{
    self, altered, flip, naive_consistency, naive_path, naive_root, path_shape, MAX_SIZE,
};
use countersign_audit::merkle::{
    self, check_record, check_tree, prove_record, prove_tree, stored_hash_count, tree_hash,
    MemoryHashes, ProofError,
};
use proptest::prelude::*;

fn root(size: u64) -> merkle::Hash {
    tree_hash(size, &support::shared_tree().0).expect("root")
}

#[test]
fn stored_roots_equal_the_naive_root_for_every_size_up_to_300() {
    let mut tree = MemoryHashes::new();
    let mut leaves = Vec::new();
    assert_eq!(tree_hash(0, &tree).expect("root"), naive_root(&leaves));
    for i in 0..300 {
        tree.append(&support::entry(i)).expect("append");
        leaves.push(merkle::leaf_hash(&support::entry(i)));
        assert_eq!(tree.hashes().len() as u64, stored_hash_count(tree.size()));
        assert_eq!(
            tree_hash(tree.size(), &tree).expect("root"),
            naive_root(&leaves),
            "size {}",
            i + 1
        );
    }
}

#[test]
fn proofs_equal_the_rfc_definitions_for_every_small_tree() {
    let (tree, leaves) = support::shared_tree();
    for size in 1..=64u64 {
        let prefix = &leaves[..size as usize];
        for index in 0..size {
            let proof = prove_record(size, index, tree).expect("prove");
            assert_eq!(
                proof,
                naive_path(index as usize, prefix),
                "PATH({index}, D[{size}])"
            );
        }
        for old in 1..=size {
            let proof = prove_tree(size, old, tree).expect("prove");
            assert_eq!(
                proof,
                naive_consistency(old as usize, prefix),
                "PROOF({old}, D[{size}])"
            );
        }
    }
}

/// An inclusion proof checks its leaf against a root only through the shape of the path, so a
/// proof also fits another size with the same path shape, against the same root. The root is
/// what binds the size; callers take both from one checkpoint.
#[test]
fn inclusion_proofs_bind_the_size_through_the_root() {
    let proof = prove_record(5, 0, &support::shared_tree().0).expect("prove");
    let leaf = support::shared_tree().1[0];
    assert_eq!(path_shape(0, 5), path_shape(0, 6));
    assert_eq!(check_record(&proof, 6, &root(5), 0, &leaf), Ok(()));
    assert_eq!(
        check_record(&proof, 6, &root(6), 0, &leaf),
        Err(ProofError::Mismatch)
    );
}

/// Likewise a consistency proof fits other new sizes whose tree has the same shape along the old
/// tree's edge, against the same new root: (1, 3) checks as (1, 4). The old size cannot be
/// swapped this way (the old root is rebuilt from the proof), but the new size is bound only by
/// the new root.
#[test]
fn consistency_proofs_bind_the_new_size_through_its_root() {
    let tree = &support::shared_tree().0;
    let proof = prove_tree(3, 1, tree).expect("prove");
    assert_eq!(check_tree(&proof, 4, &root(3), 1, &root(1)), Ok(()));
    assert_eq!(
        check_tree(&proof, 4, &root(4), 1, &root(1)),
        Err(ProofError::Mismatch)
    );
}

/// A size and an index of a tree of that size.
fn size_and_index() -> impl Strategy<Value = (u64, u64)> {
    (1..=MAX_SIZE).prop_flat_map(|size| (Just(size), 0..size))
}

/// An old size and a new size, `1 <= old <= new`.
fn old_and_new() -> impl Strategy<Value = (u64, u64)> {
    (1..=MAX_SIZE).prop_flat_map(|new| (1..=new, Just(new)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn stored_root_equals_naive_root(size in 0..=MAX_SIZE) {
        let leaves = &support::shared_tree().1[..size as usize];
        prop_assert_eq!(root(size), naive_root(leaves));
    }

    #[test]
    fn inclusion_proofs_verify_and_catch_tampering(
        (size, index) in size_and_index(),
        other_size in 1..=MAX_SIZE,
        other_index in 0..MAX_SIZE,
        byte in 0..32usize,
        bit in 0..8u8,
    ) {
        let (tree, leaves) = support::shared_tree();
        let leaf = leaves[index as usize];
        let root = root(size);
        let proof = prove_record(size, index, tree).expect("prove");
        prop_assert_eq!(check_record(&proof, size, &root, index, &leaf), Ok(()));

        // Any bit of any proof hash.
        for i in 0..proof.len() {
            prop_assert!(check_record(&flip(&proof, i, byte, bit), size, &root, index, &leaf).is_err());
        }
        // A hash more or fewer.
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(check_record(&longer, size, &root, index, &leaf).is_err());
        if !proof.is_empty() {
            prop_assert!(check_record(&proof[1..], size, &root, index, &leaf).is_err());
        }
        // The root, and the leaf.
        prop_assert!(check_record(&proof, size, &altered(&root), index, &leaf).is_err());
        prop_assert!(check_record(&proof, size, &root, index, &altered(&leaf)).is_err());
        // The index: every other leaf's path differs in shape, and out-of-range ones are refused.
        if other_index != index {
            prop_assert!(check_record(&proof, size, &root, other_index, &leaf).is_err());
        }
        prop_assert!(check_record(&proof, size, &root, index + 1, &leaf).is_err());
        if index > 0 {
            prop_assert!(check_record(&proof, size, &root, index - 1, &leaf).is_err());
        }
        // The size, with that size's root: always caught.
        if other_size != size && index < other_size {
            prop_assert!(check_record(&proof, other_size, &self::root(other_size), index, &leaf).is_err());
        }
        // The size alone: caught exactly when the path's shape differs.
        if other_size != size && index < other_size {
            let same_shape = path_shape(index, other_size) == path_shape(index, size);
            prop_assert_eq!(check_record(&proof, other_size, &root, index, &leaf).is_ok(), same_shape);
        }
        prop_assert!(check_record(&proof, size * 2, &root, index, &leaf).is_err());
    }

    #[test]
    fn consistency_proofs_verify_and_catch_tampering(
        (old, new) in old_and_new(),
        other_size in 1..=MAX_SIZE,
        byte in 0..32usize,
        bit in 0..8u8,
    ) {
        let tree = &support::shared_tree().0;
        let (old_root, new_root) = (root(old), root(new));
        let proof = prove_tree(new, old, tree).expect("prove");
        prop_assert_eq!(check_tree(&proof, new, &new_root, old, &old_root), Ok(()));

        for i in 0..proof.len() {
            prop_assert!(check_tree(&flip(&proof, i, byte, bit), new, &new_root, old, &old_root).is_err());
        }
        let mut longer = proof.clone();
        longer.push(new_root);
        prop_assert!(check_tree(&longer, new, &new_root, old, &old_root).is_err());
        if !proof.is_empty() {
            prop_assert!(check_tree(&proof[1..], new, &new_root, old, &old_root).is_err());
        }
        prop_assert!(check_tree(&proof, new, &altered(&new_root), old, &old_root).is_err());
        prop_assert!(check_tree(&proof, new, &new_root, old, &altered(&old_root)).is_err());
        if old != new {
            prop_assert!(check_tree(&proof, new, &old_root, old, &new_root).is_err());
        }
        // Another old size, or another new size, each with its own root.
        if other_size != old && other_size <= new {
            prop_assert!(check_tree(&proof, new, &new_root, other_size, &root(other_size)).is_err());
        }
        if other_size != new && other_size >= old {
            prop_assert!(check_tree(&proof, other_size, &root(other_size), old, &old_root).is_err());
        }
        // Another old size claimed for the same old root.
        if other_size != old && other_size <= new {
            prop_assert!(check_tree(&proof, new, &new_root, other_size, &old_root).is_err());
        }
    }
}
