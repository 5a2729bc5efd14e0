//! The delivery worker: reads due notifications, hands each to its channel with the action's
//! masked view and audit entry, and records the outcome (delivered, retry at, dead) through the
//! store's writer. Registered by the server among its leased workers, so one replica delivers.
//!
//! At least once: an outcome is recorded after the send, so a crash between the two sends the
//! notification again after restart (receivers deduplicate by `webhook-id`, the row's id; a chat
//! message already posted is updated in place, its id being stored with the delivery).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use countersign_core::Timestamp;
use countersign_gateway::metrics::ChannelLabel;
use countersign_gateway::notify::OutboxConfig;
use countersign_gateway::{ActionView, Gateway};
use countersign_store::{Notification, OutboxChange};

/// Most notifications handled per round.
const BATCH: usize = 64;

/// The longest the worker sleeps without looking for due notifications (this process's commits
/// and other processes' announced ones wake it sooner; `countersign outbox retry` on SQLite is
/// seen within this).
const IDLE: Duration = Duration::from_secs(1);

/// How long past the request timeout a claim lasts.
const CLAIM_MARGIN: Duration = Duration::from_secs(1);

/// What a channel is given to send.
pub struct Message<'a> {
    /// The notification (id, kind, channel, attempts so far).
    pub notification: &'a Notification,
    /// The action as a channel may show it (masked).
    pub view: &'a ActionView,
    /// The audit entry the notification tells of (canonical JSON, masked).
    pub entry: &'a [u8],
    /// The gateway's time now.
    pub now: Timestamp,
    /// The channel's id of the message it made for this action earlier, if any (read only for
    /// a channel that [updates in place](Channel::updates_in_place)).
    pub earlier: Option<String>,
}

/// What a delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; with the channel's id of the message made, if it has one.
    Sent(Option<String>),
    /// Failed for now (network, 5xx, 429): try again, not before `after` if the channel said.
    Retry {
        /// Why (no secret, no payload).
        error: String,
        /// The channel's `Retry-After`.
        after: Option<Duration>,
    },
    /// Refused for good (a 4xx other than 408/429): no retry will help.
    Refused(String),
}

/// A destination kind (webhooks, Slack, Teams).
#[async_trait]
pub trait Channel: Send + Sync {
    /// Sends one notification.
    async fn deliver(&self, message: Message<'_>) -> Outcome;

    /// Whether it updates an earlier message in place (chat channels), so the worker reads the
    /// stored message id for it ([`Message::earlier`]); webhooks do not.
    fn updates_in_place(&self) -> bool {
        false
    }
}

/// The configured channels by `kind:name` (`slack:*` for every Slack channel, `teams:*` for
/// every Teams conversation).
#[derive(Default, Clone)]
pub struct Channels {
    by_name: HashMap<String, Arc<dyn Channel>>,
    slack: Option<Arc<crate::slack::SlackApi>>,
}

impl Channels {
    /// No channels.
    pub fn new() -> Channels {
        Channels::default()
    }

    /// Adds `channel` as `name` (`webhook:NAME`).
    pub fn add(&mut self, name: String, channel: Arc<dyn Channel>) {
        self.by_name.insert(name, channel);
    }

    /// The channels a configuration describes.
    pub fn from_config(config: &countersign_gateway::config::Config) -> Result<Channels, String> {
        let mut out = Channels::new();
        if let Some(s) = &config.slack {
            let api = std::sync::Arc::new(crate::slack::SlackApi::new(s, config.outbox.timeout)?);
            out.slack = Some(api.clone());
            let channel: Arc<dyn Channel> = Arc::new(crate::slack::Slack::new(api));
            // Every `slack:...` route goes to the one app.
            out.add("slack:*".into(), channel);
        }
        if let Some(t) = &config.teams {
            let api = Arc::new(crate::teams::TeamsApi::new(t, config.outbox.timeout)?);
            let channel: Arc<dyn Channel> = Arc::new(crate::teams::Teams::new(api, t));
            // Every `teams:...` route goes to the one bot.
            out.add("teams:*".into(), channel);
        }
        for w in &config.webhooks {
            out.add(
                format!("webhook:{}", w.name),
                Arc::new(crate::webhook::Webhook::new(w, config.outbox.timeout)?),
            );
        }
        Ok(out)
    }

