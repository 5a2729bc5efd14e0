//! `POST /v1/channels/slack/interactions`: Slack's interactivity requests (HTTP mode).
//!
//! Each request is verified first (Slack's v0 signature: HMAC-SHA256 under the signing secret
//! over `v0:{X-Slack-Request-Timestamp}:{body}`, compared in constant time; a timestamp more
//! than 5 minutes from the gateway's clock is refused, so a captured request cannot be
//! replayed later). The clicking Slack user is mapped to a human identity by the identities'
//! `slack_user_id`; the vote then goes through `Gateway::vote`, exactly as the API's: every
//! rule is the core's. A refusal is answered as an ephemeral message through the interaction's
//! `response_url` (or as the modal's field error) and is in the audit log.
//!
//! Buttons: Approve votes at once; Deny, Approve with changes and Ask a question open a modal
//! (`views.open`) whose submission (`view_submission`) votes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use countersign_core::{Ballot, Identity};
use countersign_gateway::credentials::Secret;
use countersign_gateway::notify::SlackConfig;
use countersign_gateway::{ChatHuman, Gateway};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::{SlackApi, APPROVE, ASK, DENY, MODIFY};

/// How far a request's timestamp may be from the gateway's clock (Slack's recommendation).
pub const MAX_SKEW_SECS: i64 = 300;

/// The interactivity route's state.
pub(crate) struct Interactions {
    gateway: Arc<Gateway>,
    api: Arc<SlackApi>,
    signing_secret: Secret,
}

impl Interactions {
    pub(crate) fn new(gateway: Arc<Gateway>, config: &SlackConfig, api: Arc<SlackApi>) -> Self {
        Interactions {
            gateway,
            api,
            signing_secret: config.signing_secret.clone(),
        }
    }

    pub(crate) fn api(&self) -> &Arc<SlackApi> {
        &self.api
    }
}

/// The route `POST /v1/channels/slack/interactions`.
pub fn interactions_router(
    gateway: Arc<Gateway>,
    config: &SlackConfig,
    api: Arc<SlackApi>,
) -> Router {
    Router::new()
        .route("/v1/channels/slack/interactions", post(handle))
        .with_state(Arc::new(Interactions::new(gateway, config, api)))
}

/// Why a request's signature is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// No or unreadable `X-Slack-Request-Timestamp`/`X-Slack-Signature`.
    Missing,
    /// The timestamp is more than [`MAX_SKEW_SECS`] from now.
    Stale,
    /// The signature does not match.
    Forged,
}

/// Checks Slack's v0 signature of `body` at `now_secs`.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), SignatureError> {
    let ts: i64 = timestamp
        .and_then(|t| t.trim().parse().ok())
        .ok_or(SignatureError::Missing)?;
    let given = signature
        .and_then(|s| s.strip_prefix("v0="))
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Missing)?;
    if (now_secs - ts).abs() > MAX_SKEW_SECS {
        return Err(SignatureError::Stale);
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return Err(SignatureError::Forged);
    };
    mac.update(format!("v0:{ts}:").as_bytes());
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&given).map_err(|_| SignatureError::Forged)
}

/// The `v0=...` signature of `body` at `timestamp` (what Slack sends; for tests and tools).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn handle(State(s): State<Arc<Interactions>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now_secs = s.gateway.time().millis().div_euclid(1000);
    if let Err(e) = verify(
        s.signing_secret.expose().as_bytes(),
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        &body,
        now_secs,
    ) {
        let (code, message) = match e {
            SignatureError::Missing => (
                "slack_signature_missing",
                "X-Slack-Request-Timestamp and X-Slack-Signature (v0=...) are required",
            ),
            SignatureError::Stale => (
                "slack_timestamp_stale",
                "the request's timestamp is more than 5 minutes from now",
            ),
            SignatureError::Forged => (
                "slack_signature_invalid",
                "the request's signature does not match",
            ),
        };
        s.gateway
            .record_refused(
                &crate::chat::unmapped("slack", "unverified"),
                "slack_interaction",
                code,
            )
            .await;
        return refuse(StatusCode::UNAUTHORIZED, code, message);
    }
    let payload = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "payload")
        .and_then(|(_, v)| serde_json::from_str::<Value>(&v).ok());
    let Some(p) = payload else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be form-encoded with a JSON `payload`",
        );
    };
    match dispatch(&s, &p).await {
        Some(answer) => Json(answer).into_response(),
        None => StatusCode::OK.into_response(),
    }
}

/// Handles a verified interaction payload (from the HTTP route or a Socket Mode envelope);
/// what to answer Slack with, if anything beyond an empty acknowledgement.
pub(crate) async fn dispatch(s: &Interactions, p: &Value) -> Option<Value> {
    match p["type"].as_str() {
        Some("block_actions") => block_actions(s, p).await,
        Some("view_submission") => view_submission(s, p).await,
        // Other interactions (view_closed, shortcuts) are acknowledged and ignored.
        _ => None,
    }
}

