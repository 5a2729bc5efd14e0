//! The review as an Adaptive Card 1.5 (Universal Actions): what, who, why, policy and reason,
//! risk, parameters (truncated), approvals and quorum progress, votes, questions and answers,
//! time left; while the review is open, `Action.Execute` actions: Approve, and Deny, Approve
//! with changes and Ask a question, each behind an `Action.ShowCard` holding its inputs. Once
//! decided, the final state and no actions.
//!
//! Every text that comes from a requester, an agent or a reviewer is a `TextRun` of a
//! `RichTextBlock`, which hosts never read as markdown, so a justification cannot forge a link
//! or a mention.

use countersign_core::Timestamp;
use countersign_gateway::ActionView;
use serde_json::{json, Value};

use crate::chat::{clip, left};

/// The verbs of the card's `Action.Execute` actions.
pub const APPROVE: &str = "approve";
/// Deny, with the optional `deny_comment` input.
pub const DENY: &str = "deny";
/// Approve with changes: the `modify_params` input (a JSON object) and `modify_comment`.
pub const MODIFY: &str = "modify";
/// Ask a question: the `question` input.
pub const ASK: &str = "ask";

/// Longest parameters shown, in characters.
const PARAMS_MAX: usize = 2500;
/// Longest parameters offered for editing in "Approve with changes"; longer ones are changed
/// with the CLI (a card is at most about 28 KB in Teams).
const EDIT_MAX: usize = 8000;

fn run(text: impl Into<String>) -> Value {
    json!({"type": "TextRun", "text": text.into()})
}

fn bold(text: impl Into<String>) -> Value {
    json!({"type": "TextRun", "text": text.into(), "weight": "Bolder"})
}

fn rich(inlines: Vec<Value>) -> Value {
    json!({"type": "RichTextBlock", "inlines": inlines})
}

/// A "Label: value" line.
fn line(label: &str, value: impl Into<String>) -> Value {
    rich(vec![bold(format!("{label}: ")), run(value)])
}

fn input(id: &str, label: &str, required: bool, value: Option<String>) -> Value {
    let mut i = json!({
        "type": "Input.Text", "id": id, "label": label, "isMultiline": true,
        "isRequired": required, "maxLength": 20000,
    });
    if required {
        i["errorMessage"] = json!("Required.");
    }
    if let Some(v) = value {
        i["value"] = json!(v);
    }
    i
}

fn execute(title: &str, verb: &str, view: &ActionView, style: Option<&str>) -> Value {
    // The version this card shows, which the vote binds to.
    let data = json!({"action": view.record.id, "digest": view.record.digest.to_string()});
    let mut a = json!({
        "type": "Action.Execute", "title": title, "verb": verb, "data": data,
    });
    if let Some(s) = style {
        a["style"] = json!(s);
    }
    a
}

fn show(title: &str, body: Vec<Value>, submit: Value) -> Value {
    json!({
        "type": "Action.ShowCard", "title": title,
        "card": {"type": "AdaptiveCard", "body": body, "actions": [submit]},
    })
}

