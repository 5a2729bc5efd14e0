//! Operator commands: `serve`, `keys`, `policy`.

use clap::{Args, Subcommand};
use countersign_core::{ActionSpec, Identity, IdentityKind};
use countersign_gateway::config::{parse_database_url, Config};
use countersign_gateway::default_effect;
use countersign_policy::{DefaultEffect, PolicyEngine, PolicyRequest, Principal};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// `countersign serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// The TOML configuration file.
    #[arg(long, env = "COUNTERSIGN_CONFIG")]
    config: PathBuf,
    /// Listen address, overriding `listen` in the config.
    #[arg(long)]
    listen: Option<String>,
    /// Database URL (e.g. sqlite://PATH), overriding `database` in the config.
    #[arg(long)]
    database: Option<String>,
}

/// `countersign keys ...`.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print a fresh random API token and the config line to paste.
    New,
    /// Create a managed API key in the store (printed once; only its hash is kept).
    Create(crate::keys_cmd::CreateArgs),
    /// List managed API keys.
    List(crate::keys_cmd::StoreArgs),
    /// Revoke a managed API key (effective on the next request, on every replica).
    Revoke(crate::keys_cmd::RevokeArgs),
}

/// `countersign policy ...`.
#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check every *.cedar file in DIR; problems are printed as file:line:col.
    Validate {
        /// The policy directory (default: the one named by --config).
        dir: Option<PathBuf>,
        /// A config file: its policy directory (unless DIR is given), and its
        /// `[[credentials]]`, which every `@credentials("...")` must name.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Answer a hypothetical request without touching the database.
    Eval(Box<EvalArgs>),
}

/// `countersign policy eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// Policy directory (default: the one named by --config).
    #[arg(long)]
    policies: Option<PathBuf>,
    /// A config file: its policies, default effect and identities are used.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Who asks: an identity id from --config, or KIND:ID (agent:deploy-bot, human:alice).
    #[arg(long)]
    principal: String,
    /// Groups of the principal (comma-separated), when not taken from --config.
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// Action name.
    #[arg(long)]
    action: String,
    /// Resource.
    #[arg(long)]
    resource: String,
    /// Environment.
    #[arg(long, default_value = "")]
    environment: String,
    /// Parameters as a JSON object.
    #[arg(long)]
    params: Option<String>,
    /// Justification.
    #[arg(long, default_value = "")]
    justification: String,
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs the gateway until SIGINT/SIGTERM.
pub async fn serve(args: ServeArgs) -> u8 {
    let mut config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            crate::logs::init("info");
            eprintln!("countersign: {e}");
            return 2;
        }
    };
    // Kept to the end: dropping it sends the spans still batched.
    let _traces =
        match crate::telemetry::init_with_traces("info", config.telemetry.otlp_endpoint.as_deref())
        {
            Ok(t) => t,
            Err(m) => {
                eprintln!("{m}");
                return 2;
            }
        };
    if let Some(l) = &args.listen {
        match l.parse() {
            Ok(addr) => config.listen = addr,
            Err(_) => {
                eprintln!("countersign: --listen {l}: not an address like 127.0.0.1:8760");
                return 2;
            }
        }
    }
    if let Some(d) = &args.database {
        match parse_database_url(d, std::path::Path::new(".")) {
            Ok(db) => config.database = db,
            Err(m) => {
                eprintln!("countersign: --database: {m}");
                return 2;
            }
        }
    }
    let server = match countersign_server::Server::open(&config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("countersign: {e}");
            return 2;
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("countersign: cannot listen on {}: {e}", config.listen);
            return 2;
        }
    };
    let addr = listener.local_addr().map_or(config.listen, |a| a);
    let policy = server.gateway().policy();
    tracing::info!(
        %addr,
        policies = policy.len(),
        policy_hash = policy.hash(),
        "countersign listening"
    );
    println!("countersign listening on http://{addr}");
    match server.serve(listener, shutdown_signal()).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("countersign: server error: {e}");
            1
        }
    }
}

/// `keys ...`, at the time `clock` tells.
pub fn keys(
    cmd: KeysCommand,
    output: Option<crate::output::Format>,
    clock: countersign_gateway::Clock,
) -> u8 {
    match cmd {
        KeysCommand::New => {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let token = format!("cs_{}", hex::encode(bytes));
            let hash = hex::encode(Sha256::digest(token.as_bytes()));
            println!("token: {token}");
            println!("api_key_sha256 = \"{hash}\"");
            eprintln!("Give the token to its owner (it is shown once); paste the second line into the identity's [[identities]] entry.");
            0
        }
        managed => crate::keys_cmd::run(managed, output, clock),
    }
}

