//! Every tampering the issue names, applied to an exported bundle or a stored log, is detected
//! and named: a modified byte, a deleted, swapped, inserted entry, truncation, a signature by
//! another key, and a checkpoint inconsistent with an earlier one.

use countersign_audit::checkpoint::Checkpoint;
use countersign_audit::merkle::{prove_record, tree_hash, MemoryHashes};
use countersign_audit::note::{self, generate_key, Signer, Verifier};
use countersign_audit::verify::{
    checkpoint_line, entry_line, header_line, verify_bundle, verify_stored, Tamper,
};

const ORIGIN: &str = "test.example/audit";

fn entry(i: u64) -> Vec<u8> {
    let v = serde_json::json!({"action_id": format!("a{}", i / 3), "actor": "bot", "event": {"n": i},
        "index": i, "time": "2026-11-21T15:00:00Z", "type": "submitted"});
    serde_jcs::to_vec(&v).unwrap()
}

struct Log {
    entries: Vec<Vec<u8>>,
    tree: MemoryHashes,
    signer: Signer,
    verifier: Verifier,
}

fn log(n: u64) -> Log {
    let (signer, verifier) = generate_key(ORIGIN, &mut rand::rngs::OsRng).unwrap();
    let mut tree = MemoryHashes::new();
    let entries: Vec<Vec<u8>> = (0..n).map(entry).collect();
    for e in &entries {
        tree.append(e).unwrap();
    }
    Log {
        entries,
        tree,
        signer,
        verifier,
    }
}

impl Log {
    fn checkpoint(&self, size: u64) -> String {
        let root = tree_hash(size, &self.tree).unwrap();
        note::sign(
            &Checkpoint::new(ORIGIN, size, root).unwrap().to_text(),
            &self.signer,
        )
        .unwrap()
    }

    fn bundle(&self, start: u64, end: u64, proofs: bool) -> Vec<String> {
        let size = self.entries.len() as u64;
        let mut lines = vec![
            header_line(ORIGIN, size, start, end),
            checkpoint_line(&self.checkpoint(size)),
        ];
        for i in start..end {
            let proof = proofs.then(|| prove_record(size, i, &self.tree).unwrap());
            lines.push(entry_line(i, &self.entries[i as usize], proof.as_deref()));
        }
        lines
    }
}

fn verify(lines: &[String], log: &Log) -> Result<countersign_audit::verify::Verified, Tamper> {
    verify_bundle(&lines.join("\n"), &log.verifier, None)
}

#[test]
fn a_genuine_bundle_verifies_full_and_partial() {
    let l = log(37);
    let v = verify(&l.bundle(0, 37, false), &l).unwrap();
    assert_eq!((v.entries, v.tree_size), (37, 37));
    assert_eq!(v.root, tree_hash(37, &l.tree).unwrap());
    let v = verify(&l.bundle(10, 20, true), &l).unwrap();
    assert_eq!(v.entries, 10);
    let prev = l.checkpoint(20);
    assert!(verify_bundle(&l.bundle(0, 37, false).join("\n"), &l.verifier, Some(&prev)).is_ok());
}

#[test]
fn each_tampering_is_detected_and_named() {
    let l = log(40);
    let good = l.bundle(0, 40, false);

    // A modified byte inside entry 7 (its leaf hash no longer matches).
    let mut b = good.clone();
    b[2 + 7] = b[2 + 7].replacen("\"actor\":\"bot\"", "\"actor\":\"bou\"", 1);
    assert_eq!(verify(&b, &l), Err(Tamper::Modified(7)));

    // Modified entry with a recomputed leaf hash: the root gives it away.
    let mut b = good.clone();
    let forged = serde_jcs::to_vec(
        &serde_json::json!({"action_id": "a2", "actor": "mallory", "event": {"n": 7},
        "index": 7, "time": "2026-11-21T15:00:00Z", "type": "submitted"}),
    )
    .unwrap();
    b[2 + 7] = entry_line(7, &forged, None);
    assert_eq!(verify(&b, &l), Err(Tamper::RootMismatch(40)));

    let mut b = good.clone();
    b.remove(2 + 12);
    assert_eq!(verify(&b, &l), Err(Tamper::Deleted(12)));

    let mut b = good.clone();
    b.swap(2 + 20, 2 + 21);
    assert_eq!(verify(&b, &l), Err(Tamper::Reordered(20)));

    let mut b = good.clone();
    b.insert(2 + 5, good[2 + 4].clone());
    assert_eq!(verify(&b, &l), Err(Tamper::Inserted(4)));

    let mut b = good.clone();
    b.truncate(2 + 33);
    assert_eq!(verify(&b, &l), Err(Tamper::Truncated(33)));

    // Signed by another key (the same name, so only the signature gives it away).
    let other = log(40);
    let mut b = good.clone();
    b[1] = checkpoint_line(&other.checkpoint(40));
    assert!(matches!(verify(&b, &l), Err(Tamper::BadSignature(_))));

    // An earlier checkpoint (signed by the log) that this bundle's history contradicts.
    let mut forked = log(0);
    forked.signer = l.signer.clone();
    forked.verifier = l.verifier.clone();
    for i in 0..25 {
        forked.tree.append(&entry(i + 1000)).unwrap();
    }
    let prev = forked.checkpoint(25);
    assert_eq!(
        verify_bundle(&good.join("\n"), &l.verifier, Some(&prev)),
        Err(Tamper::Inconsistent {
            earlier: 25,
            size: 40
        })
    );
}

