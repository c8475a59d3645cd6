//! The `dm-server` binary: parse the flags, set up telemetry (logs, OTLP traces), start the server,
//! print the listening line, run until SIGTERM/SIGINT, then flush the data file and the spans.

use std::process::ExitCode;

use clap::Parser;
use dm_server::config::{Cli, Config, MASTER_KEY_ENV};

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "health") {
        let args = dm_server::health::HealthArgs::parse_from(std::env::args_os().skip(1));
        return actix_rt::System::new().block_on(async move {
            dm_server::health::report("dm-server health", dm_server::health::run(&args).await)
        });
    }
    let cli = Cli::parse();
    let telemetry =
        match telemetry::init_service("dm-server", env!("CARGO_PKG_VERSION"), cli.log_json, "info")
        {
            Ok(t) => t,
            Err(e) => {
                eprintln!("dm-server: telemetry: {e}");
                return ExitCode::from(2);
            }
        };
    let code = actix_rt::System::new().block_on(run(cli));
    // Flush the spans still queued, off the runtime.
    drop(telemetry);
    code
}

async fn run(cli: Cli) -> ExitCode {
    let config = match Config::from_cli(cli, std::env::var(MASTER_KEY_ENV).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dm-server: {e}");
            return ExitCode::from(2);
        }
    };
    let server = match dm_server::start(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dm-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", server.listening_line());
    match server.wait().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dm-server: {e}");
            ExitCode::FAILURE
        }
    }
}
