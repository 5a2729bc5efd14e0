//! The HTTP API v1 of the gateway, on axum.
//!
//! **Architecture Invariant:** this crate translates and authenticates; it holds no rule. Every
//! handler extracts typed input, calls one [`countersign_gateway::Gateway`] method and shapes the
//! result. Errors leave as `{"error": {"code", "message"}}` with a stable code (see [`error`]).

mod admin;
mod audit;
pub mod error;
mod extract;
mod handlers;
pub mod views;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use countersign_gateway::metrics::RequestLabels;
use countersign_gateway::Gateway;
use std::sync::Arc;
use std::time::Instant;

pub use extract::MAX_BODY;

/// The OpenAPI 3.1 description of this API, served at `GET /openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The gateway.
    pub gateway: Arc<Gateway>,
}

async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    state
        .gateway
        .metrics()
        .request_duration
        .get_or_create(&RequestLabels {
            method,
            route,
            status: resp.status().as_u16(),
        })
        .observe(start.elapsed().as_secs_f64());
    resp
}

/// The router with every endpoint.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let state = AppState { gateway };
    Router::new()
        .route("/v1/actions", post(handlers::submit))
        .route("/v1/actions/{id}", get(handlers::get_action))
        .route("/v1/actions/{id}/answer", post(handlers::answer))
        .route("/v1/actions/{id}/cancel", post(handlers::cancel))
        .route("/v1/actions/{id}/result", post(handlers::report))
        .route("/v1/reviews", get(handlers::list_reviews))
        .route("/v1/reviews/{id}/votes", post(handlers::vote))
        .route("/v1/grants/redeem", post(handlers::redeem))
        .route("/v1/keys", get(handlers::keys))
        .route(
            "/v1/admin/api-keys",
            get(admin::list_keys).post(admin::create_key),
        )
        .route("/v1/admin/api-keys/{id}/revoke", post(admin::revoke_key))
        .route("/v1/audit/checkpoint", get(audit::checkpoint))
        .route("/v1/audit/public-key", get(audit::public_key))
        .route("/v1/audit/entries", get(audit::entries))
        .route("/v1/audit/proof/inclusion", get(audit::inclusion))
        .route("/v1/audit/proof/consistency", get(audit::consistency))
        .route("/healthz", get(handlers::healthz))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(handlers::openapi))
        .fallback(handlers::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves, with the expiry sweeper running.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The sweeper and checkpoint signer run while this process holds the store's lease (always,
    // on SQLite); changes committed by other replicas wake this one's long polls.
    let sweeper = tokio::spawn(gateway.clone().run_background());
    let checkpointer = tokio::spawn(gateway.clone().run_change_relay());
    let app = router(gateway);
    // Answers are small and latency matters more than packet count: no Nagle delay.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    sweeper.abort();
    checkpointer.abort();
    result
}
