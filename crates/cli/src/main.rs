//! `countersign-full`: the gateway server, the proxies, the operator commands and the CLI
//! client in one binary. People start it as `countersign` (the front binary, `front.rs`, becomes
//! this one for every command but `run` against a running gateway); its commands and help are
//! those of `countersign`.

mod audit_cmd;
#[cfg(test)]
mod ci_examples;
mod client;
mod ids;
mod keys_cmd;
mod mcp_cmd;
mod operator;
mod outbox_cmd;
mod output;
mod pg_cmd;
mod render;
mod replicas_cmd;
mod secrets_cmd;
mod telemetry;

use clap::{CommandFactory, Parser, Subcommand};
use countersign::{logs, run_cmd};
use std::io::Write;

// The request path allocates many short-lived buffers (JSON, headers, records): glibc malloc and
// free were ~10% of server CPU in a profile of the allow-path load test.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

/// Action-level human approvals for AI agents.
#[derive(Parser)]
#[command(name = "countersign", bin_name = "countersign", version, about)]
struct Cli {
    /// Output of the client commands and `keys list`: `human` (tables and summaries) or `json`
    /// (the API's JSON, stable for scripts). Default: human on a terminal, else json (for
    /// `keys list`: tab-separated lines).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    output: Option<output::Format>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(operator::ServeArgs),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(operator::KeysCommand),
    /// Set the stored values of `kind = "static"` credentials.
    #[command(subcommand)]
    Credentials(secrets_cmd::CredentialsCommand),
    /// Check and try policies.
    #[command(subcommand)]
    Policy(operator::PolicyCommand),
    /// See and retry review notifications (the outbox).
    #[command(subcommand)]
    Outbox(outbox_cmd::OutboxCommand),
    /// Export and verify the audit log offline.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Put approvals in front of an MCP server.
    #[command(subcommand)]
    Mcp(mcp_cmd::McpCommand),
    /// Put per-statement approvals in front of a PostgreSQL server (a wire protocol proxy).
    Pg(pg_cmd::PgArgs),
    /// Put an approval in front of a command: submit it, wait for review, run exactly what was
    /// approved and report the result.
    Run(run_cmd::RunArgs),
    /// Apply pending database schema migrations and exit (serve also runs them).
    Migrate(replicas_cmd::MigrateArgs),
    #[command(flatten)]
    Client(client::ClientCommand),
    /// Print a shell completion script (e.g. `countersign completions bash > /etc/bash_completion.d/countersign`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), generated from these command definitions
    /// (e.g. `countersign man | man -l -`).
    Man,
}

/// Writes `bytes` to stdout: exit 0, or 2 when stdout cannot take them.
fn emit(bytes: &[u8]) -> u8 {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("countersign: cannot write: {e}");
            2
        }
    }
}

/// `countersign completions SHELL`.
fn completions(shell: clap_complete::Shell) -> u8 {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "countersign", &mut script);
    emit(&script)
}

/// `countersign man`.
fn man() -> u8 {
    let mut page = Vec::new();
    match clap_mangen::Man::new(Cli::command()).render(&mut page) {
        Ok(()) => emit(&page),
        Err(e) => {
            eprintln!("countersign: cannot render the manual page: {e}");
            2
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A stdio MCP proxy serves one agent session: one thread keeps each message on the thread
    // that read it (no hand-offs between workers on the latency path). The store's writer has
    // its own thread either way.
    let one_thread = matches!(
        &cli.command,
        Command::Mcp(mcp_cmd::McpCommand::Stdio(_)) | Command::Run(_)
    );
    let mut builder = if one_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("countersign: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let output = cli.output;
    let code = match cli.command {
        Command::Serve(args) => runtime.block_on(operator::serve(args)),
        Command::Keys(cmd) => operator::keys(cmd, output, countersign_gateway::system_clock()),
        Command::Credentials(cmd) => secrets_cmd::run(cmd, countersign_gateway::system_clock()),
        Command::Policy(cmd) => operator::policy(cmd),
        Command::Outbox(cmd) => outbox_cmd::run(cmd, output, countersign_gateway::system_clock()),
        Command::Audit(cmd) => runtime.block_on(audit_cmd::run(cmd)),
        Command::Mcp(cmd) => runtime.block_on(mcp_cmd::run(cmd)),
        Command::Run(args) => {
            runtime.block_on(run_cmd::run(
                args,
                |g| async move { mcp_cmd::gate(&g).await },
            ))
        }
        Command::Pg(args) => runtime.block_on(pg_cmd::run(args)),
        Command::Migrate(args) => runtime.block_on(replicas_cmd::migrate(args)),
        Command::Client(cmd) => runtime.block_on(client::run(
            cmd,
            output::Output::resolve(output),
            countersign_gateway::system_clock(),
        )),
        Command::Completions { shell } => completions(shell),
        Command::Man => man(),
    };
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own consistency checks over every command (what `completions` and `man` walk).
    #[test]
    fn the_command_definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
