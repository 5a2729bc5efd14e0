//! `POST /v1/channels/teams/messages`: the Bot Framework messaging endpoint.
//!
//! Every request is verified before its body is read for anything: a body over
//! [`MAX_ACTIVITY`] is refused (413); the `Authorization: Bearer` token must be a Bot Connector
//! token for this bot (`countersign_identity::botframework`: signature under a key of the
//! OpenID metadata's JWKS, issuer, audience = app id, times with 5 minutes of skew); then the
//! token is held to the activity (its `serviceUrl` claim equals the activity's, its key is
//! endorsed for the activity's `channelId`). Anything off is 401 with the token's stable code
//! (503 when the keys cannot be fetched, so the Bot Connector retries) and an audit entry.
//!
//! An `adaptiveCard/action` invoke is answered per the Universal Actions contract: HTTP 200
//! with `{"statusCode": 200, "type": "application/vnd.microsoft.card.adaptive", "value": CARD}`,
//! the card as it is after the vote; a refusal as `{"statusCode": 400 (500 when the fault is
//! ours), "type": "application/vnd.microsoft.error", "value": {"code", "message"}}`, which
//! Teams shows to the clicking user only. The clicking user (`from.aadObjectId`) is mapped to
//! the identity whose `teams_aad_object_id` it is, else to the person from the identity provider
//! whose Entra sign-in carried that object id in the bot's tenant (`Gateway::chat_human_by_entra`),
//! and must come from the bot's tenant (when `tenant_id` is a tenant id:
//! `channelData.tenant.id`); the vote goes through `Gateway::vote`.
//! An invoke's activity id is remembered for 75 minutes (a token's lifetime and skew), so a
//! captured request replayed meanwhile counts nothing (`teams_activity_replayed`, audited).
//! Other activities (messages, conversation updates) are acknowledged and ignored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use countersign_core::{Ballot, Identity};
use countersign_gateway::notify::TeamsConfig;
use countersign_gateway::{ChatHuman, Gateway};
use countersign_identity::botframework::{BotAuthError, BotFrameworkVerifier};
use serde_json::{json, Value};

use super::card::{self, APPROVE, ASK, DENY, MODIFY};
use crate::chat::{refuse_unmapped, Refusal};

/// Largest activity accepted, in bytes.
pub const MAX_ACTIVITY: usize = 256 * 1024;

/// How long an invoke's activity id is remembered: past a token's lifetime (about an hour)
/// plus the skew, a replay is refused by its token anyway.
const REPLAY_WINDOW: Duration = Duration::from_secs(75 * 60);

/// The route's state.
struct Activities {
    gateway: Arc<Gateway>,
    verifier: BotFrameworkVerifier,
    /// Invoke activity ids seen within [`REPLAY_WINDOW`] (this process's).
    seen: Mutex<HashMap<String, Instant>>,
    /// The bot's tenant, lowercase, when `tenant_id` is a tenant id (a GUID): clicks from
    /// another tenant are refused.
    tenant: Option<String>,
}

impl Activities {
    /// Whether `id` was seen before (and remembers it if not).
    fn replayed(&self, id: &str) -> bool {
        let now = Instant::now();
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        if seen.len() >= 10_000 {
            seen.retain(|_, at| now.duration_since(*at) < REPLAY_WINDOW);
        }
        match seen.get(id) {
            Some(at) if now.duration_since(*at) < REPLAY_WINDOW => true,
            _ => {
                seen.insert(id.to_string(), now);
                false
            }
        }
    }
}

/// The route `POST /v1/channels/teams/messages`.
pub fn activities_router(gateway: Arc<Gateway>, config: &TeamsConfig) -> Result<Router, String> {
    let verifier =
        BotFrameworkVerifier::new(config.openid_metadata_url.clone(), config.app_id.clone())?;
    Ok(Router::new()
        .route("/v1/channels/teams/messages", post(handle))
        // Bodies past the limit are read only to refuse them with our code below.
        .layer(DefaultBodyLimit::max(MAX_ACTIVITY * 4))
        .with_state(Arc::new(Activities {
            gateway,
            verifier,
            seen: Mutex::new(HashMap::new()),
            tenant: countersign_gateway::notify::is_guid(&config.tenant_id)
                .then(|| config.tenant_id.to_ascii_lowercase()),
        })))
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn unauthorized(s: &Activities, e: BotAuthError) -> Response {
    let code = e.code();
    s.gateway
        .record_refused(
            &crate::chat::unmapped("teams", "unverified"),
            "teams_activity",
            code,
        )
        .await;
    let status = if e.is_unavailable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::UNAUTHORIZED
    };
    refuse(status, code, &e.to_string())
}

async fn handle(State(s): State<Arc<Activities>>, headers: HeaderMap, body: Bytes) -> Response {
    if body.len() > MAX_ACTIVITY {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "teams_activity_too_large",
            "the activity is over 256 KiB",
        );
    }
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let verified = match s.verifier.verify(token, s.gateway.time()).await {
        Ok(t) => t,
        Err(e) => return unauthorized(&s, e.into()).await,
    };
    let Ok(activity) = serde_json::from_slice::<Value>(&body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be a Bot Framework activity (JSON)",
        );
    };
    let service_url = activity["serviceUrl"].as_str().unwrap_or("");
    let channel_id = activity["channelId"].as_str().unwrap_or("");
    if let Err(e) = verified.check_activity(service_url, channel_id) {
        return unauthorized(&s, e).await;
    }
    if activity["type"] == "invoke" && activity["name"] == "adaptiveCard/action" {
        return Json(invoke(&s, &activity).await).into_response();
    }
    // Messages, conversation and installation updates: nothing to do.
    StatusCode::OK.into_response()
}

