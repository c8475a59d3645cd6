//! The devices' HTTP side: one shared reqwest client (rustls, optional private CA), a target policy
//! (HTTPS unless told otherwise, loopback only for load runs), and typed calls of the LAN contract.

use std::path::PathBuf;
use std::time::Duration;

use omadm::codec::Encoding;
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;
use url::{Host, Url};

use crate::lan::{
    ANNOUNCE_PATH, Announce, AnnounceReply, CONSENT_PATH, ConsentAnswer, ConsentReply, ErrorBody,
    HEARTBEAT_PATH, Heartbeat,
};
use crate::tls::{self, TlsError};

/// Largest response body read from the gateway (DM messages are bounded tighter by the codec).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Largest error text kept from a response body.
const MAX_ERROR_TEXT: usize = 200;
/// The header carrying `syncml:auth-MAC`.
pub const HMAC_HEADER: &str = "x-syncml-hmac";

/// An HTTP exchange that failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// A URL could not be parsed or joined.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL (or relative reference).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A plain `http://` URL while the run requires HTTPS.
    #[error("{url} is plain HTTP; the gateway is HTTPS (pass --plain-http for local tests)")]
    PlainHttp {
        /// The URL.
        url: String,
    },
    /// A target outside the loopback range while the run is restricted to loopback.
    #[error("{url} is not a loopback address (pass --allow-remote to target it)")]
    NotLoopback {
        /// The URL.
        url: String,
    },
    /// The request could not be sent or the response not read (connection, TLS, timeout).
    #[error("{method} {url}: {reason}")]
    Transport {
        /// `GET` or `POST`.
        method: &'static str,
        /// The URL.
        url: String,
        /// What reqwest said, with its causes.
        reason: String,
        /// True for a timeout or a connection failure (worth retrying).
        transient: bool,
    },
    /// The server answered with an unexpected status.
    #[error("{method} {url}: status {status}: {message}")]
    Status {
        /// `GET` or `POST`.
        method: &'static str,
        /// The URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The `error` of a JSON error body, or the start of the body.
        message: String,
    },
    /// The response body is larger than [`MAX_BODY_BYTES`].
    #[error("{url}: response larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// The response body is not the JSON expected.
    #[error("{url}: unexpected JSON: {reason}")]
    Json {
        /// The URL.
        url: String,
        /// What serde said.
        reason: String,
    },
    /// The CA file could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The HTTP client could not be built.
    #[error("HTTP client: {reason}")]
    Build {
        /// What reqwest said.
        reason: String,
    },
}

impl ClientError {
    /// True when trying again later may succeed: connection failures, timeouts, 5xx, 408 and 429.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport { transient, .. } => *transient,
            ClientError::Status { status, .. } => *status >= 500 || matches!(status, 408 | 429),
            _ => false,
        }
    }

    /// The HTTP status, when the server answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Which URLs requests may go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Allow `http://` URLs (tests); otherwise HTTPS only.
    pub plain_http: bool,
    /// Only loopback hosts (`127.0.0.0/8`, `::1`, `localhost`): the default of load runs.
    pub loopback_only: bool,
}

impl TargetPolicy {
    /// Check a URL against the policy.
    pub fn check(&self, url: &Url) -> Result<(), ClientError> {
        match url.scheme() {
            "https" => {}
            "http" if self.plain_http => {}
            "http" => {
                return Err(ClientError::PlainHttp {
                    url: url.to_string(),
                });
            }
            other => {
                return Err(ClientError::InvalidUrl {
                    url: url.to_string(),
                    reason: format!("scheme {other} is not http(s)"),
                });
            }
        }
        if self.loopback_only && !is_loopback(url) {
            return Err(ClientError::NotLoopback {
                url: url.to_string(),
            });
        }
        Ok(())
    }
}

/// True when the URL's host is a loopback address or `localhost` (no name resolution is done).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => false,
    }
}

