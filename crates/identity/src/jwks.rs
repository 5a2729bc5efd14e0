//! A JSON Web Key Set behind an OpenID metadata document, cached: what both the OIDC issuers
//! ([`crate::oidc`]) and the Bot Framework's token service ([`crate::botframework`]) publish
//! their signing keys through.
//!
//! The metadata document is read once (its `issuer` must be the one expected, else its keys are
//! refused); the JWKS is fetched when an unknown `kid` appears, at most once per `min_refresh`,
//! so a flood of made-up `kid`s costs the provider one request; a known `kid` never causes a
//! fetch. Symmetric keys and encryption keys are never accepted.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::error::AuthError;

const MAX_DOCUMENT: usize = 1024 * 1024;

/// The key family an algorithm needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// The family `alg` verifies with, or `None` for an algorithm never accepted (HMAC, none).
pub(crate) fn family_of(alg: Algorithm) -> Option<Family> {
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => Some(Family::Rsa),
        Algorithm::ES256 => Some(Family::P256),
        Algorithm::ES384 => Some(Family::P384),
        Algorithm::EdDSA => Some(Family::Ed25519),
        _ => None,
    }
}

/// One published signing key.
pub(crate) struct Key {
    pub(crate) decoding: DecodingKey,
    pub(crate) family: Family,
    /// The JWK's `alg`, if it pins one.
    pub(crate) alg: Option<Algorithm>,
    /// The Bot Framework's `endorsements` (the channel ids this key may sign for); empty for
    /// an ordinary JWK.
    pub(crate) endorsements: Vec<String>,
}

impl Key {
    /// Verifies `token` (read as `unverified`) with this key: the algorithm must fit the key,
    /// the signature verify, `iss` be `issuer`, `aud` one of `audience`; `exp` (required),
    /// `nbf` and `iat` are checked against `now` with `leeway` seconds, never the system clock.
    /// The claims.
    pub(crate) fn verify(
        &self,
        token: &str,
        unverified: &crate::oidc::Unverified,
        audience: &[&str],
        issuer: &str,
        now: countersign_core::Timestamp,
        leeway: u64,
    ) -> Result<Value, AuthError> {
        let alg = unverified.alg;
        if self.family != unverified.family || self.alg.is_some_and(|a| a != alg) {
            return Err(AuthError::AlgMismatch);
        }
        let mut validation = jsonwebtoken::Validation::new(alg);
        // Times are checked below against the caller's `now`; jsonwebtoken would read the
        // system clock. `exp` must still be present (a number).
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_audience(audience);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Value>(token, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidAudience => AuthError::AudienceInvalid,
                ErrorKind::MissingRequiredClaim(c) if c == "aud" => AuthError::AudienceInvalid,
                ErrorKind::InvalidIssuer => AuthError::IssuerUnknown,
                ErrorKind::InvalidSignature => AuthError::SignatureInvalid,
                ErrorKind::InvalidAlgorithm => AuthError::AlgMismatch,
                _ => AuthError::Malformed,
            },
        )?;
        crate::oidc::check_times(&data.claims, now, leeway)?;
        Ok(data.claims)
    }
}

#[derive(Default)]
struct KeySet {
    generation: u64,
    by_kid: HashMap<String, Arc<Key>>,
    all: Vec<Arc<Key>>,
}

fn parse_key(value: &Value) -> Option<(Option<String>, Key)> {
    let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Family::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Family::P256,
            EllipticCurve::P384 => Family::P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Family::Ed25519
        }
        // Symmetric ("oct") keys are never accepted: they would let anyone who knows them mint.
        _ => return None,
    };
    let alg = match value.get("alg").and_then(Value::as_str) {
        Some(a) => Some(Algorithm::from_str(a).ok()?),
        None => None,
    };
    let endorsements = value
        .get("endorsements")
        .and_then(Value::as_array)
        .map(|e| {
            e.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let decoding = DecodingKey::from_jwk(&jwk).ok()?;
    Some((
        jwk.common.key_id.clone(),
        Key {
            decoding,
            family,
            alg,
            endorsements,
        },
    ))
}

#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    jwks_uri: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: String,
    #[serde(default)]
    id_token_signing_alg_values_supported: Option<Vec<String>>,
}

