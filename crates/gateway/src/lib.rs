//! The gateway's use cases and the machinery around them: configuration, identities, grant
//! tokens, long-poll wake-ups, the expiry sweeper and metrics.
//!
//! **Architecture Invariant:** this crate knows no wire format. The HTTP API, the CLI and later
//! the MCP proxy and chat channels all call [`Gateway`]; none of them holds a rule of its own.

pub mod audit;
pub use countersign_enforce::clock;
pub mod config;
pub mod contacts;
pub mod credentials;
mod error;
pub mod export;
pub mod gate;
pub mod grants;
pub mod history;
pub mod identities;
pub mod keys;
pub mod lookup;
pub mod masking;
pub mod metrics;
pub mod notify;
mod replicas;
mod service;
pub mod sessions;
mod wakeups;

pub use clock::{system_clock, Clock, TestClock};
pub use contacts::ChatHuman;
pub use countersign_core::Submission;
pub use error::GatewayError;
pub use history::{HistoryPage, HistoryQuery};
pub use replicas::open_store;
pub use service::{
    analyze, default_effect, ActionView, Gateway, Parts, Redeemed, Revealed, ReviewPage, Submitted,
    MAX_WAIT,
};
pub use sessions::Session;
