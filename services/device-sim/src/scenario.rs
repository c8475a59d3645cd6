//! Scenario files (TOML): the gateway to talk to, the encodings, and the simulated End Devices with
//! their identity, DM accounts, consent policy and heartbeat. Parsed into validated, typed specs.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use omadm::codec::Encoding;
use serde::Deserialize;
use thiserror::Error;
use url::Url;

/// Heartbeat interval of a device that does not set one.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
/// Longest duration accepted anywhere in a scenario (consent delays, heartbeats).
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Most devices one scenario file may describe.
pub const MAX_DEVICES: usize = 10_000;
/// Most DM accounts one device may hold.
pub const MAX_ACCOUNTS: usize = 64;
/// Longest accepted text field (dev_id, man, model, server_id, addr, URL), in bytes.
pub const MAX_FIELD_LEN: usize = 1024;

/// A scenario file that cannot be used. Field locations are written `device[2].account[1].addr`,
/// counting from 1 in file order.
#[derive(Debug, Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the expected shape (unknown key, wrong type).
    #[error("scenario syntax at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// 1-based column of the error (0 when unknown).
        column: usize,
        /// What the TOML parser said.
        message: String,
    },
    /// A required field is absent.
    #[error("{field}: missing")]
    Missing {
        /// Where.
        field: String,
    },
    /// A text field is empty, too long or holds control characters.
    #[error("{field}: {reason} (found {found:?})")]
    InvalidText {
        /// Where.
        field: String,
        /// What is wrong.
        reason: &'static str,
        /// The value (truncated).
        found: String,
    },
    /// A duration is not `<integer><unit>` with unit `ms`, `s`, `m` or `h`, or is out of range.
    #[error("{field}: {reason} (found {found:?}; write e.g. \"500ms\", \"2s\", \"1m\")")]
    InvalidDuration {
        /// Where.
        field: String,
        /// What is wrong.
        reason: &'static str,
        /// The value (truncated).
        found: String,
    },
    /// A URL does not parse or is not http(s).
    #[error("{field}: {reason} (found {found:?})")]
    InvalidUrl {
        /// Where.
        field: String,
        /// What is wrong.
        reason: String,
        /// The value (truncated).
        found: String,
    },
    /// An encoding other than `xml` or `wbxml`.
    #[error("{field}: encoding must be \"xml\" or \"wbxml\" (found {found:?})")]
    InvalidEncoding {
        /// Where.
        field: String,
        /// The value (truncated).
        found: String,
    },
    /// A consent policy other than `"allow"`, `"refuse"`, `{ allow_after = ".." }` or
    /// `{ refuse_after = ".." }`.
    #[error(
        "{field}: {reason}; use \"allow\", \"refuse\", {{ allow_after = \"2s\" }} or {{ refuse_after = \"2s\" }}"
    )]
    InvalidConsent {
        /// Where.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Two devices share a dev_id.
    #[error("device[{second}]: dev_id {dev_id:?} already used by device[{first}]")]
    DuplicateDevId {
        /// The repeated DevId.
        dev_id: String,
        /// The first device using it (1-based).
        first: usize,
        /// The repeating device (1-based).
        second: usize,
    },
    /// Two accounts of one device share a ServerID or node name.
    #[error("{field}: {what} {value:?} is used by another account of this device")]
    DuplicateAccount {
        /// Where.
        field: String,
        /// `server_id` or `node name`.
        what: &'static str,
        /// The repeated value.
        value: String,
    },
    /// The scenario describes no device, or too many.
    #[error("the scenario must describe 1..={max} devices, it describes {count}")]
    DeviceCount {
        /// Devices found.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A device holds too many accounts.
    #[error("device[{device}]: at most {max} accounts, found {count}")]
    TooManyAccounts {
        /// The device (1-based).
        device: usize,
        /// Accounts found.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// What the simulated user answers when the gateway asks for consent (step 1-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentPolicy {
    /// Allow at once.
    Allow,
    /// Refuse at once.
    Refuse,
    /// Allow after the user thought about it for this long.
    AllowAfter(Duration),
    /// Refuse after this long.
    RefuseAfter(Duration),
}

impl ConsentPolicy {
    /// True when the user allows.
    pub fn allows(self) -> bool {
        matches!(self, ConsentPolicy::Allow | ConsentPolicy::AllowAfter(_))
    }

    /// How long the user takes to answer.
    pub fn delay(self) -> Duration {
        match self {
            ConsentPolicy::Allow | ConsentPolicy::Refuse => Duration::ZERO,
            ConsentPolicy::AllowAfter(d) | ConsentPolicy::RefuseAfter(d) => d,
        }
    }
}

impl fmt::Display for ConsentPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsentPolicy::Allow => f.write_str("allow"),
            ConsentPolicy::Refuse => f.write_str("refuse"),
            ConsentPolicy::AllowAfter(d) => write!(f, "allow_after {}ms", d.as_millis()),
            ConsentPolicy::RefuseAfter(d) => write!(f, "refuse_after {}ms", d.as_millis()),
        }
    }
}

