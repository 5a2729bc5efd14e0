//! Integration tests of the audit log (one test binary per crate).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

mod checkpoint;
mod merkle_props;
mod merkle_vectors;
mod note_vectors;
mod support;
mod tamper;
