//! Accounts given by an operator: the `POST /api/v1/accounts` body and the factory accounts file
//! (the "customized bootstrap" of DM_Bootstrap), validated and turned into `omadm::mo::DmAcc`.

use std::path::Path;

use omadm::mo::{AddrType, AppAddr, AppAuth, AuthLevel, AuthType, DmAcc, Port};
use omadm::secret::Secret;
use serde::Deserialize;
use thiserror::Error;
use utoipa::ToSchema;

/// An account as an operator writes it (JSON body or TOML `[[account]]` table).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountInput {
    /// The DM Server's ServerID (unique).
    pub server_id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// The DM Server's URL (https, unless `allow_plain_http`).
    pub addr: String,
    /// Port, when not in the URL.
    #[serde(default)]
    pub port: Option<u16>,
    /// How the gateway authenticates to the server: BASIC, DIGEST or HMAC.
    #[serde(default = "default_auth_type")]
    pub auth_type: String,
    /// The gateway's account name at the server (AAuthName of CLCRED).
    pub auth_name: String,
    /// The gateway's password at the server (AAuthSecret of CLCRED). Never returned.
    #[schema(value_type = String, format = Password)]
    pub auth_secret: String,
    /// The server's name towards the gateway (SRVCRED), if the server authenticates itself.
    #[serde(default)]
    pub server_auth_name: Option<String>,
    /// The server's password towards the gateway (SRVCRED). Never returned.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub server_auth_secret: Option<String>,
    /// Accept an http:// address (test set-ups only).
    #[serde(default)]
    pub allow_plain_http: bool,
    /// URL of this server's DM Bootstrap Server (dmgw extension, workflow 1).
    #[serde(default)]
    pub bootstrap_server_url: Option<String>,
}

fn default_auth_type() -> String {
    "DIGEST".to_owned()
}

/// An operator-given account is not acceptable; `field` names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {reason}")]
pub struct InputError {
    /// The offending field.
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> InputError {
    InputError {
        field,
        reason: reason.into(),
    }
}

fn check_url(field: &'static str, value: &str, allow_plain: bool) -> Result<url::Url, InputError> {
    let u = url::Url::parse(value.trim()).map_err(|e| bad(field, format!("not a URL: {e}")))?;
    match u.scheme() {
        "https" => {}
        "http" if allow_plain => {}
        "http" => return Err(bad(field, "must be https (set allow_plain_http for tests)")),
        other => return Err(bad(field, format!("unsupported scheme {other:?}"))),
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad(field, "has no host"));
    }
    Ok(u)
}

impl AccountInput {
    /// Validate and build the DMAcc account.
    pub fn to_dmacc(&self) -> Result<DmAcc, InputError> {
        let server_id = self.server_id.trim();
        if server_id.is_empty() || server_id.len() > 128 {
            return Err(bad("server_id", "must be 1 to 128 characters"));
        }
        if server_id.chars().any(char::is_control) {
            return Err(bad("server_id", "must not contain control characters"));
        }
        let url = check_url("addr", &self.addr, self.allow_plain_http)?;
        let auth_type = AuthType::parse(&self.auth_type)
            .filter(|t| matches!(t, AuthType::Basic | AuthType::Digest | AuthType::Hmac))
            .ok_or_else(|| bad("auth_type", "must be BASIC, DIGEST or HMAC"))?;
        if self.auth_name.trim().is_empty() {
            return Err(bad("auth_name", "must not be empty"));
        }
        if self.auth_secret.is_empty() {
            return Err(bad("auth_secret", "must not be empty"));
        }
        if let Some(b) = &self.bootstrap_server_url {
            check_url("bootstrap_server_url", b, self.allow_plain_http)?;
        }
        let ports = self
            .port
            .or(url.port())
            .map(|p| {
                vec![Port {
                    key: "1".into(),
                    port_nbr: p,
                }]
            })
            .unwrap_or_default();
        let mut app_auth = vec![AppAuth {
            key: "CLCRED".into(),
            level: AuthLevel::Clcred,
            auth_type,
            name: Some(self.auth_name.trim().to_owned()),
            secret: Some(Secret::new(self.auth_secret.clone())),
            data: None,
        }];
        match (&self.server_auth_name, &self.server_auth_secret) {
            (Some(n), Some(s)) if !n.trim().is_empty() && !s.is_empty() => {
                app_auth.push(AppAuth {
                    key: "SRVCRED".into(),
                    level: AuthLevel::Srvcred,
                    auth_type,
                    name: Some(n.trim().to_owned()),
                    secret: Some(Secret::new(s.clone())),
                    data: None,
                });
            }
            (None, None) => {}
            _ => {
                return Err(bad(
                    "server_auth_name",
                    "server_auth_name and server_auth_secret go together",
                ));
            }
        }
        let acc = DmAcc {
            server_id: server_id.to_owned(),
            name: self.name.clone().filter(|n| !n.trim().is_empty()),
            pref_con_ref: None,
            app_addr: vec![AppAddr {
                key: "1".into(),
                addr: self.addr.trim().to_owned(),
                addr_type: AddrType::Uri,
                ports,
            }],
            aauth_pref: Some(auth_type),
            app_auth,
            bootstrap_server_url: self.bootstrap_server_url.clone(),
        };
        acc.validate().map_err(|e| bad("account", e.to_string()))?;
        Ok(acc)
    }
}