/// One DM account a device holds besides the gateway's (`./DMAcc/<node_name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSpec {
    /// `ServerID`.
    pub server_id: String,
    /// `AppAddr/1/Addr`: the DM Server's URL.
    pub addr: String,
    /// `Ext/BootstrapServerURL`: that server's DM Bootstrap Server (workflow 1), if known.
    pub bootstrap_server_url: Option<String>,
    /// The account's node name under `./DMAcc` (default: the ServerID escaped as in `omadm::mo`).
    pub node_name: String,
    /// Keep the bootstrap-server URL out of the tree the gateway reads (the device still uses it to
    /// relay a workflow-2 hand-over): models a device that reports no URL in workflow 1.
    pub hide_bootstrap_url: bool,
}

/// One simulated End Device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// `DevInfo/DevId`.
    pub dev_id: String,
    /// `DevInfo/Man`.
    pub man: String,
    /// `DevInfo/Mod`.
    pub model: String,
    /// `DevDetail/DevTyp`, also sent in the announcement.
    pub dev_type: Option<String>,
    /// What the user answers to the consent request.
    pub consent: ConsentPolicy,
    /// Interval between heartbeats.
    pub heartbeat: Duration,
    /// `Accept` of the provisioning GET.
    pub provisioning_encoding: Encoding,
    /// Encoding of the DM session with the gateway.
    pub dm_encoding: Encoding,
    /// The device's DM accounts (not the gateway's; that one comes with provisioning).
    pub accounts: Vec<AccountSpec>,
}

/// A parsed, validated scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// The gateway's LAN base URL (e.g. `https://gateway.lan:8443/`), unless the command line gives it.
    pub gateway: Option<Url>,
    /// The devices, in file order.
    pub devices: Vec<DeviceSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    gateway: Option<String>,
    provisioning_encoding: Option<String>,
    dm_encoding: Option<String>,
    heartbeat: Option<String>,
    #[serde(default)]
    device: Vec<RawDevice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    dev_id: Option<String>,
    man: Option<String>,
    model: Option<String>,
    dev_type: Option<String>,
    consent: Option<toml::Value>,
    heartbeat: Option<String>,
    provisioning_encoding: Option<String>,
    dm_encoding: Option<String>,
    #[serde(default)]
    account: Vec<RawAccount>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    server_id: Option<String>,
    addr: Option<String>,
    bootstrap_server_url: Option<String>,
    node_name: Option<String>,
    #[serde(default)]
    hide_bootstrap_url: bool,
}

fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// Check a text field: non-empty after trimming, at most [`MAX_FIELD_LEN`] bytes, no control
/// characters. Returns it trimmed.
pub fn check_text(field: &str, value: &str) -> Result<String, ScenarioError> {
    let invalid = |reason| ScenarioError::InvalidText {
        field: field.to_owned(),
        reason,
        found: excerpt(value),
    };
    let v = value.trim();
    if v.is_empty() {
        return Err(invalid("empty"));
    }
    if v.len() > MAX_FIELD_LEN {
        return Err(invalid("longer than 1024 bytes"));
    }
    if v.chars().any(char::is_control) {
        return Err(invalid("control character"));
    }
    Ok(v.to_owned())
}

fn required(field: String, value: Option<&str>) -> Result<String, ScenarioError> {
    match value {
        Some(v) => check_text(&field, v),
        None => Err(ScenarioError::Missing { field }),
    }
}

