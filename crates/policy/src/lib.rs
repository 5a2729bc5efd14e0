//! Policy: turns an action and an identity into a [`Decision`] with Cedar.
//!
//! Policies are `*.cedar` files. A `permit` annotated `@effect("review")` is a *review rule*
//! (`@approvers`, `@quorum`, `@ttl`, `@reason`); a plain `permit` allows; a `forbid` denies with its
//! `@reason`. Any satisfied forbid → deny; else any satisfied review rule → review (all matching
//! rules' requirements must be met, earliest TTL wins); else any permit → allow; else the default
//! effect (deny unless configured).
//!
//! **Architecture Invariant:** this crate is the only one that knows Cedar. It does no I/O besides
//! reading policy files in [`PolicyEngine::load_dir`].
//!
//! Cedar evaluates every policy it is given, so the engine keeps one slice per action name (the
//! policies whose action scope can match it, plus those with an open action scope) and evaluates
//! only that slice. Slicing never changes a decision: see the property tests.

mod convert;
mod engine;
mod load;
mod rules;

pub use engine::{DefaultEffect, Evaluation, LoadedPolicy, PolicyEngine, PolicyRequest, Principal};
pub use load::{LoadError, Problem};