/// How the HTTP client is set up.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// A PEM bundle of CAs to trust for the gateway; when set, only these are trusted.
    pub ca_cert: Option<PathBuf>,
    /// Which URLs may be used.
    pub policy: TargetPolicy,
    /// Timeout of one whole request.
    pub timeout: Duration,
    /// Timeout of connecting.
    pub connect_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            ca_cert: None,
            policy: TargetPolicy {
                plain_http: false,
                loopback_only: false,
            },
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The shared HTTP transport of all simulated devices. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Transport {
    http: reqwest::Client,
    policy: TargetPolicy,
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

fn transport_error(method: &'static str, url: &Url, e: reqwest::Error) -> ClientError {
    let transient = e.is_timeout() || e.is_connect();
    ClientError::Transport {
        method,
        url: url.to_string(),
        reason: chain(&e.without_url()),
        transient,
    }
}

fn cut(text: &str) -> String {
    let mut out: String = text.trim().chars().take(MAX_ERROR_TEXT).collect();
    if out.len() < text.trim().len() {
        out.push('…');
    }
    out
}

impl Transport {
    /// Build the client: rustls, the given CA as the only trust anchor when set, HTTPS only unless
    /// the policy allows plain HTTP.
    pub fn new(settings: &HttpSettings) -> Result<Transport, ClientError> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .https_only(!settings.policy.plain_http)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("dmgw-device-sim/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca_cert {
            builder = builder.tls_certs_only(tls::load_ca(path)?);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Build { reason: chain(&e) })?;
        Ok(Transport {
            http,
            policy: settings.policy,
        })
    }

    /// The target policy in force.
    pub fn policy(&self) -> TargetPolicy {
        self.policy
    }

    async fn read_body(
        method: &'static str,
        url: &Url,
        mut resp: reqwest::Response,
    ) -> Result<Vec<u8>, ClientError> {
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(ClientError::TooLarge {
                url: url.to_string(),
                limit: MAX_BODY_BYTES,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| transport_error(method, url, e))?
        {
            if body.len().saturating_add(chunk.len()) > MAX_BODY_BYTES {
                return Err(ClientError::TooLarge {
                    url: url.to_string(),
                    limit: MAX_BODY_BYTES,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Send a request in a client span of the current span (with its `traceparent`); answers other
    /// than 2xx become [`ClientError::Status`]. Returns the status and the body.
    async fn send(
        &self,
        method: &'static str,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        self.policy.check(url)?;
        let resp = telemetry::http::send(request)
            .await
            .map_err(|e| transport_error(method, url, e))?;
        let status = resp.status().as_u16();
        let body = Self::read_body(method, url, resp).await?;
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&body);
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|e| cut(&e.error))
                .unwrap_or_else(|_| cut(&text));
            return Err(ClientError::Status {
                method,
                url: url.to_string(),
                status,
                message,
            });
        }
        Ok((status, body))
    }

    /// `POST` a JSON body; returns the status and the response body.
    pub async fn post_json<B: Serialize>(
        &self,
        url: &Url,
        body: &B,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let req = self.http.post(url.clone()).json(body);
        self.send("POST", url, req).await
    }

    /// `GET` a JSON document, with an optional bearer token.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        url: &Url,
        bearer: Option<&str>,
    ) -> Result<T, ClientError> {
        let mut req = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let (_, body) = self.send("GET", url, req).await?;
        parse_json(url, &body)
    }

    /// `GET` a provisioning bootstrap, asking for `encoding`.
    pub async fn get_bootstrap(
        &self,
        url: &Url,
        encoding: Encoding,
    ) -> Result<Vec<u8>, ClientError> {
        let req = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, encoding.mime());
        let (_, body) = self.send("GET", url, req).await?;
        Ok(body)
    }

    /// `POST` one SyncML DM message; returns the server's message bytes.
    pub async fn post_dm(
        &self,
        url: &Url,
        encoding: Encoding,
        body: Vec<u8>,
        hmac: Option<String>,
    ) -> Result<Vec<u8>, ClientError> {
        let mut req = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, encoding.mime())
            .header(reqwest::header::ACCEPT, encoding.mime())
            .body(body);
        if let Some(mac) = hmac {
            req = req.header(HMAC_HEADER, mac);
        }
        let (_, body) = self.send("POST", url, req).await?;
        Ok(body)
    }
}

