//! The server bootstrap's tests: the leased-worker registry against a fake lease (with tokio's
//! paused clock: no test sleeps for real), and the bootstrap on SQLite and on PostgreSQL (the
//! server named by `COUNTERSIGN_TEST_POSTGRES`, a fresh schema per test).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on bad setup

mod bootstrap;
// The masking canaries, shared with the CLI's test binary (one corpus for every path).
#[path = "../../../cli/tests/it/canaries.rs"]
mod canaries;
mod console;
mod console_browser;
mod console_masking;
mod workers;
