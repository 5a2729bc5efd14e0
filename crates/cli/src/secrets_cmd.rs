//! `countersign credentials set NAME --config FILE`: an operator sets (or replaces) the stored
//! value of a `kind = "static"` credential. The value is read from stdin, never from the command
//! line (other users can read a process's arguments); on a terminal it is not echoed. It is
//! sealed with the gateway's secrets key and stored through the store's one write path with a
//! `secret_set` audit entry that never holds it.

use clap::{Args, Subcommand};
use countersign_gateway::config::Config;
use countersign_gateway::Clock;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

/// `countersign credentials ...`.
#[derive(Subcommand)]
pub enum CredentialsCommand {
    /// Set (or replace) the value of a `kind = "static"` credential, read from stdin (one
    /// trailing newline is removed; on a terminal the value is not echoed).
    Set(SetArgs),
}

/// `credentials set`.
#[derive(Args)]
pub struct SetArgs {
    /// The credential's `[[credentials]]` name.
    name: String,
    /// The gateway's configuration file (its `database`, `secrets_key` and `[[credentials]]`).
    #[arg(long, env = "COUNTERSIGN_CONFIG")]
    config: PathBuf,
}

/// Most bytes read from stdin (more is refused by the gateway's rule anyway).
const MAX_READ: u64 = 1024 * 1024;

/// Reads the value: from a terminal one line without echo, else all of stdin.
fn read_value() -> Result<Vec<u8>, String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let before = tcgetattr(&stdin).map_err(|e| format!("the terminal: {e}"))?;
        let mut quiet = before.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).map_err(|e| format!("the terminal: {e}"))?;
        // Asked only once echo is off: whatever is typed after the prompt is never shown.
        eprint!("Value (not shown), then Enter: ");
        let mut line = String::new();
        let read = stdin.read_line(&mut line);
        let restored = tcsetattr(&stdin, SetArg::TCSANOW, &before);
        eprintln!();
        read.map_err(|e| format!("stdin: {e}"))?;
        restored.map_err(|e| format!("the terminal: {e}"))?;
        return Ok(line.into_bytes());
    }
    let mut value = Vec::new();
    stdin
        .lock()
        .take(MAX_READ)
        .read_to_end(&mut value)
        .map_err(|e| format!("stdin: {e}"))?;
    Ok(value)
}

async fn set(a: SetArgs, clock: Clock) -> Result<(), String> {
    let config = Config::load(&a.config).map_err(|e| e.to_string())?;
    // Checked before reading the value, so a typo does not cost the operator a paste.
    countersign_gateway::credentials::check_static_name(&config, &a.name)
        .map_err(|e| e.to_string())?;
    let value = read_value()?;
    let store = countersign_gateway::open_store(&config.database)
        .await
        .map_err(|e| e.to_string())?;
    let key_id = countersign_gateway::credentials::set_static(
        &*store,
        &config,
        &a.name,
        &value,
        &crate::keys_cmd::operator(),
        clock(),
    )
    .await
    .map_err(|e| e.to_string())?;
    eprintln!(
        "Set the value of \"{}\" (sealed with key {key_id}, {}); the next release uses it.",
        a.name,
        config.secrets_key.display()
    );
    Ok(())
}

/// Runs a `credentials` command; returns the exit code.
pub fn run(cmd: CredentialsCommand, clock: Clock) -> u8 {
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
    let result = match cmd {
        CredentialsCommand::Set(a) => rt.block_on(set(a, clock)),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("countersign: {e}");
            2
        }
    }
}
