//! Settings of a bootstrap-server instance: the command line (every flag also a `BS_*` environment
//! variable) and the profiles file it names, checked and loaded into one typed [`Config`].

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use omadm::codec::Encoding;

use crate::error::ConfigError;
use crate::profiles::{Profiles, load_profiles};

/// Default body size limit of `POST /dm`, in bytes.
pub const DEFAULT_MAX_BODY: usize = 256 * 1024;

/// The command line of `bootstrap-server`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "bootstrap-server",
    version,
    about = "A DM Bootstrap Server for dmgw gateways (workflow 1: HTTPS GET; workflow 2: push after AssociatedGateway)",
    after_help = "Health check: bootstrap-server health [--url URL] [--ca-cert PEM] [--timeout SECS] (see bootstrap-server health --help)"
)]
pub struct Cli {
    /// TOML file of DM Server profiles, trusted gateways and device accounts.
    #[arg(long, env = "BS_PROFILES")]
    pub profiles: PathBuf,
    /// Address to listen on; port 0 picks a free port. Loopback by default.
    #[arg(long, env = "BS_LISTEN", default_value = "127.0.0.1:8444")]
    pub listen: SocketAddr,
    /// Public base URL of this server (bootstrap SyncHdr Source; `/dm` is appended for the DM endpoint);
    /// default `<scheme>://<bound address>`.
    #[arg(long, env = "BS_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "BS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "BS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) of gateway client certificates: when given, TLS clients are asked for a
    /// certificate (optional), which must chain to one of them.
    #[arg(long, env = "BS_CLIENT_CA", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Serve plain HTTP (no TLS); required when no certificate is given.
    #[arg(long, env = "BS_PLAIN_HTTP", conflicts_with_all = ["tls_cert", "tls_key", "client_ca"])]
    pub plain_http: bool,
    /// How End Devices authenticate on `POST /dm`: `none` (any device), `basic` or `md5` (the
    /// `[[devices]]` accounts of the profiles file).
    #[arg(long, env = "BS_DEVICE_AUTH", value_enum, default_value_t = DeviceAuth::None)]
    pub device_auth: DeviceAuth,
    /// Encoding of pushed bootstraps.
    #[arg(long, env = "BS_PUSH_ENCODING", value_enum, default_value_t = EncodingArg::Wbxml)]
    pub push_encoding: EncodingArg,
    /// Attempts per push before giving up.
    #[arg(long, env = "BS_PUSH_ATTEMPTS", default_value_t = 8)]
    pub push_attempts: u32,
    /// Wait after the first failed attempt, in milliseconds; doubled after each failure.
    #[arg(long, env = "BS_PUSH_BACKOFF_MS", default_value_t = 1000)]
    pub push_backoff_ms: u64,
    /// Longest wait between attempts, in milliseconds.
    #[arg(long, env = "BS_PUSH_BACKOFF_MAX_MS", default_value_t = 60_000)]
    pub push_backoff_max_ms: u64,
    /// Time limit of one push attempt (connect, TLS, request, answer), in milliseconds.
    #[arg(long, env = "BS_PUSH_TIMEOUT_MS", default_value_t = 10_000)]
    pub push_timeout_ms: u64,
    /// Extra trust anchors (PEM, may hold several certificates) for the gateways' push endpoints, added
    /// to the system's.
    #[arg(long, env = "BS_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Push to any https address a device names for a trusted gateway that has no `push_urls`
    /// (otherwise such a gateway cannot be pushed to).
    #[arg(long, env = "BS_PUSH_ANY_ADDRESS")]
    pub push_any_address: bool,
    /// Allow `http://` push addresses (local tests only: the bootstrap carries credentials).
    #[arg(long, env = "BS_PUSH_ALLOW_HTTP")]
    pub push_allow_http: bool,
    /// Largest accepted DM message body, in bytes (413 beyond).
    #[arg(long, env = "BS_MAX_BODY", default_value_t = DEFAULT_MAX_BODY)]
    pub max_body: usize,
    /// Seconds of inactivity after which a device's DM session is dropped.
    #[arg(long, env = "BS_SESSION_IDLE_SECS", default_value_t = 60)]
    pub session_idle_secs: u64,
    /// Most DM sessions open at once (503 beyond).
    #[arg(long, env = "BS_MAX_SESSIONS", default_value_t = 1024)]
    pub max_sessions: usize,
    /// Bootstrap and association records kept in memory (the oldest are dropped).
    #[arg(long, env = "BS_HISTORY", default_value_t = 10_000)]
    pub history: usize,
    /// HTTP worker threads.
    #[arg(long, env = "BS_WORKERS", default_value_t = 2)]
    pub workers: usize,
    /// Log as JSON lines instead of text (logs go to stderr).
    #[arg(long, env = "BS_LOG_JSON")]
    pub log_json: bool,
}

