//! Who is calling. One [`Authenticator`] turns a bearer credential into an [`Identity`] with its
//! source, trying in order: tokens from the config file (by SHA-256), managed API keys (`csk_`,
//! looked up in the store on every request so a revocation holds at once on every replica), and
//! OIDC JWTs from the configured issuers.
//!
//! **Architecture Invariant:** this crate authenticates and nothing else. It decides no rule about
//! who may do what (that is `countersign_core::record`), and it never logs a credential: only key
//! ids and `issuer#subject` appear in logs and in [`Identity::source`].

pub mod botframework;
pub mod claims;
pub mod config;
pub mod crypto;
mod error;
pub mod jwks;
pub mod keys;
pub mod lookup;
pub mod oidc;
pub mod registry;

pub use config::{ClaimRule, OidcIssuerConfig};
pub use error::AuthError;
pub use lookup::{Binding, Contact, ContactFacts, EntraObject, KeyLookup, KeyRecord, LookupError};
pub use oidc::{OidcVerifier, MAX_TOKEN};
pub use registry::{BindError, Registry, CONTACT_MAX_AGE_MS, CONTACT_REFRESH_MS};

use countersign_core::{Identity, Timestamp};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// Turns bearer credentials into identities.
pub struct Authenticator {
    config_tokens: HashMap<[u8; 32], Arc<Identity>>,
    store: Arc<dyn KeyLookup>,
    oidc: OidcVerifier,
    registry: Registry,
}

impl Authenticator {
    /// `config_tokens`: SHA-256 of each configured token → its identity.
    pub fn new(
        config_tokens: HashMap<[u8; 32], Arc<Identity>>,
        store: Arc<dyn KeyLookup>,
        oidc: OidcVerifier,
    ) -> Self {
        Authenticator::with_links(config_tokens, store, oidc, HashMap::new())
    }

    /// As [`Authenticator::new`], with OIDC subjects (`issuer#subject`) linked to configured
    /// humans (`oidc_subject`).
    pub fn with_links(
        config_tokens: HashMap<[u8; 32], Arc<Identity>>,
        store: Arc<dyn KeyLookup>,
        oidc: OidcVerifier,
        linked: HashMap<String, Arc<Identity>>,
    ) -> Self {
        let registry = Registry::new(store.clone(), config_tokens.values().cloned(), linked);
        Authenticator {
            config_tokens,
            store,
            oidc,
            registry,
        }
    }

    /// Which source owns which id.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The OIDC verifier.
    pub fn oidc(&self) -> &OidcVerifier {
        &self.oidc
    }

    /// The identity `token` proves, at `now`.
    pub async fn authenticate(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<Arc<Identity>, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Unknown);
        }
        if token.len() > MAX_TOKEN {
            return Err(AuthError::TooLarge);
        }
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(ident) = self.config_tokens.get(&hash) {
            return Ok(ident.clone());
        }
        if token.starts_with(keys::PREFIX) {
            let key = self
                .store
                .key_by_hash(&hash)
                .await?
                .ok_or(AuthError::Unknown)?;
            if key.revoked_at.is_some_and(|t| t <= now) {
                return Err(AuthError::KeyRevoked);
            }
            if key.expires_at.is_some_and(|t| t <= now) {
                return Err(AuthError::KeyExpired);
            }
            let ident = Identity {
                stable_key: Some(format!("managed:{}", key.identity)),
                id: key.identity,
                kind: key.kind,
                groups: key.groups,
                email: None,
                source: Some(format!("key:{}", key.id)),
                issuer: None,
                claims: Default::default(),
                sponsor: key.sponsor,
            };
            return self.registry.admit(ident, now).await.map(Arc::new);
        }
        if token.bytes().filter(|b| *b == b'.').count() == 2 && !self.oidc.is_empty() {
            let (ident, facts) = self.oidc.verify_with_contact(token, now).await?;
            let ident = self.registry.admit(ident, now).await?;
            self.registry.record_contact(&ident, facts, now).await?;
            return Ok(Arc::new(ident));
        }
        Err(AuthError::Unknown)
    }
}
