//! Risk and impact analyzers: what an action's parameters will do, in terms a policy and a
//! reviewer can use. Each analyzer is chosen by a parameter's name ([`ANALYZERS`]) and returns a
//! risk level, `family:finding` tags and a few plain-language impact lines; [`analyze`] combines
//! them (the highest risk, the union of tags).
//!
//! | parameter                    | analyzer                                            |
//! |------------------------------|-----------------------------------------------------|
//! | `sql`, `statement`, `query`  | SQL (PostgreSQL dialect; MySQL when `dialect` says) |
//! | `argv` (array), `command`    | shell, or Kubernetes when the command is `kubectl`  |
//! | `plan`                       | Terraform (`terraform show -json`)                  |
//! | `manifest`                   | Kubernetes manifest (JSON, or YAML already as JSON) |
//! | `policy_document`            | AWS IAM policy document                             |
//!
//! **Architecture Invariant:** pure. No I/O, no clock, no async, no randomness: the same
//! parameters always give the same analysis (tidy test `the_analyzers_are_pure`). Every analyzer
//! fails safe: input it cannot read is `high` risk with an `…:unparsed` tag, never silently
//! `low`, and input over [`MAX_INPUT`] bytes is not parsed at all (`high`, `analysis:too-large`).

use countersign_core::{Analysis, Risk};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

mod iam;
mod k8s;
mod shell;
mod sql;
mod sql_pg;

pub use sql_pg::{pg_statements, PgStatement, SqlKind, Unparsed};
mod terraform;

/// Largest parameter (a string's bytes, or a JSON document's approximate encoded size) an
/// analyzer parses: 1 MiB. Larger ones are `high` risk and tagged `analysis:too-large`.
pub const MAX_INPUT: usize = 1 << 20;

/// Largest SQL text parsed: 64 KiB. SQL costs about 0.1 ms of parsing per kilobyte (a 1 MiB
/// script took half a CPU-second), so a larger one is not parsed (`high`,
/// `analysis:too-large`): an agent cannot buy seconds of the gateway's CPU per submission.
pub const MAX_SQL: usize = 64 << 10;

/// Most impact lines one analysis keeps.
pub const MAX_IMPACT_LINES: usize = 12;

/// Longest impact line, in characters (names taken from the input are cut short).
pub const MAX_IMPACT_CHARS: usize = 160;

/// One analyzer: the parameter names it reads and how.
pub struct Analyzer {
    /// Its name (`sql`, `shell`...), for documentation and tests.
    pub name: &'static str,
    /// The parameter names it reads, in order of preference.
    pub params: &'static [&'static str],
    /// Runs it on one parameter's value, with all the parameters at hand (`dialect`).
    run: fn(&Value, &Map<String, Value>, &mut Findings),
    /// The largest value it parses, in bytes ([`MAX_INPUT`] or less).
    pub max_input: usize,
}

/// The analyzers, chosen by parameter name. To add one: a module with a `run` function and a
/// row here (and its corpus in `tests/`).
pub const ANALYZERS: &[Analyzer] = &[
    Analyzer {
        name: "sql",
        params: &["sql", "statement", "query"],
        run: sql::run,
        max_input: MAX_SQL,
    },
    Analyzer {
        name: "shell",
        params: &["argv", "command"],
        run: shell::run_command,
        max_input: MAX_INPUT,
    },
    Analyzer {
        name: "terraform",
        params: &["plan"],
        run: terraform::run,
        max_input: MAX_INPUT,
    },
    Analyzer {
        name: "kubernetes",
        params: &["manifest"],
        run: k8s::run_manifest,
        max_input: MAX_INPUT,
    },
    Analyzer {
        name: "iam",
        params: &["policy_document"],
        run: iam::run,
        max_input: MAX_INPUT,
    },
];

/// More parameter names for the analyzers, beyond their own (`[analysis]` in the
/// configuration: `sql = ["migration"]` makes the SQL analyzer read `params.migration` too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    extra: BTreeMap<&'static str, Vec<String>>,
}

/// A name in `[analysis]` that is not an analyzer's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an analyzer (known: sql, shell, terraform, kubernetes, iam)")]
pub struct UnknownAnalyzer(pub String);

impl Names {
    /// Makes `analyzer` (`sql`, `shell`, `terraform`, `kubernetes`, `iam`) read `param` too.
    pub fn add(&mut self, analyzer: &str, param: &str) -> Result<(), UnknownAnalyzer> {
        let a = ANALYZERS
            .iter()
            .find(|a| a.name == analyzer)
            .ok_or_else(|| UnknownAnalyzer(analyzer.to_string()))?;
        let list = self.extra.entry(a.name).or_default();
        if !a.params.contains(&param) && !list.iter().any(|p| p == param) {
            list.push(param.to_string());
        }
        Ok(())
    }

