//! Human views of API answers: the reviews table, an action's summary, the keys table. Text for
//! people (scripts use `--output json`); colour is written here and stripped by
//! [`crate::output::Output::print`] when it is off.

use comfy_table::{presets, Attribute, Cell, Color, ContentArrangement, Table};
use countersign_api::time::rfc3339;
use countersign_api::{Action, ManagedKey, Review, ReviewList, Submitted};
use countersign_core::{Analysis, Effect, Outcome, Risk, Status, Timestamp, Verdict};
use std::fmt::Write as _;

use crate::ids::shortest_unique;
use crate::output::paint;

/// The fewest characters of an id a listing shows.
const SHOWN_ID: usize = 8;

/// `3s`, `12m`, `5h`, `4d`: a span of milliseconds, coarsely.
pub fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `2026-12-01 02:41:22Z`: an instant to the second.
fn at(t: Timestamp) -> String {
    let text = rfc3339(t);
    match (text.get(..10), text.get(11..19)) {
        (Some(day), Some(time)) => format!("{day} {time}Z"),
        _ => text,
    }
}

fn ago(t: Timestamp, now: Timestamp) -> String {
    format!("{} ago", span(now.millis() - t.millis()))
}

fn status(s: Status) -> String {
    let text = s.as_str();
    match s {
        Status::Allowed | Status::Approved | Status::Succeeded => paint::good(text),
        Status::Pending | Status::NeedsClarification => paint::wait(text),
        _ => paint::bad(text),
    }
}

fn status_colour(s: Status) -> Color {
    match s {
        Status::Allowed | Status::Approved | Status::Succeeded => Color::Green,
        Status::Pending | Status::NeedsClarification => Color::Yellow,
        _ => Color::Red,
    }
}

fn risk_colour(r: Risk) -> Color {
    match r {
        Risk::Low => Color::Green,
        Risk::Medium => Color::Yellow,
        Risk::High | Risk::Critical => Color::Red,
    }
}

/// What the analyzers found: the risk, the tags and the impact lines.
fn analysis(out: &mut String, a: &Analysis) {
    let risk = match a.risk {
        Risk::Low => paint::good(a.risk.as_str()),
        Risk::Medium => paint::wait(a.risk.as_str()),
        Risk::High | Risk::Critical => paint::bad(a.risk.as_str()),
    };
    let tags: Vec<&str> = a.tags.iter().map(String::as_str).collect();
    let tags = if tags.is_empty() {
        String::new()
    } else {
        format!("  {}", tags.join(", "))
    };
    line(out, "Risk", &format!("{risk}{tags}"));
    for l in &a.impact {
        let _ = writeln!(out, "  - {l}");
    }
}

fn quorum(review: Option<&Review<'_>>) -> String {
    review.map_or_else(String::new, |r| {
        format!("{}/{}", r.least_approvals(), r.quorum())
    })
}

fn time_left(s: Status, review: Option<&Review<'_>>, now: Timestamp) -> String {
    match review {
        Some(r) if s.is_open_review() => {
            let left = r.expires_at().millis() - now.millis();
            if left > 0 {
                span(left)
            } else {
                "expiring".into()
            }
        }
        _ => "-".into(),
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_HORIZONTAL_ONLY)
        .enforce_styling()
        .set_header(
            header
                .iter()
                .map(|h| Cell::new(h).add_attribute(Attribute::Bold)),
        );
    // Fit a real terminal's width; a pseudo-terminal without a size gets the natural width.
    match t.width() {
        Some(w) if w >= 60 => t.set_content_arrangement(ContentArrangement::Dynamic),
        _ => t.set_content_arrangement(ContentArrangement::Disabled),
    };
    t
}

