//! The profiles file (`--profiles`, TOML): the DM Server profiles this server bootstraps gateways for,
//! the gateways it trusts, and the device accounts of its DM endpoint; parsed and checked into typed values.
//!
//! # Format
//! ```toml
//! [[servers]]                        # one per DM Server this server bootstraps gateways for
//! server_id = "dms-1"                # the DMAcc ServerID (also the S of derived passwords); no '|'
//! address = "https://dms1.example.com/dm"   # AppAddr/1/Addr given to the gateway
//! auth_type = "DIGEST"               # DIGEST | BASIC | HMAC (AAuthType of the CLCRED); default DIGEST
//! name = "Operator DM"               # optional DMAcc Name
//! master_key_file = "dms-1.key"      # key shared with that DM Server (relative to this file), or:
//! # master_key_env = "DMS1_KEY"      # the name of an environment variable holding the key
//!
//! [[gateways]]                       # one per trusted gateway
//! gateway_id = "IMEI:490154203237518"  # the gateway's DevId (AAuthName, bootstrap Target)
//! pin = "1234"                       # push key: PIN (SEC=USERPIN) ...
//! imsi = "001010123456789"           # ... and/or IMSI (NETWPIN; both: USERNETWPIN)
//! sec = "USERPIN"                    # optional: NETWPIN | USERPIN | USERNETWPIN (default from pin/imsi)
//! push_urls = ["https://gw.example.net:8443/wan/v1/bootstrap"]  # allowed GatewayAddress values
//! cert_sha256 = "3F:7A:..."          # workflow 1: SHA-256 of the client certificate's DER (or a list)
//! username = "gw-1"                  # workflow 1: HTTP Basic name (default: gateway_id) ...
//! password = "s3cret"                # ... and password
//! servers = ["dms-1"]                # optional: the only ServerIDs this gateway may be bootstrapped for
//!
//! [[devices]]                        # device accounts of POST /dm with --device-auth basic|md5
//! name = "dev-1"
//! password = "pw"
//! dev_id = "IMEI:356938035643809"    # optional: only this DevId may use the account
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use dm_server::config::{Account, MasterKey};
use omadm::auth::{PushKeyMaterial, Sec};
use omadm::mo::AuthType;
use omadm::secret::Secret;
use serde::Deserialize;
use url::Url;

use crate::error::ConfigError;

/// Longest ServerID, gateway id or account name accepted.
pub const MAX_ID_LEN: usize = 256;

/// A DM Server this server bootstraps gateways for.
#[derive(Debug, Clone)]
pub struct ServerProfile {
    /// The DMAcc `ServerID`.
    pub server_id: String,
    /// The DMAcc `Name`, when set.
    pub name: Option<String>,
    /// The DM Server's address (`AppAddr/1/Addr`).
    pub address: String,
    /// `AAuthType` (and `AAuthPref`) of the client credentials: DIGEST, BASIC or HMAC.
    pub auth_type: AuthType,
    /// The master key shared with that DM Server (`Debug` redacts it).
    pub master_key: MasterKey,
}

/// The key of a gateway's pushed bootstraps: the SEC method and the PIN and/or IMSI it uses.
#[derive(Debug, Clone)]
pub struct PushKey {
    /// The SEC method (NETWPIN, USERPIN or USERNETWPIN).
    pub sec: Sec,
    /// The PIN and/or IMSI (`Debug` redacts them).
    pub material: PushKeyMaterial,
}

/// HTTP Basic credentials of a gateway (workflow 1).
#[derive(Debug, Clone)]
pub struct BasicLogin {
    /// The user name.
    pub username: String,
    /// The password (`Debug` redacts it).
    pub password: Secret,
}

/// A gateway this server trusts.
#[derive(Debug, Clone)]
pub struct TrustedGateway {
    /// The gateway's DevId.
    pub gateway_id: String,
    /// The key of pushed bootstraps (workflow 2); `None`: the gateway cannot be pushed to.
    pub push: Option<PushKey>,
    /// The addresses a bootstrap may be pushed to; empty: see `--push-any-address`.
    pub push_urls: Vec<Url>,
    /// SHA-256 fingerprints of the client certificates it may present (workflow 1).
    pub cert_sha256: Vec<[u8; 32]>,
    /// Its HTTP Basic credentials (workflow 1).
    pub basic: Option<BasicLogin>,
    /// The only ServerIDs it may be bootstrapped for; `None`: every profile.
    pub servers: Option<Vec<String>>,
}

