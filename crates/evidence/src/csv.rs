//! CSV for spreadsheets (RFC 4180), one row per entry, with the action's name, resource,
//! environment, requester and justification repeated on every row of that action so a filter on
//! one column finds them all.

use std::collections::HashMap;
use std::io::{self, Write};

use crate::entry::Entry;

/// The columns, in order.
pub const COLUMNS: [&str; 15] = [
    "index",
    "time",
    "type",
    "action_id",
    "actor",
    "action",
    "resource",
    "environment",
    "requester",
    "justification",
    "digest",
    "outcome",
    "code",
    "comment",
    "event_json",
];

/// What an action's later rows repeat from its `submitted` entry.
#[derive(Default, Clone)]
pub(crate) struct ActionContext {
    pub action: String,
    pub resource: String,
    pub environment: String,
    pub requester: String,
    pub justification: String,
}

/// Tracks each action's context as entries stream past, oldest first.
#[derive(Default)]
pub(crate) struct Contexts(HashMap<String, ActionContext>);

impl Contexts {
    pub(crate) fn observe(&mut self, e: &Entry) -> ActionContext {
        let Some(id) = &e.action_id else {
            return ActionContext::default();
        };
        if e.kind == "submitted" {
            let ctx = ActionContext {
                action: e.spec("action").unwrap_or_default().to_string(),
                resource: e.spec("resource").unwrap_or_default().to_string(),
                environment: e.spec("environment").unwrap_or_default().to_string(),
                requester: e.str("requester").unwrap_or_default().to_string(),
                justification: e.str("justification").unwrap_or_default().to_string(),
            };
            self.0.insert(id.clone(), ctx.clone());
            return ctx;
        }
        self.0.get(id).cloned().unwrap_or_default()
    }
}

/// The entry's outcome in one word: the policy effect, the verdict, the result.
pub(crate) fn outcome(e: &Entry) -> &str {
    match e.kind.as_str() {
        "submitted" => e.str("effect").unwrap_or_default(),
        "voted" => e.str("verdict").unwrap_or_default(),
        "result_reported" => e.str("outcome").unwrap_or_default(),
        "refused" => "refused",
        "revealed" => "revealed",
        "approved" => "approved",
        "rejected" => "rejected",
        "expired" => "expired",
        "cancelled" => "cancelled",
        _ => "",
    }
}

/// A cell, quoted when needed. A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`,
/// tab, CR) is prefixed with `'`: the text comes from agents and reviewers.
fn cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// Writes `entries` as CSV with a header row; returns the number of rows.
pub fn write_csv<'a, W: Write>(
    entries: impl IntoIterator<Item = &'a Entry>,
    mut w: W,
) -> io::Result<usize> {
    w.write_all(COLUMNS.join(",").as_bytes())?;
    w.write_all(b"\r\n")?;
    let mut contexts = Contexts::default();
    let mut n = 0;
    for e in entries {
        let ctx = contexts.observe(e);
        let index = e.index.to_string();
        let event = serde_json::Value::Object(e.event.clone()).to_string();
        let comment = e
            .str("comment")
            .or_else(|| e.str("reason"))
            .unwrap_or_default();
        let row = [
            index.as_str(),
            &e.time,
            &e.kind,
            e.action_id.as_deref().unwrap_or_default(),
            e.actor.as_deref().unwrap_or_default(),
            &ctx.action,
            &ctx.resource,
            &ctx.environment,
            &ctx.requester,
            &ctx.justification,
            e.str("digest").unwrap_or_default(),
            outcome(e),
            e.str("code").unwrap_or_default(),
            comment,
            &event,
        ];
        let line: Vec<String> = row.iter().map(|c| cell(c)).collect();
        w.write_all(line.join(",").as_bytes())?;
        w.write_all(b"\r\n")?;
        n += 1;
    }
    w.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("-1"), "'-1");
    }
}