/// Parse a duration written `<integer><unit>`, unit `ms`, `s`, `m` or `h` (e.g. `50ms`, `2s`); at most
/// [`MAX_DURATION`]. `field` names the setting in errors.
pub fn parse_duration(field: &str, text: &str) -> Result<Duration, ScenarioError> {
    let invalid = |reason| ScenarioError::InvalidDuration {
        field: field.to_owned(),
        reason,
        found: excerpt(text),
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| invalid("missing unit"))?;
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(invalid("missing number"));
    }
    let n: u64 = digits.parse().map_err(|_| invalid("number too large"))?;
    let millis_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return Err(invalid("unknown unit")),
    };
    let millis = n
        .checked_mul(millis_per_unit)
        .ok_or_else(|| invalid("number too large"))?;
    let d = Duration::from_millis(millis);
    if d > MAX_DURATION {
        return Err(invalid("longer than 24h"));
    }
    Ok(d)
}

/// Parse `xml` or `wbxml` (case-insensitive).
pub fn parse_encoding(field: &str, text: &str) -> Result<Encoding, ScenarioError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "xml" => Ok(Encoding::Xml),
        "wbxml" => Ok(Encoding::Wbxml),
        _ => Err(ScenarioError::InvalidEncoding {
            field: field.to_owned(),
            found: excerpt(text),
        }),
    }
}

/// Parse an `http` or `https` URL with a host.
pub fn parse_http_url(field: &str, text: &str) -> Result<Url, ScenarioError> {
    let invalid = |reason: String| ScenarioError::InvalidUrl {
        field: field.to_owned(),
        reason,
        found: excerpt(text),
    };
    let url = Url::parse(text.trim()).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("scheme must be http or https".to_owned()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".to_owned()));
    }
    Ok(url)
}

fn parse_consent(field: &str, value: Option<&toml::Value>) -> Result<ConsentPolicy, ScenarioError> {
    let invalid = |reason: String| ScenarioError::InvalidConsent {
        field: field.to_owned(),
        reason,
    };
    match value {
        None => Ok(ConsentPolicy::Allow),
        Some(toml::Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "allow" => Ok(ConsentPolicy::Allow),
            "refuse" => Ok(ConsentPolicy::Refuse),
            _ => Err(invalid(format!("unknown policy {:?}", excerpt(s)))),
        },
        Some(toml::Value::Table(t)) => {
            let mut entries = t.iter();
            let (Some((key, v)), None) = (entries.next(), entries.next()) else {
                return Err(invalid("a consent table holds exactly one key".to_owned()));
            };
            let toml::Value::String(text) = v else {
                return Err(invalid(format!("{key} must be a duration string")));
            };
            let d = parse_duration(&format!("{field}.{key}"), text)?;
            match key.as_str() {
                "allow_after" => Ok(ConsentPolicy::AllowAfter(d)),
                "refuse_after" => Ok(ConsentPolicy::RefuseAfter(d)),
                other => Err(invalid(format!("unknown key {:?}", excerpt(other)))),
            }
        }
        Some(other) => Err(invalid(format!(
            "expected a string or a table, found a {}",
            other.type_str()
        ))),
    }
}

/// Check a ServerID: a text field that can also be written in a DM ACL (no `&`, `+`, `=`, `*`).
pub fn check_server_id(field: &str, value: &str) -> Result<String, ScenarioError> {
    let v = check_text(field, value)?;
    if v.contains(['&', '+', '=', '*']) {
        return Err(ScenarioError::InvalidText {
            field: field.to_owned(),
            reason: "ServerIDs may not hold &, +, = or * (DM ACL syntax)",
            found: excerpt(value),
        });
    }
    Ok(v)
}

/// Check a DevId: a text field whose escaped node name (`omadm::mo::escape_name`) fits in 64 bytes,
/// since it also names the device's callback path.
pub fn check_dev_id(field: &str, value: &str) -> Result<String, ScenarioError> {
    let v = check_text(field, value)?;
    omadm::mo::escape_name(&v).map_err(|_| ScenarioError::InvalidText {
        field: field.to_owned(),
        reason: "too long once escaped as a node name (64 bytes)",
        found: excerpt(value),
    })?;
    Ok(v)
}

fn check_node_name(field: &str, value: &str) -> Result<String, ScenarioError> {
    let v = check_text(field, value)?;
    if v.len() > 64 || v.contains(['/', '?', '#']) || v == "." || v == ".." {
        return Err(ScenarioError::InvalidText {
            field: field.to_owned(),
            reason: "not a node name (at most 64 bytes, no '/', '?', '#', not '.' or '..')",
            found: excerpt(value),
        });
    }
    Ok(v)
}

