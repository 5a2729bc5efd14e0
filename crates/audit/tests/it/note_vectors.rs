//! Signed notes against the vectors of Go's `golang.org/x/mod/sumdb/note` (`note_test.go` and the
//! package documentation): the `PeterNeumann` and `EnochRoot` keys and signatures, their
//! manglings, and the malformed messages Go refuses.

use countersign_audit::note::{self, generate_key, NoteError, Signer, Verifier};
use ed25519_dalek::SigningKey;

const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";

const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn peter() -> Verifier {
    Verifier::parse(PETER_VKEY).expect("Peter's verifier key")
}

fn enoch() -> Verifier {
    Verifier::parse(ENOCH_VKEY).expect("Enoch's verifier key")
}

#[test]
fn verifier_key_parses_and_prints_back() {
    let v = peter();
    assert_eq!(v.name(), "PeterNeumann");
    assert_eq!(v.key_hash(), 0xc74f20a3);
    assert_eq!(v.to_key_string(), PETER_VKEY);
    assert_eq!(PETER_VKEY.parse::<Verifier>().expect("FromStr"), v);
}

#[test]
fn signer_key_parses_and_matches_its_verifier() {
    let s = Signer::from_key_string(PETER_SKEY).expect("Peter's signer key");
    assert_eq!(s.name(), "PeterNeumann");
    assert_eq!(s.key_hash(), 0xc74f20a3);
    assert_eq!(s.to_key_string(), PETER_SKEY);
    assert_eq!(s.verifier(), peter());
    // The secret stays out of debug output.
    assert!(!format!("{s:?}").contains("AYEKFALV"));
}

/// Go's TestNewVerifier and TestNewSigner: every proper substring and every one-byte increment
/// of a valid key string is refused.
#[test]
fn mangled_keys_are_refused() {
    for (key, parse) in [
        (
            PETER_VKEY,
            (|s: &str| Verifier::parse(s).is_ok()) as fn(&str) -> bool,
        ),
        (PETER_SKEY, |s: &str| Signer::from_key_string(s).is_ok()),
    ] {
        let b = key.as_bytes();
        for i in 0..=b.len() {
            for j in i + 1..=b.len() {
                if i == 0 && j == b.len() {
                    continue;
                }
                let sub = std::str::from_utf8(&b[i..j]).expect("ASCII key");
                assert!(!parse(sub), "accepted substring {sub:?}");
            }
        }
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] += 1;
            let mangled = String::from_utf8(m).expect("ASCII key");
            assert!(!parse(&mangled), "accepted mangled {mangled:?}");
        }
    }
    // Wrong key length and unknown algorithm, each with a key hash adjusted to match.
    let wrong_len = Verifier::parse(
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
    );
    assert_eq!(wrong_len.expect_err("wrong length").code(), "key_malformed");
    let unknown_alg =
        Verifier::parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
    assert_eq!(
        unknown_alg.expect_err("unknown algorithm").code(),
        "key_algorithm_unknown"
    );
}

/// Go's TestSign: Ed25519 is deterministic, so the note is the documented one byte for byte.
#[test]
fn signing_reproduces_the_go_note() {
    let signer = Signer::from_key_string(PETER_SKEY).expect("signer");
    let signed = note::sign(TEXT, &signer).expect("sign");
    assert_eq!(signed, format!("{TEXT}\n{PETER_SIG}"));
    assert_eq!(note::sign("abc", &signer), Err(NoteError::InvalidText));
    assert_eq!(note::sign("", &signer), Err(NoteError::InvalidText));
    assert_eq!(
        note::sign("a\u{1}b\n", &signer),
        Err(NoteError::InvalidText)
    );
}

#[test]
fn the_documented_note_opens() {
    let opened = note::open(format!("{TEXT}\n{PETER_SIG}"), &[peter()]).expect("open");
    assert_eq!(opened.text, TEXT);
    assert_eq!(opened.signers, vec!["PeterNeumann".to_owned()]);
}

/// Go's TestOpen, for what this API exposes: verified names, ignored unknown keys, refusals.
#[test]
fn open_verifies_known_keys_and_ignores_unknown_ones() {
    let msg = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    let one = note::open(&msg, &[peter()]).expect("Peter's signature verifies");
    assert_eq!(one.signers, vec!["PeterNeumann"]);
    let both = note::open(&msg, &[peter(), enoch()]).expect("both verify");
    assert_eq!(both.signers, vec!["PeterNeumann", "EnochRoot"]);
    assert_eq!(note::open(&msg, &[]), Err(NoteError::Unverified));

    // The same key listed twice is fine; repeated signatures count once.
    let dup = note::open(
        format!("{TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}"),
        &[peter(), peter()],
    )
    .expect("dup");
    assert_eq!(dup.signers, vec!["PeterNeumann"]);

    // 101 signatures are too many, verified or not.
    let many = format!("{TEXT}\n{}", PETER_SIG.repeat(101));
    assert_eq!(
        note::open(&many, &[peter()]),
        Err(NoteError::TooManySignatures)
    );
    assert_eq!(note::open(&many, &[]), Err(NoteError::TooManySignatures));
}

