//! The `dm-server` binary: parse the flags, start the server, print the listening line, run until
//! SIGTERM/SIGINT, then flush the data file.

use std::process::ExitCode;

use clap::Parser;
use dm_server::config::{Cli, Config, MASTER_KEY_ENV};

#[actix_web::main]
async fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "health") {
        let args = dm_server::health::HealthArgs::parse_from(std::env::args_os().skip(1));
        return dm_server::health::report("dm-server health", dm_server::health::run(&args).await);
    }
    let cli = Cli::parse();
    dm_server::telemetry::init(cli.log_json);
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