impl TrustedGateway {
    /// True when this gateway may receive a bootstrap for `server_id`.
    pub fn may_receive(&self, server_id: &str) -> bool {
        self.servers
            .as_ref()
            .is_none_or(|list| list.iter().any(|s| s == server_id))
    }
}

/// Everything the profiles file holds.
#[derive(Debug, Clone, Default)]
pub struct Profiles {
    /// DM Server profiles.
    pub servers: Vec<ServerProfile>,
    /// Trusted gateways.
    pub gateways: Vec<TrustedGateway>,
    /// Device accounts of the DM endpoint.
    pub devices: Vec<Account>,
}

impl Profiles {
    /// The profile of `server_id`.
    pub fn server(&self, server_id: &str) -> Option<&ServerProfile> {
        self.servers.iter().find(|s| s.server_id == server_id)
    }

    /// The trusted gateway `gateway_id`.
    pub fn gateway(&self, gateway_id: &str) -> Option<&TrustedGateway> {
        self.gateways.iter().find(|g| g.gateway_id == gateway_id)
    }

    /// The gateway whose client certificate has this SHA-256 fingerprint.
    pub fn gateway_by_fingerprint(&self, fingerprint: &[u8; 32]) -> Option<&TrustedGateway> {
        self.gateways
            .iter()
            .find(|g| g.cert_sha256.iter().any(|f| f == fingerprint))
    }

    /// The gateway whose Basic user name is `username`.
    pub fn gateway_by_username(&self, username: &str) -> Option<&TrustedGateway> {
        self.gateways
            .iter()
            .find(|g| g.basic.as_ref().is_some_and(|b| b.username == username))
    }
}

/// What loading the profiles file depends on besides its text.
pub struct LoadOptions<'a> {
    /// The directory relative `master_key_file` paths are resolved against.
    pub base_dir: &'a Path,
    /// Environment lookup for `master_key_env`.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Accept `http://` push URLs (`--push-allow-http`).
    pub allow_http_push: bool,
}

impl fmt::Debug for LoadOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadOptions")
            .field("base_dir", &self.base_dir)
            .field("allow_http_push", &self.allow_http_push)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    servers: Vec<RawServer>,
    #[serde(default)]
    gateways: Vec<RawGateway>,
    #[serde(default)]
    devices: Vec<RawDevice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    server_id: String,
    address: String,
    #[serde(default)]
    auth_type: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    master_key_file: Option<PathBuf>,
    #[serde(default)]
    master_key_env: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
    #[default]
    None,
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
            OneOrMany::None => Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    gateway_id: String,
    #[serde(default)]
    pin: Option<String>,
    #[serde(default)]
    imsi: Option<String>,
    #[serde(default)]
    sec: Option<String>,
    #[serde(default)]
    push_urls: Vec<String>,
    #[serde(default)]
    cert_sha256: OneOrMany,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    servers: Option<Vec<String>>,
}

impl fmt::Debug for RawGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawGateway")
            .field("gateway_id", &self.gateway_id)
            .field("push_urls", &self.push_urls)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    name: String,
    password: String,
    #[serde(default)]
    dev_id: Option<String>,
}

impl fmt::Debug for RawDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawDevice")
            .field("name", &self.name)
            .field("dev_id", &self.dev_id)
            .finish_non_exhaustive()
    }
}

/// A TOML error without the quoted source line and without quoted values (either may be a secret):
/// the line and column, and the message with every `` `...` `` segment masked, except for field names.
fn toml_reason(text: &str, e: &toml::de::Error) -> String {
    let mut out = String::new();
    if let Some(span) = e.span() {
        let before = text.get(..span.start).unwrap_or_default();
        let line = before.matches('\n').count().saturating_add(1);
        let col = before
            .rsplit('\n')
            .next()
            .map_or(0, |l| l.chars().count())
            .saturating_add(1);
        out.push_str(&format!("line {line}, column {col}: "));
    }
    let message = e.message();
    let keep_quoted = message.starts_with("unknown field") || message.starts_with("missing field");
    let mut inside = false;
    for (i, part) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        if inside && !keep_quoted {
            out.push_str("...");
        } else {
            out.push_str(part);
        }
        inside = !inside;
    }
    out
}

