//! `slack:#CHANNEL` channels, HTTP mode: the review message in Block Kit, posted with
//! `chat.postMessage` and rewritten in place with `chat.update` on every later notification
//! (its buttons removed once decided); the clicks arrive at
//! `POST /v1/channels/slack/interactions` ([`interactions`]), verified by Slack's v0 request
//! signature, and become votes through `Gateway::vote`, exactly as the API's.
//!
//! The Web API is called with `reqwest` and `serde_json` values of the documented shapes
//! (DECISIONS.md, "#15 Slack over plain HTTP"): a reply is `{"ok": true, ...}` or
//! `{"ok": false, "error": "..."}` (HTTP 200 both), a rate limit is HTTP 429 with
//! `Retry-After` seconds.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use countersign_core::Timestamp;
use countersign_gateway::notify::SlackConfig;
use countersign_gateway::ActionView;
use serde_json::{json, Value};

use crate::chat::{clip, left};
use crate::deliver::{Channel, Message, Outcome};

/// Longest parameters shown (pretty-printed), in characters; Slack's section text is at most
/// 3000.
const PARAMS_MAX: usize = 2500;

/// `action_id`s of the message's buttons (and `callback_id`s of their modals).
pub const APPROVE: &str = "countersign_approve";
/// Deny (opens a modal with an optional reason).
pub const DENY: &str = "countersign_deny";
/// Approve with changes (opens a modal with the parameters as editable JSON).
pub const MODIFY: &str = "countersign_modify";
/// Ask a question (opens a modal).
pub const ASK: &str = "countersign_ask";

/// The Slack Web API client (bot token) the channel and the interactions use.
pub struct SlackApi {
    base: String,
    token: countersign_gateway::credentials::Secret,
    http: reqwest::Client,
}

/// What a Web API call came to.
#[derive(Debug)]
pub enum ApiError {
    /// Worth retrying (network, 5xx, 429 with its `Retry-After`, `ratelimited`,
    /// `internal_error`...).
    Retry(String, Option<Duration>),
    /// Slack refused for good (`channel_not_found`, `invalid_auth`, `invalid_blocks`...).
    Refused(String),
}

impl SlackApi {
    /// A client for `config`'s API with requests bounded by `timeout`.
    pub fn new(config: &SlackConfig, timeout: Duration) -> Result<SlackApi, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("[slack]: cannot build the HTTP client: {e}"))?;
        Ok(SlackApi {
            base: config.api_base_url.clone(),
            token: config.bot_token.clone(),
            http,
        })
    }

    /// Calls `method` with a JSON body (Slack's write methods); the reply's fields when `ok`.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, ApiError> {
        let request = self
            .http
            .post(format!("{}{method}", self.base))
            .header("content-type", "application/json; charset=utf-8")
            .body(body.to_string());
        self.send(method, request).await
    }

    /// Calls `method` with form-encoded arguments (Slack's read methods, such as `users.info`,
    /// take no JSON).
    pub async fn call_form(&self, method: &str, args: &[(&str, &str)]) -> Result<Value, ApiError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(args)
            .finish();
        let request = self
            .http
            .post(format!("{}{method}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(method, request).await
    }

    /// `apps.connections.open` with the app-level token: a Socket Mode WebSocket URL.
    pub async fn connections_open(
        &self,
        app_token: &countersign_gateway::credentials::Secret,
    ) -> Result<String, ApiError> {
        let method = "apps.connections.open";
        let request = self
            .http
            .post(format!("{}{method}", self.base))
            .header("content-type", "application/x-www-form-urlencoded");
        let reply = self.send_as(method, request, app_token.expose()).await?;
        reply["url"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ApiError::Retry(format!("{method}: the reply has no url"), None))
    }

    async fn send(
        &self,
        method: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, ApiError> {
        self.send_as(method, request, self.token.expose()).await
    }

    async fn send_as(
        &self,
        method: &str,
        request: reqwest::RequestBuilder,
        token: &str,
    ) -> Result<Value, ApiError> {
        let sent = request.bearer_auth(token).send().await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                return Err(ApiError::Retry(
                    format!("{method}: request failed: {}", e.without_url()),
                    None,
                ))
            }
        };
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            let after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| crate::backoff::retry_after(v, 0));
            return Err(ApiError::Retry(
                format!("{method}: Slack answered {status}"),
                after,
            ));
        }
        if !status.is_success() {
            return Err(ApiError::Refused(format!(
                "{method}: Slack answered {status}"
            )));
        }
        let reply: Value = match response.json().await {
            Ok(v) => v,
            Err(_) => {
                return Err(ApiError::Retry(
                    format!("{method}: the reply is not JSON"),
                    None,
                ))
            }
        };
        if reply.get("ok") == Some(&Value::Bool(true)) {
            return Ok(reply);
        }
        let error = reply
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown_error")
            .chars()
            .take(100)
            .collect::<String>();
        let message = format!("{method}: {error}");
        // Slack's documented transient errors; anything else will not change on retry.
        match error.as_str() {
            "ratelimited"
            | "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout"
            | "team_added_to_org" => Err(ApiError::Retry(message, None)),
            _ => Err(ApiError::Refused(message)),
        }
    }

    /// Posts `body` to an interaction's `response_url` (an ephemeral reply).
    pub async fn respond(&self, response_url: &str, body: &Value) {
        let sent = self
            .http
            .post(response_url)
            .header("content-type", "application/json; charset=utf-8")
            .body(body.to_string())
            .send()
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e.without_url(), "could not answer a Slack interaction");
        }
    }
}

