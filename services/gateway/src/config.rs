//! The gateway's settings: a TOML file, overridden by `DMGW_*` environment variables, overridden by
//! flags. `dmgw serve --help` documents every setting; secrets are held as `Secret` and never printed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use omadm::secret::Secret;
use serde::Deserialize;
use thiserror::Error;

/// A setting is missing, malformed or unsafe.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for these settings.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
    /// A setting has a value that cannot be used.
    #[error("setting {name}: {reason}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `dmgw serve` flags; each is also an environment variable and a key of the TOML file.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML configuration file; flags and DMGW_* variables override its keys.
    #[arg(long, env = "DMGW_CONFIG")]
    pub config: Option<PathBuf>,
    /// SQLite database file (created with its folder). Default: ./data/dmgw.db
    #[arg(long, env = "DMGW_DATABASE")]
    pub database: Option<PathBuf>,
    /// Address of the admin API. Default: 127.0.0.1:8080
    #[arg(long, env = "DMGW_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token of the admin API (prefer --admin-token-file or the environment).
    #[arg(long, env = "DMGW_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// File holding the admin API's bearer token.
    #[arg(long, env = "DMGW_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Run the admin API without a token (local development only).
    #[arg(long, env = "DMGW_INSECURE_ADMIN")]
    pub insecure_admin: bool,
    /// PEM certificate chain for the admin API's TLS; with --admin-tls-key, the API speaks HTTPS.
    #[arg(long, env = "DMGW_ADMIN_TLS_CERT")]
    pub admin_tls_cert: Option<PathBuf>,
    /// PEM private key for the admin API's TLS.
    #[arg(long, env = "DMGW_ADMIN_TLS_KEY")]
    pub admin_tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback admin address (tests and trusted networks only).
    #[arg(long, env = "DMGW_ALLOW_PLAIN_HTTP")]
    pub allow_plain_http: bool,
    /// Address of the LAN face (devices: announce, consent, provisioning, DM). Default: 127.0.0.1:8443
    #[arg(long, env = "DMGW_LAN_LISTEN")]
    pub lan_listen: Option<SocketAddr>,
    /// Base URL devices use to reach the LAN face. Default: derived from --lan-listen
    #[arg(long, env = "DMGW_LAN_PUBLIC_URL")]
    pub lan_public_url: Option<String>,
    /// PEM certificate chain of the LAN face; with --lan-tls-key, the LAN face speaks HTTPS.
    #[arg(long, env = "DMGW_LAN_TLS_CERT")]
    pub lan_tls_cert: Option<PathBuf>,
    /// PEM private key of the LAN face.
    #[arg(long, env = "DMGW_LAN_TLS_KEY")]
    pub lan_tls_key: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for outgoing HTTPS (DM Servers, bootstrap servers, devices).
    #[arg(long, env = "DMGW_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Seconds a consent request and a provisioning URL stay valid. Default: 600
    #[arg(long, env = "DMGW_CONSENT_TTL")]
    pub consent_ttl: Option<u64>,
    /// Address of the WAN face (pushed bootstraps, workflow 2). Default: 127.0.0.1:8444
    #[arg(long, env = "DMGW_WAN_LISTEN")]
    pub wan_listen: Option<SocketAddr>,
    /// Base URL bootstrap servers use to reach the WAN face. Default: derived from --wan-listen
    #[arg(long, env = "DMGW_WAN_PUBLIC_URL")]
    pub wan_public_url: Option<String>,
    /// PEM certificate chain of the WAN face; with --wan-tls-key, the WAN face speaks HTTPS.
    #[arg(long, env = "DMGW_WAN_TLS_CERT")]
    pub wan_tls_cert: Option<PathBuf>,
    /// PEM private key of the WAN face.
    #[arg(long, env = "DMGW_WAN_TLS_KEY")]
    pub wan_tls_key: Option<PathBuf>,
    /// Bootstrap workflow for unknown ServerIDs: 1, 2, or 1,2 (1, falling back to 2). Default: 1,2
    #[arg(long, env = "DMGW_WORKFLOW")]
    pub workflow: Option<String>,
    /// Name the gateway gives bootstrap servers (HTTP Basic, workflow 1). Default: the DevId
    #[arg(long, env = "DMGW_BOOTSTRAP_AUTH_NAME")]
    pub bootstrap_auth_name: Option<String>,
    /// Password the gateway gives bootstrap servers (HTTP Basic, workflow 1).
    #[arg(long, env = "DMGW_BOOTSTRAP_AUTH_SECRET", hide_env_values = true)]
    pub bootstrap_auth_secret: Option<String>,
    /// PEM file with the gateway's client certificate and key (mutual TLS, workflow 1).
    #[arg(long, env = "DMGW_CLIENT_IDENTITY")]
    pub client_identity: Option<PathBuf>,
    /// The PIN that keys the MAC of pushed bootstraps (SEC=USERPIN, workflow 2).
    #[arg(long, env = "DMGW_PUSH_PIN", hide_env_values = true)]
    pub push_pin: Option<String>,
    /// The IMSI that keys the MAC of pushed bootstraps (SEC=NETWPIN/USERNETWPIN, workflow 2).
    #[arg(long, env = "DMGW_PUSH_IMSI", hide_env_values = true)]
    pub push_imsi: Option<String>,
    /// Seconds to wait for a pushed bootstrap after the hand-over (workflow 2). Default: 600
    #[arg(long, env = "DMGW_PUSH_TIMEOUT")]
    pub push_timeout: Option<u64>,
    /// Let a bootstrap overwrite an existing account with the same ServerID. Default: false
    #[arg(long, env = "DMGW_BOOTSTRAP_OVERWRITE")]
    pub bootstrap_overwrite: bool,
    /// Attempts at a workflow-1 bootstrap before the job fails. Default: 10
    #[arg(long, env = "DMGW_BOOTSTRAP_MAX_ATTEMPTS")]
    pub bootstrap_max_attempts: Option<u32>,
    /// Browse DNS-SD/mDNS for devices advertising `_omadm-dev._tcp` (needs multicast on the LAN).
    #[arg(long, env = "DMGW_MDNS")]
    pub mdns: bool,
    /// The gateway's own DevId (./DevInfo/DevId), as DM Servers know it. Default: urn:dmgw:gateway
    #[arg(long, env = "DMGW_DEV_ID")]
    pub dev_id: Option<String>,
    /// Factory accounts to load at start (TOML, see deploy/gateway/accounts.example.toml).
    #[arg(long, env = "DMGW_ACCOUNTS_FILE")]
    pub accounts_file: Option<PathBuf>,
    /// Log format: text or json. Default: text
    #[arg(long, env = "DMGW_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter (tracing EnvFilter syntax). Default: info
    #[arg(long, env = "DMGW_LOG")]
    pub log: Option<String>,
    /// Largest request body the admin API accepts, in bytes. Default: 65536
    #[arg(long, env = "DMGW_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Seconds in-flight requests get to finish at shutdown. Default: 10
    #[arg(long, env = "DMGW_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<u64>,
    /// Alert delivery attempts before an alert is marked failed. Default: 20
    #[arg(long, env = "DMGW_ALERT_MAX_ATTEMPTS")]
    pub alert_max_attempts: Option<u32>,
    /// First retry delay of alert delivery, in milliseconds (doubles per attempt). Default: 1000
    #[arg(long, env = "DMGW_ALERT_BACKOFF_MS")]
    pub alert_backoff_ms: Option<u64>,
    /// Largest retry delay of alert delivery, in milliseconds. Default: 300000
    #[arg(long, env = "DMGW_ALERT_BACKOFF_MAX_MS")]
    pub alert_backoff_max_ms: Option<u64>,
    /// Seconds without a heartbeat after which a device is declared lost. Default: 120
    #[arg(long, env = "DMGW_HEARTBEAT_TIMEOUT")]
    pub heartbeat_timeout: Option<u64>,
}

