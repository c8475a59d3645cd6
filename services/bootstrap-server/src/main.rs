//! The `bootstrap-server` binary: parse the flags, load the profiles, start the server, print the
//! listening line, run until SIGTERM/SIGINT.

use std::process::ExitCode;

use bootstrap_server::config::{Cli, Config};
use clap::Parser;

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    bootstrap_server::telemetry::init(cli.log_json);
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
