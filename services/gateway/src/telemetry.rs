//! Structured logging through `tracing`: text or JSON lines, filtered by `DMGW_LOG`/`--log`.
//! Installed once per process; tests may call it repeatedly (later calls are no-ops).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::LogFormat;

/// Install the global subscriber. Returns false when one was already installed.
pub fn init(format: LogFormat, filter: &str) -> bool {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.try_init().is_ok(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
            .is_ok(),
    }
}
