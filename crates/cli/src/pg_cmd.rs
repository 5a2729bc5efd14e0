//! `countersign pg`: the PostgreSQL wire proxy (see the `countersign-pgproxy` crate). Only
//! argument parsing and wiring live here; the gate is `mcp`'s (`--gateway` or `--config`).

use clap::Args;
use countersign_enforce::{Gates, RemoteGates};
use countersign_gateway::gate::EmbeddedGates;
use countersign_pgproxy::{Options, Upstream, DEFAULT_MAX_MESSAGE};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `countersign pg`.
#[derive(Args)]
pub struct PgArgs {
    /// Where agents connect (their database URL points here).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// The real server, as postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=MODE]: the
    /// proxy logs in with these credentials; agents never see them. MODE: prefer (plain),
    /// require (TLS, certificate not checked), verify-full (with sslrootcert=FILE).
    #[arg(
        long,
        value_name = "URL",
        env = "COUNTERSIGN_PG_UPSTREAM",
        hide_env_values = true
    )]
    upstream: String,
    /// The server's name in resources: postgres://NAME/<database>.
    #[arg(long)]
    server_name: String,
    /// A running gateway's URL.
    #[arg(long, env = "COUNTERSIGN_URL", conflicts_with = "config")]
    gateway: Option<String>,
    /// Run the gateway in this process from this config file instead.
    #[arg(long)]
    config: Option<PathBuf>,
    /// With --config: also serve the gateway's HTTP API here, so reviewers can vote.
    #[arg(long, requires = "config", value_name = "ADDR")]
    api_listen: Option<String>,
    /// The TLS certificate chain (PEM) clients see; required unless --listen is a loopback address.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM).
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Seconds between notices to a client whose statement is held for review.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    progress_every: f64,
    /// Largest message accepted from a client, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE)]
    max_message: usize,
    /// Most client connections at once; more are refused (SQLSTATE 53300).
    #[arg(long, default_value_t = 1000)]
    max_connections: usize,
    /// Mask this column in results sent to agents: TABLE.COLUMN or a column name, `*` for any
    /// characters (e.g. `users.ssn`, `*email*`). Repeatable.
    #[arg(long = "mask-column", value_name = "RULE")]
    mask_column: Vec<String>,
    /// Also mask what the masking detectors find (card numbers, emails, keys...) in every text
    /// value of results.
    #[arg(long)]
    mask_values: bool,
    /// The key of masking tags (a file of at least 32 bytes, e.g. the gateway's masking.key);
    /// default: a fresh key per process (tags then match only within one run).
    #[arg(long, value_name = "FILE")]
    masking_key: Option<PathBuf>,
}

/// The result masking the arguments ask for, if any.
fn result_mask(
    args: &PgArgs,
) -> Result<Option<Arc<countersign_pgproxy::mask::ResultMask>>, String> {
    if args.mask_column.is_empty() && !args.mask_values {
        return Ok(None);
    }
    let key = match &args.masking_key {
        Some(path) => {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
        }
        None => {
            use rand::RngCore;
            let mut k = vec![0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut k);
            k
        }
    };
    let masker = countersign_mask::Masker::new(&countersign_mask::MaskingConfig::default(), &key)
        .map_err(|e| e.to_string())?;
    Ok(Some(Arc::new(countersign_pgproxy::mask::ResultMask::new(
        masker,
        &args.mask_column,
        args.mask_values,
    ))))
}

/// Runs `countersign pg`.
pub async fn run(args: PgArgs) -> u8 {
    crate::logs::init("warn");
    let prepared = async {
        let upstream = Upstream::parse(&args.upstream).map_err(|e| e.to_string())?;
        let mut opts = Options::new(
            args.server_name.clone(),
            upstream,
            countersign_gateway::system_clock(),
        );
        opts.progress_every = Duration::try_from_secs_f64(args.progress_every)
            .map_err(|_| "--progress-every must be a number of seconds ≥ 0".to_string())?
            .max(Duration::from_millis(50));
        opts.max_message = args.max_message;
        opts.mask = result_mask(&args)?;
        opts.max_connections = args.max_connections;
        if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
            opts.tls = Some(countersign_pgproxy::tls::server_config(cert, key)?);
        }
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        if opts.tls.is_none() && !local.ip().is_loopback() {
            return Err(format!(
                "--listen {local} is not a loopback address: give --tls-cert and --tls-key (agents' connections carry their credentials)"
            ));
        }
        let gates: Arc<dyn Gates> = match (&args.gateway, &args.config) {
            (_, Some(path)) => Arc::new(EmbeddedGates(
                crate::mcp_cmd::embedded(path, &args.api_listen).await?,
            )),
            (Some(url), None) => Arc::new(RemoteGates::new(url).map_err(|e| e.to_string())?),
            (None, None) => {
                return Err("give --gateway URL (or COUNTERSIGN_URL) or --config FILE".into())
            }
        };
        Ok::<_, String>((opts, gates, listener, local))
    };
    let (opts, gates, listener, local) = match prepared.await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("countersign pg: {e}");
            return 2;
        }
    };
    eprintln!(
        "countersign pg: listening on {local} in front of {} (database {})",
        opts.upstream.addr, opts.upstream.database
    );
    match countersign_pgproxy::serve(listener, gates, opts, crate::operator::shutdown_signal())
        .await
    {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("countersign pg: {e}");
            1
        }
    }
}
