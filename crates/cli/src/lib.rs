//! What the two binaries of this package share: `countersign run` (the command, its context
//! providers, inline questions and released credentials), the gate arguments, the logs and the
//! `--output` values.
//!
//! The package builds two binaries. `countersign-full` holds everything: the gateway server,
//! the MCP and PostgreSQL proxies, the operator commands and the CLI client. `countersign` is
//! the front, a small binary that every command starts. It runs `countersign run` against a
//! running gateway (`--gateway` / `COUNTERSIGN_URL`) itself, because that command's cost is
//! paid on every wrapped command and a process's start grows with its binary (page faults,
//! relocations). For every other command, and for `run --config`, it becomes `countersign-full`
//! (the same process, by `exec`) beside it. See DECISIONS.md, "A small front binary".

pub mod credentials;
pub mod gate_args;
pub mod logs;
pub mod run_cmd;
pub mod run_context;
pub mod run_questions;

/// `--output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables and summaries for people (colour on a terminal).
    Human,
    /// The API's JSON, stable for scripts.
    Json,
}
