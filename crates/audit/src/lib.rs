//! Countersign's tamper-evident audit log, as pure functions: the RFC 6962 / RFC 9162 Merkle tree
//! over log entries, its inclusion and consistency proofs, and the C2SP signed-note and
//! tlog-checkpoint formats in which the log publishes (and others verify) its tree heads.
//!
//! The formats are the public ones on purpose: a checkpoint this crate signs can be checked by
//! any C2SP-speaking tool (Go's `golang.org/x/mod/sumdb/note`, witnesses, monitors), and the
//! proofs are byte-for-byte those of Go's `golang.org/x/mod/sumdb/tlog` and of Certificate
//! Transparency.
//!
//! - [`merkle`]: leaf and node hashes, the "stored hashes" layout (interior hashes written once,
//!   as each leaf is appended), tree heads, and the proofs, all over a [`merkle::HashReader`] so
//!   that the store can back the tree.
//! - [`note`]: Ed25519 signed notes (key strings, signing, opening against known keys).
//! - [`checkpoint`]: the checkpoint text (origin, tree size, root hash) carried in a note.
//!
//! **Architecture Invariant:** this crate does no I/O and reads no clock. Randomness enters only
//! through [`note::generate_key`]'s caller-supplied generator; storage enters only through
//! [`merkle::HashReader`]. It knows nothing of HTTP, SQL or the domain core's types: what a log
//! entry's bytes mean is the caller's business.

pub mod checkpoint;
pub mod merkle;
pub mod note;
pub mod verify;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use merkle::{Hash, HashReader, MemoryHashes, ProofError, TreeError};
pub use note::{KeyError, NoteError, OpenedNote, Signer, Verifier};
