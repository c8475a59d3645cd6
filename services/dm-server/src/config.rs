//! Settings of a dm-server instance: the command line (every flag also an environment variable), the
//! accounts file and the master key, checked and loaded into one typed [`Config`].

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use omadm::auth::AuthScheme;
use omadm::secret::Secret;
use serde::Deserialize;

use crate::error::ConfigError;

/// Environment variable holding the master key itself (an alternative to `--master-key-file`).
pub const MASTER_KEY_ENV: &str = "DMS_MASTER_KEY";

/// Default body size limit of `POST /dm`, in bytes.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// The command line of `dm-server`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "dm-server",
    version,
    about = "An OMA DM 1.2 Server (dmgw's northbound peer)",
    after_help = "Health check: dm-server health [--url URL] [--ca-cert PEM] [--timeout SECS] (see dm-server health --help)"
)]
pub struct Cli {
    /// This server's ServerID (the DMAcc ServerID clients hold for it).
    #[arg(long, env = "DMS_SERVER_ID")]
    pub server_id: String,
    /// Address to listen on; port 0 picks a free port. Loopback by default.
    #[arg(long, env = "DMS_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Public URL of the DM endpoint (SyncHdr Source and RespURI base); default `<scheme>://<bound address>/dm`.
    #[arg(long, env = "DMS_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "DMS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "DMS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP (no TLS); required when no certificate is given.
    #[arg(long, env = "DMS_PLAIN_HTTP", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub plain_http: bool,
    /// Client authentication scheme.
    #[arg(long, env = "DMS_AUTH", value_enum, default_value_t = AuthMode::Md5)]
    pub auth: AuthMode,
    /// TOML file of static client accounts (`[[accounts]]` with `name`, `password`, optional `dev_id`).
    #[arg(long, env = "DMS_ACCOUNTS")]
    pub accounts: Option<PathBuf>,
    /// File holding the master key for derived client passwords (or set `DMS_MASTER_KEY`).
    #[arg(long, env = "DMS_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Append-only JSON Lines data file (alerts, sessions, nonces, commands); memory only without it.
    #[arg(long, env = "DMS_DATA")]
    pub data: Option<PathBuf>,
    /// Status answering each recorded Generic Alert.
    #[arg(long, env = "DMS_ACCEPT_STATUS", value_enum, default_value_t = AcceptStatus::Ok)]
    pub accept_status: AcceptStatus,
    /// Largest accepted DM message body, in bytes (413 beyond).
    #[arg(long, env = "DMS_MAX_BODY", default_value_t = DEFAULT_MAX_BODY)]
    pub max_body: usize,
    /// Seconds of inactivity after which a DM session is dropped.
    #[arg(long, env = "DMS_SESSION_IDLE_SECS", default_value_t = 60)]
    pub session_idle_secs: u64,
    /// Most DM sessions open at once (503 beyond).
    #[arg(long, env = "DMS_MAX_SESSIONS", default_value_t = 1024)]
    pub max_sessions: usize,
    /// HTTP worker threads.
    #[arg(long, env = "DMS_WORKERS", default_value_t = 2)]
    pub workers: usize,
    /// Log as JSON lines instead of text (logs go to stderr).
    #[arg(long, env = "DMS_LOG_JSON")]
    pub log_json: bool,
}

/// The `--auth` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// `syncml:auth-basic`.
    Basic,
    /// `syncml:auth-md5` (digest over the server's nonce).
    Md5,
    /// The `x-syncml-hmac` transport header.
    Hmac,
}

impl AuthMode {
    /// The omadm scheme.
    pub fn scheme(self) -> AuthScheme {
        match self {
            AuthMode::Basic => AuthScheme::Basic,
            AuthMode::Md5 => AuthScheme::Md5,
            AuthMode::Hmac => AuthScheme::Hmac,
        }
    }
}

/// The `--accept-status` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcceptStatus {
    /// 200 OK.
    #[value(name = "200")]
    Ok,
    /// 202 Accepted for processing.
    #[value(name = "202")]
    Accepted,
}

impl AcceptStatus {
    /// The DM status code.
    pub fn code(self) -> u16 {
        match self {
            AcceptStatus::Ok => 200,
            AcceptStatus::Accepted => 202,
        }
    }
}