/// The keys one issuer publishes, fetched through its metadata document and cached.
pub struct KeyCache {
    metadata_url: String,
    issuer: String,
    min_refresh: Duration,
    http: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    refresh: tokio::sync::Mutex<RefreshState>,
    /// The metadata's `id_token_signing_alg_values_supported`, once read.
    algorithms: std::sync::OnceLock<Option<Vec<String>>>,
    fetches: std::sync::atomic::AtomicU64,
}

impl KeyCache {
    /// The keys of `issuer`, whose metadata document is at `metadata_url`; a fetch for an
    /// unknown `kid` at most once per `min_refresh`. Nothing is fetched until a key is needed.
    pub fn new(
        metadata_url: String,
        issuer: String,
        min_refresh: Duration,
        http: reqwest::Client,
    ) -> KeyCache {
        KeyCache {
            metadata_url,
            issuer,
            min_refresh,
            http,
            keys: RwLock::new(Arc::new(KeySet::default())),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
            algorithms: std::sync::OnceLock::new(),
            fetches: Default::default(),
        }
    }

    /// The issuer whose keys these are.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// How many times the JWKS (with the metadata) was fetched.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The signing algorithms the metadata document lists
    /// (`id_token_signing_alg_values_supported`), once it has been read; `None` if it lists
    /// none.
    pub(crate) fn algorithms(&self) -> Option<&[String]> {
        self.algorithms.get().and_then(|a| a.as_deref())
    }

    /// The key `kid` names (the only key when the token names none and there is one).
    pub(crate) async fn key(&self, kid: Option<&str>) -> Result<Arc<Key>, AuthError> {
        let find = |set: &KeySet| -> Result<Option<Arc<Key>>, AuthError> {
            match kid {
                Some(k) => Ok(set.by_kid.get(k).cloned()),
                None if set.all.len() > 1 => Err(AuthError::KidMissing),
                None => Ok(set.all.first().cloned()),
            }
        };
        let current = self.keys.read().map(|k| k.clone()).unwrap_or_default();
        if let Some(k) = find(&current)? {
            return Ok(k);
        }
        self.refresh(current.generation).await?;
        let current = self.keys.read().map(|k| k.clone()).unwrap_or_default();
        find(&current)?.ok_or(AuthError::KeyUnknown)
    }

    /// Fetches the JWKS unless another task just did (`seen` is the generation the caller looked
    /// at) or the last attempt was under `min_refresh` ago.
    async fn refresh(&self, seen: u64) -> Result<(), AuthError> {
        let mut guard = self.refresh.lock().await;
        let generation = self.keys.read().map(|k| k.generation).unwrap_or(seen);
        if generation != seen {
            return Ok(());
        }
        if guard
            .last_attempt
            .is_some_and(|t| t.elapsed() < self.min_refresh)
        {
            return Ok(());
        }
        guard.last_attempt = Some(Instant::now());
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let jwks_uri = match &guard.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let doc: Metadata = fetch_json(&self.http, &self.metadata_url).await?;
                if doc.issuer != self.issuer {
                    tracing::error!(issuer = %self.issuer, found = %doc.issuer,
                        "the OpenID metadata names a different issuer; refusing its keys");
                    return Err(AuthError::ProviderUnavailable);
                }
                guard.jwks_uri = Some(doc.jwks_uri.clone());
                let _ = self
                    .algorithms
                    .set(doc.id_token_signing_alg_values_supported);
                doc.jwks_uri
            }
        };
        let jwks: Value = fetch_json(&self.http, &jwks_uri).await?;
        let mut set = KeySet {
            generation: generation + 1,
            ..KeySet::default()
        };
        for value in jwks
            .get("keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some((kid, key)) = parse_key(value) {
                let key = Arc::new(key);
                if let Some(kid) = kid {
                    set.by_kid.insert(kid, key.clone());
                }
                set.all.push(key);
            }
        }
        tracing::info!(issuer = %self.issuer, keys = set.all.len(), "fetched the issuer's JWKS");
        if let Ok(mut keys) = self.keys.write() {
            *keys = Arc::new(set);
        }
        Ok(())
    }
}

async fn fetch_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, AuthError> {
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::warn!(url, error = %e, "could not fetch from the identity provider");
        AuthError::ProviderUnavailable
    };
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| unavailable(&e))?
        .error_for_status()
        .map_err(|e| unavailable(&e))?;
    let bytes = resp.bytes().await.map_err(|e| unavailable(&e))?;
    if bytes.len() > MAX_DOCUMENT {
        return Err(unavailable(&"document over 1 MiB"));
    }
    serde_json::from_slice(&bytes).map_err(|e| unavailable(&e))
}