/// The human a Slack user is: the identity whose `slack_user_id` it is, else the one human
/// whose email is the Slack profile's confirmed email (`users.info`) — a configured human's
/// `email`, or the verified email a person from the identity provider signed in with
/// (`Gateway::chat_human_by_email`); or the refusal (ephemeral text) and its audit entry. Bots,
/// deactivated users and an email that names more than one identity are refused.
async fn who(s: &Interactions, user: &str, action: &str) -> Result<Identity, String> {
    if let Some(i) = s.gateway.identities().by_slack_user(user) {
        return Ok((**i).clone());
    }
    const UNMAPPED: &str = "your Slack user is not mapped to a countersign human identity (an \
        identity's `slack_user_id`, or your confirmed Slack email equal to a human's configured \
        `email` or to the verified email they signed in with)";
    let (code, text) = match s.api.call_form("users.info", &[("user", user)]).await {
        Ok(reply) => {
            let u = &reply["user"];
            let email = u["profile"]["email"]
                .as_str()
                .filter(|_| u["is_email_confirmed"] == true);
            if u["is_bot"] == true || u["is_app_user"] == true {
                (
                    "chat_user_is_a_bot",
                    "a bot or app user may not vote".to_string(),
                )
            } else if u["deleted"] == true {
                (
                    "chat_user_deactivated",
                    "a deactivated Slack user may not vote".to_string(),
                )
            } else if let Some(email) = email {
                match s.gateway.chat_human_by_email(email).await {
                    Ok(ChatHuman::Mapped(i)) => return Ok(i),
                    Ok(ChatHuman::Unmapped) => ("unmapped_chat_user", UNMAPPED.to_string()),
                    Ok(ChatHuman::Ambiguous(ids)) => {
                        tracing::warn!(
                            slack_user = user,
                            ?ids,
                            "a Slack user's email is the email of more than one identity; \
                             refused (set `slack_user_id` on the right one)"
                        );
                        (
                            "chat_user_ambiguous",
                            "your confirmed Slack email is the email of more than one countersign \
                             identity; an administrator can map you with `slack_user_id`"
                                .to_string(),
                        )
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reading recorded contacts failed; the Slack user is treated as unmapped");
                        ("unmapped_chat_user", UNMAPPED.to_string())
                    }
                }
            } else {
                ("unmapped_chat_user", UNMAPPED.to_string())
            }
        }
        Err(e) => {
            tracing::warn!(error = ?e, "users.info failed; the Slack user is treated as unmapped");
            (
                "unmapped_chat_user",
                "your Slack user is not mapped to a countersign human identity (an identity's `slack_user_id`)".to_string(),
            )
        }
    };
    Err(
        crate::chat::refuse_unmapped(&s.gateway, "slack", user, action, code, &text)
            .await
            .text,
    )
}

/// Votes through the shared chat path (`Gateway::vote`); the refusal's text if refused.
async fn vote(
    s: &Interactions,
    who: &Identity,
    action: &str,
    seen: Option<countersign_core::ActionDigest>,
    ballot: Ballot,
) -> Result<(), String> {
    crate::chat::vote(&s.gateway, who, action, seen, ballot)
        .await
        .map_err(|r| r.text)
}

fn ephemeral(s: &Interactions, response_url: Option<&str>, text: String) {
    // Only to Slack's own hooks: a signed payload names it, but never send elsewhere.
    let Some(url) = response_url.map(str::to_string) else {
        return;
    };
    let api = s.api.clone();
    tokio::spawn(async move {
        api.respond(
            &url,
            &json!({"response_type": "ephemeral", "replace_original": false, "text": text}),
        )
        .await;
    });
}

async fn block_actions(s: &Interactions, p: &Value) -> Option<Value> {
    let user = p["user"]["id"].as_str().unwrap_or("");
    let response_url = p["response_url"].as_str();
    let a = p["actions"].as_array().and_then(|a| a.first())?;
    let (Some(kind), Some(value)) = (a["action_id"].as_str(), a["value"].as_str()) else {
        return None;
    };
    // The value is what our own message carried (Slack signs the payload): the action's id
    // and the digest of the version the message showed.
    let Ok((action, seen)) = crate::chat::split_value(value) else {
        return None;
    };
    let who = match who(s, user, action).await {
        Ok(w) => w,
        Err(text) => {
            ephemeral(s, response_url, text);
            return None;
        }
    };
    match kind {
        APPROVE => {
            if let Err(text) = vote(s, &who, action, seen, Ballot::Approve { comment: None }).await
            {
                ephemeral(s, response_url, text);
            }
        }
        DENY | MODIFY | ASK => {
            let trigger = p["trigger_id"].as_str()?;
            let view = match modal(s, kind, action, seen).await {
                Ok(v) => v,
                Err(text) => {
                    ephemeral(s, response_url, text);
                    return None;
                }
            };
            if let Err(e) = s
                .api
                .call("views.open", &json!({"trigger_id": trigger, "view": view}))
                .await
            {
                tracing::warn!(error = ?e, "views.open failed");
                ephemeral(
                    s,
                    response_url,
                    "Could not open the form; try again.".into(),
                );
            }
        }
        _ => {}
    }
    None
}

