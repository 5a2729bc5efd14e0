//! Checkpoint text: the C2SP example, strict parsing, and a signed checkpoint end to end.

use countersign_audit::checkpoint::{Checkpoint, CheckpointError};
use countersign_audit::merkle::{self, check_tree, prove_tree, tree_hash, MemoryHashes};
use countersign_audit::note::{self, Signer};
use ed25519_dalek::SigningKey;

/// The example of C2SP tlog-checkpoint.
const EXAMPLE: &str =
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

#[test]
fn the_c2sp_example_parses_and_prints_back() {
    let c = Checkpoint::parse(EXAMPLE).expect("parse");
    assert_eq!(c.origin(), "example.com/behind-the-sofa");
    assert_eq!(c.size(), 20852163);
    assert_eq!(
        hex::encode(c.root()),
        "0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62"
    );
    assert!(c.extensions().is_empty());
    assert_eq!(c.to_text(), EXAMPLE);
}

#[test]
fn extension_lines_round_trip() {
    let text = format!("{EXAMPLE}ext one\next two\n");
    let c = Checkpoint::parse(&text).expect("parse");
    assert_eq!(c.extensions(), ["ext one", "ext two"]);
    assert_eq!(c.to_text(), text);
}

#[test]
fn the_empty_tree_has_size_zero() {
    let c = Checkpoint::new("log", 0, merkle::empty_root()).expect("new");
    assert_eq!(
        c.to_text(),
        "log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    );
    assert_eq!(Checkpoint::parse(&c.to_text()), Ok(c));
}

#[test]
fn malformed_checkpoints_are_refused() {
    let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
    let cases = [
        (format!("o\n1\n{root}"), CheckpointError::Malformed),
        ("o\n1\n".to_owned(), CheckpointError::Malformed),
        (String::new(), CheckpointError::Malformed),
        (format!("\n1\n{root}\n"), CheckpointError::InvalidOrigin),
        (format!("o\r\n1\n{root}\n"), CheckpointError::InvalidOrigin),
        (format!("o\n01\n{root}\n"), CheckpointError::InvalidSize),
        (format!("o\n00\n{root}\n"), CheckpointError::InvalidSize),
        (format!("o\n+1\n{root}\n"), CheckpointError::InvalidSize),
        (format!("o\n-1\n{root}\n"), CheckpointError::InvalidSize),
        (format!("o\n 1\n{root}\n"), CheckpointError::InvalidSize),
        (format!("o\n\n{root}\n"), CheckpointError::InvalidSize),
        (
            format!("o\n18446744073709551616\n{root}\n"),
            CheckpointError::InvalidSize,
        ),
        (
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n".to_owned(),
            CheckpointError::InvalidRoot,
        ),
        (
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n".to_owned(),
            CheckpointError::InvalidRoot,
        ),
        ("o\n1\nAAAA\n".to_owned(), CheckpointError::InvalidRoot),
        ("o\n1\n\n".to_owned(), CheckpointError::InvalidRoot),
        (
            format!("o\n1\n{root}\n\n"),
            CheckpointError::InvalidExtension,
        ),
        (
            format!("o\n1\n{root}\next\n\n"),
            CheckpointError::InvalidExtension,
        ),
    ];
    for (text, want) in cases {
        assert_eq!(Checkpoint::parse(&text), Err(want.clone()), "{text:?}");
    }
    assert_eq!(u64::MAX.to_string().parse::<u64>().ok(), Some(u64::MAX));
    let max = format!("o\n{}\n{root}\n", u64::MAX);
    assert_eq!(Checkpoint::parse(&max).map(|c| c.size()), Ok(u64::MAX));
    assert_eq!(
        Checkpoint::new("", 1, [0; 32]),
        Err(CheckpointError::InvalidOrigin)
    );
    assert_eq!(
        Checkpoint::new("a\nb", 1, [0; 32]),
        Err(CheckpointError::InvalidOrigin)
    );
    let ext = Checkpoint::new("o", 1, [0; 32])
        .expect("new")
        .with_extensions(["a\nb"]);
    assert_eq!(ext, Err(CheckpointError::InvalidExtension));
}

/// A log signs checkpoints as it grows; a verifier opens two and checks one extends the other.
#[test]
fn signed_checkpoints_prove_the_log_only_grew() {
    let signer =
        Signer::new("example.com/audit", SigningKey::from_bytes(&[42; 32])).expect("signer");
    let verifier = signer.verifier();
    let mut tree = MemoryHashes::new();
    let mut notes = Vec::new();
    for i in 0..20u32 {
        tree.append(format!("event {i}").as_bytes())
            .expect("append");
        if i == 6 || i == 19 {
            let root = tree_hash(tree.size(), &tree).expect("root");
            let c = Checkpoint::new("example.com/audit", tree.size(), root).expect("checkpoint");
            notes.push(note::sign(&c.to_text(), &signer).expect("sign"));
        }
    }
    let open = |n: &str| {
        Checkpoint::parse(
            &note::open(n, std::slice::from_ref(&verifier))
                .expect("open")
                .text,
        )
        .expect("parse")
    };
    let (old, new) = (open(&notes[0]), open(&notes[1]));
    assert_eq!((old.size(), new.size()), (7, 20));
    let proof = prove_tree(new.size(), old.size(), &tree).expect("prove");
    assert_eq!(
        check_tree(&proof, new.size(), new.root(), old.size(), old.root()),
        Ok(())
    );
    // A checkpoint whose text was edited after signing does not open.
    let forged = notes[1].replacen("\n20\n", "\n21\n", 1);
    assert_eq!(
        note::open(&forged, &[verifier]).expect_err("forged").code(),
        "note_signature_invalid"
    );
}