/// A `slack:#CHANNEL` channel.
pub struct Slack {
    api: Arc<SlackApi>,
}

impl Slack {
    /// The channel posting through `api`.
    pub fn new(api: Arc<SlackApi>) -> Slack {
        Slack { api }
    }
}

fn text(s: impl Into<String>) -> Value {
    json!({"type": "mrkdwn", "text": s.into()})
}

/// Escapes `&`, `<` and `>` as Slack's text formatting asks, so a requester's text cannot
/// mention `@channel` or forge a link.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `s` escaped, cut so that the escaped text is at most `max` characters; with how many of
/// `s`'s characters it shows.
fn escape_within(s: &str, max: usize) -> (String, usize) {
    let mut out = String::new();
    let mut len = 0;
    for (shown, c) in s.chars().enumerate() {
        let e = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            _ => "",
        };
        let n = if e.is_empty() { 1 } else { e.len() };
        if len + n > max {
            return (out, shown);
        }
        len += n;
        if e.is_empty() {
            out.push(c);
        } else {
            out.push_str(e);
        }
    }
    (out, s.chars().count())
}

/// The review message's blocks (and its fallback text) for `view` at `now`: what, who, why,
/// policy and reason, analysis, parameters, approvers and quorum progress, votes, time left;
/// the buttons while the action is pending review, the final state once it is not.
pub fn blocks(view: &ActionView, now: Timestamp) -> (String, Vec<Value>) {
    let api = countersign_api::Action::new(&view.record, None);
    let a = serde_json::to_value(&api).unwrap_or(Value::Null);
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let status = s(&a["status"]);
    let pending = matches!(
        view.record.status,
        countersign_core::Status::Pending | countersign_core::Status::NeedsClarification
    );
    let action = s(&a["action"]);
    let resource = s(&a["resource"]);
    let environment = s(&a["environment"]);
    let headline = clip(&format!("Review: {action} on {resource}"), 150);
    // Top-level text is shown in notifications and parsed as mrkdwn: escaped too.
    let fallback = escape(&clip(
        &format!(
            "countersign review {}: {} on {} ({}) is {}",
            view.record.id, action, resource, environment, status
        ),
        1000,
    ));
    let mut out = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": headline, "emoji": false},
    })];
    let mut fields = vec![
        text(format!("*Action*\n`{}`", escape(&clip(&action, 200)))),
        text(format!("*Resource*\n`{}`", escape(&clip(&resource, 200)))),
        text(format!(
            "*Environment*\n{}",
            escape(&clip(&environment, 200))
        )),
        text(format!("*Requester*\n{}", escape(&s(&a["requester"])))),
    ];
    if let Some(h) = a["on_behalf_of"].as_str() {
        fields.push(text(format!("*On behalf of*\n{}", escape(h))));
    }
    fields.push(text(format!("*Status*\n{}", escape(&status))));
    out.push(json!({"type": "section", "fields": fields}));
    let (justification, _) = escape_within(&s(&a["justification"]), 2500);
    out.push(json!({"type": "section", "text": text(format!(
        "*Justification*\n{justification}"
    ))}));
    let policies: Vec<String> = a["decision"]["policies"]
        .as_array()
        .map(|p| p.iter().map(|x| escape(&s(x))).collect())
        .unwrap_or_default();
    let mut policy = format!("*Policy* {}", policies.join(", "));
    if let Some(r) = a["decision"]["reason"].as_str() {
        policy.push_str(&format!("\n*Reason* {}", escape(&clip(r, 1000))));
    }
    out.push(json!({"type": "section", "text": text(policy)}));
    if let Some(an) = view.record.analysis.as_ref() {
        let mut t = format!(
            "*Risk* {}",
            serde_json::to_value(an.risk)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        );
        if !an.tags.is_empty() {
            let tags: Vec<String> = an.tags.iter().map(|t| format!("`{}`", escape(t))).collect();
            t.push_str(&format!("  *Tags* {}", tags.join(" ")));
        }
        for i in an.impact.iter().take(5) {
            t.push_str(&format!("\n• {}", escape(&clip(i, 300))));
        }
        out.push(json!({"type": "section", "text": text(clip(&t, 2900))}));
    }
    let pretty = serde_json::to_string_pretty(&a["params"]).unwrap_or_default();
    let total = pretty.chars().count();
    let (shown, n) = escape_within(&pretty, PARAMS_MAX);
    let params = if n < total {
        format!(
            "*Parameters*\n```{shown}```\n_Truncated: {n} of {total} characters shown; `countersign get {}` shows all._",
            view.record.id
        )
    } else {
        format!("*Parameters*\n```{shown}```")
    };
    out.push(json!({"type": "section", "text": text(params)}));
    if let Some(review) = a.get("review").filter(|r| r.is_object()) {
        let lines = crate::chat::quorum_lines(review, escape);
        let mut t = format!("*Approvals* {}", lines.join("; "));
        for v in review["votes"].as_array().into_iter().flatten() {
            let mut line = format!("\n• {} — {}", escape(&s(&v["voter"])), s(&v["verdict"]));
            if let Some(c) = v["comment"].as_str() {
                line.push_str(&format!(": {}", escape(&clip(c, 200))));
            }
            t.push_str(&line);
        }
        for c in review["clarifications"].as_array().into_iter().flatten() {
            t.push_str(&format!(
                "\n❓ {}: {}",
                escape(&s(&c["asked_by"])),
                escape(&clip(&s(&c["question"]), 300))
            ));
            if let Some(ans) = c["answer"].as_str() {
                t.push_str(&format!("\n↳ {}", escape(&clip(ans, 300))));
            }
        }
        out.push(json!({"type": "section", "text": text(clip(&t, 2900))}));
        if pending {
            out.push(json!({"type": "context", "elements": [
                text(format!("⏳ {} · action `{}`", left(crate::chat::deadline(view), now), view.record.id)),
            ]}));
        }
    }
    if pending {
        // Each button carries the version this message shows: a click on it after another
        // reviewer's change (before the rewrite arrives) is refused, never counted for what the
        // clicker did not see.
        let id = crate::chat::button_value(view);
        out.push(json!({
            "type": "actions",
            "block_id": "countersign_vote",
            "elements": [
                {"type": "button", "action_id": APPROVE, "style": "primary", "value": id,
                 "text": {"type": "plain_text", "text": "Approve"}},
                {"type": "button", "action_id": DENY, "style": "danger", "value": id,
                 "text": {"type": "plain_text", "text": "Deny"}},
                {"type": "button", "action_id": MODIFY, "value": id,
                 "text": {"type": "plain_text", "text": "Approve with changes"}},
                {"type": "button", "action_id": ASK, "value": id,
                 "text": {"type": "plain_text", "text": "Ask a question"}},
            ],
        }));
    } else {
        out.push(json!({"type": "context", "elements": [
            text(format!("*Final state: {}* · action `{}`", escape(&status), view.record.id)),
        ]}));
    }
    (fallback, out)
}