/// The keys of the TOML file (the same names as the flags, with underscores).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database: Option<PathBuf>,
    admin_listen: Option<SocketAddr>,
    admin_token: Option<String>,
    admin_token_file: Option<PathBuf>,
    insecure_admin: Option<bool>,
    admin_tls_cert: Option<PathBuf>,
    admin_tls_key: Option<PathBuf>,
    allow_plain_http: Option<bool>,
    dev_id: Option<String>,
    lan_listen: Option<SocketAddr>,
    lan_public_url: Option<String>,
    lan_tls_cert: Option<PathBuf>,
    lan_tls_key: Option<PathBuf>,
    ca_cert: Option<PathBuf>,
    consent_ttl: Option<u64>,
    mdns: Option<bool>,
    wan_listen: Option<SocketAddr>,
    wan_public_url: Option<String>,
    wan_tls_cert: Option<PathBuf>,
    wan_tls_key: Option<PathBuf>,
    workflow: Option<String>,
    bootstrap_auth_name: Option<String>,
    bootstrap_auth_secret: Option<String>,
    client_identity: Option<PathBuf>,
    push_pin: Option<String>,
    push_imsi: Option<String>,
    push_timeout: Option<u64>,
    bootstrap_overwrite: Option<bool>,
    bootstrap_max_attempts: Option<u32>,
    accounts_file: Option<PathBuf>,
    log_format: Option<LogFormat>,
    log: Option<String>,
    max_body_bytes: Option<usize>,
    shutdown_timeout: Option<u64>,
    alert_max_attempts: Option<u32>,
    alert_backoff_ms: Option<u64>,
    alert_backoff_max_ms: Option<u64>,
    heartbeat_timeout: Option<u64>,
}