fn syntax_error(text: &str, e: &toml::de::Error) -> ScenarioError {
    let (line, column) = match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count().saturating_add(1);
            let column = before
                .rsplit('\n')
                .next()
                .map_or(0, |l| l.chars().count())
                .saturating_add(1);
            (line, column)
        }
        None => (0, 0),
    };
    ScenarioError::Syntax {
        line,
        column,
        message: e.message().trim().to_owned(),
    }
}

impl Scenario {
    /// Read and parse a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Scenario::parse(&text)
    }

    /// Parse scenario text.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        let gateway = raw
            .gateway
            .as_deref()
            .map(|g| parse_http_url("gateway", g))
            .transpose()?;
        let prov_default = match raw.provisioning_encoding.as_deref() {
            Some(t) => parse_encoding("provisioning_encoding", t)?,
            None => Encoding::Xml,
        };
        let dm_default = match raw.dm_encoding.as_deref() {
            Some(t) => parse_encoding("dm_encoding", t)?,
            None => Encoding::Xml,
        };
        let hb_default = match raw.heartbeat.as_deref() {
            Some(t) => positive(parse_duration("heartbeat", t)?, "heartbeat", t)?,
            None => DEFAULT_HEARTBEAT,
        };
        if raw.device.is_empty() || raw.device.len() > MAX_DEVICES {
            return Err(ScenarioError::DeviceCount {
                count: raw.device.len(),
                max: MAX_DEVICES,
            });
        }
        let mut devices = Vec::with_capacity(raw.device.len());
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (i, d) in raw.device.iter().enumerate() {
            let n = i.saturating_add(1);
            let spec = parse_device(n, d, prov_default, dm_default, hb_default)?;
            if let Some(first) = seen.insert(spec.dev_id.clone(), n) {
                return Err(ScenarioError::DuplicateDevId {
                    dev_id: spec.dev_id,
                    first,
                    second: n,
                });
            }
            devices.push(spec);
        }
        Ok(Scenario { gateway, devices })
    }
}

fn positive(d: Duration, field: &str, text: &str) -> Result<Duration, ScenarioError> {
    if d.is_zero() {
        return Err(ScenarioError::InvalidDuration {
            field: field.to_owned(),
            reason: "must be more than zero",
            found: excerpt(text),
        });
    }
    Ok(d)
}