/// `countersign reviews`: one row per action.
pub fn reviews(list: &ReviewList<'_>, now: Timestamp) -> String {
    if list.reviews.is_empty() {
        return "No reviews.\n".into();
    }
    let ids: Vec<&str> = list.reviews.iter().map(Action::id).collect();
    let with_status = list.reviews.iter().any(|a| a.status() != Status::Pending);
    let with_risk = list.reviews.iter().any(|a| a.analysis().is_some());
    let mut header = vec!["ID", "ACTION", "RESOURCE", "ENV", "REQUESTER"];
    if with_risk {
        header.push("RISK");
    }
    if with_status {
        header.push("STATUS");
    }
    header.extend(["AGE", "LEFT", "QUORUM"]);
    let mut t = table(&header);
    for a in &list.reviews {
        let requester = match a.on_behalf_of() {
            Some(human) => format!("{} for {human}", a.requester()),
            None => a.requester().to_string(),
        };
        let mut row = vec![
            Cell::new(shortest_unique(a.id(), &ids, SHOWN_ID)).fg(Color::Cyan),
            Cell::new(a.action()).add_attribute(Attribute::Bold),
            Cell::new(a.resource()),
            Cell::new(a.environment()),
            Cell::new(requester),
        ];
        if with_risk {
            row.push(match a.analysis() {
                Some(x) => Cell::new(x.risk.as_str()).fg(risk_colour(x.risk)),
                None => Cell::new("-"),
            });
        }
        if with_status {
            row.push(Cell::new(a.status().as_str()).fg(status_colour(a.status())));
        }
        row.extend([
            Cell::new(span(now.millis() - a.created_at().millis())),
            Cell::new(time_left(a.status(), a.review(), now)).fg(Color::Yellow),
            Cell::new(quorum(a.review())),
        ]);
        t.add_row(row);
    }
    let mut out = format!("{t}\n");
    if list.next_cursor.is_some() {
        out += &paint::dim("(more: narrow with --status)\n");
    }
    out
}

fn line(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "{} {value}", paint::bold(&format!("{label:<13}")));
}

fn decision(out: &mut String, effect: Effect, policies: &[String], reason: Option<&str>) {
    let mut text = effect.as_str().to_string();
    if !policies.is_empty() {
        let _ = write!(text, " by {}", policies.join(", "));
    }
    if let Some(r) = reason {
        let _ = write!(text, ": {r}");
    }
    line(out, "Decision", &text);
}

fn review(out: &mut String, s: Status, r: &Review<'_>, now: Timestamp) {
    let deadline = if s.is_open_review() {
        format!("expires in {}", time_left(s, Some(r), now))
    } else {
        format!("closed (deadline was {})", at(r.expires_at()))
    };
    line(
        out,
        "Review",
        &format!("{} approvals, {deadline}", quorum(Some(r))),
    );
    for q in r.requirements() {
        let _ = writeln!(
            out,
            "  {} {}/{} of {}",
            paint::dim("-"),
            q.approvals(),
            q.quorum(),
            q.approvers().join(", ")
        );
    }
    if !r.votes().is_empty() {
        let _ = writeln!(out, "{}", paint::bold("Votes"));
        for v in r.votes() {
            let verdict = match v.verdict() {
                Verdict::Approve | Verdict::Modify => paint::good(v.verdict().as_str()),
                Verdict::Deny => paint::bad(v.verdict().as_str()),
                Verdict::Clarify => paint::wait(v.verdict().as_str()),
            };
            let stale = if v.counts() {
                String::new()
            } else {
                paint::dim(" (on earlier parameters)")
            };
            let comment = v
                .comment()
                .map_or_else(String::new, |c| format!(": \"{c}\""));
            let _ = writeln!(
                out,
                "  {}  {:<12} {verdict}{stale}{comment}",
                paint::dim(&at(v.at())),
                v.voter()
            );
        }
    }
    for c in r.clarifications() {
        line(
            out,
            "Question",
            &format!("{} asked: {}", c.asked_by(), c.question()),
        );
        match c.answer() {
            Some(a) => {
                let _ = writeln!(out, "  answer: {a}");
            }
            None => {
                let _ = writeln!(out, "  {}", paint::wait("not answered yet"));
            }
        }
    }
}

fn grant(out: &mut String, g: Option<&countersign_api::Grant<'_>>, now: Timestamp) {
    let Some(g) = g else { return };
    let state = match g.redeemed_at() {
        Some(t) => format!("redeemed {}", ago(t, now)),
        None if g.expires_at() <= now => paint::bad("expired unused"),
        None => format!(
            "usable for {}",
            span(g.expires_at().millis() - now.millis())
        ),
    };
    line(out, "Grant", &state);
    if let Some(token) = g.token() {
        let _ = writeln!(out, "  token: {token}");
    }
}

