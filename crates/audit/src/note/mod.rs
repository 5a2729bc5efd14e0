//! Signed notes (C2SP `signed-note`, the format of Go's `golang.org/x/mod/sumdb/note`), with
//! Ed25519 keys only: a UTF-8 text ending in a newline, a blank line, then one line per signature,
//! `— <key name> <base64(4-byte key hash || signature)>` (U+2014 EM DASH, space).
//!
//! This module owns the wire format and the rule for trusting a note: it is accepted only when at
//! least one signature by a known key verifies, and rejected outright when any signature by a
//! known key does not. Signatures by unknown keys are ignored (that is how key rotation and
//! witness cosignatures coexist), never trusted.

mod keys;

pub use keys::{
    generate_key, is_valid_key_name, key_hash, KeyError, Signer, Verifier, ALG_ED25519,
};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

/// The start of a signature line: U+2014 EM DASH and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// More signatures than this and the note is refused unread, so a hostile note cannot make us
/// spend long verifying. The spec requires accepting at least 16; Go allows 100.
pub const MAX_SIGNATURES: usize = 100;

/// Why a note could not be signed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The text to sign is empty, does not end in a newline, or has control characters other
    /// than newline (the note could not be opened again).
    #[error("note text must end in a newline and have no control characters other than newline")]
    InvalidText,
    /// The note does not follow the signed-note format.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// More than [`MAX_SIGNATURES`] signature lines.
    #[error("note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    /// A signature by a known key did not verify: the text or the signature was altered.
    #[error("invalid signature for key {name}+{key_hash:08x}; the note was altered or signed by another key")]
    InvalidSignature {
        /// The key name.
        name: String,
        /// The key hash.
        key_hash: u32,
    },
    /// Two known verifiers with different keys share a name and key hash, so a signature cannot
    /// be attributed. Fix the list of trusted keys.
    #[error("ambiguous key {name}+{key_hash:08x}: two trusted keys share this name and hash")]
    AmbiguousKey {
        /// The key name.
        name: String,
        /// The key hash.
        key_hash: u32,
    },
    /// No signature is by a known key.
    #[error("note has no signature by a trusted key")]
    Unverified,
}

impl NoteError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            NoteError::InvalidText => "note_text_invalid",
            NoteError::Malformed(_) => "note_malformed",
            NoteError::TooManySignatures => "note_too_many_signatures",
            NoteError::InvalidSignature { .. } => "note_signature_invalid",
            NoteError::AmbiguousKey { .. } => "note_key_ambiguous",
            NoteError::Unverified => "note_unverified",
        }
    }
}

/// A note whose signatures were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNote {
    /// The signed text, ending in a newline.
    pub text: String,
    /// The names of the known keys whose signatures verified, in the note's order, once each.
    pub signers: Vec<String>,
}

/// Signs `text` (which must end in a newline) and returns the whole signed note.
pub fn sign(text: &str, signer: &Signer) -> Result<String, NoteError> {
    if !text.ends_with('\n') || has_forbidden_control(text) {
        return Err(NoteError::InvalidText);
    }
    // The signature covers the text with its final newline, not the separating blank line.
    let sig = signer.sign_bytes(text.as_bytes());
    let mut raw = Vec::with_capacity(4 + 64);
    raw.extend_from_slice(&signer.key_hash().to_be_bytes());
    raw.extend_from_slice(&sig.to_bytes());
    Ok(format!(
        "{text}\n{SIG_PREFIX}{} {}\n",
        signer.name(),
        BASE64.encode(raw)
    ))
}

