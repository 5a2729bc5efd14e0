//! Bot Framework tokens: what the Bot Connector service signs each request to a bot with
//! (Microsoft's "Authenticate requests from the Bot Connector service to your bot").
//!
//! A token is accepted only if it is a JWT signed with an algorithm the OpenID metadata lists
//! (`id_token_signing_alg_values_supported`, RS256 in practice) by a key its JWKS publishes (the
//! same [`KeyCache`] the OIDC issuers use), its `iss` is `https://api.botframework.com`, its
//! `aud` is the bot's app id, it is within its `nbf`/`exp` (5 minutes of skew, Microsoft's
//! documented tolerance), and it carries a `serviceUrl` claim. Then
//! [`ConnectorToken::check_activity`] holds it to the activity it came with: the claim equals
//! the activity's `serviceUrl`, and the signing key is endorsed for the activity's `channelId`.

use countersign_core::Timestamp;
use serde_json::Value;
use std::time::Duration;

use crate::error::AuthError;
use crate::jwks::KeyCache;
use crate::oidc::read_unverified;

/// The `iss` of every token the Bot Connector service sends.
pub const ISSUER: &str = "https://api.botframework.com";
/// Where the Bot Connector service's OpenID metadata is.
pub const METADATA_URL: &str = "https://login.botframework.com/v1/.well-known/openidconfiguration";
/// Clock skew allowed on `exp` and `nbf` ("industry-standard clock-skew is 5 minutes").
pub const LEEWAY_SECS: u64 = 300;

/// Why a Bot Framework request is refused.
#[derive(Debug, thiserror::Error)]
pub enum BotAuthError {
    /// The token itself (missing, malformed, unsigned, wrong issuer or audience, expired, bad
    /// signature, keys unavailable).
    #[error(transparent)]
    Token(#[from] AuthError),
    /// The token's `serviceUrl` claim is not the activity's `serviceUrl`.
    #[error("the token was issued for another serviceUrl than the activity's")]
    ServiceUrlMismatch,
    /// The signing key is not endorsed for the activity's `channelId`.
    #[error("the token's signing key is not endorsed for the activity's channel")]
    ChannelNotEndorsed,
}

impl BotAuthError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            BotAuthError::Token(e) => e.code(),
            BotAuthError::ServiceUrlMismatch => "token_service_url_mismatch",
            BotAuthError::ChannelNotEndorsed => "token_channel_not_endorsed",
        }
    }

    /// Whether the fault is the key service's, not the request's (retry later).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, BotAuthError::Token(e) if e.is_unavailable())
    }
}

/// Verifies the tokens the Bot Connector service sends one bot.
pub struct BotFrameworkVerifier {
    keys: KeyCache,
    app_id: String,
}

/// A verified Bot Connector token, not yet held to its activity.
#[derive(Debug)]
pub struct ConnectorToken {
    service_url: String,
    endorsements: Vec<String>,
}

impl ConnectorToken {
    /// The `serviceUrl` the token was issued for.
    pub fn service_url(&self) -> &str {
        &self.service_url
    }

    /// Holds the token to the activity it came with: its `serviceUrl` (compared exactly) and
    /// its `channelId` (which the signing key must be endorsed for).
    pub fn check_activity(&self, service_url: &str, channel_id: &str) -> Result<(), BotAuthError> {
        if self.service_url != service_url {
            return Err(BotAuthError::ServiceUrlMismatch);
        }
        if !self.endorsements.iter().any(|e| e == channel_id) {
            return Err(BotAuthError::ChannelNotEndorsed);
        }
        Ok(())
    }
}

impl BotFrameworkVerifier {
    /// A verifier for the bot `app_id`, reading the metadata at `metadata_url`
    /// ([`METADATA_URL`] but in tests). Keys are fetched on first use and refetched for an
    /// unknown `kid` at most once a minute.
    pub fn new(metadata_url: String, app_id: String) -> Result<Self, String> {
        crate::crypto::install();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| format!("[teams]: cannot build the HTTP client: {e}"))?;
        Ok(BotFrameworkVerifier {
            keys: KeyCache::new(
                metadata_url,
                ISSUER.to_string(),
                Duration::from_secs(60),
                http,
            ),
            app_id,
        })
    }

    /// How many times the keys were fetched.
    pub fn fetches(&self) -> u64 {
        self.keys.fetches()
    }

    /// Verifies `token` (the `Authorization: Bearer` value) at `now`.
    pub async fn verify(&self, token: &str, now: Timestamp) -> Result<ConnectorToken, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Unknown);
        }
        let unverified = read_unverified(token)?;
        // Nobody else's tokens cost a key fetch.
        if unverified.payload.get("iss").and_then(Value::as_str) != Some(ISSUER) {
            return Err(AuthError::IssuerUnknown);
        }
        let key = self.keys.key(unverified.header.kid.as_deref()).await?;
        // The metadata's list; RS256 alone if it lists none.
        let alg = &unverified.header.alg;
        let allowed = self.keys.algorithms().unwrap_or(&[]);
        let listed = if allowed.is_empty() {
            alg == "RS256"
        } else {
            allowed.iter().any(|a| a == alg)
        };
        if !listed {
            return Err(AuthError::AlgUnsupported);
        }
        let claims = key.verify(
            token,
            &unverified,
            &[self.app_id.as_str()],
            ISSUER,
            now,
            LEEWAY_SECS,
        )?;
        let service_url = claims
            .get("serviceUrl")
            .and_then(Value::as_str)
            .ok_or(AuthError::ClaimMissing)?
            .to_string();
        Ok(ConnectorToken {
            service_url,
            endorsements: key.endorsements.clone(),
        })
    }
}
