//! OpenTelemetry traces (`[telemetry] otlp_endpoint`): the `tracing` spans of this process's
//! own crates (one per HTTP request, and its `policy.evaluate`, `store.commit` and
//! `long_poll.wait` children) exported over OTLP/HTTP (protobuf) in batches.
//!
//! The batch processor runs on a thread of its own with a bounded queue: a request only hands
//! its finished span over, never waits on the collector, and a span that finds the queue full
//! is dropped rather than slowing the request. Only spans reach the exporter, never log events,
//! and only spans whose target is one of our crates: the fields on them are chosen to carry no
//! credential and no parameter value (see `countersign_http`'s request span).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::time::Duration;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// How long one export may take before it is abandoned (its spans are lost, the next goes on).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the last export may take when the process stops.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Traces could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("[telemetry] cannot export traces to {endpoint}: {reason}")]
pub struct TelemetryError {
    /// The OTLP traces URL.
    pub endpoint: String,
    /// Why.
    pub reason: String,
}

/// The trace exporter of this process; flushes what it holds when dropped.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Starts exporting to `endpoint` (an OTLP/HTTP traces URL, as
    /// [`countersign_gateway::config::otlp_traces_url`] makes it) and makes W3C trace context
    /// (`traceparent`, `tracestate`) the process's propagator.
    pub fn start(endpoint: &str) -> Result<Traces, TelemetryError> {
        // An https:// collector needs a TLS provider; this process uses ring everywhere.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| TelemetryError {
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            })?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            // Every request is traced, whatever the caller's `traceparent` says of its own
            // sampling: a caller does not get to switch off what the operator sees.
            .with_sampler(Sampler::AlwaysOn)
            .with_resource(
                Resource::builder()
                    .with_service_name("countersign")
                    .with_attribute(opentelemetry::KeyValue::new(
                        "service.version",
                        env!("CARGO_PKG_VERSION"),
                    ))
                    .build(),
            )
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        Ok(Traces { provider })
    }

    /// The `tracing` layer that turns this process's spans into OpenTelemetry spans: spans of
    /// our own crates only (`countersign*` targets), never events, whatever the log filter says.
    pub fn layer<S>(&self) -> Box<dyn Layer<S> + Send + Sync>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("countersign"))
            .with_threads(false)
            .with_location(false)
            .with_filter(filter_fn(|meta| {
                meta.is_span() && meta.target().starts_with("countersign")
            }))
            .boxed()
    }
}

impl Drop for Traces {
    fn drop(&mut self) {
        // Sends what the batch still holds; a hung collector delays the exit by this much at
        // most.
        if let Err(e) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(error = %e, "traces not all exported at shutdown");
        }
    }
}