/// Opens a signed note: checks its format, verifies every signature by a key in `known`, ignores
/// the others, and returns the text if at least one verified.
pub fn open(note: impl AsRef<[u8]>, known: &[Verifier]) -> Result<OpenedNote, NoteError> {
    let note = std::str::from_utf8(note.as_ref()).map_err(|_| NoteError::Malformed("not UTF-8"))?;
    if has_forbidden_control(note) {
        return Err(NoteError::Malformed("control character other than newline"));
    }
    // The text may itself contain blank lines; the signatures start after the last one.
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    let Some(sigs) = sigs.strip_suffix('\n') else {
        return Err(NoteError::Malformed("missing signatures or final newline"));
    };

    let lines: Vec<&str> = sigs.split('\n').collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures);
    }
    let mut signers: Vec<String> = Vec::new();
    let mut seen: Vec<(&str, u32)> = Vec::new();
    for line in lines {
        let (name, key_hash, sig) = parse_signature_line(line)?;
        let Some(verifier) = find_verifier(known, name, key_hash)? else {
            continue;
        };
        // A repeated signature by one key is checked once.
        if seen.contains(&(name, key_hash)) {
            continue;
        }
        seen.push((name, key_hash));
        if !verifier.verify_bytes(text.as_bytes(), sig.as_slice()) {
            return Err(NoteError::InvalidSignature {
                name: name.to_owned(),
                key_hash,
            });
        }
        signers.push(name.to_owned());
    }
    if signers.is_empty() {
        return Err(NoteError::Unverified);
    }
    Ok(OpenedNote {
        text: text.to_owned(),
        signers,
    })
}

/// Splits `— <name> <base64>` into the name, the key hash and the signature bytes.
fn parse_signature_line(line: &str) -> Result<(&str, u32, Vec<u8>), NoteError> {
    let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
        "signature line must start with an em dash and a space",
    ))?;
    let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed(
        "signature line must be `— <name> <signature>`",
    ))?;
    if !is_valid_key_name(name) {
        return Err(NoteError::Malformed("invalid key name in signature line"));
    }
    let raw = BASE64
        .decode(b64)
        .map_err(|_| NoteError::Malformed("signature is not valid base64"))?;
    // Four bytes of key hash and at least one of signature.
    if raw.len() < 5 {
        return Err(NoteError::Malformed("signature is too short"));
    }
    let key_hash = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
    Ok((name, key_hash, raw[4..].to_vec()))
}

/// The known verifier for a name and key hash, if any. Verifiers must match on both: a key that
/// shares only one of them is someone else's.
fn find_verifier<'a>(
    known: &'a [Verifier],
    name: &str,
    key_hash: u32,
) -> Result<Option<&'a Verifier>, NoteError> {
    let mut found: Option<&Verifier> = None;
    for v in known
        .iter()
        .filter(|v| v.name() == name && v.key_hash() == key_hash)
    {
        match found {
            None => found = Some(v),
            // The same key listed twice is harmless; two keys behind one ID are not.
            Some(f) if f.public_key() == v.public_key() => {}
            Some(_) => {
                return Err(NoteError::AmbiguousKey {
                    name: name.to_owned(),
                    key_hash,
                })
            }
        }
    }
    Ok(found)
}

/// Notes may hold no ASCII control characters but newline (C2SP signed-note).
fn has_forbidden_control(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 && b != b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    /// Two trusted keys behind one name and key hash take a 32-bit hash collision to build, so
    /// the public constructors cannot make them; the rule is checked here, below them.
    #[test]
    fn two_keys_behind_one_name_and_hash_are_ambiguous() {
        let real = Signer::new("log", SigningKey::from_bytes(&[1; 32])).expect("signer");
        let impostor = Verifier::with_hash_for_tests(
            "log",
            real.key_hash(),
            SigningKey::from_bytes(&[2; 32]).verifying_key(),
        );
        let signed = sign("text\n", &real).expect("sign");
        assert_eq!(
            open(&signed, &[real.verifier(), impostor]),
            Err(NoteError::AmbiguousKey {
                name: "log".into(),
                key_hash: real.key_hash()
            })
        );
        // The same key twice is not ambiguous.
        assert!(open(&signed, &[real.verifier(), real.verifier()]).is_ok());
    }
}