    /// Whether none is configured.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The channel a notification's route names.
    fn get(&self, name: &str) -> Option<&Arc<dyn Channel>> {
        if name.starts_with("slack:") {
            return self.by_name.get("slack:*");
        }
        if name.starts_with("teams:") {
            return self.by_name.get("teams:*");
        }
        self.by_name.get(name)
    }

    /// The Slack Web API client, when `[slack]` is configured (the interactions route uses it).
    pub fn slack_api(&self) -> Option<Arc<crate::slack::SlackApi>> {
        self.slack.clone()
    }
}

/// The delivery worker.
pub struct Deliverer {
    gateway: Arc<Gateway>,
    channels: Channels,
    config: OutboxConfig,
}

impl Deliverer {
    /// A worker delivering `gateway`'s outbox to `channels`.
    pub fn new(gateway: Arc<Gateway>, channels: Channels, config: OutboxConfig) -> Arc<Deliverer> {
        Arc::new(Deliverer {
            gateway,
            channels,
            config,
        })
    }

    /// Delivers due notifications until dropped: after each round it sleeps until the next
    /// is due (at most [`IDLE`]) or a commit is announced.
    pub async fn deliver_forever(self: Arc<Self>) {
        // Other processes' commits (PostgreSQL replicas, `countersign outbox retry`) announce
        // themselves on the feed; this process's own commits wake the worker directly, so the
        // allow path on SQLite, which notifies nobody, never subscribes to its feed.
        let store = self.gateway.store();
        let mut changes = store
            .changes_from_other_processes()
            .then(|| store.changes())
            .flatten();
        loop {
            let delivered = match self.round().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox delivery round failed; trying again");
                    0
                }
            };
            if delivered >= BATCH {
                continue;
            }
            let now = self.gateway.time();
            let wait = match store.outbox_next_due().await {
                Ok(Some(at)) => {
                    Duration::from_millis(at.millis().saturating_sub(now.millis()).max(0) as u64)
                        .min(IDLE)
                }
                Ok(None) | Err(_) => IDLE,
            };
            if wait.is_zero() {
                continue;
            }
            let feed = async {
                match changes.as_mut() {
                    Some(rx) => {
                        let open = !matches!(
                            rx.recv().await,
                            Err(tokio::sync::broadcast::error::RecvError::Closed)
                        );
                        // One round for a burst of commits, not one per announced id.
                        while !matches!(
                            rx.try_recv(),
                            Err(tokio::sync::broadcast::error::TryRecvError::Empty
                                | tokio::sync::broadcast::error::TryRecvError::Closed)
                        ) {}
                        open
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.gateway.notifications_queued() => {}
                open = feed => if !open { changes = None },
            }
        }
    }

    /// One round: every due notification (one per action and channel) sent concurrently, the
    /// outcomes recorded in one write. Returns how many were handled.
    pub async fn round(&self) -> Result<usize, countersign_store::StoreError> {
        let now = self.gateway.time();
        let due = self.gateway.store().outbox_due(now, BATCH).await?;
        if due.is_empty() {
            return Ok(0);
        }
        // Claimed first, so no other worker (a process sharing a SQLite file, a replica that
        // lost its lease mid-round) sends the same row meanwhile; a worker that dies
        // mid-attempt leaves its claim to expire after the request's timeout.
        let until = Timestamp(
            now.millis()
                .saturating_add((self.config.timeout + CLAIM_MARGIN).as_millis() as i64),
        );
        let claimed = self
            .gateway
            .store()
            .outbox_claim(due.iter().map(|d| d.id).collect(), now, until)
            .await?;
        let due: Vec<Notification> = due
            .into_iter()
            .filter(|d| claimed.contains(&d.id))
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        let n = due.len();
        let attempts = due.into_iter().map(|d| async move {
            let outcome = self.attempt(&d).await;
            self.change(&d, outcome)
        });
        let changes = futures_util::future::join_all(attempts).await;
        self.gateway.store().outbox_record(changes).await?;
        Ok(n)
    }

