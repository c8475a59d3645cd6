//! `bootstrap-server health`: the container health check (scratch images have no curl). It GETs `/healthz` of
//! the server that the `BS_*` environment describes (listen address, TLS or not), or `--url`, and
//! succeeds only on a 2xx answer.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use thiserror::Error;

pub use telemetry::health::{ProbeError, local_url, probe, probe_addr, report};

use crate::config::Cli;

/// `bootstrap-server health` flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "bootstrap-server health",
    about = "Exit 0 when the bootstrap server answers its health endpoint with 2xx (container health check)"
)]
pub struct HealthArgs {
    /// URL to probe. Default: `/healthz` of the server the BS_* settings describe (an unspecified listen address is probed on loopback; https with BS_TLS_CERT).
    #[arg(long, env = "BS_HEALTH_URL")]
    pub url: Option<String>,
    /// CA certificates (PEM) to trust for an https URL (only these are trusted when given).
    #[arg(long, env = "BS_HEALTH_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

/// The health check failed.
#[derive(Debug, Error)]
pub enum HealthError {
    /// The server's settings in the environment do not parse (so its address is unknown).
    #[error("settings: {0}")]
    Settings(String),
    /// The probe itself failed or the service is not healthy.
    #[error(transparent)]
    Probe(#[from] ProbeError),
}

/// Run `bootstrap-server health`.
pub async fn run(args: &HealthArgs) -> Result<String, HealthError> {
    let url = match &args.url {
        Some(url) => url.clone(),
        None => {
            let cli = Cli::try_parse_from(["bootstrap-server"])
                .map_err(|e| HealthError::Settings(e.to_string()))?;
            local_url(cli.listen, cli.tls_cert.is_some(), "/healthz")
        }
    };
    let timeout = Duration::from_secs(args.timeout.max(1));
    Ok(probe(&url, args.ca_cert.as_deref(), timeout).await?)
}