fn input(
    block: &str,
    label: &str,
    multiline: bool,
    optional: bool,
    initial: Option<String>,
) -> Value {
    let mut element =
        json!({"type": "plain_text_input", "action_id": "value", "multiline": multiline});
    if let Some(v) = initial {
        element["initial_value"] = Value::String(v);
    }
    json!({
        "type": "input", "block_id": block, "optional": optional,
        "label": {"type": "plain_text", "text": label},
        "element": element,
    })
}

/// The modal a button opens (its `private_metadata` is the action's id and the digest its vote
/// binds to: the button's for a deny or a question, the version the modal shows for a modify).
async fn modal(
    s: &Interactions,
    kind: &str,
    action: &str,
    seen: Option<countersign_core::ActionDigest>,
) -> Result<Value, String> {
    let mut metadata = match seen {
        Some(d) => format!("{action} {d}"),
        None => action.to_string(),
    };
    let (title, submit, blocks) = match kind {
        DENY => (
            "Deny",
            "Deny",
            vec![input("comment", "Reason (optional)", true, true, None)],
        ),
        ASK => (
            "Ask a question",
            "Ask",
            vec![input(
                "question",
                "Your question to the requester",
                true,
                false,
                None,
            )],
        ),
        _ => {
            let view = s
                .gateway
                .notification_view(action)
                .await
                .map_err(|_| "Could not read the action; try again.".to_string())?
                .ok_or_else(|| "Refused: no such action.".to_string())?;
            let params = serde_json::to_string_pretty(&view.record.spec.params)
                .unwrap_or_else(|_| "{}".into());
            metadata = crate::chat::button_value(&view);
            (
                "Approve with changes",
                "Approve",
                vec![
                    input(
                        "params",
                        "Parameters (JSON object)",
                        true,
                        false,
                        Some(params),
                    ),
                    input("comment", "Comment (optional)", true, true, None),
                ],
            )
        }
    };
    Ok(json!({
        "type": "modal",
        "callback_id": kind,
        "private_metadata": metadata,
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": submit},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }))
}

fn errors(block: &str, text: &str) -> Option<Value> {
    let clipped: String = text.chars().take(150).collect();
    Some(json!({"response_action": "errors", "errors": {block: clipped}}))
}

async fn view_submission(s: &Interactions, p: &Value) -> Option<Value> {
    let user = p["user"]["id"].as_str().unwrap_or("");
    let view = &p["view"];
    let kind = view["callback_id"].as_str().unwrap_or("");
    let Ok((action, seen)) =
        crate::chat::split_value(view["private_metadata"].as_str().unwrap_or(""))
    else {
        return None;
    };
    let value = |block: &str| {
        view["state"]["values"][block]["value"]["value"]
            .as_str()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let first = match kind {
        DENY => "comment",
        ASK => "question",
        MODIFY => "params",
        _ => return None,
    };
    let who = match who(s, user, action).await {
        Ok(w) => w,
        Err(text) => return errors(first, &text),
    };
    let ballot = match kind {
        DENY => Ballot::Deny {
            comment: value("comment"),
        },
        ASK => match value("question") {
            Some(question) => Ballot::Clarify { question },
            None => return errors("question", "Write a question."),
        },
        _ => {
            let params = value("params").unwrap_or_default();
            match serde_json::from_str::<Value>(&params) {
                Ok(v) if v.is_object() => Ballot::Modify {
                    params: v,
                    comment: value("comment"),
                },
                Ok(_) => return errors("params", "The parameters must be a JSON object."),
                Err(e) => return errors("params", &format!("Not valid JSON: {e}")),
            }
        }
    };
    match vote(s, &who, action, seen, ballot).await {
        // An empty 200 closes the modal.
        Ok(()) => None,
        Err(text) => errors(first, &text),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    // Slack's documented example (api.slack.com/authentication/verifying-requests-from-slack).
    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const TS: i64 = 1531420618;
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn slacks_documented_example_verifies_and_tampering_does_not() {
        assert_eq!(sign(SECRET, TS, BODY), SIG);
        let ts = TS.to_string();
        assert_eq!(verify(SECRET, Some(&ts), Some(SIG), BODY, TS + 10), Ok(()));
        let mut body = BODY.to_vec();
        body[0] = b'T';
        assert_eq!(
            verify(SECRET, Some(&ts), Some(SIG), &body, TS),
            Err(SignatureError::Forged)
        );
        assert_eq!(
            verify(b"other", Some(&ts), Some(SIG), BODY, TS),
            Err(SignatureError::Forged)
        );
        assert_eq!(
            verify(SECRET, Some(&ts), Some(SIG), BODY, TS + MAX_SKEW_SECS + 1),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, None, Some(SIG), BODY, TS),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(SECRET, Some(&ts), Some(&SIG[3..]), BODY, TS),
            Err(SignatureError::Missing)
        );
    }
}
