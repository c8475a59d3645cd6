//! `dmgw-demo`: the repository's `cargo run --release`. Parses the flags, runs the demo (see the
//! `demo` library), prints the one JSON summary line on stdout, and sets the exit status.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use demo::{Cli, StopReason};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let opts = cli.options();
    let summary = match demo::run_blocking(&opts) {
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
