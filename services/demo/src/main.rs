//! `dmgw-demo`: the repository's `cargo run --release`. Parses the flags, runs the demo (see the
//! `demo` library), prints the one JSON summary line on stdout, and sets the exit status.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use demo::{Cli, StopReason};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs: RUST_LOG (default `error`, the story is the output). Traces: every service of the
    // demo runs in this process, so all spans carry `service.name` dmgw-demo; with
    // OTEL_EXPORTER_OTLP_ENDPOINT set, each device's onboarding is one trace.
    let telemetry = match telemetry::init(telemetry::Options {
        service_name: "dmgw-demo",
        service_version: env!("CARGO_PKG_VERSION"),
        log_format: telemetry::LogFormat::Text,
        filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "error".to_owned()),
    }) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("dmgw-demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = cli.options();
    let summary = demo::run_blocking(&opts);
    // Export the spans still queued before the summary is printed and the process ends.
    drop(telemetry);
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dmgw-demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    match serde_json::to_string(&summary) {
        Ok(line) => {
            let mut out = std::io::stdout().lock();
            // A closed stdout (e.g. `| head`) is not worth failing over.
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        Err(e) => {
            eprintln!("dmgw-demo: cannot write the summary: {e}");
            return ExitCode::FAILURE;
        }
    }
    if summary.stopped_by == StopReason::Timeout {
        eprintln!(
            "dmgw-demo: not settled within {}s:",
            opts.timeout.as_secs_f64()
        );
        for u in &summary.unsettled {
            eprintln!("  {u}");
        }
        return ExitCode::FAILURE;
    }
    if let Some(d) = summary.devices.iter().find(|d| d.failure.is_some()) {
        eprintln!(
            "dmgw-demo: device {} failed: {}",
            d.dev_id,
            d.failure.as_deref().unwrap_or_default()
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
