#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup
mod contacts;
mod keys;
mod oidc;
mod pyjwt;
mod support;
