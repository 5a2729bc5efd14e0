//! Integration tests of the domain core (one test binary per crate).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

mod credentials;
mod digest;
mod identity;
mod limits;
mod modify;
mod reveal;
mod review_index;
mod rules;
mod separation;
mod state_machine;
mod support;