/// The card for `view` at `now`.
pub fn card(view: &ActionView, now: Timestamp) -> Value {
    let api = countersign_api::Action::new(&view.record, None);
    let a = serde_json::to_value(&api).unwrap_or(Value::Null);
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let id = view.record.id.clone();
    let status = s(&a["status"]);
    let pending = matches!(
        view.record.status,
        countersign_core::Status::Pending | countersign_core::Status::NeedsClarification
    );
    let mut body = vec![json!({
        "type": "RichTextBlock",
        "inlines": [{"type": "TextRun", "text": clip(&format!("Review: {} on {}", s(&a["action"]), s(&a["resource"])), 200), "size": "Large", "weight": "Bolder"}],
    })];
    body.push(line("Action", clip(&s(&a["action"]), 200)));
    body.push(line("Resource", clip(&s(&a["resource"]), 200)));
    body.push(line("Environment", clip(&s(&a["environment"]), 200)));
    body.push(line("Requester", s(&a["requester"])));
    if let Some(h) = a["on_behalf_of"].as_str() {
        body.push(line("On behalf of", h));
    }
    body.push(line("Status", status.clone()));
    body.push(line("Justification", clip(&s(&a["justification"]), 2500)));
    let policies: Vec<String> = a["decision"]["policies"]
        .as_array()
        .map(|p| p.iter().map(&s).collect())
        .unwrap_or_default();
    body.push(line("Policy", policies.join(", ")));
    if let Some(r) = a["decision"]["reason"].as_str() {
        body.push(line("Reason", clip(r, 1000)));
    }
    if let Some(an) = view.record.analysis.as_ref() {
        let risk = serde_json::to_value(an.risk)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let mut inlines = vec![bold("Risk: "), run(risk)];
        if !an.tags.is_empty() {
            let tags: Vec<&str> = an.tags.iter().map(String::as_str).collect();
            inlines.push(bold("  Tags: "));
            inlines.push(run(clip(&tags.join(" "), 500)));
        }
        body.push(rich(inlines));
        for i in an.impact.iter().take(5) {
            body.push(rich(vec![run(format!("• {}", clip(i, 300)))]));
        }
    }
    let pretty = serde_json::to_string_pretty(&a["params"]).unwrap_or_default();
    let total = pretty.chars().count();
    body.push(rich(vec![bold("Parameters")]));
    body.push(json!({"type": "RichTextBlock", "inlines": [
        {"type": "TextRun", "text": pretty.chars().take(PARAMS_MAX).collect::<String>(), "fontType": "Monospace"},
    ]}));
    if total > PARAMS_MAX {
        body.push(json!({"type": "RichTextBlock", "inlines": [{
            "type": "TextRun", "isSubtle": true,
            "text": format!("Truncated: {PARAMS_MAX} of {total} characters shown; `countersign get {id}` shows all."),
        }]}));
    }
    if let Some(review) = a.get("review").filter(|r| r.is_object()) {
        let lines = crate::chat::quorum_lines(review, str::to_string);
        body.push(line("Approvals", lines.join("; ")));
        for v in review["votes"].as_array().into_iter().flatten() {
            let mut t = format!("• {} — {}", s(&v["voter"]), s(&v["verdict"]));
            if let Some(c) = v["comment"].as_str() {
                t.push_str(&format!(": {}", clip(c, 200)));
            }
            body.push(rich(vec![run(t)]));
        }
        for c in review["clarifications"].as_array().into_iter().flatten() {
            body.push(rich(vec![
                bold(format!("❓ {}: ", s(&c["asked_by"]))),
                run(clip(&s(&c["question"]), 300)),
            ]));
            if let Some(ans) = c["answer"].as_str() {
                body.push(rich(vec![
                    bold(format!("↳ {}: ", s(&a["requester"]))),
                    run(clip(ans, 300)),
                ]));
            }
        }
        if pending {
            body.push(rich(vec![run(format!(
                "⏳ {} · action {id}",
                left(crate::chat::deadline(view), now)
            ))]));
        }
    }
    let mut card = json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.5",
        "body": body,
    });
    if pending {
        let params =
            serde_json::to_string_pretty(&view.record.spec.params).unwrap_or_else(|_| "{}".into());
        let mut actions = vec![
            execute("Approve", APPROVE, view, Some("positive")),
            show(
                "Deny",
                vec![input("deny_comment", "Reason (optional)", false, None)],
                execute("Deny", DENY, view, Some("destructive")),
            ),
        ];
        if params.chars().count() <= EDIT_MAX {
            actions.push(show(
                "Approve with changes",
                vec![
                    input(
                        "modify_params",
                        "Parameters (JSON object)",
                        true,
                        Some(params),
                    ),
                    input("modify_comment", "Comment (optional)", false, None),
                ],
                execute("Approve with changes", MODIFY, view, None),
            ));
        }
        actions.push(show(
            "Ask a question",
            vec![input(
                "question",
                "Your question to the requester",
                true,
                None,
            )],
            execute("Ask", ASK, view, None),
        ));
        card["actions"] = Value::Array(actions);
    } else {
        if let Some(b) = card["body"].as_array_mut() {
            b.push(line("Final state", format!("{status} · action {id}")));
        }
    }
    card
}
