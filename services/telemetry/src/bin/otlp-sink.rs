//! `otlp-sink`: a stand-alone OTLP/HTTP trace receiver keeping spans in memory (`GET /spans`);
//! the offline stand-in for Jaeger in the container tests.

use std::net::SocketAddr;

use clap::Parser;

/// Receive OTLP/HTTP traces on `/v1/traces` and list them as JSON on `/spans`.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "OTLP_SINK_LISTEN", default_value = "0.0.0.0:4318")]
    listen: SocketAddr,
    /// Check that a sink answers on this URL (`.../health`) and exit 0/1 (container health check).
    #[arg(long)]
    health: Option<String>,
}

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(url) = cli.health {
        let ok = reqwest::Client::new()
            .get(format!("{}/health", url.trim_end_matches('/')))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        return if ok {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        };
    }
    match telemetry::receiver::Receiver::start(cli.listen) {
        Ok(r) => {
            eprintln!("otlp-sink listening on {}", r.addr);
            wait_for_stop().await;
            r.stop().await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("otlp-sink: cannot listen on {}: {e}", cli.listen);
            std::process::ExitCode::FAILURE
        }
    }
}

/// Wait for SIGINT or SIGTERM (what `docker stop` sends).
async fn wait_for_stop() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("otlp-sink: cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
