//! `device-sim health`: the container health check (scratch images have no curl). It GETs `/healthz`
//! of the consent callback server that the `DEVICE_SIM_*` environment describes, or `--url`, and
//! succeeds only on a 2xx answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use thiserror::Error;

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

/// The address to connect to for a listen address: an unspecified one (0.0.0.0, ::) means loopback.
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `<scheme>://<probe address><path>` for a server listening on `listen`.
pub fn local_url(listen: SocketAddr, tls: bool, path: &str) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}{path}", probe_addr(listen))
}

/// GET `url` (trusting only the certificates of `ca` when given) and return the status code and the
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

/// Run `device-sim health`; `default_url` is the callback server's `/healthz` from the settings.
pub async fn run(args: &HealthArgs, default_url: Option<String>) -> Result<String, HealthError> {
    let url = args.url.clone().or(default_url).ok_or_else(|| {
        HealthError::Settings(
            "the callback server listens on port 0 (DEVICE_SIM_LISTEN): give --url".to_owned(),
        )
    })?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    probe(&url, args.ca_cert.as_deref(), timeout).await
}

/// Print the outcome of a health check and turn it into the exit status (0 healthy, 1 not).
pub fn report(who: &str, result: Result<String, HealthError>) -> ExitCode {
    match result {
        Ok(answer) => {
            println!("healthy: {answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{who}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_probed_on_loopback() {
        assert_eq!(
            local_url("0.0.0.0:8443".parse().unwrap(), true, "/healthz"),
            "https://127.0.0.1:8443/healthz"
        );
        assert_eq!(
            local_url("[::]:80".parse().unwrap(), false, "/healthz"),
            "http://[::1]:80/healthz"
        );
        assert_eq!(
            probe_addr("10.1.2.3:9".parse().unwrap()).to_string(),
            "10.1.2.3:9"
        );
    }
}
