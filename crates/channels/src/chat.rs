//! What the chat channels (Slack, Teams) share: the vote a click becomes (through
//! `Gateway::vote`, exactly as the API's, with the refusals the core does not count as
//! security-relevant audited too, since they came from a click), the stand-in identity an
//! unmapped chat user is audited as, and the text helpers their messages use.

use crate::deliver::Message;
use countersign_core::{
    ActionDigest, Ballot, Clarification, Identity, IdentityKind, Timestamp, VoteContext,
};
use countersign_gateway::{ActionView, Gateway, GatewayError};

/// Why a click counted nothing: a stable code and the sentence shown to the clicker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The stable code (`self_approval`, `not_pending`, `unmapped_chat_user`...).
    pub code: String,
    /// "Refused (code): ..." or "Not recorded (...); try again."
    pub text: String,
    /// Whether the fault was ours (the store), not the click's.
    pub ours: bool,
}

impl Refusal {
    pub(crate) fn new(code: &str, text: impl Into<String>) -> Refusal {
        Refusal {
            code: code.to_string(),
            text: text.into(),
            ours: false,
        }
    }
}

/// Stands for a chat user no identity is mapped to, in the audit log (`slack:U0123`,
/// `teams:<object id>`): a service, so no rule ever counts its vote.
pub(crate) fn unmapped(channel: &str, user: &str) -> Identity {
    let clean: String = user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    Identity::new(format!("{channel}:{clean}"), IdentityKind::Service, [""; 0])
}

/// Records that an unmapped (or bot, or deactivated) chat user's click was refused, and the
/// text that tells them.
pub(crate) async fn refuse_unmapped(
    gateway: &Gateway,
    channel: &str,
    user: &str,
    action: &str,
    code: &str,
    why: &str,
) -> Refusal {
    gateway
        .record_refused_on(&unmapped(channel, user), "vote", action, code)
        .await;
    Refusal::new(
        code,
        format!("Refused ({code}): {why}; only mapped reviewers may vote."),
    )
}

/// `who`'s click as a vote through `Gateway::vote`, bound to `seen` (the digest of the version
/// the clicked message or card showed) when it names one. A refusal the core does not count as
/// security-relevant (a double click, a click after the decision, a click on an out-of-date
/// message) is audited here too, since it came from a chat click.
pub(crate) async fn vote(
    gateway: &std::sync::Arc<Gateway>,
    who: &Identity,
    action: &str,
    seen: Option<ActionDigest>,
    ballot: Ballot,
) -> Result<(), Refusal> {
    let context = VoteContext {
        seen,
        ..VoteContext::default()
    };
    match gateway.vote_in(context, who, action, ballot).await {
        Ok(_) => Ok(()),
        Err(GatewayError::Domain(e)) => {
            if !e.is_security_relevant() {
                gateway
                    .record_refused_on(who, "vote", action, e.code())
                    .await;
            }
            Err(Refusal::new(
                e.code(),
                format!("Refused ({}): {e}", e.code()),
            ))
        }
        Err(GatewayError::NotFound) => Err(Refusal::new("not_found", "Refused: no such action.")),
        Err(e) => {
            tracing::warn!(error = %e, "a chat vote failed");
            Err(Refusal {
                code: e.code().to_string(),
                text: format!("Not recorded ({}); try again.", e.code()),
                ours: true,
            })
        }
    }
}

/// `s` cut to at most `max` characters, with `…` when cut.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// Human-readable time left until `at`.
pub(crate) fn left(at: i64, now: Timestamp) -> String {
    let secs = (at - now.millis()).max(0) / 1000;
    if secs == 0 {
        "no time left".into()
    } else if secs < 120 {
        format!("{secs}s left")
    } else if secs < 7200 {
        format!("{}m left", secs / 60)
    } else {
        format!("{}h {}m left", secs / 3600, (secs % 3600) / 60)
    }
}

/// On a `question_answered` notification, the question answered last (what a chat channel
/// posts as a reply to its message); `None` for any other notification.
pub(crate) fn answered<'a>(message: &'a Message<'_>) -> Option<&'a Clarification> {
    if message.notification.kind != "question_answered" {
        return None;
    }
    message.view.record.review.as_ref().and_then(|r| {
        r.clarifications
            .iter()
            .filter(|c| c.answer.is_some())
            .max_by_key(|c| c.answered_at.map(|t| t.millis()))
    })
}

/// When the review of `view` ends (milliseconds), or 0 if it has none.
pub(crate) fn deadline(view: &ActionView) -> i64 {
    view.record
        .review
        .as_ref()
        .map(|r| r.expires_at.millis())
        .unwrap_or(0)
}

/// The quorum progress of a review as the API shows it (`review` of an action's JSON view):
/// "1 of 2 from group:sre (policy)" per requirement, each name passed through `esc`.
pub(crate) fn quorum_lines(review: &serde_json::Value, esc: fn(&str) -> String) -> Vec<String> {
    let s = |v: &serde_json::Value| esc(v.as_str().unwrap_or(""));
    review["requirements"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let approvers: Vec<String> = r["approvers"]
                .as_array()
                .map(|p| p.iter().map(s).collect())
                .unwrap_or_default();
            format!(
                "{} of {} from {} ({})",
                r["approvals"].as_u64().unwrap_or(0),
                r["quorum"].as_u64().unwrap_or(0),
                approvers.join(" or "),
                s(&r["policy"])
            )
        })
        .collect()
}

/// What a chat button or modal carries: the action's id and, after a space, the digest of the
/// version it showed (`"<id> sha256:<hex>"`). A value with no digest (a message posted before
/// buttons carried one) binds nothing; a malformed digest is `Err`.
pub(crate) fn split_value(value: &str) -> Result<(&str, Option<ActionDigest>), ()> {
    match value.split_once(' ') {
        None => Ok((value, None)),
        Some((id, digest)) => digest.parse().map(|d| (id, Some(d))).map_err(|_| ()),
    }
}

/// The value a button or modal carries for `view` (see [`split_value`]).
pub(crate) fn button_value(view: &ActionView) -> String {
    format!("{} {}", view.record.id, view.record.digest)
}