/// The `--device-auth` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceAuth {
    /// Any device is accepted without credentials.
    None,
    /// `syncml:auth-basic` against the `[[devices]]` accounts.
    Basic,
    /// `syncml:auth-md5` against the `[[devices]]` accounts.
    Md5,
}

/// The `--push-encoding` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EncodingArg {
    /// `application/vnd.syncml.dm+xml`.
    Xml,
    /// `application/vnd.syncml.dm+wbxml`.
    Wbxml,
}

impl EncodingArg {
    /// The omadm encoding.
    pub fn encoding(self) -> Encoding {
        match self {
            EncodingArg::Xml => Encoding::Xml,
            EncodingArg::Wbxml => Encoding::Wbxml,
        }
    }
}

/// TLS files of the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CA of client certificates (PEM); `None`: no client certificates are requested.
    pub client_ca: Option<PathBuf>,
}

/// How bootstraps are pushed (workflow 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSettings {
    /// Encoding of the pushed message.
    pub encoding: Encoding,
    /// Attempts before giving up (at least 1).
    pub max_attempts: u32,
    /// First wait after a failure.
    pub backoff_initial: Duration,
    /// Longest wait.
    pub backoff_max: Duration,
    /// Time limit of one attempt.
    pub timeout: Duration,
    /// Extra trust anchors (PEM file).
    pub ca_cert: Option<PathBuf>,
    /// Push to any address for gateways without `push_urls`.
    pub any_address: bool,
    /// Allow `http://` addresses.
    pub allow_http: bool,
}

impl Default for PushSettings {
    fn default() -> PushSettings {
        PushSettings {
            encoding: Encoding::Wbxml,
            max_attempts: 8,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            ca_cert: None,
            any_address: false,
            allow_http: false,
        }
    }
}

/// Everything a server instance runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address (port 0 allowed).
    pub listen: SocketAddr,
    /// Public base URL; `None` derives it from the bound address.
    pub public_url: Option<String>,
    /// TLS files; `None` serves plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Profiles, gateways and device accounts.
    pub profiles: Profiles,
    /// Device authentication on `POST /dm`.
    pub device_auth: DeviceAuth,
    /// Push settings.
    pub push: PushSettings,
    /// Body size limit of `POST /dm`.
    pub max_body: usize,
    /// Idle time after which a DM session is dropped.
    pub session_idle: Duration,
    /// Most DM sessions open at once.
    pub max_sessions: usize,
    /// Records kept of each kind.
    pub history: usize,
    /// HTTP worker threads.
    pub workers: usize,
    /// Stop gracefully on SIGTERM/SIGINT (tests that run several servers turn it off).
    pub handle_signals: bool,
}

impl Config {
    /// A plain-HTTP server on a free loopback port with these profiles, devices unauthenticated:
    /// the base that tests and embedders adjust.
    pub fn new(profiles: Profiles) -> Config {
        Config {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            public_url: None,
            tls: None,
            profiles,
            device_auth: DeviceAuth::None,
            push: PushSettings::default(),
            max_body: DEFAULT_MAX_BODY,
            session_idle: Duration::from_secs(60),
            max_sessions: 1024,
            history: 10_000,
            workers: 1,
            handle_signals: true,
        }
    }

    /// Check the command line and load the profiles file. `env` looks up the environment variables
    /// that profiles name in `master_key_env`.
    pub fn from_cli(cli: Cli, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let tls = match (cli.tls_cert, cli.tls_key, cli.plain_http) {
            (Some(cert), Some(key), false) => Some(TlsFiles {
                cert,
                key,
                client_ca: cli.client_ca,
            }),
            (None, None, true) => None,
            _ => return Err(ConfigError::TlsOrPlain),
        };
        if let Some(url) = &cli.public_url {
            check_public_url(url)?;
        }
        let invalid = |setting: &'static str, reason: &str| ConfigError::Invalid {
            setting,
            reason: reason.to_owned(),
        };
        if cli.max_body == 0 || cli.max_sessions == 0 || cli.workers == 0 || cli.history == 0 {
            return Err(invalid(
                "--max-body/--max-sessions/--workers/--history",
                "must be at least 1",
            ));
        }
        if cli.session_idle_secs == 0 {
            return Err(invalid("--session-idle-secs", "must be at least 1"));
        }
        if cli.push_attempts == 0 || cli.push_attempts > 1000 {
            return Err(invalid("--push-attempts", "must be 1 to 1000"));
        }
        if cli.push_timeout_ms == 0 {
            return Err(invalid("--push-timeout-ms", "must be at least 1"));
        }
        if cli.push_backoff_max_ms < cli.push_backoff_ms {
            return Err(invalid(
                "--push-backoff-max-ms",
                "must not be less than --push-backoff-ms",
            ));
        }
        let profiles = load_profiles(&cli.profiles, env, cli.push_allow_http)?;
        if cli.device_auth != DeviceAuth::None && profiles.devices.is_empty() {
            return Err(invalid(
                "--device-auth",
                "basic and md5 need [[devices]] accounts in the profiles file",
            ));
        }
        Ok(Config {
            listen: cli.listen,
            public_url: cli.public_url.map(|u| u.trim_end_matches('/').to_owned()),
            tls,
            profiles,
            device_auth: cli.device_auth,
            push: PushSettings {
                encoding: cli.push_encoding.encoding(),
                max_attempts: cli.push_attempts,
                backoff_initial: Duration::from_millis(cli.push_backoff_ms),
                backoff_max: Duration::from_millis(cli.push_backoff_max_ms),
                timeout: Duration::from_millis(cli.push_timeout_ms),
                ca_cert: cli.ca_cert,
                any_address: cli.push_any_address,
                allow_http: cli.push_allow_http,
            },
            max_body: cli.max_body,
            session_idle: Duration::from_secs(cli.session_idle_secs),
            max_sessions: cli.max_sessions,
            history: cli.history,
            workers: cli.workers,
            handle_signals: true,
        })
    }
}

