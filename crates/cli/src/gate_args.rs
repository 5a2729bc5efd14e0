//! Where decisions come from, and as whom a front asks: `--gateway URL` (a running gateway, over
//! the HTTP API v1) or `--config FILE` (a gateway started in this process, only in the full
//! binary), and `--token`. Shared by `countersign run` and `countersign mcp stdio`.

use clap::Args;
use countersign_enforce::{Gate, Remote};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where decisions come from, and as whom the proxy asks.
#[derive(Args, Clone)]
pub struct GateArgs {
    /// A running gateway's URL.
    #[arg(long, env = "COUNTERSIGN_URL", conflicts_with = "config")]
    pub gateway: Option<String>,
    /// Run the gateway in this process from this config file instead.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// With --config: also serve the gateway's HTTP API here, so reviewers can vote.
    #[arg(long, requires = "config", value_name = "ADDR")]
    pub api_listen: Option<String>,
    /// The agent's API token: every call is made as its identity.
    #[arg(long, env = "COUNTERSIGN_TOKEN", hide_env_values = true)]
    pub token: String,
}

/// The message when neither `--gateway` nor `--config` says where decisions come from.
pub const NO_GATE: &str = "give --gateway URL (or COUNTERSIGN_URL) or --config FILE";

impl GateArgs {
    /// The config file of an embedded gateway, when one was asked for.
    pub fn embedded_config(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    /// The gate of a running gateway (`--gateway`); an error when `--gateway` was not given.
    pub fn remote(&self) -> Result<Arc<dyn Gate>, String> {
        match &self.gateway {
            Some(url) => Ok(Arc::new(
                Remote::new(url, self.token.clone()).map_err(|e| e.to_string())?,
            )),
            None => Err(NO_GATE.into()),
        }
    }
}