#[async_trait]
impl Channel for Slack {
    async fn deliver(&self, message: Message<'_>) -> Outcome {
        let Some(channel) = message.notification.channel.strip_prefix("slack:") else {
            return Outcome::Refused("not a slack: channel".into());
        };
        let (fallback, blocks) = blocks(message.view, message.now);
        // The stored id is `CHANNEL_ID/TS` (chat.update needs the channel's id, not its name).
        if let Some((id, ts)) = message.earlier.as_deref().and_then(|e| e.split_once('/')) {
            let body = json!({"channel": id, "ts": ts, "text": fallback, "blocks": blocks});
            match self.api.call("chat.update", &body).await {
                Ok(_) => {
                    if let Err(e) = self.answer_in_thread(&message, id, ts).await {
                        return outcome(e);
                    }
                    return Outcome::Sent(Some(format!("{id}/{ts}")));
                }
                // Deleted in Slack: post it again below.
                Err(ApiError::Refused(e))
                    if e.ends_with("message_not_found") || e.ends_with("cant_update_message") => {}
                Err(e) => return outcome(e),
            }
        }
        let body = json!({"channel": channel, "text": fallback, "blocks": blocks});
        match self.api.call("chat.postMessage", &body).await {
            Ok(reply) => {
                let id = reply["channel"].as_str().unwrap_or(channel);
                match reply["ts"].as_str() {
                    Some(ts) => Outcome::Sent(Some(format!("{id}/{ts}"))),
                    None => Outcome::Sent(None),
                }
            }
            Err(e) => outcome(e),
        }
    }

