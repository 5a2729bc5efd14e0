//! OIDC bearer tokens: discovery, a JWKS cache per issuer, and verification.
//!
//! A token's header and `iss` are read (unverified) only to pick the issuer and key; nothing in
//! them is trusted until the signature verifies under a key the issuer publishes, with an
//! algorithm that fits that key. The JWKS is fetched when an unknown `kid` appears, at most once
//! per `jwks_min_refresh` per issuer, so a flood of made-up `kid`s costs the IdP one request; a
//! known `kid` never causes a fetch.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use countersign_core::{Identity, Timestamp};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::claims;
use crate::config::{Issuer, OidcIssuerConfig};
use crate::error::AuthError;

/// Largest accepted bearer token.
pub const MAX_TOKEN: usize = 16 * 1024;
/// `exp`, `nbf` and `iat` against `now`, with [`LEEWAY_SECS`] of skew: expired once `exp` has
/// passed, not yet valid before `nbf` or when issued in the future. A time claim that is not a
/// whole number of seconds (`exp`, `nbf`) is malformed.
fn check_times(claims: &Value, now: Timestamp) -> Result<(), AuthError> {
    let now = u64::try_from(now.millis().div_euclid(1000)).unwrap_or(0);
    let time = |name: &str| -> Result<Option<u64>, AuthError> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or(AuthError::Malformed),
        }
    };
    let exp = time("exp")?.ok_or(AuthError::Malformed)?;
    if exp < now.saturating_sub(LEEWAY_SECS) {
        return Err(AuthError::Expired);
    }
    let future = |t: u64| t > now.saturating_add(LEEWAY_SECS);
    if time("nbf")?.is_some_and(future) {
        return Err(AuthError::NotYetValid);
    }
    // `iat` was never required to parse: one that is not a whole number is still ignored.
    if claims
        .get("iat")
        .and_then(Value::as_u64)
        .is_some_and(future)
    {
        return Err(AuthError::NotYetValid);
    }
    Ok(())
}

/// Clock skew allowed on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 60;
const MAX_DOCUMENT: usize = 1024 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}

fn family_of(alg: Algorithm) -> Option<Family> {
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

struct Key {
    decoding: DecodingKey,
    family: Family,
    /// The JWK's `alg`, if it pins one.
    alg: Option<Algorithm>,
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
    let decoding = DecodingKey::from_jwk(&jwk).ok()?;
    Some((
        jwk.common.key_id.clone(),
        Key {
            decoding,
            family,
            alg,
        },
    ))
}

#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    jwks_uri: Option<String>,
}

struct IssuerState {
    issuer: Issuer,
    keys: RwLock<Arc<KeySet>>,
    refresh: tokio::sync::Mutex<RefreshState>,
    fetches: std::sync::atomic::AtomicU64,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// Verifies OIDC tokens from the configured issuers.
pub struct OidcVerifier {
    issuers: HashMap<String, Arc<IssuerState>>,
    http: Option<reqwest::Client>,
}

impl OidcVerifier {
    /// Builds a verifier; keys are fetched on first use, so the gateway starts while an IdP is
    /// down.
    pub fn new(configs: Vec<OidcIssuerConfig>) -> Result<Self, String> {
        crate::crypto::install();
        let mut issuers = HashMap::new();
        for c in configs {
            let issuer = c.validate()?;
            let name = issuer.config.issuer.clone();
            let state = IssuerState {
                issuer,
                keys: RwLock::new(Arc::new(KeySet::default())),
                refresh: tokio::sync::Mutex::new(RefreshState::default()),
                fetches: Default::default(),
            };
            if issuers.insert(name.clone(), Arc::new(state)).is_some() {
                return Err(format!("oidc: issuer \"{name}\" is configured twice"));
            }
        }
        let http = if issuers.is_empty() {
            None
        } else {
            let _ = rustls::crypto::ring::default_provider().install_default();
            Some(
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .redirect(reqwest::redirect::Policy::limited(3))
                    .build()
                    .map_err(|e| format!("oidc: cannot build the HTTP client: {e}"))?,
            )
        };
        Ok(OidcVerifier { issuers, http })
    }

