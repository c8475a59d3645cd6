//! Container health checks, shared by every service's `health` subcommand (scratch images have no
//! curl): GET the service's own health endpoint, trusting a given CA, and exit 0 on 2xx, else 1.

use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
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

/// GET `url` (trusting only the certificates of `ca` when given); on a 2xx answer, the status code
/// and the start of the body.
pub async fn probe(url: &str, ca: Option<&Path>, timeout: Duration) -> Result<String, ProbeError> {
    let http = |source| ProbeError::Http {
        url: url.to_owned(),
        source,
    };
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca {
        let pem = std::fs::read(path).map_err(|source| ProbeError::Read {
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
        Err(ProbeError::Unhealthy {
            url: url.to_owned(),
            status: status.as_u16(),
            body: body.trim().to_owned(),
        })
    }
}

/// Print the outcome of a health check and turn it into the exit status (0 healthy, 1 not).
pub fn report<E: Display>(who: &str, result: Result<String, E>) -> ExitCode {
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

    #[actix_rt::test]
    async fn nothing_listening_is_unhealthy() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/healthz");
        let e = probe(&url, None, Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(e, ProbeError::Http { .. }), "{e}");
        assert_eq!(report("x", Err::<String, _>(e)), ExitCode::FAILURE);
    }
}
