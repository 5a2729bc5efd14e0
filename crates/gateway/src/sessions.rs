//! Console sessions (issue #16): a browser signed in with an ID token. The console hands the
//! identity the ID token proved (through [`Gateway::authenticate`]) to
//! [`Gateway::start_session`] and gets a fresh random secret for its cookie; the store keeps
//! only the secret's SHA-256, so a leaked database holds no usable session. Sessions are rows of
//! the shared store: they survive restarts and hold on every replica, and a logout ends one
//! everywhere at once.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use countersign_core::{Identity, Timestamp};
use countersign_store::ConsoleSession;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::time::Duration;

use crate::{Gateway, GatewayError};

/// A live console session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who signed in (groups as the ID token had them at sign-in).
    pub identity: Identity,
    /// Whether the ID token showed multi-factor authentication.
    pub mfa: bool,
    /// When it ends by itself.
    pub expires_at: Timestamp,
}

/// Longest session secret accepted from a cookie (a secret is 43 characters).
const MAX_SECRET: usize = 64;

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl Gateway {
    /// Starts a console session for `identity` lasting `ttl`; returns its secret (for the
    /// cookie; never stored).
    pub async fn start_session(
        &self,
        identity: Identity,
        mfa: bool,
        ttl: Duration,
    ) -> Result<String, GatewayError> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let secret = URL_SAFE_NO_PAD.encode(bytes);
        let now = self.now();
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.store
            .start_session(ConsoleSession {
                hash: hash(&secret),
                identity,
                mfa,
                created_at: now,
                expires_at: Timestamp(now.millis().saturating_add(ttl)),
                ended_at: None,
            })
            .await?;
        Ok(secret)
    }

    /// The live session `secret` opens: `Ok(None)` for an unknown, ended or expired one (and
    /// for anything that is not a secret this gateway could have made).
    pub async fn session(&self, secret: &str) -> Result<Option<Session>, GatewayError> {
        Ok(self
            .session_row(secret)
            .await?
            .filter(|s| s.live_at(self.now()))
            .map(|s| Session {
                identity: s.identity,
                mfa: s.mfa,
                expires_at: s.expires_at,
            }))
    }

    /// The stored row `secret` names, live or not (the console tells an expired session from
    /// an unknown one, for its message and its audit entry).
    pub async fn session_row(&self, secret: &str) -> Result<Option<ConsoleSession>, GatewayError> {
        if secret.is_empty() || secret.len() > MAX_SECRET {
            return Ok(None);
        }
        Ok(self.store.session_by_hash(&hash(secret)).await?)
    }

    /// Ends the session `secret` opens (logout); an unknown one is nothing.
    pub async fn end_session(&self, secret: &str) -> Result<(), GatewayError> {
        if secret.is_empty() || secret.len() > MAX_SECRET {
            return Ok(());
        }
        self.store.end_session(hash(secret), self.now()).await?;
        Ok(())
    }

    /// The ids of actions changed by commits from now on (every replica's on PostgreSQL, this
    /// process's on SQLite), for live pages; `None` when the store has no feed.
    pub fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        self.store.changes()
    }

    /// The current time by the gateway's clock.
    pub fn current_time(&self) -> Timestamp {
        self.now()
    }
}