    async fn attempt(&self, n: &Notification) -> Outcome {
        let Some(channel) = self.channels.get(&n.channel) else {
            return Outcome::Refused(format!(
                "channel `{}` is not configured on this replica",
                n.channel
            ));
        };
        let view = match self.gateway.notification_view(&n.action_id).await {
            Ok(Some(v)) => v,
            Ok(None) => return Outcome::Refused("the action does not exist".into()),
            Err(e) => return retry(format!("reading the action: {e}")),
        };
        let store = self.gateway.store();
        let entry = match store.audit_entries(n.audit_index, 1).await {
            Ok(mut e) if e.first().is_some_and(|e| e.index == n.audit_index) => e.remove(0).body,
            Ok(_) => return Outcome::Refused("the audit entry does not exist".into()),
            Err(e) => return retry(format!("reading the audit entry: {e}")),
        };
        let earlier = if channel.updates_in_place() {
            match store.channel_message(&n.action_id, &n.channel).await {
                Ok(m) => m,
                Err(e) => return retry(format!("reading the channel's message id: {e}")),
            }
        } else {
            None
        };
        channel
            .deliver(Message {
                notification: n,
                view: &view,
                entry: &entry,
                now: self.gateway.time(),
                earlier,
            })
            .await
    }

    /// The record of an attempt's outcome, and its metrics.
    fn change(&self, n: &Notification, outcome: Outcome) -> OutboxChange {
        let metrics = self.gateway.metrics();
        let label = ChannelLabel {
            channel: n.channel.clone(),
        };
        let now = self.gateway.time();
        let attempts = n.attempts + 1;
        match outcome {
            Outcome::Sent(message) => {
                metrics.outbox_delivered.get_or_create(&label).inc();
                let latency = now.millis().saturating_sub(n.created_at.millis()).max(0);
                metrics
                    .outbox_delivery_latency
                    .get_or_create(&label)
                    .observe(latency as f64 / 1000.0);
                OutboxChange::Delivered {
                    id: n.id,
                    at: now,
                    message,
                }
            }
            Outcome::Retry { error, after } if attempts < self.config.max_attempts => {
                metrics.outbox_failed.get_or_create(&label).inc();
                let wait = crate::backoff::delay(
                    attempts,
                    self.config.backoff_base,
                    self.config.backoff_max,
                    after,
                    rand::random::<f64>(),
                );
                tracing::info!(
                    id = n.id,
                    channel = %n.channel,
                    attempts,
                    wait_ms = wait.as_millis() as u64,
                    error = %error,
                    "notification not delivered; will retry"
                );
                OutboxChange::Retry {
                    id: n.id,
                    next_at: Timestamp(now.millis().saturating_add(wait.as_millis() as i64)),
                    error,
                }
            }
            Outcome::Retry { error, .. } | Outcome::Refused(error) => {
                metrics.outbox_failed.get_or_create(&label).inc();
                metrics.outbox_dead.get_or_create(&label).inc();
                tracing::warn!(
                    id = n.id,
                    channel = %n.channel,
                    attempts,
                    error = %error,
                    "notification dead-lettered; `countersign outbox retry {}` sends it again",
                    n.id
                );
                OutboxChange::Dead { id: n.id, error }
            }
        }
    }
}

fn retry(error: String) -> Outcome {
    Outcome::Retry { error, after: None }
}
