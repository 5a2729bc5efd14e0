//! `countersign mcp ...`: the MCP gateway in front of an MCP server (see the `countersign-mcp`
//! crate). Only argument parsing and wiring live here.

use clap::{Args, Subcommand};
use countersign::gate_args::{GateArgs, NO_GATE};
use countersign_gateway::config::Config;
use countersign_gateway::gate::{Embedded, EmbeddedGates};
use countersign_gateway::Gateway;
use countersign_mcp::http::HttpProxy;
use countersign_mcp::{Gate, Gates, Options, RemoteGates};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `countersign mcp ...`.
#[derive(Subcommand)]
pub enum McpCommand {
    /// Spawn an MCP server and relay its stdio, holding every tools/call for a decision.
    Stdio(StdioArgs),
    /// Front a Streamable HTTP MCP server; each agent's bearer token decides its identity.
    Http(HttpArgs),
}

/// `countersign mcp http`.
#[derive(Args)]
pub struct HttpArgs {
    /// Where agents connect (their MCP server URL becomes http://ADDR/ on any path).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// The real server's MCP endpoint, e.g. http://127.0.0.1:3001/mcp.
    #[arg(long, value_name = "URL")]
    upstream: String,
    /// A running gateway's URL.
    #[arg(long, env = "COUNTERSIGN_URL", conflicts_with = "config")]
    gateway: Option<String>,
    /// Run the gateway in this process from this config file instead.
    #[arg(long)]
    config: Option<PathBuf>,
    /// With --config: also serve the gateway's HTTP API here, so reviewers can vote.
    #[arg(long, requires = "config", value_name = "ADDR")]
    api_listen: Option<String>,
    #[command(flatten)]
    hold: HoldArgs,
}

/// How calls are held and relayed.
#[derive(Args)]
pub struct HoldArgs {
    /// The server's name in resources: mcp://NAME/<tool>.
    #[arg(long)]
    server_name: String,
    /// Answer "pending, call again" after holding a reviewed call this many seconds (0: at
    /// once); by default a call is held until the review closes.
    #[arg(long, value_name = "SECONDS")]
    pending_after: Option<f64>,
    /// Seconds between progress notifications while a call is held.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    progress_every: f64,
    /// List tools that policy denies outright instead of hiding them.
    #[arg(long)]
    show_denied: bool,
    /// Seconds before a request the server has not answered gets an error.
    #[arg(long, value_name = "SECONDS", default_value_t = 600.0)]
    server_timeout: f64,
    /// Also relay this method from the client (exact name; repeatable). Only the MCP
    /// specification's methods are relayed otherwise: others get JSON-RPC -32601.
    #[arg(long = "allow-method", value_name = "METHOD")]
    allow_method: Vec<String>,
    /// Largest message accepted from the client, in bytes.
    #[arg(long, default_value_t = countersign_mcp::stdio::DEFAULT_MAX_MESSAGE)]
    max_message: usize,
}

/// `countersign mcp stdio`.
#[derive(Args)]
pub struct StdioArgs {
    #[command(flatten)]
    gate: GateArgs,
    #[command(flatten)]
    hold: HoldArgs,
    /// The MCP server command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn seconds(name: &str, s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("--{name} must be a number of seconds ≥ 0"))
}

fn options(h: &HoldArgs) -> Result<Options, String> {
    let mut opts = Options::new(h.server_name.clone(), countersign_gateway::system_clock());
    opts.pending_after = h
        .pending_after
        .map(|s| seconds("pending-after", s))
        .transpose()?;
    opts.progress_every =
        seconds("progress-every", h.progress_every)?.max(Duration::from_millis(50));
    opts.hide_denied = !h.show_denied;
    opts.server_timeout = seconds("server-timeout", h.server_timeout)?;
    opts.methods = countersign_mcp::inbound::Methods::with_extras(h.allow_method.iter().cloned());
    Ok(opts)
}

/// Starts an embedded gateway through the one server bootstrap (any store, the start-up audit
/// entries, the leased background work) and serves its API too, if asked.
pub(crate) async fn embedded(
    path: &std::path::Path,
    api_listen: &Option<String>,
) -> Result<Arc<Gateway>, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let running = countersign_server::Server::open(&config)
        .await
        .map_err(|e| e.to_string())?
        .start();
    let gateway = running.gateway().clone();
    match api_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            tokio::spawn(async move {
                if let Err(e) = running.serve(listener, std::future::pending()).await {
                    tracing::error!(error = %e, "the gateway API stopped");
                }
            });
        }
        None => {
            tokio::spawn(running.run());
        }
    }
    Ok(gateway)
}

/// The gate `g` describes: an embedded gateway (`--config`) or a running one (`--gateway`).
pub(crate) async fn gate(g: &GateArgs) -> Result<Arc<dyn Gate>, String> {
    match g.embedded_config() {
        Some(path) => {
            let gateway = embedded(path, &g.api_listen).await?;
            // Checked now, and again on every call (a revoked key stops at once).
            let embedded = Embedded::authenticated(gateway, &g.token)
                .await
                .map_err(|_| "--token matches no identity in the config")?;
            Ok(Arc::new(embedded))
        }
        None => g.remote(),
    }
}

/// Runs `countersign mcp ...`. Nothing but protocol messages goes to stdout.
pub async fn run(cmd: McpCommand) -> u8 {
    crate::logs::init("warn");
    let args = match cmd {
        McpCommand::Stdio(args) => args,
        McpCommand::Http(args) => return http(args).await,
    };
    let prepared = match options(&args.hold) {
        Ok(o) => gate(&args.gate).await.map(|g| (o, g)),
        Err(e) => Err(e),
    };
    let (opts, gate) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("countersign mcp: {e}");
            return 2;
        }
    };
    match countersign_mcp::stdio::run(gate, opts, &args.command, args.hold.max_message).await {
        // Exit here: tokio reads stdin on a blocking thread that the runtime would otherwise
        // wait for at shutdown, keeping the process alive until the client writes again.
        Ok(code) => std::process::exit(i32::from(code)),
        Err(e) => {
            eprintln!("countersign mcp: {e}");
            2
        }
    }
}

async fn http(args: HttpArgs) -> u8 {
    let prepared = async {
        let opts = options(&args.hold)?;
        let gates: Arc<dyn Gates> = match (&args.gateway, &args.config) {
            (_, Some(path)) => Arc::new(EmbeddedGates(embedded(path, &args.api_listen).await?)),
            (Some(url), None) => Arc::new(RemoteGates::new(url).map_err(|e| e.to_string())?),
            (None, None) => return Err(NO_GATE.into()),
        };
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        Ok::<_, String>((opts, gates, listener))
    };
    let (opts, gates, listener) = match prepared.await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("countersign mcp: {e}");
            return 2;
        }
    };
    let proxy = HttpProxy::new(args.upstream.clone(), gates, opts, args.hold.max_message);
    eprintln!(
        "countersign mcp: listening on http://{} in front of {}",
        args.listen, args.upstream
    );
    match proxy
        .serve(listener, crate::operator::shutdown_signal())
        .await
    {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("countersign mcp: {e}");
            1
        }
    }
}
