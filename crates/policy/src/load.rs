//! Reading `*.cedar` files into a policy set, with problems reported as `file:line:col`.

use cedar_policy::{Policy, PolicyId, PolicySet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::rules::{classify, Rule};

/// One problem in one policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or source name).
    pub file: String,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Why policies could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory could not be read.
    #[error("cannot read policy directory {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// One or more files have problems.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// A parsed policy with its role and where it came from.
pub(crate) struct Loaded {
    pub policy: Policy,
    pub rule: Rule,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Parses named sources. Policy ids are the `@id` annotation, else `FILE#N` (N from 0 in the file).
pub(crate) fn parse_sources(sources: &[(String, String)]) -> Result<Vec<Loaded>, LoadError> {
    let mut problems = Vec::new();
    let mut out: Vec<Loaded> = Vec::new();
    let mut seen = std::collections::HashMap::<String, String>::new();
    for (name, text) in sources {
        let set = match PolicySet::from_str(text) {
            Ok(set) => set,
            Err(errs) => {
                for e in errs.iter() {
                    let offset = miette::Diagnostic::labels(e)
                        .and_then(|mut l| l.next())
                        .map_or(0, |l| l.offset());
                    let (line, column) = line_col(text, offset);
                    problems.push(Problem {
                        file: name.clone(),
                        line,
                        column,
                        message: e.to_string(),
                    });
                }
                continue;
            }
        };
        if set.templates().next().is_some() {
            problems.push(Problem {
                file: name.clone(),
                line: 0,
                column: 0,
                message: "policy templates are not supported; write plain policies".into(),
            });
        }
        // PolicySet::from_str numbers policies policy0, policy1, ... in source order.
        let mut policies: Vec<&Policy> = set.policies().collect();
        policies.sort_by_key(|p| {
            p.id()
                .to_string()
                .trim_start_matches("policy")
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        for (n, p) in policies.into_iter().enumerate() {
            let id = p
                .annotation("id")
                .map(str::to_string)
                .unwrap_or_else(|| format!("{name}#{n}"));
            let locate = |needle: &str| {
                text.find(needle)
                    .map_or((0, 0), |offset| line_col(text, offset))
            };
            if let Some(first) = seen.insert(id.clone(), name.clone()) {
                let (line, column) = locate(&format!("\"{id}\""));
                problems.push(Problem {
                    file: name.clone(),
                    line,
                    column,
                    message: format!("duplicate policy id `{id}` (first defined in {first})"),
                });
                continue;
            }
            match classify(p) {
                Ok(rule) => out.push(Loaded {
                    policy: p.new_id(PolicyId::new(id)),
                    rule,
                }),
                Err(problem) => {
                    let (line, column) = locate(&problem.needle);
                    problems.push(Problem {
                        file: name.clone(),
                        line,
                        column,
                        message: format!("policy `{id}`: {}", problem.message),
                    });
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(LoadError::Invalid(problems))
    }
}

/// Reads every `*.cedar` file in `dir` (sorted by name) as `(file name, text)`. Hidden files
/// (names starting with `.`: editor swap files, `.#` locks, files an operator meant to set
/// aside) are never policy.
pub(crate) fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cedar"))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.as_encoded_bytes().starts_with(b"."))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Io {
                path: path.clone(),
                source,
            })?;
            Ok((path.display().to_string(), text))
        })
        .collect()
}
