//! `dmgw health`: the container health check (scratch images have no curl). It GETs `/readyz` of the
//! admin API that the gateway's own settings describe (the same `DMGW_*` environment and `--config`
//! file `dmgw serve` reads), or `--url`, and succeeds only on a 2xx answer.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser};
use thiserror::Error;

pub use telemetry::health::{ProbeError, local_url, probe, probe_addr, report};

use crate::config::{ConfigError, ServeArgs, Settings};

/// `dmgw health` flags.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// URL to probe. Default: `/readyz` of the admin API the DMGW_* settings describe (an unspecified
    /// listen address is probed on loopback; https when the admin API has TLS).
    #[arg(long, env = "DMGW_HEALTH_URL")]
    pub url: Option<String>,
    /// CA certificates (PEM) to trust for an https URL. Default: the gateway's --ca-cert.
    #[arg(long, env = "DMGW_HEALTH_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

/// The health check failed.
#[derive(Debug, Error)]
pub enum HealthError {
    /// The gateway's settings could not be resolved (so neither could its admin address).
    #[error("settings: {0}")]
    Config(#[from] ConfigError),
    /// The environment did not parse as the gateway's settings.
    #[error("settings: {0}")]
    Args(String),
    /// The probe itself failed or the service is not healthy.
    #[error(transparent)]
    Probe(#[from] ProbeError),
}

/// The serve settings, read from the environment only (what `dmgw serve` sees in a container).
#[derive(Debug, Parser)]
#[command(name = "dmgw")]
struct EnvSettings {
    #[command(flatten)]
    serve: ServeArgs,
}

/// `/readyz` of the admin API described by `settings`.
pub fn readyz_url(settings: &Settings) -> String {
    let scheme = if settings.admin_tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}/readyz", probe_addr(settings.admin_listen))
}

/// Run `dmgw health`: the URL and CA from the flags, else from the gateway's settings.
pub async fn run(args: &HealthArgs) -> Result<String, HealthError> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let (url, ca) = match &args.url {
        Some(url) => (url.clone(), args.ca_cert.clone()),
        None => {
            let env = EnvSettings::try_parse_from(["dmgw"])
                .map_err(|e| HealthError::Args(e.to_string()))?;
            let settings = env.serve.resolve()?;
            let ca = args.ca_cert.clone().or_else(|| settings.ca_cert.clone());
            (readyz_url(&settings), ca)
        }
    };
    Ok(probe(&url, ca.as_deref(), timeout).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_follows_the_admin_settings() {
        let mut s = ServeArgs {
            admin_token: Some("0123456789abcdef0123".into()),
            allow_plain_http: true,
            admin_listen: Some("0.0.0.0:8181".parse().unwrap()),
            ..ServeArgs::default()
        };
        assert_eq!(
            readyz_url(&s.resolve().unwrap()),
            "http://127.0.0.1:8181/readyz"
        );
        s.admin_tls_cert = Some("c.pem".into());
        s.admin_tls_key = Some("k.pem".into());
        assert_eq!(
            readyz_url(&s.resolve().unwrap()),
            "https://127.0.0.1:8181/readyz"
        );
    }
}
