//! Prometheus metrics: decisions by effect, open reviews, time to decision, request latency,
//! store commit latency. Names follow Prometheus' conventions: the `countersign_` prefix, base
//! units (`_seconds`), counters ending in `_total` (prometheus-client appends it).

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label set for decisions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EffectLabel {
    /// allow, deny or review.
    pub effect: String,
}

/// Label set for request latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// Route template, e.g. `/v1/actions/{id}`.
    pub route: String,
    /// Status code.
    pub status: u16,
}

/// Label set for the outbox: the channel (`webhook:NAME`, from the configuration: bounded).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    /// `kind:name`.
    pub channel: String,
}

/// Label set for outbox notifications by state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutboxLabels {
    /// `kind:name`.
    pub channel: String,
    /// queued, delivered or dead.
    pub state: String,
}

/// All of the gateway's metrics.
pub struct Metrics {
    registry: Registry,
    /// Decisions by effect.
    pub decisions: Family<EffectLabel, Counter>,
    /// Reviews currently open.
    pub reviews_open: Gauge,
    /// Seconds from submission to a review's verdict (approved, rejected, expired, cancelled).
    pub time_to_decision: Histogram,
    /// Request latency in seconds.
    pub request_duration: Family<RequestLabels, Histogram>,
    /// Refused attempts that matter to security (each is also an audit entry).
    pub refusals: Counter,
    /// Seconds each store write waited for its durable commit (queue, batch, fsync).
    pub store_commit_duration: Histogram,
    /// Outbox notifications per channel and state, read from the store at scrape time.
    pub outbox_notifications: Family<OutboxLabels, Gauge>,
    /// Notifications delivered, per channel.
    pub outbox_delivered: Family<ChannelLabel, Counter>,
    /// Failed delivery attempts (each retried or dead-lettered), per channel.
    pub outbox_failed: Family<ChannelLabel, Counter>,
    /// Notifications dead-lettered, per channel.
    pub outbox_dead: Family<ChannelLabel, Counter>,
    /// Seconds from the change's commit to its notification's delivery, per channel.
    pub outbox_delivery_latency: Family<ChannelLabel, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers everything.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("countersign");
        let decisions = Family::<EffectLabel, Counter>::default();
        registry.register("decisions", "Policy decisions by effect", decisions.clone());
        let reviews_open = Gauge::default();
        registry.register("reviews_open", "Reviews now open", reviews_open.clone());
        let time_to_decision = Histogram::new(exponential_buckets(1.0, 2.0, 16));
        registry.register(
            "time_to_decision_seconds",
            "Seconds from submission to a review's verdict",
            time_to_decision.clone(),
        );
        let request_duration = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            request_duration.clone(),
        );
        let refusals = Counter::default();
        registry.register(
            "refused_attempts",
            "Refused attempts that matter to security (self-approval, agent votes, grant reuse, forged grants)",
            refusals.clone(),
        );
        let store_commit_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "store_commit_duration_seconds",
            "Seconds a store write waits for its durable commit (queued, batched, committed)",
            store_commit_duration.clone(),
        );
        let outbox_notifications = Family::<OutboxLabels, Gauge>::default();
        registry.register(
            "outbox_notifications",
            "Outbox notifications by channel and state (queued, delivered, dead)",
            outbox_notifications.clone(),
        );
        let outbox_delivered = Family::<ChannelLabel, Counter>::default();
        registry.register(
            "outbox_delivered",
            "Notifications delivered by this replica",
            outbox_delivered.clone(),
        );
        let outbox_failed = Family::<ChannelLabel, Counter>::default();
        registry.register(
            "outbox_failed",
            "Failed delivery attempts (retried or dead-lettered)",
            outbox_failed.clone(),
        );
        let outbox_dead = Family::<ChannelLabel, Counter>::default();
        registry.register(
            "outbox_dead",
            "Notifications dead-lettered after their last attempt",
            outbox_dead.clone(),
        );
        let outbox_delivery_latency =
            Family::<ChannelLabel, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 20))
            });
        registry.register(
            "outbox_delivery_latency_seconds",
            "Seconds from a change's commit to its notification's delivery",
            outbox_delivery_latency.clone(),
        );
        Metrics {
            outbox_notifications,
            outbox_delivered,
            outbox_failed,
            outbox_dead,
            outbox_delivery_latency,
            registry,
            store_commit_duration,
            refusals,
            decisions,
            reviews_open,
            time_to_decision,
            request_duration,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
