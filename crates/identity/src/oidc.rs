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
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::claims;
use crate::config::{Issuer, OidcIssuerConfig};
use crate::error::AuthError;
use crate::jwks::{family_of, KeyCache};
use crate::lookup::ContactFacts;

struct IssuerState {
    issuer: Issuer,
    keys: KeyCache,
}

/// Largest accepted bearer token.
pub const MAX_TOKEN: usize = 16 * 1024;
/// `exp`, `nbf` and `iat` against `now`, with `leeway` seconds of skew: expired once `exp` has
/// passed, not yet valid before `nbf` or when issued in the future. A time claim that is not a
/// whole number of seconds (`exp`, `nbf`) is malformed.
pub(crate) fn check_times(claims: &Value, now: Timestamp, leeway: u64) -> Result<(), AuthError> {
    let now = u64::try_from(now.millis().div_euclid(1000)).unwrap_or(0);
    let time = |name: &str| -> Result<Option<u64>, AuthError> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or(AuthError::Malformed),
        }
    };
    let exp = time("exp")?.ok_or(AuthError::Malformed)?;
    if exp < now.saturating_sub(leeway) {
        return Err(AuthError::Expired);
    }
    let future = |t: u64| t > now.saturating_add(leeway);
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

#[derive(Deserialize)]
pub(crate) struct Header {
    pub(crate) alg: String,
    #[serde(default)]
    pub(crate) kid: Option<String>,
}

/// Verifies OIDC tokens from the configured issuers.
pub struct OidcVerifier {
    issuers: HashMap<String, Arc<IssuerState>>,
}

impl OidcVerifier {
    /// Builds a verifier; keys are fetched on first use, so the gateway starts while an IdP is
    /// down.
    pub fn new(configs: Vec<OidcIssuerConfig>) -> Result<Self, String> {
        crate::crypto::install();
        let mut validated = Vec::new();
        for c in configs {
            validated.push(c.validate()?);
        }
        let mut issuers = HashMap::new();
        if validated.is_empty() {
            return Ok(OidcVerifier { issuers });
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| format!("oidc: cannot build the HTTP client: {e}"))?;
        for issuer in validated {
            let name = issuer.config.issuer.clone();
            let url = issuer.config.discovery_url.clone().unwrap_or_else(|| {
                format!(
                    "{}/.well-known/openid-configuration",
                    name.trim_end_matches('/')
                )
            });
            let keys = KeyCache::new(url, name.clone(), issuer.min_refresh, http.clone());
            let state = IssuerState { issuer, keys };
            if issuers.insert(name.clone(), Arc::new(state)).is_some() {
                return Err(format!("oidc: issuer \"{name}\" is configured twice"));
            }
        }
        Ok(OidcVerifier { issuers })
    }

    /// Whether any issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// How many times the JWKS (with discovery) of `issuer` was fetched (for tests and metrics).
    pub fn fetches(&self, issuer: &str) -> u64 {
        self.issuers.get(issuer).map_or(0, |s| s.keys.fetches())
    }

    /// Whether `issuer` is one of the configured issuers (exactly).
    pub fn trusts(&self, issuer: &str) -> bool {
        self.issuers.contains_key(issuer)
    }

    /// Verifies `token` at `now` and maps its claims to an identity. `exp`, `nbf` and `iat` are
    /// checked against the `now` passed in (the caller's clock), never the system clock.
    pub async fn verify(&self, token: &str, now: Timestamp) -> Result<Identity, AuthError> {
        self.verify_with_contact(token, now)
            .await
            .map(|(identity, _)| identity)
    }

    /// As [`OidcVerifier::verify`], with what the token proves about how its subject is reached
    /// in chat ([`claims::contact`]: a verified email, an Entra object id in its tenant).
    pub async fn verify_with_contact(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<(Identity, ContactFacts), AuthError> {
        let unverified = read_unverified(token)?;
        let iss = unverified
            .payload
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(AuthError::IssuerUnknown)?;
        let state = self.issuers.get(iss).ok_or(AuthError::IssuerUnknown)?;
        let key = state.keys.key(unverified.header.kid.as_deref()).await?;
        let audience: Vec<&str> = state.issuer.audience.iter().map(String::as_str).collect();
        let claims = key.verify(token, &unverified, &audience, iss, now, LEEWAY_SECS)?;
        let identity = claims::identity(&state.issuer, iss, &claims)?;
        Ok((identity, claims::contact(iss, &claims)))
    }
}

/// A JWT as read before anything in it is trusted: its header, its algorithm (never `none` or
/// HMAC) with the key family that algorithm needs, and its payload.
pub(crate) struct Unverified {
    pub(crate) header: Header,
    pub(crate) alg: Algorithm,
    pub(crate) family: crate::jwks::Family,
    pub(crate) payload: Value,
}

/// Reads `token`'s parts (at most [`MAX_TOKEN`] bytes, three segments) without verifying it.
pub(crate) fn read_unverified(token: &str) -> Result<Unverified, AuthError> {
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
    Ok(Unverified {
        header,
        alg,
        family,
        payload,
    })
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)
}
