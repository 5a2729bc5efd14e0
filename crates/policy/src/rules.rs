//! What each policy means to countersign: permit, review rule or forbid, read from annotations.

use cedar_policy::{Effect as CedarEffect, Policy};
use countersign_core::{Approvers, Quorum};
use std::time::Duration;

/// One policy's role.
#[derive(Debug, Clone)]
pub(crate) enum Rule {
    Permit {
        executors: Vec<String>,
        credentials: Vec<String>,
        reveal: Option<Approvers>,
    },
    Review {
        approvers: Approvers,
        quorum: Quorum,
        ttl: Option<Duration>,
        reason: Option<String>,
        executors: Vec<String>,
        credentials: Vec<String>,
        reveal: Option<Approvers>,
        /// `@require_mfa`: approvals need a multi-factor sign-in.
        require_mfa: bool,
        /// `@notify` channels, in order.
        notify: Vec<String>,
    },
    Forbid {
        reason: Option<String>,
    },
}

/// An annotation problem: the annotation text to point at, and what is wrong.
pub(crate) struct AnnotationProblem {
    pub needle: String,
    pub message: String,
}

const KNOWN: [&str; 11] = [
    "id",
    "effect",
    "approvers",
    "quorum",
    "ttl",
    "reason",
    "executor",
    "credentials",
    "reveal",
    "require_mfa",
    "notify",
];

/// `@reveal("group:data-owners, human:alice")`: the people who may see this action's masked
/// values (issue #17); each reveal is an audit entry.
fn reveal(p: &Policy) -> Result<Option<Approvers>, String> {
    p.annotation("reveal")
        .map(|text| {
            text.parse::<Approvers>()
                .map_err(|e| format!("{e}; write @reveal(\"group:NAME, human:ID\")"))
        })
        .transpose()
}

/// `@notify("slack:#prod-approvals, teams:sre-approvals, webhook:pagerduty")`: where a review
/// rule's notifications go. Whether each channel is configured is checked where the
/// configuration is known ([`crate::PolicyEngine::notify_channels`]).
fn notify(p: &Policy) -> Result<Vec<String>, String> {
    let Some(text) = p.annotation("notify") else {
        return Ok(Vec::new());
    };
    let mut channels = Vec::new();
    for entry in text.split(',').map(str::trim) {
        let ok = entry.split_once(':').is_some_and(|(kind, name)| {
            matches!(kind, "slack" | "teams" | "webhook")
                && !name.is_empty()
                && name.len() <= 80
                && !name.chars().any(|c| c.is_whitespace() || c.is_control())
        });
        if !ok {
            return Err(format!(
                "`{entry}` is not a channel; write @notify(\"slack:#CHANNEL, teams:NAME, webhook:NAME\") (comma-separated)"
            ));
        }
        if !channels.iter().any(|c| c == entry) {
            channels.push(entry.to_string());
        }
    }
    Ok(channels)
}

/// `@credentials("prod-db, deploy-ssh")`: the configured credentials released to the redeemer
/// of the grant. Whether each name is configured is checked where the configuration is known
/// ([`crate::PolicyEngine::credential_names`]).
fn credentials(p: &Policy) -> Result<Vec<String>, String> {
    let Some(text) = p.annotation("credentials") else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for name in text.split(',').map(str::trim) {
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "`{name}` is not a credential name; write @credentials(\"NAME, NAME\") with names of [[credentials]] in the configuration"
            ));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// `@executor("service:deployer, service:runner")`: the services that may redeem the grant.
fn executors(p: &Policy) -> Result<Vec<String>, String> {
    let Some(text) = p.annotation("executor") else {
        return Ok(Vec::new());
    };
    let mut ids = Vec::new();
    for entry in text.split(',').map(str::trim) {
        match entry.strip_prefix("service:") {
            Some(id) if !id.is_empty() && !id.chars().any(char::is_whitespace) => {
                ids.push(id.to_string())
            }
            _ => {
                return Err(format!(
                    "`{entry}` is not an executor; write @executor(\"service:ID\") (comma-separated; only services execute)"
                ))
            }
        }
    }
    Ok(ids)
}

