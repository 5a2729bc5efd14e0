//! `countersign`: the gateway server, operator commands and the CLI client in one binary.

mod audit_cmd;
mod client;
mod keys_cmd;
mod mcp_cmd;
mod operator;
mod replicas_cmd;

use clap::{Parser, Subcommand};

// The request path allocates many short-lived buffers (JSON, headers, records): glibc malloc and
// free were ~10% of server CPU in a profile of the allow-path load test.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

/// Action-level human approvals for AI agents.
#[derive(Parser)]
#[command(name = "countersign", version, about)]
struct Cli {
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
    /// Check and try policies.
    #[command(subcommand)]
    Policy(operator::PolicyCommand),
    /// Export and verify the audit log offline.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Put approvals in front of an MCP server.
    #[command(subcommand)]
    Mcp(mcp_cmd::McpCommand),
    /// Apply pending database schema migrations and exit (serve also runs them).
    Migrate(replicas_cmd::MigrateArgs),
    #[command(flatten)]
    Client(client::ClientCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A stdio MCP proxy serves one agent session: one thread keeps each message on the thread
    // that read it (no hand-offs between workers on the latency path). The store's writer has
    // its own thread either way.
    let one_thread = matches!(&cli.command, Command::Mcp(mcp_cmd::McpCommand::Stdio(_)));
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
    let code = match cli.command {
        Command::Serve(args) => runtime.block_on(operator::serve(args)),
        Command::Keys(cmd) => operator::keys(cmd, countersign_gateway::system_clock()),
        Command::Policy(cmd) => operator::policy(cmd),
        Command::Audit(cmd) => runtime.block_on(audit_cmd::run(cmd)),
        Command::Mcp(cmd) => runtime.block_on(mcp_cmd::run(cmd)),
        Command::Migrate(args) => runtime.block_on(replicas_cmd::migrate(args)),
        Command::Client(cmd) => runtime.block_on(client::run(cmd)),
    };
    ExitCode::from(code)
}
