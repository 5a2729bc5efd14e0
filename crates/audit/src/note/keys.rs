//! Note keys: names, key hashes (key IDs) and the text encodings of Ed25519 signer and verifier
//! keys, `PRIVATE+KEY+<name>+<hash>+<base64>` and `<name>+<hash>+<base64>`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// The signature type byte of Ed25519 note keys (C2SP signed-note).
pub const ALG_ED25519: u8 = 0x01;

const SIGNER_PREFIX: &str = "PRIVATE+KEY+";

/// Why a key, or a key name, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The name is empty or has whitespace, `+` or control characters.
    #[error("key name must be non-empty, without spaces, `+` or control characters")]
    InvalidName,
    /// The key string does not have the `<name>+<hash>+<base64>` shape (with `PRIVATE+KEY+` in
    /// front for a signer key), or its key data has the wrong length.
    #[error("malformed {kind} key: expected {shape}")]
    Malformed {
        /// `signer` or `verifier`.
        kind: &'static str,
        /// The expected shape.
        shape: &'static str,
    },
    /// The key hash in the string is not the hash of the name and key.
    #[error(
        "key hash does not match the key name and key data; the key string was altered or mistyped"
    )]
    HashMismatch,
    /// A signature type other than Ed25519 (0x01).
    #[error("unsupported key algorithm 0x{0:02x}: only Ed25519 (0x01) note keys are supported")]
    UnknownAlgorithm(u8),
    /// The 32 bytes are not a valid Ed25519 public key.
    #[error("the key data is not a valid Ed25519 public key")]
    InvalidPublicKey,
}

impl KeyError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::InvalidName => "key_name_invalid",
            KeyError::Malformed { .. } => "key_malformed",
            KeyError::HashMismatch => "key_hash_mismatch",
            KeyError::UnknownAlgorithm(_) => "key_algorithm_unknown",
            KeyError::InvalidPublicKey => "key_invalid",
        }
    }
}

/// Whether `name` may name a note key: non-empty, no Unicode whitespace (it would split a
/// signature line), no `+` (it would split a key string). Control characters are refused too,
/// because a note containing them cannot be opened.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// The key hash (key ID): the first four bytes, big-endian, of SHA-256(name || "\n" || 0x01 ||
/// public key).
pub fn key_hash(name: &str, public_key: &VerifyingKey) -> u32 {
    key_hash_of_data(name, &key_data(ALG_ED25519, public_key.as_bytes()))
}

fn key_hash_of_data(name: &str, data: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update(data);
    let sum = h.finalize();
    u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]])
}

fn key_data(alg: u8, key: &[u8; 32]) -> Vec<u8> {
    let mut data = Vec::with_capacity(33);
    data.push(alg);
    data.extend_from_slice(key);
    data
}

/// Splits `<name>+<hex8>+<base64>` and checks the name and the hash's form, returning the name,
/// the hash and the decoded key data (algorithm byte first).
fn split_key(
    s: &str,
    kind: &'static str,
    shape: &'static str,
) -> Result<(String, u32, Vec<u8>), KeyError> {
    let malformed = KeyError::Malformed { kind, shape };
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(hash16), Some(key64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed);
    };
    if !is_valid_key_name(name) {
        return Err(KeyError::InvalidName);
    }
    if hash16.len() != 8 || !hash16.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed);
    }
    let hash = u32::from_str_radix(hash16, 16).map_err(|_| malformed.clone())?;
    let data = BASE64.decode(key64).map_err(|_| malformed.clone())?;
    if data.is_empty() {
        return Err(malformed);
    }
    Ok((name.to_owned(), hash, data))
}

/// Splits key data into the algorithm byte and a 32-byte Ed25519 key.
fn ed25519_bytes(data: &[u8], malformed: KeyError) -> Result<[u8; 32], KeyError> {
    match data.split_first() {
        Some((&ALG_ED25519, key)) => key.try_into().map_err(|_| malformed),
        Some((&alg, _)) => Err(KeyError::UnknownAlgorithm(alg)),
        None => Err(malformed),
    }
}

/// A named Ed25519 key that signs notes. Its [`Debug`](fmt::Debug) output leaves the secret out.
#[derive(Clone)]
pub struct Signer {
    name: String,
    key_hash: u32,
    key: SigningKey,
}

