//! The PostgreSQL wire proxy (`countersign pg`): agents connect to it as to a PostgreSQL server,
//! authenticated with their countersign identity (user = identity id, password = its API token,
//! managed key or OIDC token), and every statement they send becomes an action — `sql.<kind>`
//! on `postgres://<server-name>/<database>` — decided before it reaches the upstream server,
//! through the enforcement crate (`countersign_enforce`): allowed statements are forwarded,
//! denied ones answered with SQLSTATE 42501, held ones wait with `NoticeResponse` progress.
//! Each statement's result is reported to its action.
//!
//! - [`wire`]: framing with limits, the frontend messages read, the backend messages written.
//! - [`upstream`]: the upstream URL and the proxy's own authenticated session (SCRAM-SHA-256).
//! - `session`: one client connection: startup, TLS, authentication through `Gates`, then the
//!   relay of client messages (deciding at `Query` and `Execute`).
//! - `down`: the upstream-to-client relay, which matches responses to statements and reports.
//! - `decide`: one statement through the gate: submit, hold with notices, redeem.
//!
//! **Architecture Invariant:** messages are relayed as the bytes they arrived as; the proxy reads
//! only the fields it decides or reports on, and holds no approval rule: it submits, waits and
//! forwards. Classification is PostgreSQL's own parser's (`countersign_analyze::pg_statements`).
//! Like every front it does not link the policy engine (tidy `a_remote_front_does_not_link_cedar`).

mod decide;
mod down;
pub mod mask;
pub(crate) mod session;
pub mod tls;
pub mod upstream;
pub mod wire;

use countersign_enforce::{Clock, Gates};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use upstream::{Upstream, UpstreamError};

/// Largest client message accepted by default (bytes).
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

/// How the proxy runs.
#[derive(Clone)]
pub struct Options {
    /// The server's name in resources: `postgres://NAME/<database>`.
    pub server_name: String,
    /// The upstream server and the proxy's credentials.
    pub upstream: Upstream,
    /// TLS for clients (required for clients not on loopback).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How often a held statement's client is told it still waits.
    pub progress_every: Duration,
    /// Largest client message, in bytes.
    pub max_message: usize,
    /// How long a client has to start up and authenticate.
    pub startup_timeout: Duration,
    /// The wall clock (for "14m left").
    pub clock: Clock,
    /// Result masking, if configured.
    pub mask: Option<Arc<mask::ResultMask>>,
    /// Most client connections at once; more are refused with SQLSTATE 53300.
    pub max_connections: usize,
}

impl Options {
    /// Defaults for `server_name` in front of `upstream`.
    pub fn new(server_name: String, upstream: Upstream, clock: Clock) -> Self {
        Options {
            server_name,
            upstream,
            tls: None,
            progress_every: Duration::from_secs(5),
            max_message: DEFAULT_MAX_MESSAGE,
            startup_timeout: Duration::from_secs(30),
            clock,
            mask: None,
            max_connections: 1000,
        }
    }
}

/// What a `CancelRequest` for a session reaches: its held statement's review, or else the
/// statement running upstream.
#[derive(Clone)]
pub(crate) struct Cancel {
    /// Set while a statement is held: cancelling withdraws the review.
    pub held: Arc<Mutex<Option<watch::Sender<bool>>>>,
    /// The upstream session's cancellation key.
    pub upstream_key: (i32, i32),
}

/// State shared by every connection of one proxy.
pub(crate) struct Shared {
    pub gates: Arc<dyn Gates>,
    pub opts: Options,
    /// Sessions by the cancellation key the proxy gave their clients.
    pub sessions: Mutex<HashMap<(i32, i32), Cancel>>,
}

impl Shared {
    pub(crate) fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, i32), Cancel>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Serves clients on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    gates: Arc<dyn Gates>,
    opts: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(opts.max_connections));
    let shared = Arc::new(Shared {
        gates,
        opts,
        sessions: Mutex::new(HashMap::new()),
    });
    tokio::pin!(shutdown);
    loop {
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(session::too_many(stream));
            continue;
        };
        tokio::spawn(async move {
            session::run(stream, peer, shared).await;
            drop(slot);
        });
    }
}