/// The Universal Actions error answer for `refusal`.
fn error(refusal: Refusal) -> Value {
    json!({
        "statusCode": if refusal.ours { 500 } else { 400 },
        "type": "application/vnd.microsoft.error",
        "value": {"code": refusal.code, "message": refusal.text},
    })
}

fn invalid(text: &str) -> Value {
    error(Refusal::new("invalid_request", text))
}

/// An input's trimmed text, if any.
fn text(data: &Value, input: &str) -> Option<String> {
    data[input]
        .as_str()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// The clicking user's identity, or the refusal (audited).
async fn who(s: &Activities, activity: &Value, action: &str) -> Result<Identity, Refusal> {
    let from = &activity["from"];
    let oid = from["aadObjectId"].as_str();
    if let Some(tenant) = &s.tenant {
        let theirs = activity["channelData"]["tenant"]["id"]
            .as_str()
            .or(activity["conversation"]["tenantId"].as_str())
            .map(str::to_ascii_lowercase);
        if theirs.as_deref() != Some(tenant.as_str()) {
            let user = oid.or(from["id"].as_str()).unwrap_or("unknown");
            return Err(refuse_unmapped(
                &s.gateway,
                "teams",
                user,
                action,
                "teams_tenant_mismatch",
                "this click comes from another Microsoft Entra tenant than the bot's (`[teams] tenant_id`)",
            )
            .await);
        }
    }
    if let Some(i) = oid.and_then(|o| s.gateway.identities().by_teams_user(o)) {
        return Ok((**i).clone());
    }
    let user = oid.or(from["id"].as_str()).unwrap_or("unknown");
    let mut refusal = (
        "unmapped_chat_user",
        "your Teams user is not mapped to a countersign human identity (an identity's \
         `teams_aad_object_id`, or the object id a person signed in with from the bot's tenant)",
    );
    // A person who signed in through Entra ID in the bot's tenant: the same object id. Only
    // when the bot's tenant is an id (a verified domain names no `tid` to compare).
    if let (Some(oid), Some(tenant)) = (oid, &s.tenant) {
        match s.gateway.chat_human_by_entra(oid, tenant).await {
            Ok(ChatHuman::Mapped(i)) => return Ok(i),
            Ok(ChatHuman::Unmapped) => {}
            Ok(ChatHuman::Ambiguous(ids)) => {
                tracing::warn!(
                    teams_user = oid,
                    ?ids,
                    "a Teams user's object id is that of more than one identity; refused (set \
                     `teams_aad_object_id` on the right one)"
                );
                refusal = (
                    "chat_user_ambiguous",
                    "your Teams user is the object id of more than one countersign identity; an \
                     administrator can map you with `teams_aad_object_id`",
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading recorded contacts failed; the Teams user is treated as unmapped");
            }
        }
    }
    Err(refuse_unmapped(&s.gateway, "teams", user, action, refusal.0, refusal.1).await)
}

async fn invoke(s: &Activities, activity: &Value) -> Value {
    let execute = &activity["value"]["action"];
    let data = &execute["data"];
    let Some(action) = data["action"].as_str().filter(|a| a.len() <= 128) else {
        return invalid("the card action names no review");
    };
    // The version the card showed (absent on a card sent before cards carried it).
    let seen = match data["digest"].as_str() {
        None => None,
        Some(d) => match d.parse() {
            Ok(d) => Some(d),
            Err(_) => return invalid("the card action names a malformed digest"),
        },
    };
    let verb = execute["verb"].as_str().unwrap_or("");
    if ![APPROVE, DENY, MODIFY, ASK].contains(&verb) {
        return invalid("unknown card action");
    }
    let who = match who(s, activity, action).await {
        Ok(w) => w,
        Err(r) => return error(r),
    };
    // The same activity twice (a captured request replayed while its token lasts) counts once;
    // an activity with no id is refused, as Teams always sends one.
    match activity["id"]
        .as_str()
        .filter(|i| !i.is_empty() && i.len() <= 256)
    {
        Some(id) if !s.replayed(id) => {}
        _ => {
            let code = "teams_activity_replayed";
            s.gateway
                .record_refused_on(&who, "vote", action, code)
                .await;
            return error(Refusal::new(
                code,
                format!("Refused ({code}): this card action was already received."),
            ));
        }
    }
    let ballot = match verb {
        APPROVE => Ballot::Approve { comment: None },
        DENY => Ballot::Deny {
            comment: text(data, "deny_comment"),
        },
        ASK => match text(data, "question") {
            Some(question) => Ballot::Clarify { question },
            None => return invalid("Write a question."),
        },
        _ => {
            let params = text(data, "modify_params").unwrap_or_default();
            match serde_json::from_str::<Value>(&params) {
                Ok(v) if v.is_object() => Ballot::Modify {
                    params: v,
                    comment: text(data, "modify_comment"),
                },
                Ok(_) => return invalid("The parameters must be a JSON object."),
                Err(e) => return invalid(&format!("The parameters are not valid JSON: {e}")),
            }
        }
    };
    if let Err(r) = crate::chat::vote(&s.gateway, &who, action, seen, ballot).await {
        return error(r);
    }
    match s.gateway.notification_view(action).await {
        Ok(Some(view)) => json!({
            "statusCode": 200,
            "type": "application/vnd.microsoft.card.adaptive",
            "value": card::card(&view, s.gateway.time()),
        }),
        _ => json!({
            "statusCode": 200,
            "type": "application/vnd.microsoft.activity.message",
            "value": "Recorded.",
        }),
    }
}