    fn updates_in_place(&self) -> bool {
        true
    }
}

impl Slack {
    /// On `question_answered`, the requester's latest answer as a reply in the message's thread
    /// (the rewritten message shows it too). At least once, like every notification: a crash
    /// between this reply and its record repeats the reply.
    async fn answer_in_thread(
        &self,
        message: &Message<'_>,
        channel: &str,
        ts: &str,
    ) -> Result<(), ApiError> {
        let Some(c) = crate::chat::answered(message) else {
            return Ok(());
        };
        let text = format!(
            "*{}* asked: {}\n*{}* answered: {}",
            escape(&c.asked_by),
            escape(&clip(&c.question, 1000)),
            escape(&message.view.record.requester),
            escape(&clip(c.answer.as_deref().unwrap_or(""), 2000))
        );
        self.api
            .call(
                "chat.postMessage",
                &json!({"channel": channel, "thread_ts": ts, "text": text}),
            )
            .await
            .map(|_| ())
    }
}

fn outcome(e: ApiError) -> Outcome {
    match e {
        ApiError::Retry(error, after) => Outcome::Retry { error, after },
        ApiError::Refused(e) => Outcome::Refused(e),
    }
}

pub mod interactions;
pub mod socket;
pub use interactions::interactions_router;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn escaping_never_pushes_a_text_past_its_limit_or_splits_an_entity() {
        let (e, n) = escape_within(&"<".repeat(3000), 2500);
        assert_eq!((e.len(), n), (2500 / 4 * 4, 625));
        assert!(e.ends_with("&lt;"));
        let (e, n) = escape_within("a&b", 4);
        assert_eq!((e.as_str(), n), ("a", 1));
        assert_eq!(escape_within("plain", 10), ("plain".to_string(), 5));
        assert_eq!(
            escape("<!channel> & <@U1>"),
            "&lt;!channel&gt; &amp; &lt;@U1&gt;"
        );
    }
}