/// True for text usable as an id: not blank, no control characters, at most [`MAX_ID_LEN`] bytes.
fn valid_id(s: &str) -> bool {
    !s.trim().is_empty() && s.len() <= MAX_ID_LEN && !s.chars().any(char::is_control)
}

/// Check a URL a bootstrap may be pushed to: absolute `https://` (or `http://` when allowed), with a
/// host, without user info or fragment. Returns the parsed URL.
pub fn check_push_url(text: &str, allow_http: bool) -> Result<Url, String> {
    if text.len() > 2048 {
        return Err("longer than 2048 bytes".into());
    }
    let url = Url::parse(text.trim()).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => return Err("must be https:// (see --push-allow-http)".into()),
        _ => return Err("must be an https:// URL".into()),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry user info".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment".into());
    }
    Ok(url)
}

/// Parse a SHA-256 fingerprint: 64 hex digits, optionally separated by `:` or spaces, either case.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let compact: String = text
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect();
    let bytes = hex::decode(compact).ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

fn parse_auth_type(text: Option<&str>) -> Result<AuthType, String> {
    let Some(t) = text else {
        return Ok(AuthType::Digest);
    };
    match AuthType::parse(t) {
        Some(a @ (AuthType::Digest | AuthType::Basic | AuthType::Hmac)) => Ok(a),
        _ => Err(format!(
            "auth_type {:?} is not DIGEST, BASIC or HMAC",
            excerpt(t)
        )),
    }
}

fn excerpt(s: &str) -> String {
    crate::error::truncate(s, 40)
}

