//! Logs, to stderr: `COUNTERSIGN_LOG` filters them (tracing's `EnvFilter` syntax; each command
//! has its default level), `COUNTERSIGN_LOG_FORMAT` picks `text` (the default) or `json` (one
//! JSON object per line, for log pipelines). An unknown format is refused at start, not ignored.
//! With traces on (`[telemetry] otlp_endpoint`, `serve`), a second layer exports this process's
//! spans over OTLP, and each request's span carries its `trace_id` into the log lines written
//! within it.

use countersign_server::telemetry::Traces;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

fn filter(default_level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("COUNTERSIGN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level))
}

fn json() -> Result<bool, String> {
    let format = std::env::var("COUNTERSIGN_LOG_FORMAT").unwrap_or_default();
    match format.as_str() {
        "" | "text" => Ok(false),
        "json" => Ok(true),
        other => Err(format!(
            "countersign: COUNTERSIGN_LOG_FORMAT must be `text` or `json`, not `{other}`"
        )),
    }
}

/// Sets up the process's logs; exits with status 2 and a message on an unknown format.
pub(crate) fn init(default_level: &str) {
    let json = json().unwrap_or_else(|m| {
        eprintln!("{m}");
        std::process::exit(2)
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(default_level))
        .with_writer(std::io::stderr);
    if json {
        let _ = builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init();
    } else {
        let _ = builder.try_init();
    }
}

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
