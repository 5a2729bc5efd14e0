//! Who may approve, and how many distinct people must.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use crate::identity::Identity;

/// The people who may approve under one rule: named humans and members of named groups.
/// A parsed `Approvers` is never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approvers {
    /// Group names (from `group:NAME`).
    pub groups: BTreeSet<String>,
    /// Human ids (from `human:ID`).
    pub humans: BTreeSet<String>,
}

/// An `@approvers` annotation that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApproversParseError {
    /// No entries at all.
    #[error("the approvers list is empty; name at least one `group:NAME` or `human:ID`")]
    Empty,
    /// An entry that is neither `group:NAME` nor `human:ID`.
    #[error("`{0}` is not `group:NAME` or `human:ID`")]
    BadEntry(String),
}

impl Approvers {
    /// Whether `who` is an approver under this rule (humans only: agents and services never are).
    pub fn admits(&self, who: &Identity) -> bool {
        who.kind.can_vote()
            && (self
                .humans
                .iter()
                .any(|h| crate::identity::same_id(h, &who.id))
                || who.groups.iter().any(|g| self.groups.contains(g)))
    }

    /// The entries under which `who` would be admitted by any rule: `human:ID` and one
    /// `group:NAME` per group, none for agents and services. `admits(who)` holds exactly when
    /// this rule's [`entries`](Self::entries) include one of them.
    pub fn keys_of(who: &Identity) -> Vec<String> {
        if !who.kind.can_vote() {
            return Vec::new();
        }
        std::iter::once(format!("human:{}", who.id))
            .chain(who.groups.iter().map(|g| format!("group:{g}")))
            .collect()
    }

    /// The entries as strings, e.g. `["group:sre", "human:alice"]`.
    pub fn entries(&self) -> Vec<String> {
        self.groups
            .iter()
            .map(|g| format!("group:{g}"))
            .chain(self.humans.iter().map(|h| format!("human:{h}")))
            .collect()
    }
}

impl FromStr for Approvers {
    type Err = ApproversParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut groups = BTreeSet::new();
        let mut humans = BTreeSet::new();
        for raw in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let valid = |n: &str| !n.is_empty() && !n.chars().any(char::is_whitespace);
            match raw.split_once(':') {
                Some(("group", name)) if valid(name) => groups.insert(name.to_string()),
                Some(("human", id)) if valid(id) => humans.insert(id.to_string()),
                _ => return Err(ApproversParseError::BadEntry(raw.to_string())),
            };
        }
        if groups.is_empty() && humans.is_empty() {
            return Err(ApproversParseError::Empty);
        }
        Ok(Approvers { groups, humans })
    }
}

impl fmt::Display for Approvers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.entries().join(", "))
    }
}

/// How many distinct approvers a rule needs: 1 to [`Quorum::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Quorum(NonZeroU32);

/// A quorum that is not a whole number from 1 to [`Quorum::MAX`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a quorum is a whole number from 1 to {}", Quorum::MAX)]
pub struct QuorumParseError;

impl Quorum {
    /// The largest quorum accepted.
    pub const MAX: u32 = 100;
    /// One approver.
    pub const ONE: Quorum = Quorum(NonZeroU32::MIN);

    /// The number of approvals needed.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl TryFrom<u32> for Quorum {
    type Error = QuorumParseError;
    fn try_from(n: u32) -> Result<Self, Self::Error> {
        if n > Quorum::MAX {
            return Err(QuorumParseError);
        }
        NonZeroU32::new(n).map(Quorum).ok_or(QuorumParseError)
    }
}

impl From<Quorum> for u32 {
    fn from(q: Quorum) -> u32 {
        q.get()
    }
}

impl FromStr for Quorum {
    type Err = QuorumParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<u32>()
            .map_err(|_| QuorumParseError)
            .and_then(Quorum::try_from)
    }
}
