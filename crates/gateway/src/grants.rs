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
        match std::fs::read_to_string(path) {
            Ok(pem) => {
                let key = SigningKey::from_pkcs8_pem(&pem)
                    .map_err(|e| err(format!("not an Ed25519 PKCS#8 PEM key: {e}")))?;
                Ok(GrantSigner::new(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::generate(&mut rand::rngs::OsRng);
                let pem = key
                    .to_pkcs8_pem(Default::default())
                    .map_err(|e| err(format!("cannot encode a new key: {e}")))?;
                write_private(path, pem.as_bytes()).map_err(|e| err(e.to_string()))?;
                Ok(GrantSigner::new(key))
            }
            Err(e) => Err(err(e.to_string())),
        }
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

/// Writes a new secret file readable only by its owner (0600); never overwrites one.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
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
