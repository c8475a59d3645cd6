//! `dmgw health`: the container health check (scratch images have no curl). It GETs `/readyz` of the
//! admin API that the gateway's own settings describe (the same `DMGW_*` environment and `--config`
//! file `dmgw serve` reads), or `--url`, and succeeds only on a 2xx answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser};
use thiserror::Error;

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
    /// A CA file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The request failed (connection, TLS, timeout) or the CA file holds no certificate.
    #[error("{url}: {source}")]
    Http {
        /// The probed URL.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The endpoint answered, but not 2xx.
    #[error("{url} answered {status}: {body}")]
    Unhealthy {
        /// The probed URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
}

/// The serve settings, read from the environment only (what `dmgw serve` sees in a container).
#[derive(Debug, Parser)]
#[command(name = "dmgw")]
struct EnvSettings {
    #[command(flatten)]
    serve: ServeArgs,
}

/// The address to connect to for a listen address: an unspecified one (0.0.0.0, ::) means loopback.
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
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

/// GET `url` (trusting only the certificates of `ca` when given) and return the status line and the
/// start of the body when it answers 2xx.
pub async fn probe(url: &str, ca: Option<&Path>, timeout: Duration) -> Result<String, HealthError> {
    let http = |source| HealthError::Http {
        url: url.to_owned(),
        source,
    };
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca {
        let pem = std::fs::read(path).map_err(|source| HealthError::Read {
            path: path.to_owned(),
            source,
        })?;
        builder =
            builder.tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).map_err(http)?);
    }
    let resp = builder
        .build()
        .map_err(http)?
        .get(url)
        .send()
        .await
        .map_err(http)?;
    let status = resp.status();
    let mut body = resp.text().await.unwrap_or_default();
    if let Some((cut, _)) = body.char_indices().nth(200) {
        body.truncate(cut);
    }
    if status.is_success() {
        Ok(format!("{} {}", status.as_u16(), body.trim()))
    } else {
        Err(HealthError::Unhealthy {
            url: url.to_owned(),
            status: status.as_u16(),
            body: body.trim().to_owned(),
        })
    }
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
    probe(&url, ca.as_deref(), timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_probed_on_loopback() {
        let a = probe_addr("0.0.0.0:8080".parse().unwrap());
        assert_eq!(a.to_string(), "127.0.0.1:8080");
        let a = probe_addr("[::]:8080".parse().unwrap());
        assert_eq!(a.to_string(), "[::1]:8080");
        let a = probe_addr("10.0.0.5:9".parse().unwrap());
        assert_eq!(a.to_string(), "10.0.0.5:9");
    }

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
