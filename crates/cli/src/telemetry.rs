//! `serve`'s logs with traces: when `[telemetry] otlp_endpoint` is set, a second layer exports
//! this process's spans over OTLP, and each request's span carries its `trace_id` into the log
//! lines written within it. The log lines themselves are set up as everywhere else
//! (`countersign::logs`).

use countersign::logs::{filter, init, json};
use countersign_server::telemetry::Traces;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// Sets up the logs and, when `otlp_endpoint` is set, the trace exporter (kept, and flushed at
/// the end, by the returned guard). Without an endpoint this is [`init`], exactly.
pub(crate) fn init_with_traces(
    default_level: &str,
    otlp_endpoint: Option<&str>,
) -> Result<Option<Traces>, String> {
    let Some(endpoint) = otlp_endpoint else {
        init(default_level);
        return Ok(None);
    };
    let json = json()?;
    let traces = Traces::start(endpoint).map_err(|e| format!("countersign: {e}"))?;
    // The log filter applies to the log lines only: the trace layer has its own (our spans).
    let logs: Box<dyn Layer<Registry> + Send + Sync> = if json {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_filter(filter(default_level))
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter(default_level))
            .boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(vec![logs, traces.layer()])
        .try_init();
    Ok(Some(traces))
}
