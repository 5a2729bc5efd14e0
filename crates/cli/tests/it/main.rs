//! End-to-end tests of the `countersign` binary and its HTTP API, against real servers on
//! loopback with real SQLite files (one test binary for the crate).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

mod api_analysis;
mod api_client;
mod api_errors;
mod api_flow;
mod api_hostile;
mod api_reviews;
mod api_security;
mod audit;
mod audit_readback;
mod canaries;
mod cli;
mod cli_human;
mod credentials;
mod dashboard;
mod durability;
mod front;
mod identity;
mod masking;
mod masking_channels;
mod mcp;
mod mcp_attacks;
mod mcp_http;
mod mcp_pending;
mod mcp_rmcp;
mod mcp_tasks;
mod mcp_v2;
mod outbox;
mod pg_proxy;
mod policy_bypass;
mod replicas;
mod run;
mod run_context;
mod run_questions;
mod slack;
mod store_health;
mod support;
mod teams;
mod traces;