/// The factory accounts file: `[[account]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsFile {
    #[serde(default)]
    account: Vec<AccountInput>,
}

/// A factory accounts file could not be used.
#[derive(Debug, Error)]
pub enum AccountsFileError {
    /// Unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML for accounts.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        source: toml::de::Error,
    },
    /// An account in it is invalid.
    #[error("{path}: account {index} ({server_id}): {source}")]
    Invalid {
        /// The file.
        path: String,
        /// 0-based position in the file.
        index: usize,
        /// Its ServerID.
        server_id: String,
        /// Why.
        source: InputError,
    },
}

/// Read and validate a factory accounts file.
pub fn read_accounts_file(path: &Path) -> Result<Vec<DmAcc>, AccountsFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| AccountsFileError::Read {
        path: shown.clone(),
        source,
    })?;
    let file: AccountsFile = toml::from_str(&text).map_err(|source| AccountsFileError::Parse {
        path: shown.clone(),
        source,
    })?;
    file.account
        .iter()
        .enumerate()
        .map(|(index, a)| {
            a.to_dmacc().map_err(|source| AccountsFileError::Invalid {
                path: shown.clone(),
                index,
                server_id: a.server_id.clone(),
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> AccountInput {
        AccountInput {
            server_id: "dms-1".into(),
            name: Some("Operator".into()),
            addr: "https://dms1.example.com:8443/dm".into(),
            port: None,
            auth_type: "digest".into(),
            auth_name: "gw-1".into(),
            auth_secret: "s3cret-value".into(),
            server_auth_name: None,
            server_auth_secret: None,
            allow_plain_http: false,
            bootstrap_server_url: None,
        }
    }

    #[test]
    fn a_good_account_becomes_a_dmacc() {
        let acc = input().to_dmacc().unwrap();
        assert_eq!(acc.server_id, "dms-1");
        assert_eq!(acc.app_addr[0].ports[0].port_nbr, 8443);
        let c = acc.client_credentials().unwrap();
        assert_eq!(c.auth_type, AuthType::Digest);
        assert!(!format!("{acc:?}").contains("s3cret-value"));
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: Vec<(AccountInput, &str)> = vec![
            (
                AccountInput {
                    server_id: " ".into(),
                    ..input()
                },
                "server_id",
            ),
            (
                AccountInput {
                    addr: "http://x/dm".into(),
                    ..input()
                },
                "addr",
            ),
            (
                AccountInput {
                    addr: "ftp://x/dm".into(),
                    ..input()
                },
                "addr",
            ),
            (
                AccountInput {
                    addr: "not a url".into(),
                    ..input()
                },
                "addr",
            ),
            (
                AccountInput {
                    auth_type: "X509".into(),
                    ..input()
                },
                "auth_type",
            ),
            (
                AccountInput {
                    auth_name: "".into(),
                    ..input()
                },
                "auth_name",
            ),
            (
                AccountInput {
                    auth_secret: "".into(),
                    ..input()
                },
                "auth_secret",
            ),
            (
                AccountInput {
                    server_auth_name: Some("s".into()),
                    ..input()
                },
                "server_auth_name",
            ),
        ];
        for (i, field) in cases {
            assert_eq!(i.to_dmacc().unwrap_err().field, field);
        }
        let plain = AccountInput {
            addr: "http://127.0.0.1:9/dm".into(),
            allow_plain_http: true,
            ..input()
        };
        assert!(plain.to_dmacc().is_ok());
    }

    #[test]
    fn accounts_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("accounts.toml");
        std::fs::write(
            &p,
            "[[account]]\nserver_id = \"dms-1\"\naddr = \"https://a.example/dm\"\nauth_name = \"gw\"\nauth_secret = \"pw\"\n",
        )
        .unwrap();
        assert_eq!(read_accounts_file(&p).unwrap().len(), 1);
        std::fs::write(&p, "[[account]]\nserver_id = \"dms-1\"\naddr = \"http://a/dm\"\nauth_name = \"gw\"\nauth_secret = \"pw\"\n").unwrap();
        assert!(matches!(
            read_accounts_file(&p),
            Err(AccountsFileError::Invalid { index: 0, .. })
        ));
    }
}
