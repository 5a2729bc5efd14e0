//! `teams:NAME` channels: the review as an Adaptive Card 1.5 ([`card`]) posted to the
//! conversation `[teams.conversations]` names for it through the Bot Connector REST API
//! (`POST {serviceUrl}/v3/conversations/{id}/activities`) and rewritten in place on every
//! later notification (`PUT .../activities/{activityId}`, the activity id being the stored
//! message id); its `Action.Execute` clicks arrive at `POST /v1/channels/teams/messages`
//! ([`activities`]) as `adaptiveCard/action` invokes and become votes through
//! `Gateway::vote`, exactly as the API's.
//!
//! Outbound calls carry a client-credentials token from Entra ID (`[teams] token_url`, scope
//! `https://api.botframework.com/.default`), cached until five minutes before it expires and
//! dropped when the Bot Connector answers 401. 429 and 503 (and other 5xx) are retried by the
//! outbox, honouring `Retry-After`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use countersign_gateway::credentials::Secret;
use countersign_gateway::notify::TeamsConfig;
use serde_json::{json, Value};

use crate::chat::clip;
use crate::deliver::{Channel, Message, Outcome};

pub mod activities;
pub mod card;

pub use activities::activities_router;

/// The scope of the client-credentials grant (Bot Connector).
pub const SCOPE: &str = "https://api.botframework.com/.default";
/// A token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// What a Bot Connector or token call came to, when not a success.
#[derive(Debug)]
enum Failure {
    /// 404: the conversation or activity is gone.
    NotFound(String),
    /// Worth retrying (network, 401 with a renewed token, 429, 5xx), not before the
    /// `Retry-After`.
    Retry(String, Option<Duration>),
    /// Refused for good (other 4xx).
    Refused(String),
}

impl From<Failure> for Outcome {
    fn from(f: Failure) -> Outcome {
        match f {
            Failure::Retry(error, after) => Outcome::Retry { error, after },
            Failure::Refused(e) | Failure::NotFound(e) => Outcome::Refused(e),
        }
    }
}

/// The Bot Connector client: Entra ID tokens and the conversation activity routes.
pub struct TeamsApi {
    app_id: String,
    app_password: Secret,
    token_url: String,
    service_url: String,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<(Secret, Instant)>>,
    token_fetches: AtomicU64,
}

impl TeamsApi {
    /// A client for `config` with requests bounded by `timeout`.
    pub fn new(config: &TeamsConfig, timeout: Duration) -> Result<TeamsApi, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("[teams]: cannot build the HTTP client: {e}"))?;
        Ok(TeamsApi {
            app_id: config.app_id.clone(),
            app_password: config.app_password.clone(),
            token_url: config.token_url.clone(),
            service_url: config.service_url.clone(),
            http,
            token: tokio::sync::Mutex::new(None),
            token_fetches: AtomicU64::new(0),
        })
    }

    /// How many tokens were fetched from Entra ID.
    pub fn token_fetches(&self) -> u64 {
        self.token_fetches.load(Ordering::Relaxed)
    }

    /// The cached token, or a new one from the token endpoint.
    async fn token(&self) -> Result<Secret, Failure> {
        let mut cached = self.token.lock().await;
        if let Some((t, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        self.token_fetches.fetch_add(1, Ordering::Relaxed);
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.app_id)
            .append_pair("client_secret", self.app_password.expose())
            .append_pair("scope", SCOPE)
            .finish();
        let response = self
            .http
            .post(&self.token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                Failure::Retry(format!("token: request failed: {}", e.without_url()), None)
            })?;
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(Failure::Retry(
                format!("token: Entra ID answered {status}"),
                retry_after(&response),
            ));
        }
        let reply: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            // `error` is an OAuth error code (`invalid_client`...), never the secret.
            let error = reply["error"].as_str().unwrap_or("unknown_error");
            return Err(Failure::Refused(format!(
                "token: Entra ID answered {status} ({})",
                clip(error, 60)
            )));
        }
        let (Some(token), Some(secs)) =
            (reply["access_token"].as_str(), reply["expires_in"].as_u64())
        else {
            return Err(Failure::Retry(
                "token: the reply has no access_token or expires_in".into(),
                None,
            ));
        };
        let life = Duration::from_secs(secs);
        // Renewed five minutes early; a short-lived token at half its life.
        let keep = life.saturating_sub(RENEW_BEFORE).max(life / 2);
        let token = Secret::new(token.to_string());
        *cached = Some((token.clone(), Instant::now() + keep));
        Ok(token)
    }

    /// `{serviceUrl}v3/conversations/{conversation}/activities[/{activity}]`, each id one
    /// percent-encoded path segment.
    fn url(&self, conversation: &str, activity: Option<&str>) -> Result<url::Url, Failure> {
        let mut url = url::Url::parse(&self.service_url)
            .map_err(|e| Failure::Refused(format!("[teams] service_url: {e}")))?;
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| Failure::Refused("[teams] service_url cannot be a base".into()))?;
            path.pop_if_empty()
                .extend(["v3", "conversations", conversation, "activities"]);
            if let Some(a) = activity {
                path.push(a);
            }
        }
        Ok(url)
    }

    /// Calls the Bot Connector; the reply's JSON (`{}` when it has none).
    async fn call(
        &self,
        method: reqwest::Method,
        what: &str,
        url: url::Url,
        body: &Value,
    ) -> Result<Value, Failure> {
        let token = self.token().await?;
        let sent = self
            .http
            .request(method, url)
            .bearer_auth(token.expose())
            .header("content-type", "application/json; charset=utf-8")
            .body(body.to_string())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                return Err(Failure::Retry(
                    format!("{what}: request failed: {}", e.without_url()),
                    None,
                ))
            }
        };
        let status = response.status();
        if status.as_u16() == 401 {
            // The token may have been revoked or rotated: a new one next time.
            *self.token.lock().await = None;
            return Err(Failure::Retry(
                format!("{what}: the Bot Connector answered 401"),
                None,
            ));
        }
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(Failure::Retry(
                format!("{what}: the Bot Connector answered {status}"),
                retry_after(&response),
            ));
        }
        if status.as_u16() == 404 {
            return Err(Failure::NotFound(format!("{what}: not found (404)")));
        }
        if !status.is_success() {
            return Err(Failure::Refused(format!(
                "{what}: the Bot Connector answered {status}"
            )));
        }
        Ok(response.json().await.unwrap_or_else(|_| json!({})))
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| crate::backoff::retry_after(v, 0))
}

