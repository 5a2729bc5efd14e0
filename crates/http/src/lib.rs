//! The HTTP API v1 of the gateway, on axum.
//!
//! **Architecture Invariant:** this crate translates and authenticates; it holds no rule. Every
//! handler extracts typed input, calls one [`countersign_gateway::Gateway`] method and shapes the
//! result. Errors leave as `{"error": {"code", "message"}}` with a stable code (see [`error`]);
//! every body in and out is a type of `countersign_api`, the wire types clients share.

mod admin;
mod audit;
pub mod error;
mod extract;
mod handlers;
mod trace;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use countersign_gateway::metrics::RequestLabels;
use countersign_gateway::Gateway;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tower_http::timeout::RequestBodyTimeoutLayer;

pub use countersign_gateway::config::ServerLimits;

pub use admin::key_view;
pub use extract::MAX_BODY;

/// The OpenAPI 3.1 description of this API, served at `GET /openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The gateway.
    pub gateway: Arc<Gateway>,
    /// The SHA-256 of the bearer token `/metrics` asks for, if it asks for one.
    pub metrics_token_sha256: Option<[u8; 32]>,
}

/// The method as a metrics label: a standard method, else `other`, so made-up methods (any
/// token is a valid HTTP method) cannot create series without bound. Routes are already bounded:
/// a matched route's template, else `unmatched`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method()).to_string();
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
    router_with(gateway, None)
}

/// The API's routes, `/metrics` behind a bearer token when `metrics_token_sha256` is set.
pub fn router_with(gateway: Arc<Gateway>, metrics_token_sha256: Option<[u8; 32]>) -> Router {
    routes(gateway, metrics_token_sha256, true, false)
}

/// `/metrics` alone (a separate `metrics_listen` address), behind its token when one is set.
pub fn metrics_router(gateway: Arc<Gateway>, metrics_token_sha256: Option<[u8; 32]>) -> Router {
    let state = AppState {
        gateway,
        metrics_token_sha256,
    };
    Router::new()
        .route("/metrics", get(handlers::metrics))
        .fallback(handlers::not_found)
        .with_state(state)
}

fn routes(
    gateway: Arc<Gateway>,
    metrics_token_sha256: Option<[u8; 32]>,
    with_metrics: bool,
    traces: bool,
) -> Router {
    let state = AppState {
        gateway,
        metrics_token_sha256,
    };
    let router = Router::new()
        .route("/v1/actions", post(handlers::submit))
        .route("/v1/actions/{id}", get(handlers::get_action))
        .route("/v1/actions/{id}/answer", post(handlers::answer))
        .route("/v1/actions/{id}/cancel", post(handlers::cancel))
        .route("/v1/actions/{id}/result", post(handlers::report))
        .route("/v1/actions/{id}/credentials", post(handlers::credentials))
        .route("/v1/actions/{id}/reveal", post(handlers::reveal))
        .route("/v1/reviews", get(handlers::list_reviews))
        .route("/v1/reviews/{id}/votes", post(handlers::vote))
        .route("/v1/grants/redeem", post(handlers::redeem))
        .route("/v1/keys", get(handlers::keys))
        .route("/v1/whoami", get(handlers::whoami))
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
        .route("/readyz", get(handlers::readyz))
        .route("/openapi.json", get(handlers::openapi));
    let router = if with_metrics {
        router.route("/metrics", get(handlers::metrics))
    } else {
        router
    };
    let router = router
        .fallback(handlers::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe));
    // Off, not even a disabled span: the request path is exactly what it is without traces.
    let router = if traces {
        router.layer(middleware::from_fn(trace::traced))
    } else {
        router
    };
    router
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves, with the default [`ServerLimits`]
/// (no background work: `countersign-server` starts that).
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(gateway, listener, shutdown, ServerLimits::default()).await
}

/// Serves the API on `listener` until `shutdown` resolves (no background work:
/// `countersign-server` starts that).
///
/// Each connection is bounded by `limits`: hyper's header-read timeout (which also closes a
/// keep-alive connection that sends no next request), tower-http's request-body timeout, a
/// read/write timeout on the socket, and at most `max_connections` connections at once (one
/// more is closed as soon as it is accepted).
pub async fn serve_with(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    limits: ServerLimits,
) -> std::io::Result<()> {
    serve_with_routes(gateway, listener, shutdown, limits, None).await
}

/// [`serve_with`], with more routes beside the API's on the same listener and limits: the web
/// console's (under `/console`) and a chat channel's own endpoint (such as Slack's interactivity
/// URL, which authenticates its requests itself). They must not overlap the API's.
pub async fn serve_with_routes(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    limits: ServerLimits,
    extra: Option<Router>,
) -> std::io::Result<()> {
    // Background work (sweeper, checkpoint signer, change relay) is the server bootstrap's
    // (`countersign-server`), not the API's.
    let with_metrics = limits.metrics_listen.is_none();
    let api = routes(
        gateway,
        limits.metrics_token_sha256,
        with_metrics,
        limits.traces,
    );
    let app = match extra {
        Some(extra) => extra.layer(DefaultBodyLimit::max(MAX_BODY)).merge(api),
        None => api,
    }
    .layer(RequestBodyTimeoutLayer::new(limits.request_body_timeout));
    accept_loop(listener, app, shutdown, &limits).await;
    Ok(())
}

/// Serves `/metrics` alone on `listener` (the `metrics_listen` address) until `shutdown`, with
/// the same connection limits as the API.
pub async fn serve_metrics(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    limits: ServerLimits,
) -> std::io::Result<()> {
    let app = metrics_router(gateway, limits.metrics_token_sha256);
    accept_loop(listener, app, shutdown, &limits).await;
    Ok(())
}

/// Whether an accept error concerns one connection only (accept the next one at once).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    limits: &ServerLimits,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Over the limit: closed at once, rather than held where it costs the server.
            tracing::debug!("connection limit reached; closing a new connection");
            drop(tcp);
            continue;
        };
        // Answers are small and latency matters more than packet count: no Nagle delay.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let mut io = TimeoutStream::new(tcp);
        io.set_read_timeout(Some(limits.idle_timeout));
        io.set_write_timeout(Some(limits.idle_timeout));
        let io = TokioIo::new(Box::pin(io));
        // The peer's address on each request (what `Peer` reads), without rebuilding the router.
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(extract::PeerAddr(peer));
                req
            },
        ));
        let conn = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
