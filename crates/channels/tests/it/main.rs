//! The channels' tests: the outbox's delivery worker against local receivers (a Standard
//! Webhooks receiver that fails, throttles and recovers), every signature verified by the
//! reference `standardwebhooks` library (`target/pyenv`, or `COUNTERSIGN_PYTHON`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on bad setup

mod receiver;
mod webhooks;
