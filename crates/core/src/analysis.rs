//! What the analyzers found in an action's parameters (`crates/analyze` computes it; the core
//! only carries it): a risk level, `family:finding` tags and a few plain-language impact lines.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// How risky an action looks to the analyzers, ordered: `low < medium < high < critical`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Reads, or nothing the analyzers recognise as risky.
    #[default]
    Low,
    /// Writes, creations, changes that can be undone.
    Medium,
    /// Deletions, privilege changes, exports, anything unparseable.
    High,
    /// Destroys data or grants everything: dropping databases, `rm -rf /`, `curl | sh`.
    Critical,
}

impl Risk {
    /// The lowercase name (`low`, `medium`, `high`, `critical`), as Cedar sees it in
    /// `context.risk`.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The analyzers' findings about one action: the highest risk any of them saw, the union of
/// their tags (`sql:ddl`, `shell:pipe-to-shell`...), and their impact lines ("drops 3 tables").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    /// The highest risk found.
    pub risk: Risk,
    /// Every tag found, sorted.
    #[serde(default)]
    pub tags: BTreeSet<String>,
    /// What the action will do, in plain language.
    #[serde(default)]
    pub impact: Vec<String>,
}

impl Analysis {
    /// Whether a tag was found.
    pub fn has(&self, tag: &str) -> bool {
        self.tags.contains(tag)
    }
}