    fn of(&self, analyzer: &Analyzer) -> impl Iterator<Item = &str> {
        analyzer.params.iter().copied().chain(
            self.extra
                .get(analyzer.name)
                .into_iter()
                .flatten()
                .map(String::as_str),
        )
    }
}

/// Analyzes an action's parameters: every analyzer whose parameter is present runs, and their
/// findings are combined. `None` when no analyzer's parameter is present (nothing was analyzed;
/// policy then sees risk `low` and no tags).
pub fn analyze(params: &Map<String, Value>) -> Option<Analysis> {
    analyze_with(params, &Names::default())
}

/// [`analyze`], with the analyzers also reading the parameter names `names` adds.
pub fn analyze_with(params: &Map<String, Value>, names: &Names) -> Option<Analysis> {
    let mut findings = Findings::default();
    let mut ran = false;
    for analyzer in ANALYZERS {
        for name in names.of(analyzer) {
            let Some(value) = params.get(name) else {
                continue;
            };
            ran = true;
            if too_large(value, analyzer.max_input) {
                findings.flag(
                    Risk::High,
                    "analysis:too-large",
                    format!(
                        "`{name}` is over {} KiB and was not analyzed",
                        analyzer.max_input >> 10
                    ),
                );
            } else {
                (analyzer.run)(value, params, &mut findings);
            }
        }
    }
    ran.then(|| findings.into_analysis())
}

/// The analysis policy sees when nothing was analyzed: risk `low`, no tags, no impact.
pub fn nothing_found() -> Analysis {
    Analysis::default()
}

/// What analyzers found so far: the highest risk, the tags, the impact lines.
#[derive(Debug, Default)]
pub struct Findings {
    risk: Risk,
    tags: BTreeSet<String>,
    impact: Vec<String>,
}

impl Findings {
    /// Raises the risk to at least `risk`.
    pub(crate) fn raise(&mut self, risk: Risk) {
        self.risk = self.risk.max(risk);
    }

    /// Adds a tag (and raises the risk).
    pub(crate) fn tag(&mut self, risk: Risk, tag: &str) {
        self.raise(risk);
        if !self.tags.contains(tag) {
            self.tags.insert(tag.to_string());
        }
    }

    /// Adds a tag, raises the risk and says what it means.
    pub(crate) fn flag(&mut self, risk: Risk, tag: &str, impact: impl Into<String>) {
        self.tag(risk, tag);
        self.say(impact);
    }

    /// Adds an impact line (bounded in number and length; repeats are dropped).
    pub(crate) fn say(&mut self, line: impl Into<String>) {
        if self.impact.len() >= MAX_IMPACT_LINES {
            return;
        }
        let line = cut(&line.into(), MAX_IMPACT_CHARS);
        if !self.impact.contains(&line) {
            self.impact.push(line);
        }
    }

    fn into_analysis(self) -> Analysis {
        Analysis {
            risk: self.risk,
            tags: self.tags,
            impact: self.impact,
        }
    }
}

/// `text` cut to at most `max` characters (with `…` when cut).
pub(crate) fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((i, _)) if text.len() > i + 1 => format!("{}…", &text[..i]),
        _ => text.to_string(),
    }
}

/// `n thing` / `n things`.
pub(crate) fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A list of names for an impact line: the first few, then how many more.
pub(crate) fn names<S: AsRef<str>>(items: &[S]) -> String {
    const SHOWN: usize = 4;
    let shown: Vec<&str> = items.iter().take(SHOWN).map(AsRef::as_ref).collect();
    let mut out = shown.join(", ");
    if items.len() > SHOWN {
        out.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    out
}

/// Whether a value is over [`MAX_INPUT`] (strings by their bytes, containers by an estimate of
/// their encoded size that stops counting at the limit).
fn too_large(value: &Value, max: usize) -> bool {
    fn size(v: &Value, budget: &mut usize) -> bool {
        let here = match v {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 8,
            Value::String(s) => s.len() + 2,
            Value::Array(a) => {
                for x in a {
                    if size(x, budget) {
                        return true;
                    }
                }
                a.len() + 2
            }
            Value::Object(m) => {
                for (k, x) in m {
                    *budget = budget.saturating_sub(k.len() + 4);
                    if size(x, budget) {
                        return true;
                    }
                }
                2
            }
        };
        if here > *budget {
            return true;
        }
        *budget -= here;
        false
    }
    let mut budget = max.min(MAX_INPUT);
    size(value, &mut budget)
}

/// A JSON document given either as JSON or as a string holding JSON. `None`: a string that is
/// not JSON.
pub(crate) fn document(value: &Value) -> Option<std::borrow::Cow<'_, Value>> {
    match value {
        Value::String(s) => serde_json::from_str(s).ok().map(std::borrow::Cow::Owned),
        other => Some(std::borrow::Cow::Borrowed(other)),
    }
}