#[test]
fn a_bad_signature_by_a_known_key_rejects_the_note() {
    // Go's test: four characters spliced into the middle of Peter's signature.
    let (head, tail) = PETER_SIG.split_at(60);
    let spliced = format!("{TEXT}\n{head}ABCD{tail}");
    assert_eq!(
        note::open(&spliced, &[peter()]),
        Err(NoteError::InvalidSignature {
            name: "PeterNeumann".into(),
            key_hash: 0xc74f20a3
        })
    );
    // The same splice in a signature by an unknown key is ignored.
    let (head, tail) = ENOCH_SIG.split_at(60);
    let ok = note::open(format!("{TEXT}\n{PETER_SIG}{head}ABCD{tail}"), &[peter()]).expect("open");
    assert_eq!(ok.signers, vec!["PeterNeumann"]);
}

#[test]
fn tampered_text_fails() {
    let tampered = TEXT.replace("don't", "do");
    let err = note::open(format!("{tampered}\n{PETER_SIG}"), &[peter()]).expect_err("tampered");
    assert_eq!(err.code(), "note_signature_invalid");
    // One byte anywhere in the text.
    let msg = format!("{TEXT}\n{PETER_SIG}");
    for i in 0..TEXT.len() {
        let mut b = msg.clone().into_bytes();
        b[i] ^= 0x20;
        assert!(note::open(&b, &[peter()]).is_err(), "byte {i} altered");
    }
}

#[test]
fn wrong_key_fails() {
    // Enoch's key is not Peter's: the signature is by an unknown key.
    assert_eq!(
        note::open(format!("{TEXT}\n{PETER_SIG}"), &[enoch()]),
        Err(NoteError::Unverified)
    );
    // A key with Peter's name but another public key has another key hash: also unknown.
    let other = Verifier::new(
        "PeterNeumann",
        SigningKey::from_bytes(&[7; 32]).verifying_key(),
    )
    .expect("key");
    assert_ne!(other.key_hash(), 0xc74f20a3);
    assert_eq!(
        note::open(format!("{TEXT}\n{PETER_SIG}"), &[other]),
        Err(NoteError::Unverified)
    );
}

#[test]
fn a_same_named_key_does_not_shadow_the_real_one() {
    // Same name, another key, so another key hash: listed first, it is neither used nor confused.
    let second = Verifier::new(
        "PeterNeumann",
        SigningKey::from_bytes(&[9; 32]).verifying_key(),
    )
    .expect("key");
    let opened = note::open(format!("{TEXT}\n{PETER_SIG}"), &[second, peter()]).expect("open");
    assert_eq!(opened.signers, vec!["PeterNeumann"]);
}

#[test]
fn malformed_notes_are_refused() {
    let bad = [
        TEXT.to_owned(),
        format!("{TEXT}\n"),
        format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
        format!("\u{1}{TEXT}\n{PETER_SIG}"),
        format!("{TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="),
        format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
        format!("{TEXT}\n- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"),
        format!("{TEXT}\n\u{2014} PeterNeumann AAAA\n"),
        format!("{TEXT}\n\u{2014} PeterNeumann not*base64\n"),
    ];
    for msg in bad {
        let err = note::open(&msg, &[peter()]).expect_err("malformed");
        assert_eq!(err.code(), "note_malformed", "{msg:?}: {err}");
    }
    // Invalid UTF-8.
    let mut invalid = b"\xff".to_vec();
    invalid.extend_from_slice(format!("{TEXT}\n{PETER_SIG}").as_bytes());
    assert_eq!(
        note::open(&invalid, &[peter()])
            .expect_err("not UTF-8")
            .code(),
        "note_malformed"
    );
}

#[test]
fn generated_keys_sign_and_verify() {
    let (signer, verifier) =
        generate_key("example.com/log", &mut rand::rngs::OsRng).expect("generate");
    assert_eq!(signer.verifier(), verifier);
    let reparsed = Verifier::parse(&verifier.to_key_string()).expect("reparse verifier");
    assert_eq!(reparsed, verifier);
    let resigner = Signer::from_key_string(&signer.to_key_string()).expect("reparse signer");
    let text = "hello\n\nwith a blank line inside\n";
    let signed = note::sign(text, &resigner).expect("sign");
    let opened = note::open(&signed, &[reparsed]).expect("open");
    assert_eq!(opened.text, text);
    assert_eq!(opened.signers, vec!["example.com/log"]);
    assert_eq!(
        generate_key("bad name", &mut rand::rngs::OsRng)
            .expect_err("space")
            .code(),
        "key_name_invalid"
    );
    assert_eq!(
        generate_key("a+b", &mut rand::rngs::OsRng)
            .expect_err("plus")
            .code(),
        "key_name_invalid"
    );
    assert_eq!(
        generate_key("", &mut rand::rngs::OsRng)
            .expect_err("empty")
            .code(),
        "key_name_invalid"
    );
}
