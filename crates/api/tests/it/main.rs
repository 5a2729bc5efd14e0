//! Tests of the API v1 types and client.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on bad setup

mod client;
mod error_codes;
mod wire;
