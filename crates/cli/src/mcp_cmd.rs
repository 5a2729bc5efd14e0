//! `countersign mcp ...`: the MCP gateway in front of an MCP server (see the `countersign-mcp`
//! crate). Only argument parsing and wiring live here.

use clap::{Args, Subcommand};
use countersign_gateway::config::Config;
use countersign_gateway::Gateway;
use countersign_mcp::{Embedded, Gate, Options, Remote};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `countersign mcp ...`.
#[derive(Subcommand)]
pub enum McpCommand {
    /// Spawn an MCP server and relay its stdio, holding every tools/call for a decision.
    Stdio(StdioArgs),
}

/// Where decisions come from, and as whom the proxy asks.
#[derive(Args)]
pub struct GateArgs {
    /// A running gateway's URL.
    #[arg(long, env = "COUNTERSIGN_URL", conflicts_with = "config")]
    gateway: Option<String>,
    /// Run the gateway in this process from this config file instead (reviewers vote through a
    /// `countersign serve` sharing its database).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The agent's API token: every call is made as its identity.
    #[arg(long, env = "COUNTERSIGN_TOKEN", hide_env_values = true)]
    token: String,
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
    let mut opts = Options::new(h.server_name.clone());
    opts.pending_after = h
        .pending_after
        .map(|s| seconds("pending-after", s))
        .transpose()?;
    opts.progress_every =
        seconds("progress-every", h.progress_every)?.max(Duration::from_millis(50));
    opts.hide_denied = !h.show_denied;
    opts.server_timeout = seconds("server-timeout", h.server_timeout)?;
    Ok(opts)
}

fn gate(g: &GateArgs) -> Result<Arc<dyn Gate>, String> {
    match (&g.gateway, &g.config) {
        (_, Some(path)) => {
            let config = Config::load(path).map_err(|e| e.to_string())?;
            let gateway = Gateway::from_config(&config).map_err(|e| e.to_string())?;
            let who = gateway
                .identities()
                .authenticate(&g.token)
                .ok_or("--token matches no identity in the config")?;
            tokio::spawn(gateway.clone().run_sweeper());
            tokio::spawn(gateway.clone().run_checkpointer());
            Ok(Arc::new(Embedded::new(gateway, (*who).clone())))
        }
        (Some(url), None) => Ok(Arc::new(
            Remote::new(url, g.token.clone()).map_err(|e| e.to_string())?,
        )),
        (None, None) => Err("give --gateway URL (or COUNTERSIGN_URL) or --config FILE".into()),
    }
}

/// Runs `countersign mcp ...`. Nothing but protocol messages goes to stdout.
pub async fn run(cmd: McpCommand) -> u8 {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COUNTERSIGN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let McpCommand::Stdio(args) = cmd;
    let prepared = options(&args.hold).and_then(|o| Ok((o, gate(&args.gate)?)));
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
