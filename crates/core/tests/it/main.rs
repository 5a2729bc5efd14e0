//! Integration tests of the domain core (one test binary per crate).

mod digest;
mod identity;
mod limits;
mod modify;
mod review_index;
mod separation;
mod state_machine;
mod support;
