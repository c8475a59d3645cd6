//! Logging set-up: `tracing` to stderr (stdout carries only the "listening" line), filtered by `RUST_LOG`
//! (default `info`), as text or JSON lines.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber; a second call (tests) is a no-op.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