/// Parse the text of a profiles file (`path` is for error messages).
pub fn parse_profiles(
    text: &str,
    path: &Path,
    opts: &LoadOptions<'_>,
) -> Result<Profiles, ConfigError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        reason: toml_reason(text, &e),
    })?;
    let entry_err =
        |section: &'static str, index: usize, id: &str, reason: String| ConfigError::Entry {
            path: path.to_path_buf(),
            section,
            index,
            id: crate::error::truncate(id, 80),
            reason,
        };

    let mut servers: Vec<ServerProfile> = Vec::with_capacity(raw.servers.len());
    for (index, s) in raw.servers.into_iter().enumerate() {
        let err = |reason: String| entry_err("servers", index, &s.server_id, reason);
        if !valid_id(&s.server_id) {
            return Err(err(
                "server_id must be 1 to 256 bytes without control characters".into(),
            ));
        }
        if s.server_id.contains(dm_server::derive::SEPARATOR) {
            return Err(err(
                "server_id must not contain '|' (the derived-password separator)".into(),
            ));
        }
        if servers.iter().any(|o| o.server_id == s.server_id) {
            return Err(err("duplicate server_id".into()));
        }
        Url::parse(s.address.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| err("address must be an http:// or https:// URL".into()))?;
        let auth_type = parse_auth_type(s.auth_type.as_deref()).map_err(&err)?;
        let key_bytes = match (&s.master_key_file, &s.master_key_env) {
            (Some(file), None) => {
                let full = opts.base_dir.join(file);
                std::fs::read(&full).map_err(|source| ConfigError::Read { path: full, source })?
            }
            (None, Some(var)) => (opts.env)(var)
                .ok_or_else(|| err(format!("environment variable {var} is not set")))?
                .into_bytes(),
            _ => {
                return Err(err(
                    "give exactly one of master_key_file and master_key_env".into(),
                ));
            }
        };
        let master_key =
            MasterKey::new(key_bytes).map_err(|_| err("the master key is empty".into()))?;
        servers.push(ServerProfile {
            // The URL as written (trimmed): Url's serialisation would add a trailing '/' to a bare host.
            address: s.address.trim().to_owned(),
            server_id: s.server_id,
            name: s.name.filter(|n| !n.trim().is_empty()),
            auth_type,
            master_key,
        });
    }

    let mut gateways: Vec<TrustedGateway> = Vec::with_capacity(raw.gateways.len());
    for (index, g) in raw.gateways.into_iter().enumerate() {
        let err = |reason: String| entry_err("gateways", index, &g.gateway_id, reason);
        if !valid_id(&g.gateway_id) {
            return Err(err(
                "gateway_id must be 1 to 256 bytes without control characters".into(),
            ));
        }
        if gateways.iter().any(|o| o.gateway_id == g.gateway_id) {
            return Err(err("duplicate gateway_id".into()));
        }
        let pin = g.pin.as_deref().filter(|p| !p.is_empty()).map(Secret::new);
        let imsi = g
            .imsi
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Secret::new);
        let sec = match &g.sec {
            Some(text) => Some(text.parse::<Sec>().map_err(|_| {
                err(format!(
                    "sec {:?} is not NETWPIN, USERPIN or USERNETWPIN",
                    excerpt(text)
                ))
            })?),
            None => None,
        };
        let push = match (sec, pin, imsi) {
            (Some(Sec::UserPinMac), _, _) => {
                return Err(err(
                    "sec USERPINMAC carries no MAC parameter and cannot protect an HTTP push"
                        .into(),
                ));
            }
            (None, None, None) => None,
            (Some(_), None, None) => return Err(err("sec needs a pin and/or an imsi".into())),
            (sec, pin, imsi) => {
                let sec = sec.unwrap_or(match (&pin, &imsi) {
                    (Some(_), Some(_)) => Sec::UserNetwPin,
                    (Some(_), None) => Sec::UserPin,
                    _ => Sec::NetwPin,
                });
                let material = PushKeyMaterial { imsi, pin };
                // Derive the key once now, so a bad IMSI or a missing PIN is reported at start.
                omadm::auth::push_key(sec, &material).map_err(|e| err(e.to_string()))?;
                Some(PushKey { sec, material })
            }
        };
        let mut push_urls = Vec::with_capacity(g.push_urls.len());
        for u in &g.push_urls {
            let url = check_push_url(u, opts.allow_http_push)
                .map_err(|reason| err(format!("push_urls entry {u:?}: {reason}")))?;
            push_urls.push(url);
        }
        let mut cert_sha256 = Vec::new();
        for f in g.cert_sha256.into_vec() {
            let fp = parse_fingerprint(&f).ok_or_else(|| {
                err("cert_sha256 must be 64 hex digits (':' separators allowed)".into())
            })?;
            if gateways.iter().any(|o| o.cert_sha256.contains(&fp)) || cert_sha256.contains(&fp) {
                return Err(err("cert_sha256 already used".into()));
            }
            cert_sha256.push(fp);
        }
        let basic = match (g.username, g.password) {
            (username, Some(password)) if !password.is_empty() => {
                let defaulted = username.is_none();
                let username = username.unwrap_or_else(|| g.gateway_id.clone());
                if !valid_id(&username) || username.contains(':') {
                    return Err(err(if defaulted {
                        "give a username: the default, gateway_id, holds a ':', which an HTTP Basic \
                         user name cannot"
                            .into()
                    } else {
                        "username must be 1 to 256 bytes without ':' or control characters".into()
                    }));
                }
                if gateways
                    .iter()
                    .any(|o| o.basic.as_ref().is_some_and(|b| b.username == username))
                {
                    return Err(err("username already used by another gateway".into()));
                }
                Some(BasicLogin {
                    username,
                    password: Secret::new(password),
                })
            }
            (Some(_), _) | (None, Some(_)) => {
                return Err(err("username needs a non-empty password".into()));
            }
            (None, None) => None,
        };
        if let Some(list) = &g.servers
            && let Some(unknown) = list
                .iter()
                .find(|s| !servers.iter().any(|p| &p.server_id == *s))
        {
            return Err(err(format!("servers: no profile {unknown:?}")));
        }
        gateways.push(TrustedGateway {
            gateway_id: g.gateway_id,
            push,
            push_urls,
            cert_sha256,
            basic,
            servers: g.servers,
        });
    }

    let mut devices: Vec<Account> = Vec::with_capacity(raw.devices.len());
    for (index, d) in raw.devices.into_iter().enumerate() {
        let err = |reason: String| entry_err("devices", index, &d.name, reason);
        if !valid_id(&d.name) || d.password.is_empty() {
            return Err(err("name and password must not be empty".into()));
        }
        let dev_id = d.dev_id.filter(|x| !x.trim().is_empty());
        if devices
            .iter()
            .any(|a| a.name == d.name && a.dev_id == dev_id)
        {
            return Err(err("duplicate account".into()));
        }
        devices.push(Account {
            name: d.name,
            password: Secret::new(d.password),
            dev_id,
        });
    }

    Ok(Profiles {
        servers,
        gateways,
        devices,
    })
}

