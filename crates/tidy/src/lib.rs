//! No code: this crate holds the tidy tests (`tests/tidy.rs`), which read the workspace's
//! manifests and sources and fail when an invariant of ARCHITECTURE.md stops holding. They run
//! with the ordinary test suite, in the manner of rust-analyzer's tidy tests.
