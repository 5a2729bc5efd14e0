//! Grant tokens: compact JWS (JWT) signed with the gateway's Ed25519 key, so a downstream system
//! can verify one offline against `GET /v1/keys`. The token carries no secret: whether it may
//! still be used is decided by the grant's state in the store (single use, before expiry).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use countersign_core::{ActionDigest, GrantState};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, SigningKey};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Issuer claim of every grant.
pub const ISSUER: &str = "countersign";

/// The claims of a grant token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GrantClaims {
    /// Always [`ISSUER`].
    pub iss: String,
    /// The action id.
    pub action_id: String,
    /// The digest of exactly what may run.
    pub digest: String,
    /// Unique grant id.
    pub jti: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expiry (seconds since the epoch, rounded up).
    pub exp: i64,
}

/// Why a token was refused before its grant was even looked up.
#[derive(Debug, thiserror::Error)]
#[error("the grant token is malformed or its signature is not ours")]
pub struct InvalidToken;

/// A problem with the signing key file.
#[derive(Debug, thiserror::Error)]
#[error("grant signing key {path}: {message}")]
pub struct KeyError {
    path: String,
    message: String,
}

/// Signs and verifies grant tokens.
pub struct GrantSigner {
    key: SigningKey,
    decoding: DecodingKey,
    kid: String,
    header_b64: String,
    validation: Validation,
}

impl std::fmt::Debug for GrantSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantSigner")
            .field("kid", &self.kid)
            .finish()
    }
}

impl GrantSigner {
    /// A signer for this key.
    pub fn new(key: SigningKey) -> Self {
        let public = key.verifying_key().to_bytes();
        let kid = hex::encode(&Sha256::digest(public)[..8]);
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        let decoding = DecodingKey::from_ed_der(&public);
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Expiry is the grant state's business (so "already used" wins over "expired" and
        // both answers come from one place); the signature and issuer are checked here.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        validation.set_issuer(&[ISSUER]);
        GrantSigner {
            key,
            decoding,
            kid,
            header_b64,
            validation,
        }
    }

    /// Loads the PKCS#8 PEM key at `path`, or creates one there (mode 0600) if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let err = |message: String| KeyError {
            path: path.display().to_string(),
            message,
        };
        let pem = read_or_publish(path, || {
            SigningKey::generate(&mut rand::rngs::OsRng)
                .to_pkcs8_pem(Default::default())
                .map(|pem| pem.to_string())
                .map_err(|e| format!("cannot encode a new key: {e}"))
        })
        .map_err(err)?;
        let key = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| err(format!("not an Ed25519 PKCS#8 PEM key: {e}")))?;
        Ok(GrantSigner::new(key))
    }

    /// The key id (`kid`) in every token header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK Set, for `GET /v1/keys`.
    pub fn jwks(&self) -> serde_json::Value {
        let x = URL_SAFE_NO_PAD.encode(self.key.verifying_key().to_bytes());
        serde_json::json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid, "x": x
        }]})
    }

    /// The token for a grant of action `action_id`.
    pub fn sign(&self, action_id: &str, grant: &GrantState) -> String {
        let claims = GrantClaims {
            iss: ISSUER.into(),
            action_id: action_id.into(),
            digest: grant.digest.to_string(),
            jti: grant.jti.clone(),
            iat: grant.issued_at.millis().div_euclid(1000),
            exp: (grant.expires_at.millis() + 999).div_euclid(1000),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let signing_input = format!("{}.{}", self.header_b64, payload);
        let sig = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    /// Checks the signature and shape of a token and returns its claims.
    pub fn verify(&self, token: &str) -> Result<(GrantClaims, ActionDigest), InvalidToken> {
        if token.len() > 4096 {
            return Err(InvalidToken);
        }
        let data = jsonwebtoken::decode::<GrantClaims>(token, &self.decoding, &self.validation)
            .map_err(|_| InvalidToken)?;
        let digest = data.claims.digest.parse().map_err(|_| InvalidToken)?;
        Ok((data.claims, digest))
    }
}

/// The secret file at `path`; if there is none, `make()`'s text published there, readable only
/// by its owner (0600). Publishing never overwrites and is atomic: the text is written and synced
/// to a temporary file, then hard-linked into place. So replicas starting together on a shared
/// directory all end up with the one key that was published first, and none reads a
/// half-written file.
pub(crate) fn read_or_publish(
    path: &Path,
    make: impl FnOnce() -> Result<String, String>,
) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.to_string()),
    }
    let text = make()?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::now_v7().simple()));
    let published = write_new(&tmp, text.as_bytes()).and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match published {
        Ok(()) => {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| e.to_string())?;
            Ok(text)
        }
        // Another process published first: its key is the one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(path).map_err(|e| e.to_string())
        }
        // A filesystem without hard links: create the file in place (never overwriting).
        Err(_) => match write_new(path, text.as_bytes()) {
            Ok(()) => Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::read_to_string(path).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        },
    }
}

/// Writes a new file readable only by its owner (0600) and syncs it; never overwrites one.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replicas starting together on a fresh shared directory: every one ends up with the same
    /// key, none fails, and nothing temporary is left behind.
    #[test]
    fn racing_first_starts_share_one_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys").join("grant.pem");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let kids: Vec<String> = (0..8)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    GrantSigner::load_or_create(&path).map(|s| s.kid().to_string())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().expect("thread").expect("a signer"))
            .collect();
        assert!(kids.iter().all(|k| *k == kids[0]), "{kids:?}");
        assert_eq!(
            GrantSigner::load_or_create(&path).expect("reload").kid(),
            kids[0]
        );
        let files: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(files, [std::ffi::OsString::from("grant.pem")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
