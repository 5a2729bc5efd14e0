//! `webhook:NAME` channels: one JSON event per notification, POSTed and signed per the
//! Standard Webhooks specification (<https://www.standardwebhooks.com/>): headers
//! `webhook-id` (the outbox row's id, the same on every retry, for receivers to deduplicate),
//! `webhook-timestamp` (Unix seconds) and `webhook-signature` (`v1,` and the base64 of
//! HMAC-SHA256 under the secret's key over `id.timestamp.body`).
//!
//! The body is `{"type", "timestamp", "data": {"notification", "channel", "action", "entry"}}`:
//! `action` is the API v1 view of the action (masked), `entry` the audit entry told of (masked).

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use countersign_gateway::notify::WebhookConfig;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::deliver::{Channel, Message, Outcome};

/// A configured webhook.
pub struct Webhook {
    url: String,
    key: Vec<u8>,
    http: reqwest::Client,
}

impl Webhook {
    /// The webhook `config` describes; each request may take `timeout`.
    pub fn new(config: &WebhookConfig, timeout: Duration) -> Result<Webhook, String> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(config.key.expose())
            .map_err(|_| format!("webhook `{}`: unreadable key", config.name))?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            // A receiver's redirect is not followed: the signed event goes where configured.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                format!(
                    "webhook `{}`: cannot build the HTTP client: {e}",
                    config.name
                )
            })?;
        Ok(Webhook {
            url: config.url.clone(),
            key,
            http,
        })
    }
}

/// The `webhook-signature` value of `body` sent as message `id` at Unix second `timestamp`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// The event's JSON body.
pub fn body(message: &Message<'_>) -> Result<Vec<u8>, String> {
    let entry: serde_json::Value = serde_json::from_slice(message.entry)
        .map_err(|e| format!("the audit entry is unreadable: {e}"))?;
    let n = message.notification;
    let action = countersign_api::Action::new(&message.view.record, None);
    let event = serde_json::json!({
        "type": n.kind,
        "timestamp": countersign_store::rfc3339(n.created_at),
        "data": {
            "notification": n.id,
            "channel": n.channel,
            "action": action,
            "entry": entry,
        },
    });
    serde_json::to_vec(&event).map_err(|e| format!("encoding the event: {e}"))
}

#[async_trait]
impl Channel for Webhook {
    async fn deliver(&self, message: Message<'_>) -> Outcome {
        let body = match body(&message) {
            Ok(b) => b,
            Err(e) => return Outcome::Refused(e),
        };
        let id = format!("msg_{}", message.notification.id);
        let timestamp = message.now.millis().div_euclid(1000);
        let signature = sign(&self.key, &id, timestamp, &body);
        let sent = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            // Without the URL: it may hold a token in its query.
            Err(e) => {
                return Outcome::Retry {
                    error: format!("request failed: {}", e.without_url()),
                    after: None,
                }
            }
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Sent(None);
        }
        let after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::backoff::retry_after(v, message.now.millis()));
        let error = format!("the receiver answered {status}");
        match status.as_u16() {
            408 | 409 | 425 | 429 | 500..=599 => Outcome::Retry { error, after },
            _ => Outcome::Refused(error),
        }
    }
}
