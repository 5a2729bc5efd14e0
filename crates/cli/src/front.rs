//! `countersign`: the front binary. It runs `countersign run` against a running gateway itself
//! and becomes `countersign-full`, the binary beside it, for everything else (see the package's
//! library docs and DECISIONS.md, "A small front binary").
//!
//! What it links is what `run` needs: the HTTP API client, the enforcement crate's hold loop,
//! clap, tokio. The gateway, Cedar, the stores, PostgreSQL's parser and the proxies are in
//! `countersign-full` only, so this binary starts in a fraction of the time.
//!
//! It decides nothing itself: any command line it does not parse as `run` with `--gateway` /
//! `COUNTERSIGN_URL` (help, a mistake, `--config`, any other command) goes unchanged to
//! `countersign-full`, which prints the same help and the same errors as before the split.

use clap::{Parser, Subcommand};
use countersign::run_cmd::{self, RunArgs};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

/// The name of the full binary, looked for beside this one only (never on `PATH`).
const FULL: &str = "countersign-full";

/// The part of `countersign`'s command line this binary runs itself.
#[derive(Parser)]
#[command(name = "countersign")]
struct Front {
    /// As `countersign --output` (run prints no output of its own in either format).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    output: Option<countersign::Format>,
    #[command(subcommand)]
    command: Only,
}

#[derive(Subcommand)]
enum Only {
    Run(RunArgs),
}

/// `run` against a running gateway, when that is what `args` asks for.
fn remote_run(args: &[OsString]) -> Option<RunArgs> {
    let front = Front::try_parse_from(args).ok()?;
    let Only::Run(run) = front.command;
    run.gate.embedded_config().is_none().then_some(run)
}

/// Becomes `countersign-full` with the same arguments (same process, same pid: signals sent to
/// `countersign` reach it). Returns only when that fails.
fn full(args: &[OsString]) -> ExitCode {
    let path = match std::env::current_exe() {
        Ok(me) => me.with_file_name(FULL),
        Err(e) => {
            eprintln!("countersign: cannot find this program's own path: {e}");
            return ExitCode::from(2);
        }
    };
    let mut command = std::process::Command::new(&path);
    if let Some(name) = args.first() {
        command.arg0(name);
    }
    let e = command.args(args.iter().skip(1)).exec();
    eprintln!(
        "countersign: cannot start {} (it is installed beside `countersign`): {e}",
        path.display()
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let Some(run) = remote_run(&args) else {
        return full(&args);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("countersign: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(run_cmd::run(run, |g| async move { g.remote() }));
    ExitCode::from(code)
}
