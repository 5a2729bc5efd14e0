//! Logs, to stderr: `COUNTERSIGN_LOG` filters them (tracing's `EnvFilter` syntax; each command
//! has its default level), `COUNTERSIGN_LOG_FORMAT` picks `text` (the default) or `json` (one
//! JSON object per line, for log pipelines). An unknown format is refused at start, not ignored.
//! With traces on, `serve` adds a second layer (the full binary's `telemetry.rs`).

/// `COUNTERSIGN_LOG`, or `default_level` when it is unset or not a filter.
pub fn filter(default_level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("COUNTERSIGN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level))
}

/// Whether `COUNTERSIGN_LOG_FORMAT` asks for JSON lines; an error for an unknown format.
pub fn json() -> Result<bool, String> {
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
pub fn init(default_level: &str) {
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