pub(crate) fn classify(p: &Policy) -> Result<Rule, AnnotationProblem> {
    let problem = |key: &str, message: String| AnnotationProblem {
        needle: format!("@{key}"),
        message,
    };
    for (key, _) in p.annotations() {
        if !KNOWN.contains(&key) {
            return Err(problem(
                key,
                format!("unknown annotation @{key}; known: @{}", KNOWN.join(", @")),
            ));
        }
    }
    let reason = p.annotation("reason").map(str::to_string);
    let effect = p.annotation("effect");
    match (p.effect(), effect) {
        (CedarEffect::Forbid, None) if p.annotation("executor").is_some() => Err(problem(
            "executor",
            "@executor belongs on a permit; a forbid never runs anything".into(),
        )),
        (CedarEffect::Forbid, None) if p.annotation("credentials").is_some() => Err(problem(
            "credentials",
            "@credentials belongs on a permit; a forbid releases nothing".into(),
        )),
        (CedarEffect::Forbid, None) if p.annotation("reveal").is_some() => Err(problem(
            "reveal",
            "@reveal belongs on a permit; a forbidden action has nothing to review".into(),
        )),
        (CedarEffect::Forbid, None) if p.annotation("notify").is_some() => Err(problem(
            "notify",
            "@notify belongs on a review rule; a forbid opens no review".into(),
        )),
        (CedarEffect::Forbid, None) => Ok(Rule::Forbid { reason }),
        (CedarEffect::Forbid, Some(_)) => Err(problem(
            "effect",
            "@effect belongs on a permit; a forbid always denies".into(),
        )),
        (CedarEffect::Permit, None) => {
            for key in ["approvers", "quorum", "ttl", "require_mfa", "notify"] {
                if p.annotation(key).is_some() {
                    return Err(problem(
                        key,
                        format!("@{key} only makes sense with @effect(\"review\")"),
                    ));
                }
            }
            Ok(Rule::Permit {
                executors: executors(p).map_err(|m| problem("executor", m))?,
                credentials: credentials(p).map_err(|m| problem("credentials", m))?,
                reveal: reveal(p).map_err(|m| problem("reveal", m))?,
            })
        }
        (CedarEffect::Permit, Some("review")) => {
            let approvers = p
                .annotation("approvers")
                .ok_or_else(|| {
                    problem(
                        "effect",
                        "a review rule needs @approvers(\"group:NAME, human:ID\")".into(),
                    )
                })?
                .parse::<Approvers>()
                .map_err(|e| problem("approvers", e.to_string()))?;
            let quorum = match p.annotation("quorum") {
                None => Quorum::ONE,
                Some(q) => q.parse().map_err(|e| problem("quorum", format!("{e}")))?,
            };
            let ttl = match p.annotation("ttl") {
                None => None,
                Some(t) => Some(humantime::parse_duration(t).map_err(|e| {
                    problem("ttl", format!("`{t}` is not a duration like 30m: {e}"))
                })?),
            };
            Ok(Rule::Review {
                approvers,
                quorum,
                ttl,
                reason,
                executors: executors(p).map_err(|m| problem("executor", m))?,
                credentials: credentials(p).map_err(|m| problem("credentials", m))?,
                reveal: reveal(p).map_err(|m| problem("reveal", m))?,
                require_mfa: match p.annotation("require_mfa") {
                    None => false,
                    Some("" | "true") => true,
                    Some(other) => {
                        return Err(problem(
                            "require_mfa",
                            format!("@require_mfa takes no value (found \"{other}\")"),
                        ))
                    }
                },
                notify: notify(p).map_err(|m| problem("notify", m))?,
            })
        }
        (CedarEffect::Permit, Some(other)) => Err(problem(
            "effect",
            format!("@effect(\"{other}\") is unknown; the only effect is \"review\""),
        )),
    }
}