impl Signer {
    /// A signer with this name and key.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, KeyError> {
        if !is_valid_key_name(name) {
            return Err(KeyError::InvalidName);
        }
        Ok(Self {
            name: name.to_owned(),
            key_hash: key_hash(name, &key.verifying_key()),
            key,
        })
    }

    /// Parses a signer key string, `PRIVATE+KEY+<name>+<hex8 hash>+<base64(0x01 || seed)>`.
    pub fn from_key_string(skey: &str) -> Result<Self, KeyError> {
        const SHAPE: &str = "PRIVATE+KEY+<name>+<8 hex digits>+<base64 key>";
        let malformed = KeyError::Malformed {
            kind: "signer",
            shape: SHAPE,
        };
        let rest = skey.strip_prefix(SIGNER_PREFIX).ok_or(malformed.clone())?;
        let (name, hash, data) = split_key(rest, "signer", SHAPE)?;
        let seed = ed25519_bytes(&data, malformed)?;
        let signer = Self::new(&name, SigningKey::from_bytes(&seed))?;
        // The hash is of the public key, which only exists once derived from the seed.
        if signer.key_hash != hash {
            return Err(KeyError::HashMismatch);
        }
        Ok(signer)
    }

    /// The signer key string. It holds the secret key: store it like a password.
    pub fn to_key_string(&self) -> String {
        format!(
            "{SIGNER_PREFIX}{}+{:08x}+{}",
            self.name,
            self.key_hash,
            BASE64.encode(key_data(ALG_ED25519, &self.key.to_bytes()))
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key hash (key ID).
    pub fn key_hash(&self) -> u32 {
        self.key_hash
    }

    /// The verifier for this signer's signatures.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key_hash: self.key_hash,
            key: self.key.verifying_key(),
        }
    }

    pub(super) fn sign_bytes(&self, msg: &[u8]) -> Signature {
        self.key.sign(msg)
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("key_hash", &format_args!("{:08x}", self.key_hash))
            .finish_non_exhaustive()
    }
}

/// A named Ed25519 public key that verifies note signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_hash: u32,
    key: VerifyingKey,
}

impl Verifier {
    /// A verifier with this name and public key.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, KeyError> {
        if !is_valid_key_name(name) {
            return Err(KeyError::InvalidName);
        }
        Ok(Self {
            name: name.to_owned(),
            key_hash: key_hash(name, &key),
            key,
        })
    }

    /// Parses a verifier key string, `<name>+<hex8 hash>+<base64(0x01 || public key)>`.
    pub fn parse(vkey: &str) -> Result<Self, KeyError> {
        const SHAPE: &str = "<name>+<8 hex digits>+<base64 key>";
        let (name, hash, data) = split_key(vkey, "verifier", SHAPE)?;
        // As in Go's note package: the hash covers whatever key data is there, so a mismatch is
        // reported before the algorithm is looked at.
        if key_hash_of_data(&name, &data) != hash {
            return Err(KeyError::HashMismatch);
        }
        let bytes = ed25519_bytes(
            &data,
            KeyError::Malformed {
                kind: "verifier",
                shape: SHAPE,
            },
        )?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::InvalidPublicKey)?;
        Ok(Self {
            name,
            key_hash: hash,
            key,
        })
    }

    /// A verifier with an arbitrary key hash, to build the collisions the public API cannot.
    #[cfg(test)]
    pub(crate) fn with_hash_for_tests(name: &str, key_hash: u32, key: VerifyingKey) -> Self {
        Self {
            name: name.to_owned(),
            key_hash,
            key,
        }
    }

    /// The verifier key string, safe to publish.
    pub fn to_key_string(&self) -> String {
        self.to_string()
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key hash (key ID).
    pub fn key_hash(&self) -> u32 {
        self.key_hash
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Whether `sig` is this key's signature of `msg`. Strict verification: it also refuses the
    /// malleable and small-order forms RFC 8032 leaves open, which an honest signer never makes.
    pub(super) fn verify_bytes(&self, msg: &[u8], sig: &[u8]) -> bool {
        match Signature::from_slice(sig) {
            Ok(sig) => self.key.verify_strict(msg, &sig).is_ok(),
            Err(_) => false,
        }
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_hash,
            BASE64.encode(key_data(ALG_ED25519, self.key.as_bytes()))
        )
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Verifier").field(&self.to_string()).finish()
    }
}

impl FromStr for Verifier {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::parse(s)
    }
}

/// A new key pair named `name`, from a cryptographically secure generator (e.g.
/// `rand::rngs::OsRng`).
pub fn generate_key<R: CryptoRng + RngCore>(
    name: &str,
    rng: &mut R,
) -> Result<(Signer, Verifier), KeyError> {
    let signer = Signer::new(name, SigningKey::generate(rng))?;
    let verifier = signer.verifier();
    Ok((signer, verifier))
}
