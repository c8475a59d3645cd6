//! `device-sim health`: the container health check (scratch images have no curl). It GETs `/healthz`
//! of the consent callback server that the `DEVICE_SIM_*` environment describes, or `--url`, and
//! succeeds only on a 2xx answer.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

pub use telemetry::health::{ProbeError, local_url, probe, probe_addr, report};

/// `device-sim health` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// URL to probe. Default: `/healthz` of the callback server the DEVICE_SIM_* settings describe
    /// (an unspecified listen address is probed on loopback; https with DEVICE_SIM_TLS_CERT).
    #[arg(long, env = "DEVICE_SIM_HEALTH_URL")]
    pub url: Option<String>,
    /// CA certificates (PEM) to trust for an https URL (only these are trusted when given).
    #[arg(long, env = "DEVICE_SIM_HEALTH_CA_CERT")]
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

/// Run `device-sim health`; `default_url` is the callback server's `/healthz` from the settings.
pub async fn run(args: &HealthArgs, default_url: Option<String>) -> Result<String, HealthError> {
    let url = args.url.clone().or(default_url).ok_or_else(|| {
        HealthError::Settings(
            "the callback server listens on port 0 (DEVICE_SIM_LISTEN): give --url".to_owned(),
        )
    })?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    Ok(probe(&url, args.ca_cert.as_deref(), timeout).await?)
}
