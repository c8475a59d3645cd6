//! The `bootstrap-server` binary: parse the flags, set up telemetry (logs, OTLP traces), load the
//! profiles, start the server, print the listening line, run until SIGTERM/SIGINT.

use std::process::ExitCode;

use bootstrap_server::config::{Cli, Config};
use clap::Parser;

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "health") {
        let args = bootstrap_server::health::HealthArgs::parse_from(std::env::args_os().skip(1));
        return actix_rt::System::new().block_on(async move {
            bootstrap_server::health::report(
                "bootstrap-server health",
                bootstrap_server::health::run(&args).await,
            )
        });
    }
    let cli = Cli::parse();
    let telemetry = match telemetry::init_service(
        "bootstrap-server",
        env!("CARGO_PKG_VERSION"),
        cli.log_json,
        "info",
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("bootstrap-server: telemetry: {e}");
            return ExitCode::from(2);
        }
    };
    let code = actix_rt::System::new().block_on(run(cli));
    // Flush the spans still queued, off the runtime.
    drop(telemetry);
    code
}

async fn run(cli: Cli) -> ExitCode {
    let config = match Config::from_cli(cli, &|var| std::env::var(var).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bootstrap-server: {e}");
            return ExitCode::from(2);
        }
    };
    let server = match bootstrap_server::start(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bootstrap-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", server.listening_line());
    server.wait().await;
    ExitCode::SUCCESS
}
