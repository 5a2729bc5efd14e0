//! Test helpers: the RFC 9162 definitions written the naive recursive way (over all the leaves,
//! no stored hashes), to check the real implementation against, and a shared 2000-leaf tree.

use countersign_audit::merkle::{self, Hash, MemoryHashes};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The largest tree the property tests use.
pub const MAX_SIZE: u64 = 2000;

/// Decodes a 32-byte hash from hex.
pub fn h(hex_str: &str) -> Hash {
    let bytes = hex::decode(hex_str).expect("test vector is hex");
    bytes.try_into().expect("test vector is 32 bytes")
}

/// The entries of the shared tree: distinct, so no two subtrees share a hash.
pub fn entry(i: u64) -> Vec<u8> {
    format!("entry {i}").into_bytes()
}

/// One tree of [`MAX_SIZE`] entries, and their leaf hashes. Stored hashes are append-only, so
/// every smaller tree is a prefix of this one and is read from the same storage.
pub fn shared_tree() -> &'static (MemoryHashes, Vec<Hash>) {
    static TREE: OnceLock<(MemoryHashes, Vec<Hash>)> = OnceLock::new();
    TREE.get_or_init(|| {
        let entries: Vec<Vec<u8>> = (0..MAX_SIZE).map(entry).collect();
        let tree = MemoryHashes::from_entries(&entries).expect("append to memory tree");
        let leaves = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
        (tree, leaves)
    })
}

/// The largest power of two strictly below `n` (n >= 2), the RFC's split point.
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]) over leaf hashes, straight from RFC 9162 section 2.1.1.
pub fn naive_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            merkle::node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]), RFC 9162 section 2.1.3.1.
pub fn naive_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    if m < k {
        let mut p = naive_path(m, &leaves[..k]);
        p.push(naive_root(&leaves[k..]));
        p
    } else {
        let mut p = naive_path(m - k, &leaves[k..]);
        p.push(naive_root(&leaves[..k]));
        p
    }
}

/// PROOF(m, D[n]) = SUBPROOF(m, D[n], true), RFC 9162 section 2.1.4.1.
pub fn naive_consistency(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    fn subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if b {
                Vec::new()
            } else {
                vec![naive_root(leaves)]
            };
        }
        let k = split(n);
        if m <= k {
            let mut p = subproof(m, &leaves[..k], b);
            p.push(naive_root(&leaves[k..]));
            p
        } else {
            let mut p = subproof(m - k, &leaves[k..], false);
            p.push(naive_root(&leaves[..k]));
            p
        }
    }
    subproof(m, leaves, true)
}

/// The shape of PATH(m, D[n]): from the leaf up, whether the leaf's side is the left one at each
/// level. A verifier folds the proof by this shape alone, so a proof fits every (size, index)
/// with the same shape.
pub fn path_shape(m: u64, n: u64) -> Vec<bool> {
    fn walk(m: u64, n: u64, out: &mut Vec<bool>) {
        if n <= 1 {
            return;
        }
        let k = split(n as usize) as u64;
        if m < k {
            walk(m, k, out);
            out.push(true);
        } else {
            walk(m - k, n - k, out);
            out.push(false);
        }
    }
    let mut out = Vec::new();
    walk(m, n, &mut out);
    out
}

/// `proof` with bit `bit` of byte `byte` of hash `i` flipped.
pub fn flip(proof: &[Hash], i: usize, byte: usize, bit: u8) -> Vec<Hash> {
    let mut p = proof.to_vec();
    p[i][byte] ^= 1 << bit;
    p
}

/// `hash` with its first bit flipped.
pub fn altered(hash: &Hash) -> Hash {
    let mut h = *hash;
    h[0] ^= 1;
    h
}
