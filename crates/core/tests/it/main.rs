//! Integration tests of the domain core (one test binary per crate).

mod digest;
mod identity;
mod separation;
mod state_machine;
mod support;