/// A static client account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The account name (AAuthName; the LocName or user name the client sends).
    pub name: String,
    /// The password.
    pub password: Secret,
    /// The only DevId allowed to use this account, when set.
    pub dev_id: Option<String>,
}

/// The master key of derived passwords. `Debug` never shows it.
#[derive(Clone)]
pub struct MasterKey(Vec<u8>);

impl MasterKey {
    /// Wrap key bytes; surrounding ASCII whitespace (a trailing newline in a file) is trimmed.
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<MasterKey, ConfigError> {
        let trimmed = bytes.as_ref().trim_ascii();
        if trimmed.is_empty() {
            return Err(ConfigError::EmptyMasterKey);
        }
        Ok(MasterKey(trimmed.to_vec()))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// TLS certificate and key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// Everything a server instance runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// This server's ServerID.
    pub server_id: String,
    /// Listen address (port 0 allowed).
    pub listen: SocketAddr,
    /// Public URL of the DM endpoint; `None` derives it from the bound address.
    pub public_url: Option<String>,
    /// TLS files; `None` serves plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Client authentication scheme.
    pub auth: AuthScheme,
    /// Static client accounts.
    pub accounts: Vec<Account>,
    /// Master key for derived passwords.
    pub master_key: Option<MasterKey>,
    /// JSON Lines data file.
    pub data_file: Option<PathBuf>,
    /// Status answering a Generic Alert (200 or 202).
    pub accept_status: u16,
    /// Body size limit of `POST /dm`.
    pub max_body: usize,
    /// Idle time after which a session is dropped.
    pub session_idle: Duration,
    /// Most sessions open at once.
    pub max_sessions: usize,
    /// HTTP worker threads.
    pub workers: usize,
    /// Stop gracefully on SIGTERM/SIGINT (tests that run several servers turn it off).
    pub handle_signals: bool,
}

impl Config {
    /// A plain-HTTP, memory-only server on a free loopback port, md5 auth, no accounts: the base that
    /// tests and embedders adjust.
    pub fn new(server_id: impl Into<String>) -> Config {
        Config {
            server_id: server_id.into(),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            public_url: None,
            tls: None,
            auth: AuthScheme::Md5,
            accounts: Vec::new(),
            master_key: None,
            data_file: None,
            accept_status: AcceptStatus::Ok.code(),
            max_body: DEFAULT_MAX_BODY,
            session_idle: Duration::from_secs(60),
            max_sessions: 1024,
            workers: 1,
            handle_signals: true,
        }
    }

    /// Check the command line and load the files it names. `env_master_key` is the value of
    /// [`MASTER_KEY_ENV`], if set.
    pub fn from_cli(cli: Cli, env_master_key: Option<String>) -> Result<Config, ConfigError> {
        if cli.server_id.trim().is_empty() {
            return Err(ConfigError::Invalid {
                setting: "--server-id",
                reason: "must not be empty".into(),
            });
        }
        let tls = match (cli.tls_cert, cli.tls_key, cli.plain_http) {
            (Some(cert), Some(key), false) => Some(TlsFiles { cert, key }),
            (None, None, true) => None,
            _ => return Err(ConfigError::TlsOrPlain),
        };
        if let Some(url) = &cli.public_url {
            check_public_url(url)?;
        }
        let accounts = match &cli.accounts {
            Some(path) => load_accounts(path)?,
            None => Vec::new(),
        };
        let master_key = match (&cli.master_key_file, env_master_key) {
            (Some(path), _) => {
                let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Some(MasterKey::new(bytes)?)
            }
            (None, Some(value)) => Some(MasterKey::new(value)?),
            (None, None) => None,
        };
        if cli.max_body == 0 || cli.max_sessions == 0 || cli.workers == 0 {
            return Err(ConfigError::Invalid {
                setting: "--max-body/--max-sessions/--workers",
                reason: "must be at least 1".into(),
            });
        }
        if cli.session_idle_secs == 0 {
            return Err(ConfigError::Invalid {
                setting: "--session-idle-secs",
                reason: "must be at least 1".into(),
            });
        }
        Ok(Config {
            server_id: cli.server_id,
            listen: cli.listen,
            public_url: cli.public_url,
            tls,
            auth: cli.auth.scheme(),
            accounts,
            master_key,
            data_file: cli.data,
            accept_status: cli.accept_status.code(),
            max_body: cli.max_body,
            session_idle: Duration::from_secs(cli.session_idle_secs),
            max_sessions: cli.max_sessions,
            workers: cli.workers,
            handle_signals: true,
        })
    }
}

fn check_public_url(url: &str) -> Result<(), ConfigError> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && !url.contains(char::is_whitespace)
        && !url.contains('#');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            setting: "--public-url",
            reason: "must be an http:// or https:// URL without spaces or fragment".into(),
        })
    }
}

