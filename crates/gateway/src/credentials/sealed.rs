//! Sealing static secrets at rest: XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`) under a
//! 256-bit key kept in a file beside the database, like the signing keys, never in the store.
//!
//! Sealed format: `1` (version), the key's 8-byte id, a random 24-byte nonce, then the
//! ciphertext and its 16-byte tag. The associated data binds the credential's name, so a sealed
//! value copied to another name's row does not open. The key id (a digest of the key) lets a
//! wrong key file be named as such instead of as a corrupt value.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;
const HEADER: usize = 1 + KEY_ID_LEN + NONCE_LEN;

/// Why a sealed value could not be opened. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Sealed under another key than the configured key file's.
    #[error(
        "it was sealed under key {sealed_with}, but the key file {file} is key {this}: the gateway \
         has the wrong `secrets_key` file (restore the one it was set with, or set the value again)"
    )]
    OtherKey {
        /// The id of the key it was sealed under.
        sealed_with: String,
        /// The id of the configured key.
        this: String,
        /// The configured key file.
        file: String,
    },
    /// Not in the sealed format, or it fails authentication (changed in the store).
    #[error("the stored value is damaged or was changed (it fails authentication)")]
    Damaged,
}

/// The key that seals static secrets.
pub struct SecretsKey {
    cipher: XChaCha20Poly1305,
    id: [u8; KEY_ID_LEN],
    path: PathBuf,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretsKey({})", self.id())
    }
}

fn aad(name: &str, key_id: &[u8]) -> Vec<u8> {
    let mut a = b"countersign static secret v1\n".to_vec();
    a.extend_from_slice(key_id);
    a.extend_from_slice(name.as_bytes());
    a
}

impl SecretsKey {
    /// The key from its bytes (32).
    pub fn from_bytes(key: &[u8], path: &Path) -> Result<SecretsKey, String> {
        if key.len() != 32 {
            return Err(format!(
                "secrets key {}: {} bytes, 32 needed",
                path.display(),
                key.len()
            ));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(key)
            .map_err(|_| format!("secrets key {}: not a key", path.display()))?;
        let digest = Sha256::new()
            .chain_update(b"countersign secrets key id\n")
            .chain_update(key)
            .finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Ok(SecretsKey {
            cipher,
            id,
            path: path.to_path_buf(),
        })
    }

    /// Loads the key file at `path` (64 hex digits), or makes one (mode 0600) if there is none.
    pub fn load_or_create(path: &Path) -> Result<SecretsKey, String> {
        let text = crate::grants::read_or_publish(path, || {
            let mut key = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut key);
            Ok(format!("{}\n", hex::encode(key)))
        })
        .map_err(|e| format!("secrets key {}: {e}", path.display()))?;
        let key = hex::decode(text.trim())
            .map_err(|_| format!("secrets key {}: not hex", path.display()))?;
        SecretsKey::from_bytes(&key, path)
    }

    /// The key's id (hex), shown in errors and the `secret_set` audit entry.
    pub fn id(&self) -> String {
        hex::encode(self.id)
    }

    /// Seals `value` for the credential `name`.
    pub fn seal(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: value,
                    aad: &aad(name, &self.id),
                },
            )
            .map_err(|_| "cannot seal the value".to_string())?;
        let mut out = Vec::with_capacity(HEADER + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a value sealed for `name`.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < HEADER + 16 || sealed[0] != VERSION {
            return Err(OpenError::Damaged);
        }
        let key_id = &sealed[1..1 + KEY_ID_LEN];
        if key_id != self.id {
            return Err(OpenError::OtherKey {
                sealed_with: hex::encode(key_id),
                this: self.id(),
                file: self.path.display().to_string(),
            });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1 + KEY_ID_LEN..HEADER]);
        self.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &sealed[HEADER..],
                    aad: &aad(name, key_id),
                },
            )
            .map_err(|_| OpenError::Damaged)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn key(byte: u8) -> SecretsKey {
        SecretsKey::from_bytes(&[byte; 32], Path::new("/k")).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_with_its_key_and_name_only() {
        let k = key(1);
        let sealed = k.seal("api", b"s3cr3t-value").unwrap();
        assert!(!sealed.windows(12).any(|w| w == b"s3cr3t-value"));
        assert_eq!(k.open("api", &sealed).unwrap(), b"s3cr3t-value");
        // Two seals of one value differ (random nonces).
        assert_ne!(k.seal("api", b"s3cr3t-value").unwrap(), sealed);
        // Another name's row: refused.
        assert_eq!(k.open("other", &sealed), Err(OpenError::Damaged));
        // Another key: named as such.
        let err = key(2).open("api", &sealed).unwrap_err();
        assert!(matches!(err, OpenError::OtherKey { .. }), "{err:?}");
        assert!(err.to_string().contains(&k.id()), "{err}");
        // A changed byte anywhere after the header, or a truncation: damaged.
        for i in HEADER..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(k.open("api", &bad), Err(OpenError::Damaged));
        }
        assert_eq!(
            k.open("api", &sealed[..HEADER + 3]),
            Err(OpenError::Damaged)
        );
        assert_eq!(k.open("api", &[]), Err(OpenError::Damaged));
    }

    #[test]
    fn a_key_file_is_made_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.secrets.key");
        let a = SecretsKey::load_or_create(&path).unwrap();
        let b = SecretsKey::load_or_create(&path).unwrap();
        assert_eq!(a.id(), b.id());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "abcd\n").unwrap();
        assert!(SecretsKey::load_or_create(&path)
            .unwrap_err()
            .contains("32 needed"));
        assert!(!format!("{a:?}").contains(&hex::encode([1u8; 4])));
    }
}