fn parse_device(
    n: usize,
    d: &RawDevice,
    prov_default: Encoding,
    dm_default: Encoding,
    hb_default: Duration,
) -> Result<DeviceSpec, ScenarioError> {
    let at = |name: &str| format!("device[{n}].{name}");
    let dev_id = match d.dev_id.as_deref() {
        Some(v) => check_dev_id(&at("dev_id"), v)?,
        None => {
            return Err(ScenarioError::Missing {
                field: at("dev_id"),
            });
        }
    };
    let man = required(at("man"), d.man.as_deref())?;
    let model = required(at("model"), d.model.as_deref())?;
    let dev_type = d
        .dev_type
        .as_deref()
        .map(|t| check_text(&at("dev_type"), t))
        .transpose()?;
    let consent = parse_consent(&at("consent"), d.consent.as_ref())?;
    let heartbeat = match d.heartbeat.as_deref() {
        Some(t) => positive(parse_duration(&at("heartbeat"), t)?, &at("heartbeat"), t)?,
        None => hb_default,
    };
    let provisioning_encoding = match d.provisioning_encoding.as_deref() {
        Some(t) => parse_encoding(&at("provisioning_encoding"), t)?,
        None => prov_default,
    };
    let dm_encoding = match d.dm_encoding.as_deref() {
        Some(t) => parse_encoding(&at("dm_encoding"), t)?,
        None => dm_default,
    };
    if d.account.len() > MAX_ACCOUNTS {
        return Err(ScenarioError::TooManyAccounts {
            device: n,
            count: d.account.len(),
            max: MAX_ACCOUNTS,
        });
    }
    let mut accounts = Vec::with_capacity(d.account.len());
    let mut ids = HashSet::new();
    let mut names = HashSet::new();
    for (j, a) in d.account.iter().enumerate() {
        let m = j.saturating_add(1);
        let at = |name: &str| format!("device[{n}].account[{m}].{name}");
        let server_id = match a.server_id.as_deref() {
            Some(v) => check_server_id(&at("server_id"), v)?,
            None => {
                return Err(ScenarioError::Missing {
                    field: at("server_id"),
                });
            }
        };
        let addr = required(at("addr"), a.addr.as_deref())?;
        let bootstrap_server_url = a
            .bootstrap_server_url
            .as_deref()
            .map(|u| parse_http_url(&at("bootstrap_server_url"), u).map(String::from))
            .transpose()?;
        let node_name = match a.node_name.as_deref() {
            Some(v) => check_node_name(&at("node_name"), v)?,
            None => omadm::mo::escape_name(&server_id).map_err(|_| ScenarioError::InvalidText {
                field: at("server_id"),
                reason: "too long once escaped as a node name; set node_name",
                found: excerpt(&server_id),
            })?,
        };
        if !ids.insert(server_id.clone()) {
            return Err(ScenarioError::DuplicateAccount {
                field: at("server_id"),
                what: "server_id",
                value: server_id,
            });
        }
        if !names.insert(node_name.clone()) {
            return Err(ScenarioError::DuplicateAccount {
                field: at("node_name"),
                what: "node name",
                value: node_name,
            });
        }
        accounts.push(AccountSpec {
            server_id,
            addr,
            bootstrap_server_url,
            node_name,
            hide_bootstrap_url: a.hide_bootstrap_url,
        });
    }
    Ok(DeviceSpec {
        dev_id,
        man,
        model,
        dev_type,
        consent,
        heartbeat,
        provisioning_encoding,
        dm_encoding,
        accounts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        gateway = "https://gw.lan:8443"
        [[device]]
        dev_id = "IMEI:1"
        man = "Acme"
        model = "T1"
    "#;

    #[test]
    fn minimal_scenario_gets_defaults() {
        let s = Scenario::parse(MINIMAL).unwrap();
        assert_eq!(s.gateway.unwrap().as_str(), "https://gw.lan:8443/");
        let d = &s.devices[0];
        assert_eq!(d.consent, ConsentPolicy::Allow);
        assert_eq!(d.heartbeat, DEFAULT_HEARTBEAT);
        assert_eq!(d.dm_encoding, Encoding::Xml);
        assert!(d.accounts.is_empty());
    }

    #[test]
    fn the_demo_scenario_parses() {
        let text = include_str!("../scenarios/demo.toml");
        let s = Scenario::parse(text).unwrap();
        assert!(s.devices.len() >= 3);
        assert!(s.devices.iter().any(|d| d.consent == ConsentPolicy::Refuse));
        assert!(
            s.devices
                .iter()
                .any(|d| matches!(d.consent, ConsentPolicy::AllowAfter(_)))
        );
        assert!(s.devices.iter().any(|d| d.dm_encoding == Encoding::Wbxml));
    }

    #[test]
    fn full_device() {
        let s = Scenario::parse(
            r#"
            dm_encoding = "wbxml"
            heartbeat = "10s"
            [[device]]
            dev_id = "IMEI:2"
            man = "Acme"
            model = "T2"
            dev_type = "thermostat"
            consent = { allow_after = "50ms" }
            provisioning_encoding = "WBXML"
            [[device.account]]
            server_id = "dms-1"
            addr = "https://dms1.example.com/dm"
            bootstrap_server_url = "https://bs1.example.com/bootstrap"
            [[device.account]]
            server_id = "dms:2"
            addr = "https://dms2.example.com/dm"
            "#,
        )
        .unwrap();
        let d = &s.devices[0];
        assert_eq!(
            d.consent,
            ConsentPolicy::AllowAfter(Duration::from_millis(50))
        );
        assert_eq!(d.heartbeat, Duration::from_secs(10));
        assert_eq!(d.provisioning_encoding, Encoding::Wbxml);
        assert_eq!(d.dm_encoding, Encoding::Wbxml);
        assert_eq!(d.accounts[1].node_name, "dms_3A2");
        assert_eq!(
            d.accounts[0].bootstrap_server_url.as_deref(),
            Some("https://bs1.example.com/bootstrap")
        );
        assert!(s.gateway.is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("x", "50ms").unwrap(),
            Duration::from_millis(50)
        );
        assert_eq!(parse_duration("x", " 2s ").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("x", "1m").unwrap(), Duration::from_secs(60));
        assert_eq!(
            parse_duration("x", "1h").unwrap(),
            Duration::from_secs(3600)
        );
        for bad in [
            "",
            "5",
            "s",
            "5 parsecs",
            "-1s",
            "25h",
            "99999999999999999999s",
        ] {
            assert!(
                matches!(
                    parse_duration("x", bad),
                    Err(ScenarioError::InvalidDuration { .. })
                ),
                "{bad}"
            );
        }
    }

    fn err(text: &str) -> ScenarioError {
        Scenario::parse(text).unwrap_err()
    }

    #[test]
    fn errors_are_typed_and_located() {
        let e = err("[[device]]\ndev_id = \"a\"\nman = \"m\"\nmodel = \"x\"\ncolour = \"red\"\n");
        let ScenarioError::Syntax { line, message, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(*line, 5, "{e}");
        assert!(message.contains("colour"), "{e}");

        let e = err("[[device]]\nman = \"m\"\nmodel = \"x\"\n");
        assert!(matches!(&e, ScenarioError::Missing { field } if field == "device[1].dev_id"));
        assert_eq!(e.to_string(), "device[1].dev_id: missing");

        let e = err(&format!("{MINIMAL}consent = \"maybe\"\n"));
        assert!(
            matches!(&e, ScenarioError::InvalidConsent { field, .. } if field == "device[1].consent")
        );

        let e = err(&format!(
            "{MINIMAL}consent = {{ allow_after = \"soon\" }}\n"
        ));
        assert!(
            matches!(&e, ScenarioError::InvalidDuration { field, .. } if field == "device[1].consent.allow_after"),
            "{e:?}"
        );

        let e = err(&format!("{MINIMAL}dm_encoding = \"json\"\n"));
        assert!(matches!(&e, ScenarioError::InvalidEncoding { .. }));

        let e = err(&format!("{MINIMAL}heartbeat = \"0s\"\n"));
        assert!(matches!(&e, ScenarioError::InvalidDuration { .. }));

        let e = err(&format!(
            "{MINIMAL}[[device.account]]\nserver_id = \"a+b\"\naddr = \"x\"\n"
        ));
        assert!(
            matches!(&e, ScenarioError::InvalidText { field, .. } if field == "device[1].account[1].server_id")
        );

        let e = err(&format!(
            "{MINIMAL}[[device.account]]\nserver_id = \"s\"\naddr = \"x\"\nbootstrap_server_url = \"ftp://x\"\n"
        ));
        assert!(matches!(&e, ScenarioError::InvalidUrl { .. }));

        let e = err(&format!(
            "{MINIMAL}[[device.account]]\nserver_id = \"s\"\naddr = \"x\"\n[[device.account]]\nserver_id = \"s\"\naddr = \"y\"\n"
        ));
        assert!(matches!(
            &e,
            ScenarioError::DuplicateAccount {
                what: "server_id",
                ..
            }
        ));

        let e = err(&format!(
            "{MINIMAL}{}",
            MINIMAL.replace("gateway = \"https://gw.lan:8443\"", "")
        ));
        assert!(matches!(
            &e,
            ScenarioError::DuplicateDevId {
                first: 1,
                second: 2,
                ..
            }
        ));

        assert!(matches!(
            err("gateway = \"https://gw\"\n"),
            ScenarioError::DeviceCount { count: 0, .. }
        ));
        assert!(matches!(
            err("gateway = \"gw.lan\"\n[[device]]\n"),
            ScenarioError::InvalidUrl { .. }
        ));
        let e = err(&format!("{MINIMAL}man = \"\"\n"));
        assert!(
            matches!(&e, ScenarioError::Syntax { .. }),
            "duplicate key: {e:?}"
        );
        let e = err(&MINIMAL.replace("\"Acme\"", "\"  \""));
        assert!(matches!(
            &e,
            ScenarioError::InvalidText {
                reason: "empty",
                ..
            }
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = Scenario::parse(&text);
        }

        #[test]
        fn arbitrary_durations_never_panic(text in "\\PC{0,40}") {
            let _ = parse_duration("x", &text);
        }

        #[test]
        fn arbitrary_device_tables_never_panic(
            dev_id in "\\PC{0,80}", consent in "\\PC{0,20}", hb in "[0-9]{0,25}[a-z]{0,3}",
        ) {
            let text = format!(
                "[[device]]\ndev_id = {dev_id:?}\nman = \"m\"\nmodel = \"x\"\nconsent = {consent:?}\nheartbeat = {hb:?}\n"
            );
            let _ = Scenario::parse(&text);
        }
    }
}
