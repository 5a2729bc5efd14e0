//! The web console (issue #16), served at `/console` beside the API: people sign in with their
//! company's OpenID provider (authorization code flow with PKCE), see the reviews they may act
//! on, read an action's whole context and vote, with live updates over Server-Sent Events.
//! Pages are rendered on the server (minijinja templates compiled into the binary); the small
//! script and stylesheet in `assets/` are served by the binary too and only enhance pages that
//! work without them.
//!
//! **Architecture Invariant:** the console is a front like the API: it authenticates people
//! (the ID token through [`Gateway::authenticate`], then its own session) and calls the
//! [`Gateway`]'s use cases; it holds no rule about who may see or decide what, and it shows
//! actions only as views the gateway made (`Gateway::get`, `reviews`, `vote` — masked by
//! `Gateway::view`). It never reads the store (tidy test `the_console_reads_views_not_records`).

mod admin;
mod assets;
mod audit;
mod error;
mod history;
mod oidc;
mod pages;
mod security;
mod session;
mod templates;

use axum::routing::{get, post};
use axum::Router;
use countersign_gateway::config::Config;
use countersign_gateway::Gateway;
use std::sync::Arc;
use std::time::Duration;

pub use error::ConsoleError;

/// Largest form body the console accepts (a modified parameter object included).
pub const MAX_FORM: usize = 256 * 1024;

/// What every console handler shares.
pub(crate) struct Console {
    pub gateway: Arc<Gateway>,
    /// OpenID providers people may sign in with (`[[oidc]]` entries with a `client_id`).
    pub providers: Vec<oidc::Provider>,
    /// The URL browsers reach the gateway at, without a trailing slash.
    pub url: String,
    /// Whether cookies are `Secure` (everywhere but a loopback `http://` URL).
    pub secure: bool,
    pub session_ttl: Duration,
    pub templates: templates::Templates,
    pub csp: axum::http::HeaderValue,
    pub refusals: security::RefusalBudget,
}

pub(crate) type State = Arc<Console>;

/// The console's routes (all under `/console`), or `None` when `console = false`. Fails when
/// the configuration cannot work: no `[[oidc]]` entry has a `client_id`, say.
pub fn router(gateway: Arc<Gateway>, config: &Config) -> Result<Option<Router>, ConsoleError> {
    if !config.console.enabled {
        return Ok(None);
    }
    let providers = oidc::Provider::all(&config.oidc, &config.console.url)?;
    if providers.is_empty() {
        tracing::info!(
            "the console at /console cannot sign anyone in: no [[oidc]] issuer has a client_id"
        );
        return Ok(Some(not_configured()));
    }
    let secure = security::needs_secure_cookies(&config.console.url);
    if secure && config.console.url.starts_with("http://") {
        tracing::warn!(url = %config.console.url,
            "console_url is plain http on a non-loopback host: browsers will not send the \
             Secure session cookie back; serve the console over https");
    }
    let csp = security::content_security_policy(&providers)?;
    let console = Arc::new(Console {
        gateway,
        providers,
        url: config.console.url.clone(),
        secure,
        session_ttl: config.console.session_ttl,
        templates: templates::Templates::new()?,
        csp,
        refusals: security::RefusalBudget::default(),
    });
    Ok(Some(routes(console)))
}

/// What `/console` answers when no provider can sign people in.
fn not_configured() -> Router {
    async fn explain() -> ConsoleError {
        ConsoleError::Config(
            "no [[oidc]] issuer has a `client_id`, so nobody can sign in. Register the console \
             with your identity provider (redirect URI `<console_url>/console/callback`) and set \
             `client_id` (and `client_secret`) on its [[oidc]] entry, or set `console = false`."
                .into(),
        )
    }
    Router::new()
        .route("/console", get(explain))
        .route("/console/{*rest}", get(explain))
}

fn routes(console: State) -> Router {
    Router::new()
        .route("/console", get(pages::queue))
        .route("/console/", get(pages::queue))
        .route("/console/login", get(oidc::login))
        .route("/console/callback", get(oidc::callback))
        .route("/console/logout", post(oidc::logout))
        .route("/console/signed-out", get(oidc::signed_out))
        .route("/console/actions/{id}", get(pages::action))
        .route("/console/actions/{id}/vote", post(pages::vote))
        .route("/console/actions/{id}/reveal", post(pages::reveal))
        .route("/console/events", get(pages::events))
        .route("/console/history", get(history::page))
        .route("/console/admin", get(admin::page))
        .route("/console/admin/keys", post(admin::keys))
        .route("/console/admin/eval", post(admin::eval))
        .route("/console/audit", get(audit::page))
        .route("/console/audit/proof", get(audit::proof))
        .route("/console/audit/export", get(audit::export))
        .route("/console/assets/{name}", get(assets::serve))
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            security::headers,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM))
        .with_state(console)
}