/// The message activity carrying `card`.
pub fn card_activity(card: Value) -> Value {
    json!({
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}],
    })
}

/// A `teams:NAME` channel.
pub struct Teams {
    api: Arc<TeamsApi>,
    config: TeamsConfig,
}

impl Teams {
    /// The channel posting through `api` to `config`'s conversations.
    pub fn new(api: Arc<TeamsApi>, config: &TeamsConfig) -> Teams {
        Teams {
            api,
            config: config.clone(),
        }
    }

    /// On `question_answered`, the requester's latest answer as a reply to the card (the
    /// rewritten card shows it too), as plain text. At least once, like every notification.
    async fn answer_in_thread(
        &self,
        message: &Message<'_>,
        conversation: &str,
        activity: &str,
    ) -> Result<(), Failure> {
        let Some(c) = crate::chat::answered(message) else {
            return Ok(());
        };
        let text = format!(
            "{} asked: {}\n\n{} answered: {}",
            c.asked_by,
            clip(&c.question, 1000),
            message.view.record.requester,
            clip(c.answer.as_deref().unwrap_or(""), 2000)
        );
        let body =
            json!({"type": "message", "textFormat": "plain", "text": text, "replyToId": activity});
        let url = self.api.url(conversation, Some(activity))?;
        self.api
            .call(reqwest::Method::POST, "reply", url, &body)
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl Channel for Teams {
    async fn deliver(&self, message: Message<'_>) -> Outcome {
        let Some(name) = message.notification.channel.strip_prefix("teams:") else {
            return Outcome::Refused("not a teams: channel".into());
        };
        let Some(conversation) = self.config.conversation(name) else {
            return Outcome::Refused(format!(
                "teams:{name} is not under [teams.conversations] on this replica"
            ));
        };
        let activity = card_activity(card::card(message.view, message.now));
        if let Some(id) = message.earlier.as_deref() {
            let mut update = activity.clone();
            update["id"] = json!(id);
            let url = match self.api.url(conversation, Some(id)) {
                Ok(u) => u,
                Err(f) => return f.into(),
            };
            match self
                .api
                .call(reqwest::Method::PUT, "update activity", url, &update)
                .await
            {
                Ok(_) => {
                    if let Err(f) = self.answer_in_thread(&message, conversation, id).await {
                        return f.into();
                    }
                    return Outcome::Sent(Some(id.to_string()));
                }
                // Deleted in Teams: post it again below.
                Err(Failure::NotFound(_)) => {}
                Err(f) => return f.into(),
            }
        }
        let url = match self.api.url(conversation, None) {
            Ok(u) => u,
            Err(f) => return f.into(),
        };
        match self
            .api
            .call(reqwest::Method::POST, "send activity", url, &activity)
            .await
        {
            Ok(reply) => Outcome::Sent(reply["id"].as_str().map(str::to_string)),
            Err(f) => f.into(),
        }
    }

    fn updates_in_place(&self) -> bool {
        true
    }
}
