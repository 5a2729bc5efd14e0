//! Integration tests of the audit log (one test binary per crate).

mod checkpoint;
mod merkle_props;
mod merkle_vectors;
mod note_vectors;
mod support;
mod tamper;