/// `countersign show` (and the answer to a vote, an answer or a cancel).
pub fn action(a: &Action<'_>, now: Timestamp) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}  {}",
        paint::bold(a.action()),
        a.resource(),
        status(a.status())
    );
    line(&mut out, "Id", a.id());
    if !a.environment().is_empty() {
        line(&mut out, "Environment", a.environment());
    }
    let requester = match a.on_behalf_of() {
        Some(human) => format!("{} for {human}", a.requester()),
        None => a.requester().to_string(),
    };
    line(
        &mut out,
        "Requested",
        &format!(
            "by {requester}, {} ({})",
            ago(a.created_at(), now),
            at(a.created_at())
        ),
    );
    if !a.justification().is_empty() {
        line(&mut out, "Justification", a.justification());
    }
    let d = a.decision();
    decision(&mut out, d.effect(), d.policies(), d.reason());
    if !d.credentials().is_empty() {
        line(
            &mut out,
            "Credentials",
            &format!(
                "releases {} to the grant's redeemer",
                d.credentials().join(", ")
            ),
        );
    }
    if let Some(x) = a.analysis() {
        analysis(&mut out, x);
    }
    if a.params().is_empty() {
        line(&mut out, "Parameters", &paint::dim("none"));
    } else {
        let _ = writeln!(out, "{}", paint::bold("Parameters"));
        let pretty = serde_json::to_string_pretty(a.params()).unwrap_or_default();
        for l in pretty.lines() {
            let _ = writeln!(out, "  {l}");
        }
    }
    if let Some(r) = a.review() {
        review(&mut out, a.status(), r, now);
    }
    grant(&mut out, a.grant(), now);
    if let Some(res) = a.result() {
        let mut text = match res.outcome() {
            Outcome::Succeeded => paint::good(res.outcome().as_str()),
            Outcome::Failed => paint::bad(res.outcome().as_str()),
        };
        if let Some(code) = res.exit_code() {
            let _ = write!(text, " (exit {code})");
        }
        let _ = write!(text, ", reported by {}", res.reported_by());
        if let Some(detail) = res.detail() {
            let _ = write!(text, ": {detail}");
        }
        line(&mut out, "Result", &text);
    }
    out
}

/// `countersign submit`: what the answer says.
pub fn submitted(s: &Submitted<'_>, now: Timestamp) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} {}", paint::bold(s.id()), status(s.status()));
    let d = s.decision();
    decision(&mut out, d.effect(), d.policies(), d.reason());
    if let Some(r) = s.review() {
        line(
            &mut out,
            "Review",
            &format!(
                "{} approvals from {}, expires in {}",
                quorum(Some(r)),
                r.approvers().join(", "),
                time_left(s.status(), Some(r), now)
            ),
        );
    }
    grant(&mut out, s.grant(), now);
    out
}

/// The state of a key at `now`.
fn key_state(k: &ManagedKey, now: Timestamp) -> (String, Color) {
    match (k.revoked_at, k.expires_at) {
        (Some(t), _) => (format!("revoked {}", at(t)), Color::Red),
        (None, Some(t)) if t <= now => (format!("expired {}", at(t)), Color::Red),
        (None, Some(t)) => (format!("active until {}", at(t)), Color::Green),
        (None, None) => ("active".into(), Color::Green),
    }
}

/// `countersign keys list`.
pub fn keys(keys: &[ManagedKey], now: Timestamp) -> String {
    if keys.is_empty() {
        return "No managed keys.\n".into();
    }
    let mut t = table(&[
        "ID", "IDENTITY", "KIND", "GROUPS", "SPONSOR", "CREATED", "STATE",
    ]);
    for k in keys {
        let (state, colour) = key_state(k, now);
        let groups: Vec<&str> = k.groups.iter().map(String::as_str).collect();
        t.add_row(vec![
            Cell::new(&k.id).fg(Color::Cyan),
            Cell::new(&k.identity).add_attribute(Attribute::Bold),
            Cell::new(k.kind.as_str()),
            Cell::new(groups.join(",")),
            Cell::new(k.sponsor.as_deref().unwrap_or("")),
            Cell::new(format!("{} by {}", ago(k.created_at, now), k.created_by)),
            Cell::new(state).fg(colour),
        ]);
    }
    format!("{t}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_coarse() {
        assert_eq!(span(-5), "0s");
        assert_eq!(span(59_999), "59s");
        assert_eq!(span(60_000), "1m");
        assert_eq!(span(3_600_000), "1h");
        assert_eq!(span(47 * 3_600_000), "47h");
        assert_eq!(span(3 * 86_400_000), "3d");
    }

    #[test]
    fn instants_are_shown_to_the_second() {
        assert_eq!(at(Timestamp(1_764_556_882_123)), "2025-12-01 02:41:22Z");
    }
}