fn parse_json<T: DeserializeOwned>(url: &Url, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Json {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

/// Parse a URL, or resolve a relative reference against `base`.
pub fn resolve(base: &Url, reference: &str) -> Result<Url, ClientError> {
    let r = reference.trim();
    match Url::parse(r) {
        Ok(u) => Ok(u),
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            base.join(r).map_err(|e| ClientError::InvalidUrl {
                url: r.to_owned(),
                reason: e.to_string(),
            })
        }
        Err(e) => Err(ClientError::InvalidUrl {
            url: r.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// The base URL with a trailing `/`, so that contract paths join below it.
pub fn as_base(url: &Url) -> Url {
    let mut base = url.clone();
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.set_query(None);
    base.set_fragment(None);
    base
}

/// What a heartbeat told the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    /// `204`: the gateway knows the device.
    Known,
    /// `404`: the gateway does not know the device; announce again.
    Unknown,
}

/// The gateway's LAN face as a device calls it.
#[derive(Debug, Clone)]
pub struct GatewayClient {
    transport: Transport,
    base: Url,
}

impl GatewayClient {
    /// A client of the gateway at `base` (its LAN base URL). The URL must pass the transport's policy.
    pub fn new(transport: Transport, base: &Url) -> Result<GatewayClient, ClientError> {
        transport.policy.check(base)?;
        Ok(GatewayClient {
            transport,
            base: as_base(base),
        })
    }

    /// The gateway's base URL (with a trailing `/`).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The shared transport.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    fn endpoint(&self, path: &str) -> Result<Url, ClientError> {
        self.base.join(path).map_err(|e| ClientError::InvalidUrl {
            url: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Step 1-1: `POST /lan/v1/announce`.
    pub async fn announce(&self, body: &Announce) -> Result<AnnounceReply, ClientError> {
        let url = self.endpoint(ANNOUNCE_PATH)?;
        let (_, bytes) = self.transport.post_json(&url, body).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(AnnounceReply::default());
        }
        parse_json(&url, &bytes)
    }

    /// `POST /lan/v1/heartbeat`: `Known` on 2xx, `Unknown` on 404.
    pub async fn heartbeat(&self, dev_id: &str) -> Result<HeartbeatOutcome, ClientError> {
        let url = self.endpoint(HEARTBEAT_PATH)?;
        let body = Heartbeat {
            dev_id: dev_id.to_owned(),
        };
        match self.transport.post_json(&url, &body).await {
            Ok(_) => Ok(HeartbeatOutcome::Known),
            Err(e) if e.status() == Some(404) => Ok(HeartbeatOutcome::Unknown),
            Err(e) => Err(e),
        }
    }

    /// Step 1-2: `POST /lan/v1/consent`; returns the provisioning URL when allowed (resolved against
    /// the gateway's base URL).
    pub async fn consent(&self, body: &ConsentAnswer) -> Result<Option<Url>, ClientError> {
        let url = self.endpoint(CONSENT_PATH)?;
        let (_, bytes) = self.transport.post_json(&url, body).await?;
        let reply: ConsentReply = if bytes.iter().all(u8::is_ascii_whitespace) {
            ConsentReply::default()
        } else {
            parse_json(&url, &bytes)?
        };
        reply
            .provisioning_url
            .filter(|u| !u.trim().is_empty())
            .map(|u| resolve(&self.base, &u))
            .transpose()
    }

    /// Step 1-3: `GET {provisioning_url}`.
    pub async fn provisioning(
        &self,
        url: &Url,
        encoding: Encoding,
    ) -> Result<Vec<u8>, ClientError> {
        self.transport.get_bootstrap(url, encoding).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn loopback_detection() {
        for u in [
            "http://127.0.0.1:8080/",
            "http://127.9.9.9/",
            "http://[::1]:1/",
            "http://localhost/",
            "https://LOCALHOST./x",
            "http://gw.localhost/",
        ] {
            assert!(is_loopback(&url(u)), "{u}");
        }
        for u in [
            "http://10.0.0.1/",
            "http://192.168.1.1/",
            "http://gateway.lan/",
            "http://localhost.example.com/",
            "http://[::2]/",
        ] {
            assert!(!is_loopback(&url(u)), "{u}");
        }
    }

    #[test]
    fn policy_refuses_plain_http_and_remote_targets() {
        let strict = TargetPolicy {
            plain_http: false,
            loopback_only: true,
        };
        assert!(matches!(
            strict.check(&url("http://127.0.0.1/")),
            Err(ClientError::PlainHttp { .. })
        ));
        assert!(matches!(
            strict.check(&url("https://10.1.1.1/")),
            Err(ClientError::NotLoopback { .. })
        ));
        assert!(strict.check(&url("https://127.0.0.1/")).is_ok());
        assert!(matches!(
            strict.check(&url("ftp://127.0.0.1/")),
            Err(ClientError::InvalidUrl { .. })
        ));
        let open = TargetPolicy {
            plain_http: true,
            loopback_only: false,
        };
        assert!(open.check(&url("http://gateway.lan/")).is_ok());
    }

    #[test]
    fn base_and_relative_urls() {
        let base = as_base(&url("https://gw.lan:8443/prefix?x=1"));
        assert_eq!(base.as_str(), "https://gw.lan:8443/prefix/");
        assert_eq!(
            base.join(ANNOUNCE_PATH).unwrap().as_str(),
            "https://gw.lan:8443/prefix/lan/v1/announce"
        );
        assert_eq!(
            resolve(&base, "/lan/v1/provisioning/abc").unwrap().as_str(),
            "https://gw.lan:8443/lan/v1/provisioning/abc"
        );
        assert_eq!(
            resolve(&base, "https://other/x").unwrap().as_str(),
            "https://other/x"
        );
        assert!(resolve(&base, "http://[bad").is_err());
    }

    #[test]
    fn transient_errors() {
        let status = |s| ClientError::Status {
            method: "POST",
            url: "u".into(),
            status: s,
            message: String::new(),
        };
        assert!(status(503).is_transient());
        assert!(status(429).is_transient());
        assert!(!status(400).is_transient());
        assert!(!status(404).is_transient());
    }
}