fn check_public_url(url: &str) -> Result<(), ConfigError> {
    let ok = url::Url::parse(url).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some()
            && u.fragment().is_none()
            && u.query().is_none()
    });
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            setting: "--public-url",
            reason: "must be an http:// or https:// URL without query or fragment".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profiles_file(dir: &std::path::Path, devices: bool) -> PathBuf {
        let path = dir.join("p.toml");
        let mut text = String::from(
            "[[servers]]\nserver_id=\"dms-1\"\naddress=\"https://dms/dm\"\nmaster_key_env=\"K\"\n",
        );
        if devices {
            text.push_str("[[devices]]\nname=\"d\"\npassword=\"p\"\n");
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    fn env(v: &str) -> Option<String> {
        (v == "K").then(|| "key".to_owned())
    }

    #[test]
    fn cli_and_profiles() {
        let dir = tempfile::tempdir().unwrap();
        let p = profiles_file(dir.path(), false);
        let args = |extra: &[&str]| {
            let mut v = vec!["bootstrap-server", "--profiles", p.to_str().unwrap()];
            v.extend_from_slice(extra);
            Cli::try_parse_from(v)
        };
        let cli = args(&[]).unwrap();
        assert!(matches!(
            Config::from_cli(cli, &env),
            Err(ConfigError::TlsOrPlain)
        ));
        let cli = args(&[
            "--plain-http",
            "--push-encoding",
            "xml",
            "--push-backoff-ms",
            "5",
            "--push-backoff-max-ms",
            "50",
            "--public-url",
            "https://bs.example.com/",
        ])
        .unwrap();
        let cfg = Config::from_cli(cli, &env).unwrap();
        assert_eq!(cfg.push.encoding, Encoding::Xml);
        assert_eq!(cfg.push.backoff_initial, Duration::from_millis(5));
        assert_eq!(cfg.public_url.as_deref(), Some("https://bs.example.com"));
        assert_eq!(cfg.device_auth, DeviceAuth::None);
        assert_eq!(cfg.profiles.servers[0].master_key.as_bytes(), b"key");

        // basic device auth needs device accounts.
        let cli = args(&["--plain-http", "--device-auth", "basic"]).unwrap();
        assert!(matches!(
            Config::from_cli(cli, &env),
            Err(ConfigError::Invalid {
                setting: "--device-auth",
                ..
            })
        ));
        profiles_file(dir.path(), true);
        let cli = args(&["--plain-http", "--device-auth", "md5"]).unwrap();
        assert_eq!(
            Config::from_cli(cli, &env).unwrap().device_auth,
            DeviceAuth::Md5
        );

        for bad in [
            &["--plain-http", "--push-attempts", "0"][..],
            &[
                "--plain-http",
                "--push-backoff-ms",
                "10",
                "--push-backoff-max-ms",
                "1",
            ],
            &["--plain-http", "--public-url", "ftp://x"],
            &["--plain-http", "--history", "0"],
        ] {
            let cli = args(bad).unwrap();
            assert!(Config::from_cli(cli, &env).is_err(), "{bad:?}");
        }
        assert!(args(&["--plain-http", "--tls-cert", "c", "--tls-key", "k"]).is_err());
        assert!(args(&["--client-ca", "ca.pem", "--plain-http"]).is_err());
        assert!(args(&["--device-auth", "digest"]).is_err());
    }
}