#[test]
fn partial_bundles_name_the_modified_entry_by_its_proof() {
    let l = log(50);
    let mut b = l.bundle(10, 30, true);
    let forged = serde_jcs::to_vec(
        &serde_json::json!({"action_id": "x", "actor": "mallory", "event": {},
        "index": 15, "time": "2026-11-21T15:00:00Z", "type": "approved"}),
    )
    .unwrap();
    let proof = prove_record(50, 15, &l.tree).unwrap();
    b[2 + 5] = entry_line(15, &forged, Some(&proof));
    assert_eq!(verify(&b, &l), Err(Tamper::Modified(15)));
}

#[test]
fn stored_log_verification_names_what_was_changed() {
    let l = log(30);
    let cps = vec![l.checkpoint(10), l.checkpoint(30)];
    let rows = || {
        l.entries
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, e)| (i as u64, e))
            .collect::<Vec<_>>()
    };
    let ok = verify_stored(rows(), l.tree.hashes(), &cps, &l.verifier, None).unwrap();
    assert_eq!((ok.entries, ok.checkpoints), (30, 2));

    // A row edited in place (still canonical JSON): its stored leaf hash no longer matches.
    let mut r = rows();
    r[9].1 = serde_jcs::to_vec(
        &serde_json::json!({"action_id": "a3", "actor": "eve", "event": {"n": 9},
        "index": 9, "time": "2026-11-21T15:00:00Z", "type": "submitted"}),
    )
    .unwrap();
    assert_eq!(
        verify_stored(r.clone(), l.tree.hashes(), &cps, &l.verifier, None),
        Err(Tamper::Modified(9))
    );
    // ... and with the stored hashes recomputed too, the signed checkpoints catch it.
    let mut rebuilt = MemoryHashes::new();
    for (_, e) in &r {
        rebuilt.append(e).unwrap();
    }
    assert_eq!(
        verify_stored(r, rebuilt.hashes(), &cps, &l.verifier, None),
        Err(Tamper::RootMismatch(10))
    );

    let mut r = rows();
    r.remove(4);
    assert_eq!(
        verify_stored(r, l.tree.hashes(), &cps, &l.verifier, None),
        Err(Tamper::Deleted(4))
    );
    let r: Vec<_> = rows().into_iter().take(20).collect();
    assert_eq!(
        verify_stored(r, l.tree.hashes(), &cps[..1], &l.verifier, None),
        Err(Tamper::Truncated(20))
    );
}

#[test]
fn a_kept_checkpoint_catches_an_edit_whose_later_checkpoints_were_deleted() {
    let l = log(30);
    let kept = l.checkpoint(20);
    let mut r: Vec<(u64, Vec<u8>)> = l
        .entries
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, e)| (i as u64, e))
        .collect();
    assert!(verify_stored(r.clone(), l.tree.hashes(), &[], &l.verifier, Some(&kept)).is_ok());
    // Entry 15 edited, every stored hash recomputed, the checkpoints covering it deleted: only
    // the checkpoint of size 10 is left, and it still matches.
    r[15].1 = serde_jcs::to_vec(
        &serde_json::json!({"action_id": "a3", "actor": "eve", "event": {"n": 15},
        "index": 15, "time": "2026-11-21T15:00:00Z", "type": "submitted"}),
    )
    .unwrap();
    let mut rebuilt = MemoryHashes::new();
    for (_, e) in &r {
        rebuilt.append(e).unwrap();
    }
    let left = vec![l.checkpoint(10)];
    assert!(verify_stored(r.clone(), rebuilt.hashes(), &left, &l.verifier, None).is_ok());
    assert_eq!(
        verify_stored(r.clone(), rebuilt.hashes(), &left, &l.verifier, Some(&kept)),
        Err(Tamper::Inconsistent {
            earlier: 20,
            size: 30
        })
    );
    // A kept checkpoint larger than the log: entries were truncated.
    let short: Vec<_> = r.iter().take(15).cloned().collect();
    let mut t = MemoryHashes::new();
    for (_, e) in &short {
        t.append(e).unwrap();
    }
    assert_eq!(
        verify_stored(short, t.hashes(), &left, &l.verifier, Some(&kept)),
        Err(Tamper::Truncated(15))
    );
    // A checkpoint signed by another key is refused.
    let other = log(30);
    assert!(matches!(
        verify_stored(
            r,
            rebuilt.hashes(),
            &left,
            &l.verifier,
            Some(&other.checkpoint(20))
        ),
        Err(Tamper::BadSignature(_))
    ));
}