/// `policy validate` and `policy eval`.
pub fn policy(cmd: PolicyCommand) -> u8 {
    match cmd {
        PolicyCommand::Validate { dir, config } => {
            let config = match config.as_deref().map(Config::load).transpose() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return 1;
                }
            };
            let Some(dir) = dir.or_else(|| config.as_ref().map(|c| c.policies.clone())) else {
                eprintln!("countersign: give the policy directory, or --config FILE");
                return 2;
            };
            match PolicyEngine::load_dir(&dir, DefaultEffect::Deny) {
                Ok(engine) => {
                    let named = engine.credential_names();
                    match &config {
                        Some(c) => {
                            if let Err(e) = countersign_gateway::credentials::check_policy_names(
                                &named,
                                &c.credentials,
                            ) {
                                eprintln!("{}: {e}", dir.display());
                                return 1;
                            }
                            if let Err(e) = countersign_gateway::notify::check_policy_channels(
                                &engine.notify_channels(),
                                &c.webhooks,
                                c.slack.as_ref(),
                                c.teams.as_ref(),
                            ) {
                                eprintln!("{}: {e}", dir.display());
                                return 1;
                            }
                        }
                        None if !named.is_empty() => {
                            let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
                            eprintln!(
                                "note: @credentials names {} not checked against a configuration; give --config FILE",
                                names.join(", ")
                            );
                        }
                        None => {}
                    }
                    println!(
                        "{}: {} policies OK ({})",
                        dir.display(),
                        engine.len(),
                        engine.hash()
                    );
                    0
                }
                Err(e) => {
                    eprintln!("{e}");
                    1
                }
            }
        }
        PolicyCommand::Eval(args) => match eval(*args) {
            Ok(out) => {
                println!("{out}");
                0
            }
            Err(e) => {
                eprintln!("countersign: {e}");
                2
            }
        },
    }
}

fn eval(args: EvalArgs) -> Result<String, String> {
    let config = args
        .config
        .as_deref()
        .map(Config::load)
        .transpose()
        .map_err(|e| e.to_string())?;
    let dir = args
        .policies
        .clone()
        .or_else(|| config.as_ref().map(|c| c.policies.clone()))
        .ok_or("give --policies DIR or --config FILE")?;
    let default = config.as_ref().map_or(DefaultEffect::Deny, default_effect);
    let engine = PolicyEngine::load_dir(&dir, default).map_err(|e| e.to_string())?;
    let who = match args.principal.split_once(':') {
        Some((kind, id)) => {
            let kind = match kind {
                "agent" => IdentityKind::Agent,
                "service" => IdentityKind::Service,
                "human" => IdentityKind::Human,
                other => return Err(format!("unknown principal kind `{other}`")),
            };
            Identity::new(id, kind, args.groups.clone())
        }
        None => {
            if !args.groups.is_empty() {
                return Err(
                    "--groups applies to a KIND:ID principal; an identity from --config has its \
                     configured groups"
                        .into(),
                );
            }
            let c = config
                .as_ref()
                .and_then(|c| c.identities.iter().find(|i| i.id == args.principal))
                .ok_or("--principal must be KIND:ID, or an identity id from --config")?;
            c.identity()
        }
    };
    let params = args
        .params
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| format!("--params: {e}"))?;
    let spec = ActionSpec::new(args.action, args.resource, args.environment, params)
        .map_err(|e| e.to_string())?;
    let principal = Principal::new(&who).ok_or("this principal cannot be used in policy")?;
    // What the gateway's analyzers find, as a submission would have it: policy sees it as
    // `context.risk` and `context.tags`, and the output shows it.
    let names = config
        .as_ref()
        .map(|c| c.analysis.clone())
        .unwrap_or_default();
    let analysis = countersign_gateway::analyze(&spec, &names);
    let ev = engine.evaluate(PolicyRequest {
        principal: &principal,
        spec: &spec,
        justification: &args.justification,
        analysis: analysis.as_ref(),
    });
    let out = serde_json::json!({
        "digest": spec.digest().to_string(),
        "analysis": analysis.unwrap_or_default(),
        "decision": ev.decision,
        "errors": ev.errors,
    });
    serde_json::to_string_pretty(&out).map_err(|e| e.to_string())
}
