//! Logs, to stderr: `COUNTERSIGN_LOG` filters them (tracing's `EnvFilter` syntax; each command
//! has its default level), `COUNTERSIGN_LOG_FORMAT` picks `text` (the default) or `json` (one
//! JSON object per line, for log pipelines). An unknown format is refused at start, not ignored.

/// Sets up the process's logs; exits with status 2 and a message on an unknown format.
pub(crate) fn init(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COUNTERSIGN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let format = std::env::var("COUNTERSIGN_LOG_FORMAT").unwrap_or_default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format.as_str() {
        "" | "text" => {
            let _ = builder.try_init();
        }
        "json" => {
            let _ = builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .try_init();
        }
        other => {
            eprintln!(
                "countersign: COUNTERSIGN_LOG_FORMAT must be `text` or `json`, not `{other}`"
            );
            std::process::exit(2);
        }
    }
}