    /// Whether any issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// How many times the JWKS (with discovery) of `issuer` was fetched (for tests and metrics).
    pub fn fetches(&self, issuer: &str) -> u64 {
        self.issuers
            .get(issuer)
            .map_or(0, |s| s.fetches.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Verifies `token` at `now` and maps its claims to an identity. `exp`, `nbf` and `iat` are
    /// checked against the `now` passed in (the caller's clock), never the system clock.
    pub async fn verify(&self, token: &str, now: Timestamp) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN {
            return Err(AuthError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let header: Header = decode_part(h)?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(AuthError::AlgNone);
        }
        if header.alg.to_ascii_uppercase().starts_with("HS") {
            return Err(AuthError::AlgHmac);
        }
        let alg = Algorithm::from_str(&header.alg).map_err(|_| AuthError::AlgUnsupported)?;
        let family = family_of(alg).ok_or(AuthError::AlgUnsupported)?;
        let payload: Value = decode_part(p)?;
        let iss = payload
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(AuthError::IssuerUnknown)?;
        let state = self.issuers.get(iss).ok_or(AuthError::IssuerUnknown)?;
        let key = self.key(state, header.kid.as_deref()).await?;
        if key.family != family || key.alg.is_some_and(|a| a != alg) {
            return Err(AuthError::AlgMismatch);
        }
        let mut validation = Validation::new(alg);
        // Times are checked below against the caller's `now`; jsonwebtoken would read the
        // system clock. `exp` must still be present (a number).
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_audience(&state.issuer.audience);
        validation.set_issuer(&[iss]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Value>(token, &key.decoding, &validation).map_err(
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
        check_times(&data.claims, now)?;
        claims::identity(&state.issuer, iss, &data.claims)
    }

    async fn key(&self, state: &IssuerState, kid: Option<&str>) -> Result<Arc<Key>, AuthError> {
        let find = |set: &KeySet| -> Result<Option<Arc<Key>>, AuthError> {
            match kid {
                Some(k) => Ok(set.by_kid.get(k).cloned()),
                None if set.all.len() > 1 => Err(AuthError::KidMissing),
                None => Ok(set.all.first().cloned()),
            }
        };
        let current = state.keys.read().map(|k| k.clone()).unwrap_or_default();
        if let Some(k) = find(&current)? {
            return Ok(k);
        }
        self.refresh(state, current.generation).await?;
        let current = state.keys.read().map(|k| k.clone()).unwrap_or_default();
        find(&current)?.ok_or(AuthError::KeyUnknown)
    }

    /// Fetches the JWKS unless another task just did (`seen` is the generation the caller looked
    /// at) or the last attempt was under `jwks_min_refresh` ago.
    async fn refresh(&self, state: &IssuerState, seen: u64) -> Result<(), AuthError> {
        let mut guard = state.refresh.lock().await;
        let generation = state.keys.read().map(|k| k.generation).unwrap_or(seen);
        if generation != seen {
            return Ok(());
        }
        if guard
            .last_attempt
            .is_some_and(|t| t.elapsed() < state.issuer.min_refresh)
        {
            return Ok(());
        }
        guard.last_attempt = Some(Instant::now());
        state
            .fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let http = self.http.as_ref().ok_or(AuthError::ProviderUnavailable)?;
        let cfg = &state.issuer.config;
        let jwks_uri = match &guard.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let url = cfg.discovery_url.clone().unwrap_or_else(|| {
                    format!(
                        "{}/.well-known/openid-configuration",
                        cfg.issuer.trim_end_matches('/')
                    )
                });
                let doc: Discovery = fetch_json(http, &url).await?;
                if doc.issuer != cfg.issuer {
                    tracing::error!(issuer = %cfg.issuer, found = %doc.issuer,
                        "OIDC discovery names a different issuer; refusing its keys");
                    return Err(AuthError::ProviderUnavailable);
                }
                guard.jwks_uri = Some(doc.jwks_uri.clone());
                doc.jwks_uri
            }
        };
        let jwks: Value = fetch_json(http, &jwks_uri).await?;
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
        tracing::info!(issuer = %cfg.issuer, keys = set.all.len(), "fetched the issuer's JWKS");
        if let Ok(mut keys) = state.keys.write() {
            *keys = Arc::new(set);
        }
        Ok(())
    }
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)
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