/// Read and parse a profiles file; relative `master_key_file` paths are resolved against its directory.
pub fn load_profiles(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    allow_http_push: bool,
) -> Result<Profiles, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
    parse_profiles(
        &text,
        path,
        &LoadOptions {
            base_dir,
            env,
            allow_http_push,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "3F:7A:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD";

    fn env(var: &str) -> Option<String> {
        (var == "KEY1").then(|| "k1-secret-key\n".to_owned())
    }

    fn parse(text: &str) -> Result<Profiles, ConfigError> {
        parse_profiles(
            text,
            Path::new("p.toml"),
            &LoadOptions {
                base_dir: Path::new("."),
                env: &env,
                allow_http_push: false,
            },
        )
    }

    fn full() -> String {
        format!(
            r#"
            [[servers]]
            server_id = "dms-1"
            address = "https://dms1.example.com/dm"
            auth_type = "hmac"
            name = "One"
            master_key_env = "KEY1"

            [[servers]]
            server_id = "dms-2"
            address = "http://127.0.0.1:9000/dm"
            master_key_env = "KEY1"

            [[gateways]]
            gateway_id = "IMEI:1"
            pin = "1234"
            push_urls = ["https://gw.example.net:8443/push"]
            cert_sha256 = "{FP}"
            username = "gw-one"
            password = "pw1"
            servers = ["dms-2"]

            [[gateways]]
            gateway_id = "IMEI:2"
            pin = "9999"
            imsi = "001010123456789"
            username = "gw-two"
            password = "pw2"

            [[gateways]]
            gateway_id = "IMEI:3"
            imsi = "001010123456789"

            [[devices]]
            name = "dev"
            password = "devpw"
            dev_id = "IMEI:9"
            "#
        )
    }

    #[test]
    fn full_file() {
        let p = parse(&full()).unwrap();
        assert_eq!(p.servers.len(), 2);
        let s1 = p.server("dms-1").unwrap();
        assert_eq!(s1.auth_type, AuthType::Hmac);
        assert_eq!(s1.name.as_deref(), Some("One"));
        assert_eq!(s1.master_key.as_bytes(), b"k1-secret-key");
        assert_eq!(p.server("dms-2").unwrap().auth_type, AuthType::Digest);
        let g1 = p.gateway("IMEI:1").unwrap();
        assert_eq!(g1.push.as_ref().unwrap().sec, Sec::UserPin);
        assert_eq!(g1.basic.as_ref().unwrap().username, "gw-one");
        assert_eq!(g1.push_urls[0].as_str(), "https://gw.example.net:8443/push");
        assert!(g1.may_receive("dms-2") && !g1.may_receive("dms-1"));
        let fp = parse_fingerprint(FP).unwrap();
        assert_eq!(p.gateway_by_fingerprint(&fp).unwrap().gateway_id, "IMEI:1");
        let g2 = p.gateway_by_username("gw-two").unwrap();
        assert_eq!(g2.push.as_ref().unwrap().sec, Sec::UserNetwPin);
        assert!(g2.may_receive("dms-1"));
        assert_eq!(
            p.gateway("IMEI:3").unwrap().push.as_ref().unwrap().sec,
            Sec::NetwPin
        );
        assert_eq!(p.devices[0].dev_id.as_deref(), Some("IMEI:9"));
        // Debug never shows a secret.
        let dbg = format!("{p:?}");
        for secret in [
            "1234",
            "pw1",
            "pw2",
            "devpw",
            "k1-secret-key",
            "001010123456789",
        ] {
            assert!(!dbg.contains(secret), "{secret} in {dbg}");
        }
    }

    #[test]
    fn errors_name_the_entry_and_hide_secrets() {
        let cases: &[(&str, &str)] = &[
            (
                "[[servers]]\nserver_id=\"a|b\"\naddress=\"https://x\"\nmaster_key_env=\"KEY1\"",
                "'|'",
            ),
            (
                "[[servers]]\nserver_id=\"a\"\naddress=\"ftp://x\"\nmaster_key_env=\"KEY1\"",
                "address",
            ),
            (
                "[[servers]]\nserver_id=\"a\"\naddress=\"https://x\"\nmaster_key_env=\"NOPE\"",
                "NOPE",
            ),
            (
                "[[servers]]\nserver_id=\"a\"\naddress=\"https://x\"",
                "exactly one",
            ),
            (
                "[[servers]]\nserver_id=\"a\"\naddress=\"https://x\"\nauth_type=\"X509\"\nmaster_key_env=\"KEY1\"",
                "auth_type",
            ),
            ("[[gateways]]\ngateway_id=\"g\"\nsec=\"USERPIN\"", "pin"),
            (
                "[[gateways]]\ngateway_id=\"g\"\npin=\"1\"\nsec=\"USERPINMAC\"",
                "USERPINMAC",
            ),
            ("[[gateways]]\ngateway_id=\"g\"\nimsi=\"12ab\"", "IMSI"),
            (
                "[[gateways]]\ngateway_id=\"g\"\npush_urls=[\"http://gw/push\"]",
                "https",
            ),
            (
                "[[gateways]]\ngateway_id=\"g\"\npush_urls=[\"https://u:p@gw/push\"]",
                "user info",
            ),
            (
                "[[gateways]]\ngateway_id=\"g\"\ncert_sha256=\"abcd\"",
                "64 hex",
            ),
            ("[[gateways]]\ngateway_id=\"g\"\nusername=\"u\"", "password"),
            (
                "[[gateways]]\ngateway_id=\"IMEI:1\"\npassword=\"p\"",
                "give a username",
            ),
            (
                "[[gateways]]\ngateway_id=\"g\"\nservers=[\"nope\"]",
                "no profile",
            ),
            (
                "[[gateways]]\ngateway_id=\"g\"\n[[gateways]]\ngateway_id=\"g\"",
                "duplicate",
            ),
            (
                "[[devices]]\nname=\"d\"\npassword=\"\"",
                "must not be empty",
            ),
        ];
        for (text, needle) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        // A PIN written as a number, or an unknown key: the position and message, not the value.
        let e = parse("[[gateways]]\ngateway_id=\"g\"\npin=987654")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("987654") && e.contains("line 3"), "{e}");
        let e = parse("[[gateways]]\ngateway_id=\"g\"\npassword=\"hunter2\"\nfoo=1")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2") && e.contains("foo"), "{e}");
    }

    #[test]
    fn basic_username_defaults_to_the_gateway_id() {
        let p = parse("[[gateways]]\ngateway_id=\"gw-7\"\npassword=\"p\"").unwrap();
        assert_eq!(p.gateway_by_username("gw-7").unwrap().gateway_id, "gw-7");
    }

    #[test]
    fn master_key_file_is_relative_to_the_profiles_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.key"), "file-key\n").unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            "[[servers]]\nserver_id=\"s\"\naddress=\"https://dms/dm\"\nmaster_key_file=\"k.key\"\n",
        )
        .unwrap();
        let p = load_profiles(&path, &|_| None, false).unwrap();
        assert_eq!(p.servers[0].master_key.as_bytes(), b"file-key");
        assert!(matches!(
            load_profiles(&dir.path().join("missing.toml"), &|_| None, false),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn push_urls_and_fingerprints() {
        assert!(check_push_url("https://gw:8443/p?x=1", false).is_ok());
        assert!(check_push_url("http://gw/p", true).is_ok());
        assert!(check_push_url("http://gw/p", false).is_err());
        assert!(check_push_url("https://gw/p#f", false).is_err());
        assert!(check_push_url("mailto:x@y", false).is_err());
        assert!(check_push_url("not a url", false).is_err());
        assert!(check_push_url(&format!("https://gw/{}", "a".repeat(3000)), false).is_err());
        let hexfp = "ab".repeat(32);
        assert_eq!(parse_fingerprint(&hexfp), Some([0xab; 32]));
        assert_eq!(parse_fingerprint(&hexfp.to_uppercase()), Some([0xab; 32]));
        assert_eq!(parse_fingerprint("ab"), None);
        assert_eq!(parse_fingerprint("zz"), None);
    }
}