/// Which workflow the gateway uses to get bootstrapped for an unknown ServerID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkflowPolicy {
    /// Workflow 1 only: the device gives the bootstrap server's URL; the gateway GETs it.
    One,
    /// Workflow 2 only: the device asks its bootstrap server to push to the gateway.
    Two,
    /// Workflow 1 where the device gave a URL, else workflow 2.
    #[default]
    OneThenTwo,
}

impl WorkflowPolicy {
    /// `1`, `2`, or `1,2` (also `1+2`, `1then2`).
    pub fn parse(s: &str) -> Option<WorkflowPolicy> {
        match s.trim().replace(' ', "").to_ascii_lowercase().as_str() {
            "1" => Some(WorkflowPolicy::One),
            "2" => Some(WorkflowPolicy::Two),
            "1,2" | "1+2" | "1then2" => Some(WorkflowPolicy::OneThenTwo),
            _ => None,
        }
    }
}

/// Retry policy of the alert outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// First delay.
    pub base: Duration,
    /// Largest delay.
    pub max: Duration,
}

/// TLS material for a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The resolved settings the gateway runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// SQLite database file.
    pub database: PathBuf,
    /// Admin API address.
    pub admin_listen: SocketAddr,
    /// Admin bearer token; `None` only with `insecure_admin`.
    pub admin_token: Option<Secret>,
    /// TLS for the admin API.
    pub admin_tls: Option<TlsFiles>,
    /// Plain HTTP was explicitly allowed (local tests): http:// peers are accepted too.
    pub allow_plain_http: bool,
    /// The gateway's DevId.
    pub dev_id: String,
    /// LAN face address.
    pub lan_listen: SocketAddr,
    /// LAN face base URL as devices see it (no trailing slash).
    pub lan_public_url: String,
    /// TLS for the LAN face.
    pub lan_tls: Option<TlsFiles>,
    /// Extra trust anchors for outgoing HTTPS.
    pub ca_cert: Option<PathBuf>,
    /// How long consent requests and provisioning URLs stay valid.
    pub consent_ttl: Duration,
    /// Browse DNS-SD for devices.
    pub mdns: bool,
    /// WAN face address.
    pub wan_listen: SocketAddr,
    /// WAN face base URL as bootstrap servers see it (no trailing slash).
    pub wan_public_url: String,
    /// TLS for the WAN face.
    pub wan_tls: Option<TlsFiles>,
    /// Bootstrap workflow policy.
    pub workflow: WorkflowPolicy,
    /// HTTP Basic credentials towards bootstrap servers (workflow 1).
    pub bootstrap_auth: Option<(String, Secret)>,
    /// Client certificate and key (PEM) for mutual TLS towards bootstrap servers.
    pub client_identity: Option<PathBuf>,
    /// Key material of pushed bootstraps' MAC.
    pub push_pin: Option<Secret>,
    /// IMSI of pushed bootstraps' MAC.
    pub push_imsi: Option<Secret>,
    /// How long to wait for a pushed bootstrap.
    pub push_timeout: Duration,
    /// May a bootstrap overwrite an existing account.
    pub bootstrap_overwrite: bool,
    /// Attempts at a workflow-1 bootstrap.
    pub bootstrap_max_attempts: u32,
    /// Factory accounts file.
    pub accounts_file: Option<PathBuf>,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log: String,
    /// Largest admin request body.
    pub max_body_bytes: usize,
    /// Shutdown grace period.
    pub shutdown_timeout: Duration,
    /// Alert retry policy.
    pub alert_retry: RetryPolicy,
    /// Heartbeat timeout.
    pub heartbeat_timeout: Duration,
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

