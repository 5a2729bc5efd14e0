//! One server bootstrap. `countersign serve`, `countersign mcp --config` and the end-to-end tests
//! start the same [`Server`]: the configuration opens any store (SQLite or PostgreSQL), the
//! gateway around it checks the configured identities against the store and records
//! `config_loaded`/`policy_loaded` in the audit log, the [`workers`] registry runs the leased
//! background work (expiry sweeper, checkpoint signer; the next worker just registers), a relay
//! wakes this replica's long polls on changes other processes commit, and the HTTP API serves
//! (with the web console beside it at `/console` unless `console = false`).
//!
//! **Architecture Invariant:** this is the only place a gateway process is put together; no
//! front spawns background work of its own.

pub mod telemetry;
pub mod workers;

use std::sync::Arc;

use countersign_gateway::config::{Config, ServerLimits};
use countersign_gateway::{system_clock, Clock, Gateway, GatewayError};

pub use workers::{LeaseSource, StoreLease, Workers};

/// How a server starts, beyond its configuration.
pub struct Options {
    /// Record `config_loaded` and `policy_loaded` in the audit log at start (on by default; a
    /// test harness that counts entries from index 0 turns it off).
    pub record_loaded: bool,
    /// The clock (the system clock by default; a test clock in tests).
    pub clock: Clock,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            record_loaded: true,
            clock: system_clock(),
        }
    }
}

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store, policies, keys or identities could not be loaded.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// The web console's configuration cannot work.
    #[error(transparent)]
    Console(#[from] countersign_console::ConsoleError),
    /// The start-up entries could not be written.
    #[error("cannot record the configuration in the audit log: {0}")]
    Record(GatewayError),
}

/// A gateway process, put together but not yet running its background work.
pub struct Server {
    gateway: Arc<Gateway>,
    limits: ServerLimits,
    workers: Workers,
    /// Routes served beside the API: the web console's (`/console`, unless `console = false`)
    /// and a chat channel's own endpoint (Slack's interactivity URL in HTTP mode).
    extra_routes: Option<axum::Router>,
}

impl Server {
    /// Opens the server `config` describes, with the default [`Options`].
    pub async fn open(config: &Config) -> Result<Server, ServerError> {
        Server::open_with(config, Options::default()).await
    }

    /// Opens the store `config` names, loads policies, keys and identities around it, checks
    /// the identities against the store, records the start-up entries, and registers the
    /// sweeper and the checkpoint signer as leased workers.
    pub async fn open_with(config: &Config, options: Options) -> Result<Server, ServerError> {
        let store = countersign_gateway::open_store(&config.database).await?;
        let gateway = Gateway::with_store(config, store, options.clock)?;
        gateway.check_identities().await?;
        gateway.check_credentials().await?;
        if options.record_loaded {
            gateway
                .record_loaded(&config.sha256)
                .await
                .map_err(ServerError::Record)?;
        }
        let mut workers = Workers::new();
        let g = gateway.clone();
        workers.register("expiry sweeper", move || g.clone().run_sweeper());
        let g = gateway.clone();
        workers.register("checkpoint signer", move || g.clone().run_checkpointer());
        let g = gateway.clone();
        workers.register("credential sweeper", move || {
            g.clone().run_credential_sweeper()
        });
        let console = countersign_console::router(gateway.clone(), config)?;
        let channels = countersign_channels::Channels::from_config(config)
            .map_err(|e| ServerError::Gateway(GatewayError::Startup(e)))?;
        // Slack's interactivity route (HTTP mode), served beside the API.
        // Socket Mode instead: a leased worker holds the connection (one replica answers
        // Slack's envelopes; the route is not served, there being no signing secret to check).
        let mut channel_routes = None;
        if let (Some(slack), Some(api)) = (&config.slack, channels.slack_api()) {
            match slack.mode {
                countersign_gateway::notify::SlackMode::Http => {
                    channel_routes = Some(countersign_channels::slack::interactions_router(
                        gateway.clone(),
                        slack,
                        api,
                    ));
                }
                countersign_gateway::notify::SlackMode::Socket => {
                    let socket = countersign_channels::slack::socket::SocketMode::new(
                        gateway.clone(),
                        slack,
                        api,
                    )
                    .map_err(|e| ServerError::Gateway(GatewayError::Startup(e)))?;
                    workers.register("slack socket mode", move || socket.clone().run_forever());
                }
            }
        }
        // Teams' messaging endpoint, beside Slack's route if both are configured.
        if let Some(teams) = &config.teams {
            let route = countersign_channels::teams::activities_router(gateway.clone(), teams)
                .map_err(|e| ServerError::Gateway(GatewayError::Startup(e)))?;
            channel_routes = Some(match channel_routes {
                Some(r) => r.merge(route),
                None => route,
            });
        }
        let outbox =
            countersign_channels::Deliverer::new(gateway.clone(), channels, config.outbox.clone());
        workers.register("outbox delivery", move || outbox.clone().deliver_forever());
        let extra_routes = match (console, channel_routes) {
            (Some(c), Some(r)) => Some(c.merge(r)),
            (c, r) => c.or(r),
        };
        Ok(Server {
            gateway,
            limits: config.server.clone(),
            workers,
            extra_routes,
        })
    }

    /// The gateway (for an embedded front such as the MCP proxy).
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// The leased-worker registry, to register more background work before [`Server::start`].
    pub fn workers(&mut self) -> &mut Workers {
        &mut self.workers
    }

    /// Starts the background work: the leased workers (while this process holds the store's
    /// lease) and the relay of other processes' changes to this one's long polls. Both stop
    /// when the returned [`Running`] is dropped.
    pub fn start(self) -> Running {
        let lease: Arc<dyn LeaseSource> = Arc::new(StoreLease(self.gateway.store().clone()));
        let tasks = workers::AbortOnDrop(vec![
            tokio::spawn(self.workers.run(lease)),
            tokio::spawn(self.gateway.clone().run_change_relay()),
        ]);
        Running {
            gateway: self.gateway,
            limits: self.limits,
            extra_routes: self.extra_routes,
            _tasks: tasks,
        }
    }

    /// Starts the background work and serves the HTTP API on `listener` until `shutdown`.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.start().serve(listener, shutdown).await
    }
}

/// A started server: its background work runs until this is dropped.
pub struct Running {
    gateway: Arc<Gateway>,
    limits: ServerLimits,
    extra_routes: Option<axum::Router>,
    _tasks: workers::AbortOnDrop,
}

impl Running {
    /// The gateway.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Serves the HTTP API on `listener` until `shutdown`, with the configured limits; the
    /// background work stops when it returns.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let limits = self.limits.clone();
        let extra = self.extra_routes.clone();
        let Some(addr) = limits.metrics_listen else {
            return countersign_http::serve_with_routes(
                self.gateway.clone(),
                listener,
                shutdown,
                limits,
                extra,
            )
            .await;
        };
        // `/metrics` on its own address, stopped when the API stops.
        let metrics = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, "serving /metrics");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let api = async {
            let r = countersign_http::serve_with_routes(
                self.gateway.clone(),
                listener,
                shutdown,
                limits.clone(),
                extra,
            )
            .await;
            let _ = stop.send(());
            r
        };
        let metrics = countersign_http::serve_metrics(
            self.gateway.clone(),
            metrics,
            async move {
                let _ = stopped.await;
            },
            limits.clone(),
        );
        let (api, metrics) = tokio::join!(api, metrics);
        api.and(metrics)
    }

    /// Keeps the background work running with no API (an embedded front without `--api-listen`)
    /// until this future is dropped.
    pub async fn run(self) {
        std::future::pending::<()>().await;
    }
}
