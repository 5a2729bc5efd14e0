//! `countersign keys create|list|revoke`: managed API keys, by the operator, against the store
//! named by the config file (the same code path as the admin API).
//!
//! `keys list` prints a table on a terminal (`--output human`), tab-separated lines when piped
//! (as it always has), and with `--output json` the admin API's `GET /v1/admin/api-keys` body.

use clap::Args;
use countersign_core::IdentityKind;
use countersign_gateway::config::Config;
use countersign_gateway::identities::Identities;
use countersign_gateway::keys::{self, KeyRequest};
use countersign_gateway::Clock;
use countersign_store::{rfc3339, Store};
use std::path::PathBuf;

use crate::operator::KeysCommand;
use crate::output::{Format, Output};

/// Which store.
#[derive(Args)]
pub struct StoreArgs {
    /// The TOML configuration file (its `database` is used).
    #[arg(long, env = "COUNTERSIGN_CONFIG")]
    config: PathBuf,
}

/// `keys create`.
#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The identity id the key authenticates as.
    #[arg(long)]
    identity: String,
    /// `agent` or `service`.
    #[arg(long, default_value = "agent")]
    kind: String,
    /// Groups (comma-separated).
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// Lifetime, e.g. 90d (default: until revoked).
    #[arg(long)]
    expires: Option<String>,
    /// The person who sponsors this agent (never an approver of its requests). Without it the
    /// key has no human sponsor: the operator made it.
    #[arg(long)]
    sponsor: Option<String>,
}

/// `keys revoke`.
#[derive(Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The key id (`key_...`).
    id: String,
}

pub(crate) async fn open(args: &StoreArgs) -> Result<std::sync::Arc<dyn Store>, String> {
    open_with_config(args).await.map(|(store, _)| store)
}

async fn open_with_config(args: &StoreArgs) -> Result<(std::sync::Arc<dyn Store>, Config), String> {
    let config = Config::load(&args.config).map_err(|e| e.to_string())?;
    let store = countersign_gateway::open_store(&config.database)
        .await
        .map_err(|e| e.to_string())?;
    Ok((store, config))
}

/// Who an operator command acts as: `operator:<user>`.
pub(crate) fn operator() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("operator:{user}")
}

async fn run_async(cmd: KeysCommand, format: Option<Format>, clock: Clock) -> Result<(), String> {
    match cmd {
        KeysCommand::New => Ok(()),
        KeysCommand::Create(a) => {
            let kind = match a.kind.as_str() {
                "agent" => IdentityKind::Agent,
                "service" => IdentityKind::Service,
                other => {
                    return Err(format!(
                        "--kind {other}: use `agent` or `service` (people sign in through the identity provider)"
                    ))
                }
            };
            let expires_in = a
                .expires
                .as_deref()
                .map(humantime::parse_duration)
                .transpose()
                .map_err(|e| format!("--expires: use a duration like 90d ({e})"))?;
            let (store, config) = open_with_config(&a.store).await?;
            let configured = Identities::from_config(&config.identities);
            let req = KeyRequest {
                identity: a.identity,
                kind,
                groups: a.groups.into_iter().filter(|g| !g.is_empty()).collect(),
                expires_in,
                sponsor: a.sponsor,
            };
            let (secret, key) = keys::create(&*store, &configured, req, &operator(), clock())
                .await
                .map_err(|e| e.to_string())?;
            println!("{secret}");
            eprintln!(
                "Created {} for {} ({}); expires {}. The key above is shown once: give it to its owner now.",
                key.id,
                key.identity,
                key.kind.as_str(),
                key.expires_at.map_or("never".into(), rfc3339)
            );
            Ok(())
        }
        KeysCommand::List(a) => {
            let store = open(&a).await?;
            let now = clock();
            let listed = store.list_keys().await.map_err(|e| e.to_string())?;
            if Output::json(format) {
                let list = countersign_api::KeyList {
                    keys: listed.into_iter().map(countersign_http::key_view).collect(),
                };
                let text = serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?;
                println!("{text}");
                return Ok(());
            }
            let output = Output::resolve(format);
            if output.human {
                let keys: Vec<_> = listed.into_iter().map(countersign_http::key_view).collect();
                output.print(&crate::render::keys(&keys, now));
                return Ok(());
            }
            for k in listed {
                let state = match (k.revoked_at, k.expires_at) {
                    (Some(t), _) => format!("revoked {}", rfc3339(t)),
                    (None, Some(t)) if t <= now => format!("expired {}", rfc3339(t)),
                    (None, Some(t)) => format!("active until {}", rfc3339(t)),
                    (None, None) => "active".into(),
                };
                let groups: Vec<&str> = k.groups.iter().map(String::as_str).collect();
                let sponsor = k
                    .sponsor
                    .as_deref()
                    .map_or(String::new(), |s| format!("\tsponsor {s}"));
                println!(
                    "{}\t{}\t{}\t{}\t{}{sponsor}",
                    k.id,
                    k.identity,
                    k.kind.as_str(),
                    groups.join(","),
                    state
                );
            }
            Ok(())
        }
        KeysCommand::Revoke(a) => {
            let store = open(&a.store).await?;
            let key = keys::revoke(&*store, &a.id, &operator(), clock())
                .await
                .map_err(|e| match e {
                    countersign_gateway::GatewayError::KeyNotFound => {
                        format!("no active key `{}`; see `countersign keys list`", a.id)
                    }
                    other => other.to_string(),
                })?;
            println!("revoked {} ({})", key.id, key.identity);
            Ok(())
        }
    }
}

/// Runs a managed-key command at the time `clock` tells; returns the exit code.
pub fn run(cmd: KeysCommand, format: Option<Format>, clock: Clock) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("countersign: {e}");
            return 2;
        }
    };
    match rt.block_on(run_async(cmd, format, clock)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("countersign: {e}");
            2
        }
    }
}