/// The accounts file: `[[accounts]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsFile {
    #[serde(default)]
    accounts: Vec<AccountEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountEntry {
    name: String,
    password: String,
    #[serde(default)]
    dev_id: Option<String>,
}

impl fmt::Debug for AccountEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountEntry")
            .field("name", &self.name)
            .field("dev_id", &self.dev_id)
            .finish_non_exhaustive()
    }
}

/// Parse the text of an accounts file (`path` is for error messages).
pub fn parse_accounts(text: &str, path: &Path) -> Result<Vec<Account>, ConfigError> {
    let file: AccountsFile = toml::from_str(text).map_err(|e| ConfigError::Accounts {
        path: path.to_path_buf(),
        // toml's message quotes the offending line, which may hold a password: keep only the position.
        reason: match e.span() {
            Some(span) => format!("invalid TOML near byte {}", span.start),
            None => "invalid TOML".to_owned(),
        },
    })?;
    let mut out: Vec<Account> = Vec::with_capacity(file.accounts.len());
    for (index, entry) in file.accounts.into_iter().enumerate() {
        if entry.name.trim().is_empty() || entry.password.is_empty() {
            return Err(ConfigError::Accounts {
                path: path.to_path_buf(),
                reason: format!("account {index}: name and password must not be empty"),
            });
        }
        if out
            .iter()
            .any(|a| a.name == entry.name && a.dev_id == entry.dev_id)
        {
            return Err(ConfigError::Accounts {
                path: path.to_path_buf(),
                reason: format!("account {index}: duplicate name {:?}", entry.name),
            });
        }
        out.push(Account {
            name: entry.name,
            password: Secret::new(entry.password),
            dev_id: entry.dev_id.filter(|d| !d.trim().is_empty()),
        });
    }
    Ok(out)
}

/// Read and parse an accounts file.
pub fn load_accounts(path: &Path) -> Result<Vec<Account>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_accounts(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_file() {
        let text = r#"
            [[accounts]]
            name = "gw-1"
            password = "p1"
            dev_id = "IMEI:1"

            [[accounts]]
            name = "gw-2"
            password = "p2"
        "#;
        let a = parse_accounts(text, Path::new("a.toml")).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].dev_id.as_deref(), Some("IMEI:1"));
        assert_eq!(a[1].password.expose(), "p2");
        let bad = parse_accounts("[[accounts]]\nname=\"x\"\npassword=\"\"", Path::new("a"));
        assert!(matches!(bad, Err(ConfigError::Accounts { .. })));
        let unknown = parse_accounts(
            "[[accounts]]\nname=\"x\"\npassword=\"hunter2\"\nfoo=1",
            Path::new("a"),
        );
        let err = unknown.unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn cli_requires_tls_or_plain_http() {
        let cli = Cli::try_parse_from(["dm-server", "--server-id", "s"]).unwrap();
        assert!(matches!(
            Config::from_cli(cli, None),
            Err(ConfigError::TlsOrPlain)
        ));
        let cli = Cli::try_parse_from([
            "dm-server",
            "--server-id",
            "s",
            "--plain-http",
            "--accept-status",
            "202",
        ])
        .unwrap();
        let cfg = Config::from_cli(cli, Some("key\n".into())).unwrap();
        assert_eq!(cfg.accept_status, 202);
        assert_eq!(cfg.master_key.unwrap().as_bytes(), b"key");
        assert!(
            Cli::try_parse_from(["dm-server", "--server-id", "s", "--accept-status", "201"])
                .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "dm-server",
                "--server-id",
                "s",
                "--plain-http",
                "--tls-cert",
                "c",
                "--tls-key",
                "k"
            ])
            .is_err()
        );
    }

    #[test]
    fn master_key_is_redacted_and_not_empty() {
        assert!(MasterKey::new(" \n").is_err());
        assert_eq!(
            format!("{:?}", MasterKey::new("abc").unwrap()),
            "MasterKey(<redacted>)"
        );
    }
}
