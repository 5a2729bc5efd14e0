//! Managed API key secrets: `csk_` + 43 base64url characters (256 random bits).
//!
//! Only SHA-256 of the whole key is stored. A slow password hash (argon2, bcrypt) protects
//! low-entropy secrets against guessing; these keys have 256 bits of entropy, so a single SHA-256
//! is already infeasible to invert, and it keeps the per-request lookup an indexed equality.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix of every managed key (lets secret scanners and the authenticator recognise them).
pub const PREFIX: &str = "csk_";

/// A fresh key: `(secret, sha256(secret))`. Show the secret once; store the hash.
pub fn generate() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash(&secret);
    (secret, hash)
}

/// A fresh public key id (`key_` + 16 hex digits), safe to log.
pub fn new_id() -> String {
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("key_{}", hex::encode(bytes))
}

/// SHA-256 of a key.
pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}
