//! Known answers for the Merkle tree: the RFC 6962 test vectors used by Certificate Transparency
//! (transparency-dev/merkle `proof/verify_test.go`, from google/certificate-transparency), with
//! the tampered variants that test file checks, and a transcript of Go's `sumdb/tlog` output.

use crate::support::{self, h};
use countersign_audit::merkle::{
    self, check_record, check_tree, prove_record, prove_tree, stored_hash_count, stored_hash_index,
    tree_hash, Hash, MemoryHashes, ProofError,
};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// The eight leaves, as hex.
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// The roots of the trees of the first 1..=8 leaves.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf index, tree size, proof). The source lists 1-based leaf numbers; these are 0-based.
const INCLUSION: [(u64, u64, &[&str]); 5] = [
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (old size, new size, proof).
const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

/// An arbitrary hash that is nobody's root, from the same source.
const SOME_HASH: &str = "abacaba000000000000000000000000000000000000000000060061e00123456";

fn vector_tree() -> MemoryHashes {
    let entries: Vec<Vec<u8>> = LEAVES
        .iter()
        .map(|l| hex::decode(l).expect("hex"))
        .collect();
    MemoryHashes::from_entries(&entries).expect("append")
}

fn hashes(list: &[&str]) -> Vec<Hash> {
    list.iter().map(|s| h(s)).collect()
}

fn root(size: u64) -> Hash {
    h(ROOTS[size as usize - 1])
}

#[test]
fn empty_root_is_sha256_of_nothing() {
    let empty = h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(merkle::empty_root(), empty);
    assert_eq!(
        tree_hash(0, &MemoryHashes::new()).expect("empty tree"),
        empty
    );
}

#[test]
fn roots_of_the_rfc6962_vectors() {
    let tree = vector_tree();
    for size in 1..=8 {
        assert_eq!(
            tree_hash(size, &tree).expect("root"),
            root(size),
            "size {size}"
        );
    }
    // The first leaf is the empty entry: SHA-256(0x00).
    assert_eq!(merkle::leaf_hash(b""), root(1));
}

#[test]
fn inclusion_proofs_of_the_rfc6962_vectors() {
    let tree = vector_tree();
    for (index, size, proof) in INCLUSION {
        let proof = hashes(proof);
        let leaf = merkle::leaf_hash(&hex::decode(LEAVES[index as usize]).expect("hex"));
        assert_eq!(
            prove_record(size, index, &tree).expect("prove"),
            proof,
            "({index}, {size})"
        );
        assert_eq!(
            check_record(&proof, size, &root(size), index, &leaf),
            Ok(())
        );
        for (probe, what) in corrupt_inclusion(&proof, size, index, &leaf) {
            assert!(
                check_record(
                    &probe.proof,
                    probe.size,
                    &probe.root,
                    probe.index,
                    &probe.leaf
                )
                .is_err(),
                "({index}, {size}) verified with {what}"
            );
        }
    }
}

struct InclusionProbe {
    proof: Vec<Hash>,
    size: u64,
    root: Hash,
    index: u64,
    leaf: Hash,
}

/// The tamperings of transparency-dev's `corruptInclusionProof`.
fn corrupt_inclusion(
    proof: &[Hash],
    size: u64,
    index: u64,
    leaf: &Hash,
) -> Vec<(InclusionProbe, String)> {
    let good = |proof: Vec<Hash>| InclusionProbe {
        proof,
        size,
        root: root(size),
        index,
        leaf: *leaf,
    };
    let with = |f: &dyn Fn(&mut InclusionProbe)| {
        let mut p = good(proof.to_vec());
        f(&mut p);
        p
    };
    let mut probes = vec![
        (
            with(&|p| p.index = index.wrapping_sub(1)),
            "index - 1".to_owned(),
        ),
        (with(&|p| p.index = index + 1), "index + 1".to_owned()),
        (with(&|p| p.index = index ^ 2), "index ^ 2".to_owned()),
        (with(&|p| p.size = size * 2), "size * 2".to_owned()),
        (with(&|p| p.size = size / 2), "size / 2".to_owned()),
        (
            with(&|p| p.leaf = merkle::leaf_hash(b"WrongLeaf")),
            "wrong leaf".to_owned(),
        ),
        (
            with(&|p| p.root = merkle::empty_root()),
            "empty root".to_owned(),
        ),
        (with(&|p| p.root = h(SOME_HASH)), "random root".to_owned()),
        (
            with(&|p| p.proof.push([0; 32])),
            "trailing garbage".to_owned(),
        ),
        (
            with(&|p| p.proof.push(root(size))),
            "trailing root".to_owned(),
        ),
        (
            with(&|p| p.proof.insert(0, [0; 32])),
            "preceding garbage".to_owned(),
        ),
        (
            with(&|p| p.proof.insert(0, root(size))),
            "preceding root".to_owned(),
        ),
    ];
    for i in 0..proof.len() {
        probes.push((
            good(support::flip(proof, i, 0, 3)),
            format!("proof[{i}] bit 3 flipped"),
        ));
    }
    if !proof.is_empty() {
        probes.push((
            good(proof[..proof.len() - 1].to_vec()),
            "removed component".to_owned(),
        ));
    }
    if proof.len() > 1 {
        let mut inserted = vec![proof[0], h(SOME_HASH)];
        inserted.extend_from_slice(&proof[1..]);
        probes.push((good(inserted), "inserted component".to_owned()));
    }
    probes
}

#[test]
fn consistency_proofs_of_the_rfc6962_vectors() {
    let tree = vector_tree();
    for (old, new, proof) in CONSISTENCY {
        let proof = hashes(proof);
        assert_eq!(
            prove_tree(new, old, &tree).expect("prove"),
            proof,
            "({old}, {new})"
        );
        assert_eq!(check_tree(&proof, new, &root(new), old, &root(old)), Ok(()));
        // As in the source, only non-trivial proofs are tampered with.
        if proof.is_empty() {
            continue;
        }
        for (probe, what) in corrupt_consistency(&proof, old, new) {
            assert!(
                check_tree(
                    &probe.proof,
                    probe.new,
                    &probe.new_root,
                    probe.old,
                    &probe.old_root
                )
                .is_err(),
                "({old}, {new}) verified with {what}"
            );
        }
    }
}

struct ConsistencyProbe {
    proof: Vec<Hash>,
    old: u64,
    new: u64,
    old_root: Hash,
    new_root: Hash,
}

/// The tamperings of transparency-dev's `corruptConsistencyProof`.
fn corrupt_consistency(proof: &[Hash], old: u64, new: u64) -> Vec<(ConsistencyProbe, String)> {
    let (old_root, new_root) = (root(old), root(new));
    let good = |proof: Vec<Hash>| ConsistencyProbe {
        proof,
        old,
        new,
        old_root,
        new_root,
    };
    let with = |f: &dyn Fn(&mut ConsistencyProbe)| {
        let mut p = good(proof.to_vec());
        f(&mut p);
        p
    };
    let wrong = merkle::leaf_hash(b"WrongRoot");
    let mut probes = vec![
        (with(&|p| p.old = old - 1), "old - 1".to_owned()),
        (with(&|p| p.old = old + 1), "old + 1".to_owned()),
        (with(&|p| p.old = old ^ 2), "old ^ 2".to_owned()),
        (with(&|p| p.new = new * 2), "new * 2".to_owned()),
        (with(&|p| p.new = new / 2), "new / 2".to_owned()),
        (with(&|p| p.old_root = wrong), "wrong old root".to_owned()),
        (with(&|p| p.new_root = wrong), "wrong new root".to_owned()),
        (
            with(&|p| {
                p.old_root = new_root;
                p.new_root = old_root;
            }),
            "swapped roots".to_owned(),
        ),
        (with(&|p| p.proof.clear()), "empty proof".to_owned()),
        (
            with(&|p| p.proof.push([0; 32])),
            "trailing garbage".to_owned(),
        ),
        (
            with(&|p| p.proof.push(old_root)),
            "trailing old root".to_owned(),
        ),
        (
            with(&|p| p.proof.push(new_root)),
            "trailing new root".to_owned(),
        ),
        (
            with(&|p| p.proof.insert(0, [0; 32])),
            "preceding garbage".to_owned(),
        ),
        (
            with(&|p| p.proof.insert(0, old_root)),
            "preceding old root".to_owned(),
        ),
        (
            with(&|p| p.proof.insert(0, new_root)),
            "preceding new root".to_owned(),
        ),
        (
            with(&|p| p.proof.insert(0, proof[0])),
            "preceding proof[0]".to_owned(),
        ),
        (
            good(proof[..proof.len() - 1].to_vec()),
            "truncated proof".to_owned(),
        ),
    ];
    for i in 0..proof.len() {
        probes.push((
            good(support::flip(proof, i, 0, 4)),
            format!("proof[{i}] bit 4 flipped"),
        ));
    }
    probes
}

#[test]
fn consistency_from_the_empty_tree() {
    let tree = vector_tree();
    assert_eq!(prove_tree(8, 0, &tree).expect("prove"), Vec::<Hash>::new());
    assert_eq!(
        check_tree(&[], 8, &root(8), 0, &merkle::empty_root()),
        Ok(())
    );
    assert_eq!(
        check_tree(&[], 0, &merkle::empty_root(), 0, &merkle::empty_root()),
        Ok(())
    );
    assert_eq!(
        check_tree(&[], 8, &root(8), 0, &root(1)),
        Err(ProofError::Mismatch)
    );
    assert_eq!(
        check_tree(&[root(1)], 8, &root(8), 0, &merkle::empty_root()),
        Err(ProofError::WrongLength)
    );
}

#[test]
fn bad_arguments_are_typed_errors() {
    let tree = vector_tree();
    let err = prove_record(8, 8, &tree).expect_err("index 8 of 8");
    assert_eq!(err.code(), "index_out_of_range");
    // A std error with a sentence that says what to do.
    let err: &dyn std::error::Error = &err;
    assert!(err.to_string().contains("ask for an index below the size"));
    assert_eq!(
        prove_record(0, 0, &tree).expect_err("empty tree").code(),
        "index_out_of_range"
    );
    assert_eq!(
        prove_tree(3, 4, &tree).expect_err("old > new").code(),
        "sizes_out_of_order"
    );
    // Asking for more leaves than were stored is the reader's error, not a panic.
    assert_eq!(
        tree_hash(9, &tree).expect_err("9 of 8").code(),
        "hash_read_failed"
    );
    assert_eq!(
        prove_record(10, 9, &tree).expect_err("10 of 8").code(),
        "hash_read_failed"
    );
    assert_eq!(
        check_record(&[], 8, &root(8), 8, &root(1)),
        Err(ProofError::IndexOutOfRange { index: 8, size: 8 })
    );
    assert_eq!(
        check_tree(&[], 3, &root(3), 4, &root(4)),
        Err(ProofError::SizesOutOfOrder { old: 4, new: 3 })
    );
}

#[test]
fn stored_hash_layout_matches_tlog() {
    // The first stored hashes in tlog's order: leaf 0, leaf 1, (1,0), leaf 2, leaf 3, (1,1), (2,0).
    let expected = [
        (0, 0, 0),
        (0, 1, 1),
        (1, 0, 2),
        (0, 2, 3),
        (0, 3, 4),
        (1, 1, 5),
        (2, 0, 6),
        (0, 4, 7),
    ];
    for (level, n, index) in expected {
        assert_eq!(stored_hash_index(level, n), index, "({level}, {n})");
    }
    let counts = [0, 1, 3, 4, 7, 8, 10, 11, 15];
    for (size, count) in counts.iter().enumerate() {
        assert_eq!(stored_hash_count(size as u64), *count, "size {size}");
    }
}

/// SHA-256 of the transcript below as printed by Go's golang.org/x/mod/sumdb/tlog (StoredHashes,
/// TreeHash, ProveRecord, ProveTree; a local transcription of tlog.go run with Go 1.19 over the
/// same entries `entry 0` .. `entry 1999`). Proofs are the same bytes if and only if the
/// transcripts match.
const GO_TLOG_TRANSCRIPT_SHA256: &str =
    "556bfe0409f34ac8448e6d92db47d134fed9c9fb50278d6f4cc16b31f5b5814a";

#[test]
fn proofs_are_byte_for_byte_those_of_go_tlog() {
    let (tree, _) = support::shared_tree();
    let join = |p: Vec<Hash>| p.iter().map(hex::encode).collect::<Vec<_>>().join(",");
    let mut out = String::new();
    let stored = tree.hashes();
    writeln!(out, "stored_count {}", stored.len()).expect("write");
    writeln!(
        out,
        "stored_digest {}",
        hex::encode(Sha256::digest(stored.concat()))
    )
    .expect("write");
    let sizes = (1..=70u64).chain([127, 128, 129, 1000, 1023, 1024, 1025, 1999, 2000]);
    for t in sizes {
        let root = tree_hash(t, tree).expect("root");
        writeln!(out, "root {t} {}", hex::encode(root)).expect("write");
        for n in 0..t {
            if t > 70 && n % 37 != 0 && n != t - 1 {
                continue;
            }
            let p = prove_record(t, n, tree).expect("prove record");
            writeln!(out, "incl {t} {n} {}", join(p)).expect("write");
        }
        for n in 1..=t {
            if t > 70 && n % 41 != 0 && n != t - 1 && n != 1 {
                continue;
            }
            let p = prove_tree(t, n, tree).expect("prove tree");
            writeln!(out, "cons {t} {n} {}", join(p)).expect("write");
        }
    }
    assert_eq!(
        hex::encode(Sha256::digest(out.as_bytes())),
        GO_TLOG_TRANSCRIPT_SHA256
    );
}

#[test]
fn every_stored_hash_has_one_owner() {
    use countersign_audit::merkle::{stored_hash_count, stored_hash_index, stored_hash_owner};
    let mut k = 0;
    for n in 0..1000u64 {
        for offset in 0..=u64::from(n.trailing_ones()) {
            assert_eq!(stored_hash_index(0, n) + offset, k);
            assert_eq!(stored_hash_owner(k), (n, offset), "stored hash {k}");
            k += 1;
        }
    }
    assert_eq!(k, stored_hash_count(1000));
}