fn read_token(path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(Secret::new(text.trim()))
}

impl ServeArgs {
    /// Resolve flags and environment (already merged by clap) over the file over the defaults.
    pub fn resolve(&self) -> Result<Settings, ConfigError> {
        let file = match &self.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let token = match (
            self.admin_token.clone(),
            self.admin_token_file.clone(),
            file.admin_token.clone(),
            file.admin_token_file.clone(),
        ) {
            (Some(t), ..) => Some(Secret::new(t)),
            (None, Some(p), ..) => Some(read_token(&p)?),
            (None, None, Some(t), _) => Some(Secret::new(t)),
            (None, None, None, Some(p)) => Some(read_token(&p)?),
            (None, None, None, None) => None,
        }
        .filter(|t| !t.is_empty());
        let insecure = self.insecure_admin || file.insecure_admin.unwrap_or(false);
        if token.is_none() && !insecure {
            return Err(ConfigError::Invalid {
                name: "admin_token",
                reason:
                    "the admin API needs a bearer token (--admin-token-file, DMGW_ADMIN_TOKEN) \
                         or --insecure-admin for local development"
                        .into(),
            });
        }
        if let Some(t) = &token
            && t.expose().len() < 16
        {
            return Err(ConfigError::Invalid {
                name: "admin_token",
                reason: "must be at least 16 characters".into(),
            });
        }
        let admin_listen = self
            .admin_listen
            .or(file.admin_listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let admin_tls = match (
            self.admin_tls_cert.clone().or(file.admin_tls_cert),
            self.admin_tls_key.clone().or(file.admin_tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "admin_tls_cert",
                    reason: "--admin-tls-cert and --admin-tls-key go together".into(),
                });
            }
        };
        let plain_ok = self.allow_plain_http || file.allow_plain_http.unwrap_or(false);
        if admin_tls.is_none() && !admin_listen.ip().is_loopback() && !plain_ok {
            return Err(ConfigError::Invalid {
                name: "admin_listen",
                reason: format!(
                    "{admin_listen} is not a loopback address: give --admin-tls-cert/--admin-tls-key, \
                     or --allow-plain-http to accept plain HTTP"
                ),
            });
        }
        let dev_id = self
            .dev_id
            .clone()
            .or(file.dev_id)
            .unwrap_or_else(|| "urn:dmgw:gateway".to_owned());
        if dev_id.trim().is_empty() {
            return Err(ConfigError::Invalid {
                name: "dev_id",
                reason: "must not be empty".into(),
            });
        }
        let lan_listen = self
            .lan_listen
            .or(file.lan_listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443)));
        let lan_tls = match (
            self.lan_tls_cert.clone().or(file.lan_tls_cert),
            self.lan_tls_key.clone().or(file.lan_tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "lan_tls_cert",
                    reason: "--lan-tls-cert and --lan-tls-key go together".into(),
                });
            }
        };
        if lan_tls.is_none() && !plain_ok {
            return Err(ConfigError::Invalid {
                name: "lan_tls_cert",
                reason: "the LAN face needs --lan-tls-cert/--lan-tls-key, or --allow-plain-http \
                         for local tests"
                    .into(),
            });
        }
        let scheme = if lan_tls.is_some() { "https" } else { "http" };
        let lan_public_url = self
            .lan_public_url
            .clone()
            .or(file.lan_public_url)
            .unwrap_or_else(|| format!("{scheme}://{lan_listen}"))
            .trim_end_matches('/')
            .to_owned();
        let parsed = url::Url::parse(&lan_public_url).map_err(|e| ConfigError::Invalid {
            name: "lan_public_url",
            reason: e.to_string(),
        })?;
        if parsed.scheme() != "https" && !(parsed.scheme() == "http" && plain_ok) {
            return Err(ConfigError::Invalid {
                name: "lan_public_url",
                reason: "must be https (or http with --allow-plain-http)".into(),
            });
        }
        let wan_listen = self
            .wan_listen
            .or(file.wan_listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8444)));
        let wan_tls = match (
            self.wan_tls_cert.clone().or(file.wan_tls_cert),
            self.wan_tls_key.clone().or(file.wan_tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "wan_tls_cert",
                    reason: "--wan-tls-cert and --wan-tls-key go together".into(),
                });
            }
        };
        if wan_tls.is_none() && !plain_ok {
            return Err(ConfigError::Invalid {
                name: "wan_tls_cert",
                reason: "the WAN face needs --wan-tls-cert/--wan-tls-key, or --allow-plain-http \
                         for local tests"
                    .into(),
            });
        }
        let wan_scheme = if wan_tls.is_some() { "https" } else { "http" };
        let wan_public_url = self
            .wan_public_url
            .clone()
            .or(file.wan_public_url)
            .unwrap_or_else(|| format!("{wan_scheme}://{wan_listen}"))
            .trim_end_matches('/')
            .to_owned();
        url::Url::parse(&wan_public_url).map_err(|e| ConfigError::Invalid {
            name: "wan_public_url",
            reason: e.to_string(),
        })?;
        let workflow = match self.workflow.clone().or(file.workflow) {
            None => WorkflowPolicy::default(),
            Some(w) => WorkflowPolicy::parse(&w).ok_or_else(|| ConfigError::Invalid {
                name: "workflow",
                reason: format!("{w:?}: expected 1, 2 or 1,2"),
            })?,
        };
        let max_body_bytes = self
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(65_536);
        if !(1024..=16 * 1024 * 1024).contains(&max_body_bytes) {
            return Err(ConfigError::Invalid {
                name: "max_body_bytes",
                reason: "must be between 1 KiB and 16 MiB".into(),
            });
        }
        let base = self
            .alert_backoff_ms
            .or(file.alert_backoff_ms)
            .unwrap_or(1000);
        let max = self
            .alert_backoff_max_ms
            .or(file.alert_backoff_max_ms)
            .unwrap_or(300_000);
        if base == 0 || max < base {
            return Err(ConfigError::Invalid {
                name: "alert_backoff_ms",
                reason: "the first delay must be positive and not above the largest".into(),
            });
        }
        if let Some(name) = self
            .bootstrap_auth_name
            .as_deref()
            .or(file.bootstrap_auth_name.as_deref())
            && name.contains(':')
        {
            return Err(ConfigError::Invalid {
                name: "bootstrap_auth_name",
                reason: "HTTP Basic user names cannot contain ':' (RFC 7617)".into(),
            });
        }
        let bootstrap_auth = self
            .bootstrap_auth_secret
            .clone()
            .or(file.bootstrap_auth_secret)
            .filter(|s| !s.is_empty())
            .map(|secret| {
                (
                    self.bootstrap_auth_name
                        .clone()
                        .or(file.bootstrap_auth_name.clone())
                        // RFC 7617: no ':' in a Basic user name; a DevId like urn:x:y maps to urn_x_y.
                        .unwrap_or_else(|| dev_id.replace(':', "_")),
                    Secret::new(secret),
                )
            });
        Ok(Settings {
            database: self
                .database
                .clone()
                .or(file.database)
                .unwrap_or_else(|| PathBuf::from("./data/dmgw.db")),
            admin_listen,
            allow_plain_http: plain_ok,
            admin_token: token,
            admin_tls,
            dev_id,
            accounts_file: self.accounts_file.clone().or(file.accounts_file),
            lan_listen,
            lan_public_url,
            lan_tls,
            ca_cert: self.ca_cert.clone().or(file.ca_cert),
            mdns: self.mdns || file.mdns.unwrap_or(false),
            wan_listen,
            wan_public_url,
            wan_tls,
            workflow,
            bootstrap_auth,
            client_identity: self.client_identity.clone().or(file.client_identity),
            push_pin: self
                .push_pin
                .clone()
                .or(file.push_pin)
                .filter(|s| !s.is_empty())
                .map(Secret::new),
            push_imsi: self
                .push_imsi
                .clone()
                .or(file.push_imsi)
                .filter(|s| !s.is_empty())
                .map(Secret::new),
            push_timeout: Duration::from_secs(
                self.push_timeout
                    .or(file.push_timeout)
                    .unwrap_or(600)
                    .max(1),
            ),
            bootstrap_overwrite: self.bootstrap_overwrite
                || file.bootstrap_overwrite.unwrap_or(false),
            bootstrap_max_attempts: self
                .bootstrap_max_attempts
                .or(file.bootstrap_max_attempts)
                .unwrap_or(10)
                .max(1),
            consent_ttl: Duration::from_secs(
                self.consent_ttl.or(file.consent_ttl).unwrap_or(600).max(1),
            ),
            log_format: self.log_format.or(file.log_format).unwrap_or_default(),
            log: self
                .log
                .clone()
                .or(file.log)
                .unwrap_or_else(|| "info".to_owned()),
            max_body_bytes,
            shutdown_timeout: Duration::from_secs(
                self.shutdown_timeout
                    .or(file.shutdown_timeout)
                    .unwrap_or(10),
            ),
            alert_retry: RetryPolicy {
                max_attempts: self
                    .alert_max_attempts
                    .or(file.alert_max_attempts)
                    .unwrap_or(20)
                    .max(1),
                base: Duration::from_millis(base),
                max: Duration::from_millis(max),
            },
            heartbeat_timeout: Duration::from_secs(
                self.heartbeat_timeout
                    .or(file.heartbeat_timeout)
                    .unwrap_or(120)
                    .max(1),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs {
            admin_token: Some("0123456789abcdef0123".into()),
            allow_plain_http: true,
            ..ServeArgs::default()
        }
    }

    #[test]
    fn defaults_work_with_a_token() {
        let s = args().resolve().unwrap();
        assert_eq!(s.database, PathBuf::from("./data/dmgw.db"));
        assert_eq!(s.admin_listen.to_string(), "127.0.0.1:8080");
        assert!(format!("{s:?}").contains("<redacted>"));
        assert!(!format!("{s:?}").contains("0123456789abcdef0123"));
    }

    #[test]
    fn refuses_to_start_without_a_token_unless_insecure() {
        let err = ServeArgs::default().resolve().unwrap_err();
        assert!(err.to_string().contains("admin_token"), "{err}");
        let s = ServeArgs {
            insecure_admin: true,
            allow_plain_http: true,
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap();
        assert!(s.admin_token.is_none());
    }

    #[test]
    fn file_is_overridden_by_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dmgw.toml");
        std::fs::write(
            &path,
            "database = \"/tmp/x.db\"\ndev_id = \"from-file\"\nalert_max_attempts = 3\n",
        )
        .unwrap();
        let s = ServeArgs {
            config: Some(path.clone()),
            dev_id: Some("from-flag".into()),
            ..args()
        }
        .resolve()
        .unwrap();
        assert_eq!(s.database, PathBuf::from("/tmp/x.db"));
        assert_eq!(s.dev_id, "from-flag");
        assert_eq!(s.alert_retry.max_attempts, 3);
        std::fs::write(&path, "no_such_key = 1\n").unwrap();
        let err = ServeArgs {
            config: Some(path),
            ..args()
        }
        .resolve()
        .unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }));
    }

    #[test]
    fn plain_http_off_loopback_needs_opt_in() {
        let a = ServeArgs {
            admin_listen: Some("0.0.0.0:8080".parse().unwrap()),
            allow_plain_http: false,
            lan_tls_cert: Some("c.pem".into()),
            lan_tls_key: Some("k.pem".into()),
            wan_tls_cert: Some("c.pem".into()),
            wan_tls_key: Some("k.pem".into()),
            ..args()
        };
        assert!(a.resolve().is_err());
        let a = ServeArgs {
            allow_plain_http: true,
            ..a
        };
        assert!(a.resolve().is_ok());
    }
}
