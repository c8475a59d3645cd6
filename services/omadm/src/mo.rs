//! Typed, validated views over the management tree: DMAcc accounts (DM 1.2), DevInfo, and dmgw's
//! Device Inventory records. Each view reads from and writes to a `Tree`; secrets stay `Secret`.
//!
//! # DMAcc (`urn:oma:mo:oma-dm-dmacc:1.0`, DM 1.2 layout)
//! ```text
//! ./DMAcc/<X>                      interior, Type urn:oma:mo:oma-dm-dmacc:1.0
//!     AppID                        chr, always "w7"
//!     ServerID, Name, PrefConRef   chr (Name, PrefConRef optional)
//!     AppAddr/<X>/Addr             chr
//!     AppAddr/<X>/AddrType         chr: URI | IPv4 | IPv6 (read as URI when absent)
//!     AppAddr/<X>/Port/<X>/PortNbr int
//!     AAuthPref                    chr, an AAuthType (optional)
//!     AppAuth/<X>/AAuthLevel       chr: CLCRED | SRVCRED | HTTP
//!     AppAuth/<X>/AAuthType        chr: HTTP-BASIC | HTTP-DIGEST | BASIC | DIGEST | HMAC | X509 |
//!                                  SECURID | SAFEWORD | DIGIPASS | TRANSPORT
//!     AppAuth/<X>/AAuthName        chr (optional)
//!     AppAuth/<X>/AAuthSecret      chr, no Get (optional)
//!     AppAuth/<X>/AAuthData        bin, no Get (optional; the nonce, base64 text in `DmAcc`)
//!     Ext/BootstrapServerURL       chr (optional), see below
//! ```
//! **dmgw extension `Ext/BootstrapServerURL`**: for workflow 1 a device keeps, in each account, the
//! URL of the DM Bootstrap Server that bootstrapped it to that DM Server; the gateway reads it with a
//! Get on `./DMAcc/<X>/Ext/BootstrapServerURL`. It lives under the account's vendor `Ext` node, so
//! DM 1.2 clients that do not know it are unaffected. Other `Ext` children are kept on write.
//!
//! # DevInfo (`./DevInfo`, `urn:oma:mo:oma-dm-devinfo:1.0`)
//! `DevId`, `Man`, `Mod`, `DmV`, `Lang` (chr, all required) and optional `Ext/<name>` chr leaves.
//!
//! # Device Inventory (`urn:oma:mo:oma-gwmo-deviceinventory:1.0`, dmgw's own layout)
//! The DDF of the GwMO Device Inventory MO is not public, so dmgw defines this layout:
//! ```text
//! ./DeviceInventory                interior, Type urn:oma:mo:oma-gwmo-deviceinventory:1.0
//!     <X>                          interior, one per End Device, X = escape_name(DevId)
//!         DevId                    chr, the device's DevInfo/DevId (e.g. IMEI:350000000000001)
//!         Man, Mod                 chr (may be empty until the device reported them)
//!         DevType                  chr (optional)
//!         Address                  chr, the device's LAN address (host or host:port or URL)
//!         State                    chr: discovered | consented | provisioned | attached |
//!                                  detached | refused | lost | waiting_bootstrap
//!         FirstSeen, LastSeen      chr, RFC 3339 (e.g. 2024-05-01T12:00:00Z)
//!         ServerIDs/<n>/ServerID   chr, a ServerID the device reported (BootstrappedDMSList)
//!         ServerIDs/<n>/Matched    bool (true | false): the gateway has a DMAcc for it
//! ```
//! `<n>` is 1, 2, 3 ... in report order. The record name `<X>` is the DevId with every byte outside
//! `[A-Za-z0-9-]` written as `_` followed by two upper-case hex digits (UTF-8 bytes), so
//! `IMEI:35-1` becomes `IMEI_3A35-1` and `_` itself becomes `_5F`; the name must fit in 64 bytes.
//! The escaped form holds no `%`, `.`, `/`, `?` or `:`, so no URI layer can re-interpret it.
//! The same escaping names DMAcc accounts derived from a ServerID (`DmAcc::account_uri`).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::secret::Secret;
use crate::tree::{Format, NewNode, Tree, TreeError};
use crate::uri::{DmUri, UriError, UriLimits, excerpt};

/// The DMAcc MO identifier (DM 1.2).
pub const DMACC_MO_ID: &str = "urn:oma:mo:oma-dm-dmacc:1.0";
/// The DevInfo MO identifier.
pub const DEVINFO_MO_ID: &str = "urn:oma:mo:oma-dm-devinfo:1.0";
/// The GwMO Device Inventory MO identifier (layout defined by dmgw, see the module doc).
pub const DEVICE_INVENTORY_MO_ID: &str = "urn:oma:mo:oma-gwmo-deviceinventory:1.0";
/// The AppID of every DM account.
pub const DMACC_APP_ID: &str = "w7";
/// Name of the DMAcc root below `.`.
pub const DMACC_ROOT: &str = "DMAcc";
/// Name of the DevInfo root below `.`.
pub const DEVINFO_ROOT: &str = "DevInfo";
/// Name of the Device Inventory root below `.`.
pub const DEVICE_INVENTORY_ROOT: &str = "DeviceInventory";

/// Why a management object could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MoError {
    /// A required node is absent.
    #[error("required node {uri} is missing")]
    Missing {
        /// The node's URI.
        uri: DmUri,
    },
    /// An interior node where a leaf was expected.
    #[error("{uri} should be a leaf")]
    NotLeaf {
        /// The node's URI.
        uri: DmUri,
    },
    /// A leaf where an interior node was expected.
    #[error("{uri} should be an interior node")]
    NotInterior {
        /// The node's URI.
        uri: DmUri,
    },
    /// A text leaf whose value is not UTF-8.
    #[error("{uri} is not UTF-8 text")]
    NotUtf8 {
        /// The node's URI.
        uri: DmUri,
    },
    /// A value outside what the MO allows. `found` is an excerpt, `<redacted>` for secrets.
    #[error("{uri}: {reason} (found {found:?})")]
    InvalidValue {
        /// The node's URI.
        uri: DmUri,
        /// What the MO expects.
        reason: &'static str,
        /// What was there.
        found: String,
    },
    /// A field of a typed view that cannot be written.
    #[error("{field}: {reason}")]
    InvalidField {
        /// The field, e.g. `server_id` or `app_addr key`.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A DevId or ServerID that cannot name a node.
    #[error("identifier {id:?} cannot name a node: {reason}")]
    InvalidName {
        /// The identifier (excerpt).
        id: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The tree refused an operation.
    #[error("tree: {source}")]
    Tree {
        /// The tree's error.
        #[from]
        source: TreeError,
    },
    /// A node name broke the URI rules.
    #[error("node name: {source}")]
    Uri {
        /// The URI error.
        #[from]
        source: UriError,
    },
}

/// Defines a closed set of text values with `as_str`, case-insensitive `parse` and `Display`.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $(#[$meta])*
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in specification order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as written in the tree.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Recognise a value, case-insensitively, ignoring surrounding whitespace.
            pub fn parse(s: &str) -> Option<$name> {
                let t = s.trim();
                $name::ALL.iter().copied().find(|v| v.as_str().eq_ignore_ascii_case(t))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// `AppAddr/<X>/AddrType`.
    AddrType {
        /// `URI`: Addr is a URL.
        Uri => "URI",
        /// `IPv4`.
        Ipv4 => "IPv4",
        /// `IPv6`.
        Ipv6 => "IPv6",
    }
}

text_enum! {
    /// `AppAuth/<X>/AAuthLevel`: which direction the credentials serve.
    AuthLevel {
        /// `CLCRED`: the client authenticates to the server.
        Clcred => "CLCRED",
        /// `SRVCRED`: the server authenticates to the client.
        Srvcred => "SRVCRED",
        /// `HTTP`: transport-level (HTTP) authentication.
        Http => "HTTP",
    }
}

text_enum! {
    /// `AppAuth/<X>/AAuthType` and `AAuthPref`.
    AuthType {
        /// `HTTP-BASIC`.
        HttpBasic => "HTTP-BASIC",
        /// `HTTP-DIGEST`.
        HttpDigest => "HTTP-DIGEST",
        /// `BASIC` (syncml:auth-basic).
        Basic => "BASIC",
        /// `DIGEST` (syncml:auth-md5).
        Digest => "DIGEST",
        /// `HMAC` (syncml:auth-MAC).
        Hmac => "HMAC",
        /// `X509`.
        X509 => "X509",
        /// `SECURID`.
        SecurId => "SECURID",
        /// `SAFEWORD`.
        SafeWord => "SAFEWORD",
        /// `DIGIPASS`.
        DigiPass => "DIGIPASS",
        /// `TRANSPORT`.
        Transport => "TRANSPORT",
    }
}

text_enum! {
    /// `./DeviceInventory/<X>/State`: where the End Device is in the gateway's onboarding flow.
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    DeviceState {
        /// Seen on the LAN, not yet asked.
        Discovered => "discovered",
        /// The user allowed management through the gateway.
        Consented => "consented",
        /// The device fetched its provisioning file.
        Provisioned => "provisioned",
        /// Attached: the matched servers were alerted.
        Attached => "attached",
        /// Detached by an operator or by the device.
        Detached => "detached",
        /// The user refused; the device is left alone.
        Refused => "refused",
        /// No longer seen on the LAN.
        Lost => "lost",
        /// Some ServerIDs unmatched; a bootstrap is pending.
        WaitingBootstrap => "waiting_bootstrap",
    }
}

/// The URI of `name` below `base`, under the tree's URI limits.
fn child(tree: &Tree, base: &DmUri, name: &str) -> Result<DmUri, MoError> {
    Ok(base.join_with_limits(name, &tree.limits().uri)?)
}

fn root_child(tree: &Tree, name: &str) -> Result<DmUri, MoError> {
    child(tree, &DmUri::root(), name)
}

/// The text of the leaf at `uri`, `None` when absent.
fn leaf_text(tree: &Tree, uri: &DmUri) -> Result<Option<String>, MoError> {
    let node = match tree.node(uri) {
        Ok(node) => node,
        Err(TreeError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if node.is_interior() {
        return Err(MoError::NotLeaf { uri: uri.clone() });
    }
    match &node.value {
        None => Ok(Some(String::new())),
        Some(v) => String::from_utf8(v.clone())
            .map(Some)
            .map_err(|_| MoError::NotUtf8 { uri: uri.clone() }),
    }
}

fn optional(tree: &Tree, base: &DmUri, name: &str) -> Result<Option<String>, MoError> {
    leaf_text(tree, &child(tree, base, name)?)
}

fn required(tree: &Tree, base: &DmUri, name: &str) -> Result<String, MoError> {
    let uri = child(tree, base, name)?;
    leaf_text(tree, &uri)?.ok_or(MoError::Missing { uri })
}

/// Optional text where an empty leaf counts as absent.
fn optional_non_empty(tree: &Tree, base: &DmUri, name: &str) -> Result<Option<String>, MoError> {
    Ok(optional(tree, base, name)?.filter(|s| !s.trim().is_empty()))
}

fn parse_enum<T>(
    tree: &Tree,
    base: &DmUri,
    name: &str,
    text: &str,
    parse: fn(&str) -> Option<T>,
    reason: &'static str,
) -> Result<T, MoError> {
    parse(text).ok_or_else(|| match child(tree, base, name) {
        Ok(uri) => MoError::InvalidValue {
            uri,
            reason,
            found: excerpt(text),
        },
        Err(e) => e,
    })
}

/// The names of the children of an interior node at `uri` (none when absent).
fn child_names(tree: &Tree, uri: &DmUri) -> Result<Vec<String>, MoError> {
    match tree.node(uri) {
        Ok(node) if node.is_interior() => Ok(node.children.keys().cloned().collect()),
        Ok(_) => Err(MoError::NotInterior { uri: uri.clone() }),
        Err(TreeError::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Add or replace the node at `uri`.
fn put(tree: &mut Tree, uri: &DmUri, new: NewNode) -> Result<(), MoError> {
    let wants_interior = new.format == Format::Node;
    match tree.node(uri) {
        Ok(node) if node.is_interior() != wants_interior => {
            if wants_interior {
                Err(MoError::NotInterior { uri: uri.clone() })
            } else {
                Err(MoError::NotLeaf { uri: uri.clone() })
            }
        }
        Ok(_) => Ok(tree.replace(uri, new)?),
        Err(TreeError::NotFound { .. }) => Ok(tree.add(uri, new)?),
        Err(e) => Err(e.into()),
    }
}

fn put_chr(tree: &mut Tree, base: &DmUri, name: &str, value: &str) -> Result<(), MoError> {
    let uri = child(tree, base, name)?;
    put(tree, &uri, NewNode::chr(value))
}

fn put_opt_chr(
    tree: &mut Tree,
    base: &DmUri,
    name: &str,
    value: Option<&str>,
) -> Result<(), MoError> {
    match value {
        Some(v) => put_chr(tree, base, name, v),
        None => remove(tree, &child(tree, base, name)?),
    }
}

/// Make sure an interior node exists at `uri`, with `mo_type` as its Type when given.
fn ensure_interior(tree: &mut Tree, uri: &DmUri, mo_type: Option<&str>) -> Result<(), MoError> {
    let existing_type = match tree.node(uri) {
        Ok(node) if node.is_leaf() => return Err(MoError::NotInterior { uri: uri.clone() }),
        Ok(node) => Some(node.mime_type.clone()),
        Err(TreeError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let mut new = NewNode::interior();
    if let Some(t) = mo_type {
        new = new.with_type(t);
    }
    match existing_type {
        None => Ok(tree.add(uri, new)?),
        Some(current) if mo_type.is_some() && current.as_deref() != mo_type => {
            Ok(tree.replace(uri, new)?)
        }
        Some(_) => Ok(()),
    }
}

fn remove(tree: &mut Tree, uri: &DmUri) -> Result<(), MoError> {
    if tree.exists(uri) {
        tree.delete(uri)?;
    }
    Ok(())
}

/// Delete the children of `uri` whose names are not in `keep`.
fn prune(tree: &mut Tree, uri: &DmUri, keep: &[&str]) -> Result<(), MoError> {
    for name in child_names(tree, uri)? {
        if !keep.contains(&name.as_str()) {
            let c = child(tree, uri, &name)?;
            tree.delete(&c)?;
        }
    }
    Ok(())
}

/// Check that the keys of a collection are distinct.
fn distinct<'a>(keys: impl Iterator<Item = &'a str>, field: &'static str) -> Result<(), MoError> {
    let mut seen = std::collections::BTreeSet::new();
    for k in keys {
        if !seen.insert(k) {
            return Err(MoError::InvalidField {
                field,
                reason: "duplicate key",
            });
        }
    }
    Ok(())
}

fn check_text(value: &str, field: &'static str) -> Result<(), MoError> {
    if value.chars().any(char::is_control) {
        return Err(MoError::InvalidField {
            field,
            reason: "control character",
        });
    }
    Ok(())
}

/// Write an identifier (DevId, ServerID) as a node name: bytes outside `[A-Za-z0-9-]` become `_`
/// and two upper-case hex digits. Empty identifiers and names over 64 bytes are refused.
pub fn escape_name(id: &str) -> Result<String, MoError> {
    let invalid = |reason| MoError::InvalidName {
        id: excerpt(id),
        reason,
    };
    if id.is_empty() {
        return Err(invalid("empty"));
    }
    let limit = UriLimits::default().max_segment_len;
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push('_');
            out.push_str(&format!("{b:02X}"));
        }
        if out.len() > limit {
            return Err(invalid("longer than 64 bytes once escaped"));
        }
    }
    Ok(out)
}

/// The identifier a node name written by [`escape_name`] stands for.
pub fn unescape_name(name: &str) -> Result<String, MoError> {
    let invalid = |reason| MoError::InvalidName {
        id: excerpt(name),
        reason,
    };
    let mut bytes = Vec::with_capacity(name.len());
    let mut it = name.bytes();
    while let Some(b) = it.next() {
        if b == b'_' {
            let (Some(hi), Some(lo)) = (it.next(), it.next()) else {
                return Err(invalid("truncated escape"));
            };
            let hex = [hi, lo];
            let text = std::str::from_utf8(&hex).map_err(|_| invalid("bad escape"))?;
            if !text
                .bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
            {
                return Err(invalid("bad escape"));
            }
            let v = u8::from_str_radix(text, 16).map_err(|_| invalid("bad escape"))?;
            bytes.push(v);
        } else if b.is_ascii_alphanumeric() || b == b'-' {
            bytes.push(b);
        } else {
            return Err(invalid("unescaped character"));
        }
    }
    if bytes.is_empty() {
        return Err(invalid("empty"));
    }
    String::from_utf8(bytes).map_err(|_| invalid("not UTF-8"))
}

/// One `AppAddr/<X>/Port/<X>` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The `<X>` node name.
    pub key: String,
    /// `PortNbr`.
    pub port_nbr: u16,
}

/// One `AppAddr/<X>` entry: where the DM server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAddr {
    /// The `<X>` node name.
    pub key: String,
    /// `Addr`: the server's URL (or IP address).
    pub addr: String,
    /// `AddrType`.
    pub addr_type: AddrType,
    /// `Port/<X>` entries, in key order.
    pub ports: Vec<Port>,
}

/// One `AppAuth/<X>` entry: credentials for one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAuth {
    /// The `<X>` node name.
    pub key: String,
    /// `AAuthLevel`.
    pub level: AuthLevel,
    /// `AAuthType`.
    pub auth_type: AuthType,
    /// `AAuthName`: the user name.
    pub name: Option<String>,
    /// `AAuthSecret`: the password.
    pub secret: Option<Secret>,
    /// `AAuthData`: the nonce, as base64 text (the tree holds the decoded bytes, Format bin).
    pub data: Option<Secret>,
}

/// A DM account (`./DMAcc/<X>`), DM 1.2 layout. `Debug` never shows secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmAcc {
    /// `ServerID`.
    pub server_id: String,
    /// `Name`: a display name.
    pub name: Option<String>,
    /// `PrefConRef`: preferred connectivity reference.
    pub pref_con_ref: Option<String>,
    /// `AppAddr/<X>` entries, in key order.
    pub app_addr: Vec<AppAddr>,
    /// `AAuthPref`: the preferred authentication type.
    pub aauth_pref: Option<AuthType>,
    /// `AppAuth/<X>` entries, in key order.
    pub app_auth: Vec<AppAuth>,
    /// `Ext/BootstrapServerURL` (dmgw extension): the DM Bootstrap Server of this account.
    pub bootstrap_server_url: Option<String>,
}

impl DmAcc {
    /// An account for `server_id` reached at `url` (one AppAddr `1`, AddrType URI), no credentials.
    pub fn new(server_id: impl Into<String>, url: impl Into<String>) -> DmAcc {
        DmAcc {
            server_id: server_id.into(),
            name: None,
            pref_con_ref: None,
            app_addr: vec![AppAddr {
                key: "1".to_owned(),
                addr: url.into(),
                addr_type: AddrType::Uri,
                ports: Vec::new(),
            }],
            aauth_pref: None,
            app_auth: Vec::new(),
            bootstrap_server_url: None,
        }
    }

    /// `./DMAcc`.
    pub fn root(tree: &Tree) -> Result<DmUri, MoError> {
        root_child(tree, DMACC_ROOT)
    }

    /// `./DMAcc/<escape_name(server_id)>`: where dmgw puts an account it creates.
    pub fn account_uri(tree: &Tree, server_id: &str) -> Result<DmUri, MoError> {
        let root = DmAcc::root(tree)?;
        child(tree, &root, &escape_name(server_id)?)
    }

    /// The client credentials (`AAuthLevel` CLCRED), if any.
    pub fn client_credentials(&self) -> Option<&AppAuth> {
        self.app_auth.iter().find(|a| a.level == AuthLevel::Clcred)
    }

    /// The server credentials (`AAuthLevel` SRVCRED), if any.
    pub fn server_credentials(&self) -> Option<&AppAuth> {
        self.app_auth.iter().find(|a| a.level == AuthLevel::Srvcred)
    }

    /// The server's URL: the first AppAddr of type URI, else the first AppAddr. Ports are not
    /// merged into it.
    pub fn server_url(&self) -> Option<&str> {
        self.app_addr
            .iter()
            .find(|a| a.addr_type == AddrType::Uri)
            .or_else(|| self.app_addr.first())
            .map(|a| a.addr.as_str())
    }

    /// Check the account can be written.
    pub fn validate(&self) -> Result<(), MoError> {
        if self.server_id.trim().is_empty() {
            return Err(MoError::InvalidField {
                field: "server_id",
                reason: "empty",
            });
        }
        check_text(&self.server_id, "server_id")?;
        distinct(self.app_addr.iter().map(|a| a.key.as_str()), "app_addr key")?;
        distinct(self.app_auth.iter().map(|a| a.key.as_str()), "app_auth key")?;
        for a in &self.app_addr {
            distinct(a.ports.iter().map(|p| p.key.as_str()), "port key")?;
        }
        for a in &self.app_auth {
            if let Some(data) = &a.data
                && B64.decode(data.expose().trim()).is_err()
            {
                return Err(MoError::InvalidField {
                    field: "app_auth data",
                    reason: "not base64",
                });
            }
        }
        Ok(())
    }

    /// Read the account at `uri` (e.g. `./DMAcc/S1`).
    pub fn read(tree: &Tree, uri: &DmUri) -> Result<DmAcc, MoError> {
        if tree.node(uri)?.is_leaf() {
            return Err(MoError::NotInterior { uri: uri.clone() });
        }
        let app_id = required(tree, uri, "AppID")?;
        if !app_id.trim().eq_ignore_ascii_case(DMACC_APP_ID) {
            return Err(MoError::InvalidValue {
                uri: child(tree, uri, "AppID")?,
                reason: "AppID must be w7",
                found: excerpt(&app_id),
            });
        }
        let server_id = required(tree, uri, "ServerID")?;
        if server_id.trim().is_empty() {
            return Err(MoError::InvalidValue {
                uri: child(tree, uri, "ServerID")?,
                reason: "ServerID is empty",
                found: String::new(),
            });
        }
        let aauth_pref = match optional_non_empty(tree, uri, "AAuthPref")? {
            Some(text) => Some(parse_enum(
                tree,
                uri,
                "AAuthPref",
                &text,
                AuthType::parse,
                "not an AAuthType",
            )?),
            None => None,
        };
        let ext = child(tree, uri, "Ext")?;
        let bootstrap_server_url = match tree.node(&ext) {
            Ok(n) if n.is_interior() => optional_non_empty(tree, &ext, "BootstrapServerURL")?,
            _ => None,
        };
        Ok(DmAcc {
            server_id,
            name: optional(tree, uri, "Name")?,
            pref_con_ref: optional(tree, uri, "PrefConRef")?,
            app_addr: read_app_addr(tree, uri)?,
            aauth_pref,
            app_auth: read_app_auth(tree, uri)?,
            bootstrap_server_url,
        })
    }

    /// Write the account at `uri`, all or nothing: nodes for absent fields and entries not in
    /// `self` are removed; other `Ext` children are kept.
    pub fn write(&self, tree: &mut Tree, uri: &DmUri) -> Result<(), MoError> {
        self.validate()?;
        tree.atomic(|t| self.write_into(t, uri))
    }

    fn write_into(&self, t: &mut Tree, uri: &DmUri) -> Result<(), MoError> {
        ensure_interior(t, uri, Some(DMACC_MO_ID))?;
        put_chr(t, uri, "AppID", DMACC_APP_ID)?;
        put_chr(t, uri, "ServerID", &self.server_id)?;
        put_opt_chr(t, uri, "Name", self.name.as_deref())?;
        put_opt_chr(t, uri, "PrefConRef", self.pref_con_ref.as_deref())?;
        put_opt_chr(t, uri, "AAuthPref", self.aauth_pref.map(AuthType::as_str))?;

        let addrs = child(t, uri, "AppAddr")?;
        if self.app_addr.is_empty() {
            remove(t, &addrs)?;
        } else {
            ensure_interior(t, &addrs, None)?;
            let keys: Vec<&str> = self.app_addr.iter().map(|a| a.key.as_str()).collect();
            prune(t, &addrs, &keys)?;
            for a in &self.app_addr {
                let at = child(t, &addrs, &a.key)?;
                ensure_interior(t, &at, None)?;
                put_chr(t, &at, "Addr", &a.addr)?;
                put_chr(t, &at, "AddrType", a.addr_type.as_str())?;
                let ports = child(t, &at, "Port")?;
                if a.ports.is_empty() {
                    remove(t, &ports)?;
                    continue;
                }
                ensure_interior(t, &ports, None)?;
                let keys: Vec<&str> = a.ports.iter().map(|p| p.key.as_str()).collect();
                prune(t, &ports, &keys)?;
                for p in &a.ports {
                    let pu = child(t, &ports, &p.key)?;
                    ensure_interior(t, &pu, None)?;
                    let nbr = child(t, &pu, "PortNbr")?;
                    put(
                        t,
                        &nbr,
                        NewNode::leaf(Format::Int, p.port_nbr.to_string()).with_type("text/plain"),
                    )?;
                }
            }
        }

        let auths = child(t, uri, "AppAuth")?;
        if self.app_auth.is_empty() {
            remove(t, &auths)?;
        } else {
            ensure_interior(t, &auths, None)?;
            let keys: Vec<&str> = self.app_auth.iter().map(|a| a.key.as_str()).collect();
            prune(t, &auths, &keys)?;
            for a in &self.app_auth {
                let at = child(t, &auths, &a.key)?;
                ensure_interior(t, &at, None)?;
                put_chr(t, &at, "AAuthLevel", a.level.as_str())?;
                put_chr(t, &at, "AAuthType", a.auth_type.as_str())?;
                put_opt_chr(t, &at, "AAuthName", a.name.as_deref())?;
                put_opt_chr(t, &at, "AAuthSecret", a.secret.as_ref().map(Secret::expose))?;
                let data = child(t, &at, "AAuthData")?;
                match &a.data {
                    Some(d) => {
                        let bytes =
                            B64.decode(d.expose().trim())
                                .map_err(|_| MoError::InvalidField {
                                    field: "app_auth data",
                                    reason: "not base64",
                                })?;
                        put(
                            t,
                            &data,
                            NewNode::leaf(Format::Bin, bytes).with_type("application/octet-stream"),
                        )?;
                    }
                    None => remove(t, &data)?,
                }
            }
        }

        let ext = child(t, uri, "Ext")?;
        match &self.bootstrap_server_url {
            Some(url) => {
                ensure_interior(t, &ext, None)?;
                put_chr(t, &ext, "BootstrapServerURL", url)?;
            }
            None => {
                if t.node(&ext).is_ok_and(|n| n.is_interior()) {
                    remove(t, &child(t, &ext, "BootstrapServerURL")?)?;
                }
            }
        }
        Ok(())
    }

    /// Every account under `./DMAcc`, in name order. Fails on the first malformed account.
    pub fn all(tree: &Tree) -> Result<Vec<(DmUri, DmAcc)>, MoError> {
        let root = DmAcc::root(tree)?;
        let mut out = Vec::new();
        for name in child_names(tree, &root)? {
            let uri = child(tree, &root, &name)?;
            let acc = DmAcc::read(tree, &uri)?;
            out.push((uri, acc));
        }
        Ok(out)
    }

    /// The account whose ServerID is `server_id` (exact match).
    pub fn find_by_server_id(
        tree: &Tree,
        server_id: &str,
    ) -> Result<Option<(DmUri, DmAcc)>, MoError> {
        Ok(DmAcc::all(tree)?
            .into_iter()
            .find(|(_, a)| a.server_id == server_id))
    }
}

fn read_app_addr(tree: &Tree, acc: &DmUri) -> Result<Vec<AppAddr>, MoError> {
    let base = child(tree, acc, "AppAddr")?;
    let mut out = Vec::new();
    for key in child_names(tree, &base)? {
        let at = child(tree, &base, &key)?;
        let addr = required(tree, &at, "Addr")?;
        let addr_type = match optional_non_empty(tree, &at, "AddrType")? {
            Some(text) => parse_enum(
                tree,
                &at,
                "AddrType",
                &text,
                AddrType::parse,
                "not URI, IPv4 or IPv6",
            )?,
            None => AddrType::Uri,
        };
        let ports_uri = child(tree, &at, "Port")?;
        let mut ports = Vec::new();
        for pkey in child_names(tree, &ports_uri)? {
            let pu = child(tree, &ports_uri, &pkey)?;
            let text = required(tree, &pu, "PortNbr")?;
            let port_nbr = text.trim().parse::<u16>().map_err(|_| -> MoError {
                match child(tree, &pu, "PortNbr") {
                    Ok(uri) => MoError::InvalidValue {
                        uri,
                        reason: "not a port number",
                        found: excerpt(&text),
                    },
                    Err(e) => e,
                }
            })?;
            ports.push(Port {
                key: pkey,
                port_nbr,
            });
        }
        out.push(AppAddr {
            key,
            addr,
            addr_type,
            ports,
        });
    }
    Ok(out)
}

fn read_app_auth(tree: &Tree, acc: &DmUri) -> Result<Vec<AppAuth>, MoError> {
    let base = child(tree, acc, "AppAuth")?;
    let mut out = Vec::new();
    for key in child_names(tree, &base)? {
        let at = child(tree, &base, &key)?;
        let level_text = required(tree, &at, "AAuthLevel")?;
        let level = parse_enum(
            tree,
            &at,
            "AAuthLevel",
            &level_text,
            AuthLevel::parse,
            "not CLCRED, SRVCRED or HTTP",
        )?;
        let type_text = required(tree, &at, "AAuthType")?;
        let auth_type = parse_enum(
            tree,
            &at,
            "AAuthType",
            &type_text,
            AuthType::parse,
            "not an AAuthType",
        )?;
        let data_uri = child(tree, &at, "AAuthData")?;
        let data = match tree.node(&data_uri) {
            Ok(n) if n.is_interior() => return Err(MoError::NotLeaf { uri: data_uri }),
            Ok(n) => n.value.as_ref().map(|v| Secret::new(B64.encode(v))),
            Err(TreeError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        out.push(AppAuth {
            key,
            level,
            auth_type,
            name: optional(tree, &at, "AAuthName")?,
            secret: optional(tree, &at, "AAuthSecret")?.map(Secret::new),
            data,
        });
    }
    Ok(out)
}

/// `./DevInfo`: the device's identity as a DM client reports it in package 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevInfo {
    /// `DevId`: globally unique, e.g. `IMEI:350000000000001`.
    pub dev_id: String,
    /// `Man`: manufacturer.
    pub man: String,
    /// `Mod`: model.
    pub model: String,
    /// `DmV`: DM client version.
    pub dm_v: String,
    /// `Lang`: current language.
    pub lang: String,
    /// `Ext/<name>` text leaves (vendor extensions); interior `Ext` children are left alone.
    pub ext: BTreeMap<String, String>,
}

impl DevInfo {
    /// `./DevInfo`.
    pub fn root(tree: &Tree) -> Result<DmUri, MoError> {
        root_child(tree, DEVINFO_ROOT)
    }

    /// Read `./DevInfo`.
    pub fn read(tree: &Tree) -> Result<DevInfo, MoError> {
        let uri = DevInfo::root(tree)?;
        if tree.node(&uri)?.is_leaf() {
            return Err(MoError::NotInterior { uri });
        }
        let dev_id = required(tree, &uri, "DevId")?;
        if dev_id.trim().is_empty() {
            return Err(MoError::InvalidValue {
                uri: child(tree, &uri, "DevId")?,
                reason: "DevId is empty",
                found: String::new(),
            });
        }
        let ext_uri = child(tree, &uri, "Ext")?;
        let mut ext = BTreeMap::new();
        if tree.node(&ext_uri).is_ok_and(|n| n.is_interior()) {
            for name in child_names(tree, &ext_uri)? {
                let at = child(tree, &ext_uri, &name)?;
                if tree.node(&at).is_ok_and(|n| n.is_leaf())
                    && let Some(text) = leaf_text(tree, &at)?
                {
                    ext.insert(name, text);
                }
            }
        }
        Ok(DevInfo {
            dev_id,
            man: required(tree, &uri, "Man")?,
            model: required(tree, &uri, "Mod")?,
            dm_v: required(tree, &uri, "DmV")?,
            lang: required(tree, &uri, "Lang")?,
            ext,
        })
    }

    /// Write `./DevInfo`, all or nothing. `Ext` text leaves not in `self.ext` are removed.
    pub fn write(&self, tree: &mut Tree) -> Result<(), MoError> {
        if self.dev_id.trim().is_empty() {
            return Err(MoError::InvalidField {
                field: "dev_id",
                reason: "empty",
            });
        }
        tree.atomic(|t| {
            let uri = DevInfo::root(t)?;
            ensure_interior(t, &uri, Some(DEVINFO_MO_ID))?;
            put_chr(t, &uri, "DevId", &self.dev_id)?;
            put_chr(t, &uri, "Man", &self.man)?;
            put_chr(t, &uri, "Mod", &self.model)?;
            put_chr(t, &uri, "DmV", &self.dm_v)?;
            put_chr(t, &uri, "Lang", &self.lang)?;
            let ext = child(t, &uri, "Ext")?;
            if !self.ext.is_empty() {
                ensure_interior(t, &ext, None)?;
            }
            if t.node(&ext).is_ok_and(|n| n.is_interior()) {
                for name in child_names(t, &ext)? {
                    let at = child(t, &ext, &name)?;
                    if !self.ext.contains_key(&name) && t.node(&at).is_ok_and(|n| n.is_leaf()) {
                        t.delete(&at)?;
                    }
                }
                for (name, value) in &self.ext {
                    put_chr(t, &ext, name, value)?;
                }
            }
            Ok(())
        })
    }
}

/// A ServerID an End Device reported, and whether the gateway has a DMAcc for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedServer {
    /// `ServerIDs/<n>/ServerID`.
    pub server_id: String,
    /// `ServerIDs/<n>/Matched`.
    pub matched: bool,
}

/// One End Device in the Device Inventory MO (`./DeviceInventory/<X>`, layout in the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// `DevId`.
    pub dev_id: String,
    /// `Man`.
    pub man: String,
    /// `Mod`.
    pub model: String,
    /// `DevType`.
    pub dev_type: Option<String>,
    /// `Address`: the LAN address.
    pub address: String,
    /// `State`.
    pub state: DeviceState,
    /// `FirstSeen`, RFC 3339.
    pub first_seen: String,
    /// `LastSeen`, RFC 3339.
    pub last_seen: String,
    /// `ServerIDs/<n>`, in report order.
    pub server_ids: Vec<ReportedServer>,
}

impl DeviceRecord {
    /// `./DeviceInventory`.
    pub fn root(tree: &Tree) -> Result<DmUri, MoError> {
        root_child(tree, DEVICE_INVENTORY_ROOT)
    }

    /// `./DeviceInventory/<escape_name(dev_id)>`.
    pub fn uri_for(tree: &Tree, dev_id: &str) -> Result<DmUri, MoError> {
        let root = DeviceRecord::root(tree)?;
        child(tree, &root, &escape_name(dev_id)?)
    }

    /// Check the record can be written.
    pub fn validate(&self) -> Result<(), MoError> {
        escape_name(&self.dev_id)?;
        for (field, value) in [
            ("dev_id", &self.dev_id),
            ("man", &self.man),
            ("model", &self.model),
            ("address", &self.address),
        ] {
            check_text(value, field)?;
        }
        for (field, value) in [
            ("first_seen", &self.first_seen),
            ("last_seen", &self.last_seen),
        ] {
            if !is_rfc3339(value) {
                return Err(MoError::InvalidField {
                    field,
                    reason: "not an RFC 3339 date-time",
                });
            }
        }
        if self
            .server_ids
            .iter()
            .any(|s| s.server_id.trim().is_empty())
        {
            return Err(MoError::InvalidField {
                field: "server_ids",
                reason: "empty ServerID",
            });
        }
        Ok(())
    }

    /// Read the record at `uri`; its `DevId` must be the one its name stands for.
    pub fn read(tree: &Tree, uri: &DmUri) -> Result<DeviceRecord, MoError> {
        if tree.node(uri)?.is_leaf() {
            return Err(MoError::NotInterior { uri: uri.clone() });
        }
        let dev_id = required(tree, uri, "DevId")?;
        let expected = uri.name().map(unescape_name).transpose()?;
        if expected.as_deref() != Some(dev_id.as_str()) {
            return Err(MoError::InvalidValue {
                uri: child(tree, uri, "DevId")?,
                reason: "DevId does not match the record name",
                found: excerpt(&dev_id),
            });
        }
        let state_text = required(tree, uri, "State")?;
        let state = parse_enum(
            tree,
            uri,
            "State",
            &state_text,
            DeviceState::parse,
            "not a device state",
        )?;
        let mut times = Vec::with_capacity(2);
        for name in ["FirstSeen", "LastSeen"] {
            let text = required(tree, uri, name)?;
            if !is_rfc3339(&text) {
                return Err(MoError::InvalidValue {
                    uri: child(tree, uri, name)?,
                    reason: "not an RFC 3339 date-time",
                    found: excerpt(&text),
                });
            }
            times.push(text);
        }
        let mut times = times.into_iter();
        let (Some(first_seen), Some(last_seen)) = (times.next(), times.next()) else {
            return Err(MoError::Missing {
                uri: child(tree, uri, "FirstSeen")?,
            });
        };
        Ok(DeviceRecord {
            dev_id,
            man: required(tree, uri, "Man")?,
            model: required(tree, uri, "Mod")?,
            dev_type: optional(tree, uri, "DevType")?,
            address: required(tree, uri, "Address")?,
            state,
            first_seen,
            last_seen,
            server_ids: read_server_ids(tree, uri)?,
        })
    }

    /// The record of `dev_id`, if present.
    pub fn find(tree: &Tree, dev_id: &str) -> Result<Option<DeviceRecord>, MoError> {
        let uri = DeviceRecord::uri_for(tree, dev_id)?;
        if !tree.exists(&uri) {
            return Ok(None);
        }
        DeviceRecord::read(tree, &uri).map(Some)
    }

    /// Write (create or update) the record, all or nothing; returns its URI.
    pub fn write(&self, tree: &mut Tree) -> Result<DmUri, MoError> {
        self.validate()?;
        tree.atomic(|t| {
            let root = DeviceRecord::root(t)?;
            ensure_interior(t, &root, Some(DEVICE_INVENTORY_MO_ID))?;
            let uri = DeviceRecord::uri_for(t, &self.dev_id)?;
            ensure_interior(t, &uri, None)?;
            put_chr(t, &uri, "DevId", &self.dev_id)?;
            put_chr(t, &uri, "Man", &self.man)?;
            put_chr(t, &uri, "Mod", &self.model)?;
            put_opt_chr(t, &uri, "DevType", self.dev_type.as_deref())?;
            put_chr(t, &uri, "Address", &self.address)?;
            put_chr(t, &uri, "State", self.state.as_str())?;
            put_chr(t, &uri, "FirstSeen", &self.first_seen)?;
            put_chr(t, &uri, "LastSeen", &self.last_seen)?;
            let ids = child(t, &uri, "ServerIDs")?;
            ensure_interior(t, &ids, None)?;
            let keys: Vec<String> = (1..=self.server_ids.len()).map(|n| n.to_string()).collect();
            let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            prune(t, &ids, &key_refs)?;
            for (key, s) in keys.iter().zip(&self.server_ids) {
                let at = child(t, &ids, key)?;
                ensure_interior(t, &at, None)?;
                put_chr(t, &at, "ServerID", &s.server_id)?;
                let matched = child(t, &at, "Matched")?;
                let text = if s.matched { "true" } else { "false" };
                put(
                    t,
                    &matched,
                    NewNode::leaf(Format::Bool, text).with_type("text/plain"),
                )?;
            }
            Ok(uri)
        })
    }

    /// Every record, in name order. Fails on the first malformed record.
    pub fn all(tree: &Tree) -> Result<Vec<(DmUri, DeviceRecord)>, MoError> {
        let root = DeviceRecord::root(tree)?;
        let mut out = Vec::new();
        for name in child_names(tree, &root)? {
            let uri = child(tree, &root, &name)?;
            let rec = DeviceRecord::read(tree, &uri)?;
            out.push((uri, rec));
        }
        Ok(out)
    }

    /// Remove the record of `dev_id`; false when there was none.
    pub fn remove(tree: &mut Tree, dev_id: &str) -> Result<bool, MoError> {
        let uri = DeviceRecord::uri_for(tree, dev_id)?;
        if !tree.exists(&uri) {
            return Ok(false);
        }
        tree.delete(&uri)?;
        Ok(true)
    }
}

fn read_server_ids(tree: &Tree, rec: &DmUri) -> Result<Vec<ReportedServer>, MoError> {
    let base = child(tree, rec, "ServerIDs")?;
    let mut numbered = Vec::new();
    for key in child_names(tree, &base)? {
        let at = child(tree, &base, &key)?;
        let n = key.parse::<u32>().map_err(|_| MoError::InvalidValue {
            uri: at.clone(),
            reason: "ServerIDs entries are numbered 1, 2, 3 ...",
            found: excerpt(&key),
        })?;
        let server_id = required(tree, &at, "ServerID")?;
        let matched_text = required(tree, &at, "Matched")?;
        let matched = match matched_text.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(MoError::InvalidValue {
                    uri: child(tree, &at, "Matched")?,
                    reason: "not true or false",
                    found: excerpt(&matched_text),
                });
            }
        };
        numbered.push((n, ReportedServer { server_id, matched }));
    }
    numbered.sort_by_key(|(n, _)| *n);
    Ok(numbered.into_iter().map(|(_, s)| s).collect())
}

/// True for an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`.
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from.checked_add(len)?)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let date_time = (|| {
        let _year = num(0, 4)?;
        let month = num(5, 2)?;
        let day = num(8, 2)?;
        let hour = num(11, 2)?;
        let minute = num(14, 2)?;
        let second = num(17, 2)?;
        let seps = at(4, b'-')
            && at(7, b'-')
            && matches!(b.get(10), Some(b'T' | b't' | b' '))
            && at(13, b':')
            && at(16, b':');
        let ranges = (1..=12).contains(&month)
            && (1..=31).contains(&day)
            && hour <= 23
            && minute <= 59
            && second <= 60;
        Some(seps && ranges)
    })();
    if date_time != Some(true) {
        return false;
    }
    let mut i = 19usize;
    if at(i, b'.') {
        i = i.saturating_add(1);
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i = i.saturating_add(1);
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i.saturating_add(1) == b.len(),
        Some(b'+' | b'-') => {
            let ok = num(i.saturating_add(1), 2).is_some_and(|h| h <= 23)
                && at(i.saturating_add(3), b':')
                && num(i.saturating_add(4), 2).is_some_and(|m| m <= 59);
            ok && i.saturating_add(6) == b.len()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Acl;
    use proptest::prelude::*;

    fn uri(s: &str) -> DmUri {
        s.parse().unwrap()
    }

    fn sample_acc() -> DmAcc {
        DmAcc {
            server_id: "dm.example.com".into(),
            name: Some("Example DM".into()),
            pref_con_ref: None,
            app_addr: vec![AppAddr {
                key: "1".into(),
                addr: "https://dm.example.com/dm".into(),
                addr_type: AddrType::Uri,
                ports: vec![Port {
                    key: "1".into(),
                    port_nbr: 443,
                }],
            }],
            aauth_pref: Some(AuthType::Digest),
            app_auth: vec![
                AppAuth {
                    key: "1".into(),
                    level: AuthLevel::Clcred,
                    auth_type: AuthType::Digest,
                    name: Some("gw-1".into()),
                    secret: Some(Secret::new("client-pw")),
                    data: Some(Secret::new("bm9uY2UtMQ==")),
                },
                AppAuth {
                    key: "2".into(),
                    level: AuthLevel::Srvcred,
                    auth_type: AuthType::Digest,
                    name: Some("dm.example.com".into()),
                    secret: Some(Secret::new("server-pw")),
                    data: None,
                },
            ],
            bootstrap_server_url: Some("https://bs.example.com/bootstrap".into()),
        }
    }

    fn sample_record() -> DeviceRecord {
        DeviceRecord {
            dev_id: "IMEI:350000000000001".into(),
            man: "ACME".into(),
            model: "Sensor 3".into(),
            dev_type: Some("sensor".into()),
            address: "192.168.1.20:8080".into(),
            state: DeviceState::Attached,
            first_seen: "2024-05-01T12:00:00Z".into(),
            last_seen: "2024-05-01T12:05:30.5+02:00".into(),
            server_ids: vec![
                ReportedServer {
                    server_id: "dm.example.com".into(),
                    matched: true,
                },
                ReportedServer {
                    server_id: "other".into(),
                    matched: false,
                },
            ],
        }
    }

    #[test]
    fn text_enums() {
        for t in AuthType::ALL {
            assert_eq!(AuthType::parse(&t.as_str().to_lowercase()), Some(*t));
        }
        assert_eq!(AuthType::parse("HTTP-DIGEST"), Some(AuthType::HttpDigest));
        assert_eq!(AddrType::parse("ipv6"), Some(AddrType::Ipv6));
        assert_eq!(AuthLevel::parse(" srvcred "), Some(AuthLevel::Srvcred));
        assert_eq!(AuthLevel::parse("OBEX"), None);
        assert_eq!(
            DeviceState::WaitingBootstrap.to_string(),
            "waiting_bootstrap"
        );
        assert_eq!(
            serde_json::to_string(&DeviceState::WaitingBootstrap).unwrap(),
            "\"waiting_bootstrap\""
        );
        assert_eq!(DeviceState::ALL.len(), 8);
    }

    #[test]
    fn dmacc_write_read_and_layout() {
        let mut t = Tree::new();
        let acc = sample_acc();
        let at = DmAcc::account_uri(&t, &acc.server_id).unwrap();
        assert_eq!(at.as_str(), "./DMAcc/dm_2Eexample_2Ecom");
        acc.write(&mut t, &at).unwrap();
        assert_eq!(DmAcc::read(&t, &at).unwrap(), acc);
        // The tree layout is the DM 1.2 one.
        let text = |p: &str| {
            t.node(&uri(&format!("{at}/{p}")))
                .unwrap()
                .text()
                .map(str::to_owned)
        };
        assert_eq!(text("AppID").as_deref(), Some("w7"));
        assert_eq!(
            text("AppAddr/1/Addr").as_deref(),
            Some("https://dm.example.com/dm")
        );
        assert_eq!(text("AppAddr/1/Port/1/PortNbr").as_deref(), Some("443"));
        assert_eq!(text("AppAuth/1/AAuthLevel").as_deref(), Some("CLCRED"));
        assert_eq!(
            text("Ext/BootstrapServerURL").as_deref(),
            Some("https://bs.example.com/bootstrap")
        );
        let data = t.node(&uri(&format!("{at}/AppAuth/1/AAuthData"))).unwrap();
        assert_eq!(data.format, Format::Bin);
        assert_eq!(data.value.as_deref(), Some(&b"nonce-1"[..]));
        assert_eq!(t.node(&at).unwrap().mime_type.as_deref(), Some(DMACC_MO_ID));
        // Secrets are "no Get".
        assert!(t.get(&uri(&format!("{at}/AppAuth/1/AAuthSecret"))).is_err());
        // Convenience accessors.
        assert_eq!(
            acc.client_credentials().unwrap().name.as_deref(),
            Some("gw-1")
        );
        assert_eq!(acc.server_credentials().unwrap().key, "2");
        assert_eq!(acc.server_url(), Some("https://dm.example.com/dm"));
        // Debug redacts.
        let d = format!("{acc:?}");
        assert!(!d.contains("client-pw") && !d.contains("bm9uY2Ut"), "{d}");
        // all / find.
        let all = DmAcc::all(&t).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            DmAcc::find_by_server_id(&t, "dm.example.com")
                .unwrap()
                .unwrap()
                .0,
            at
        );
        assert!(DmAcc::find_by_server_id(&t, "nope").unwrap().is_none());
    }

    #[test]
    fn dmacc_rewrite_removes_what_is_gone_and_keeps_other_ext() {
        let mut t = Tree::new();
        let at = uri("./DMAcc/S");
        let mut acc = sample_acc();
        acc.write(&mut t, &at).unwrap();
        t.add(&uri("./DMAcc/S/Ext/Vendor"), NewNode::chr("v"))
            .unwrap();
        acc.app_auth.truncate(1);
        acc.app_auth[0].data = None;
        acc.app_addr[0].ports.clear();
        acc.name = None;
        acc.bootstrap_server_url = None;
        acc.write(&mut t, &at).unwrap();
        assert_eq!(DmAcc::read(&t, &at).unwrap(), acc);
        assert!(!t.exists(&uri("./DMAcc/S/AppAuth/2")));
        assert!(!t.exists(&uri("./DMAcc/S/AppAddr/1/Port")));
        assert!(!t.exists(&uri("./DMAcc/S/Name")));
        assert!(!t.exists(&uri("./DMAcc/S/Ext/BootstrapServerURL")));
        assert!(t.exists(&uri("./DMAcc/S/Ext/Vendor")));
        acc.app_addr.clear();
        acc.app_auth.clear();
        acc.write(&mut t, &at).unwrap();
        assert!(!t.exists(&uri("./DMAcc/S/AppAddr")));
        assert_eq!(DmAcc::read(&t, &at).unwrap(), acc);
        assert_eq!(acc.server_url(), None);
    }

    #[test]
    fn dmacc_validation_and_read_errors() {
        let mut t = Tree::new();
        let at = uri("./DMAcc/S");
        let mut acc = sample_acc();
        acc.server_id = " ".into();
        assert!(matches!(
            acc.write(&mut t, &at),
            Err(MoError::InvalidField {
                field: "server_id",
                ..
            })
        ));
        let mut acc = sample_acc();
        acc.app_auth[1].key = "1".into();
        assert!(matches!(
            acc.write(&mut t, &at),
            Err(MoError::InvalidField {
                field: "app_auth key",
                ..
            })
        ));
        let mut acc = sample_acc();
        acc.app_auth[0].data = Some(Secret::new("***"));
        assert!(matches!(
            acc.write(&mut t, &at),
            Err(MoError::InvalidField {
                field: "app_auth data",
                ..
            })
        ));
        let mut acc = sample_acc();
        acc.app_addr[0].key = "a/b".into();
        assert!(matches!(acc.write(&mut t, &at), Err(MoError::Uri { .. })));
        // A failed write leaves nothing behind.
        assert!(!t.exists(&uri("./DMAcc")));

        sample_acc().write(&mut t, &at).unwrap();
        let set = |t: &mut Tree, p: &str, v: &str| {
            t.replace_value(&uri(&format!("./DMAcc/S/{p}")), v.as_bytes().to_vec())
                .unwrap()
        };
        let mut bad = t.clone();
        set(&mut bad, "AppID", "w5");
        assert!(matches!(
            DmAcc::read(&bad, &at),
            Err(MoError::InvalidValue {
                reason: "AppID must be w7",
                ..
            })
        ));
        let mut bad = t.clone();
        set(&mut bad, "AppAuth/1/AAuthLevel", "OBEX");
        assert!(matches!(
            DmAcc::read(&bad, &at),
            Err(MoError::InvalidValue { .. })
        ));
        let mut bad = t.clone();
        set(&mut bad, "AppAuth/1/AAuthType", "PLAIN");
        assert!(matches!(
            DmAcc::read(&bad, &at),
            Err(MoError::InvalidValue { .. })
        ));
        let mut bad = t.clone();
        set(&mut bad, "AppAddr/1/AddrType", "E164");
        assert!(matches!(
            DmAcc::read(&bad, &at),
            Err(MoError::InvalidValue { .. })
        ));
        let mut bad = t.clone();
        set(&mut bad, "AppAddr/1/Port/1/PortNbr", "70000");
        assert!(matches!(
            DmAcc::read(&bad, &at),
            Err(MoError::InvalidValue { .. })
        ));
        let mut bad = t.clone();
        set(&mut bad, "AAuthPref", "NONE");
        assert!(matches!(
            DmAcc::read(&bad, &at),
            Err(MoError::InvalidValue { .. })
        ));
        let mut bad = t.clone();
        set(&mut bad, "ServerID", "");
        assert!(matches!(
            DmAcc::read(&bad, &at),
            Err(MoError::InvalidValue { .. })
        ));
        let mut bad = t.clone();
        bad.delete(&uri("./DMAcc/S/ServerID")).unwrap();
        assert!(matches!(
            DmAcc::read(&bad, &at),
            Err(MoError::Missing { .. })
        ));
        // all() surfaces the broken account.
        assert!(DmAcc::all(&bad).is_err());
        let mut bad = t.clone();
        bad.replace(
            &uri("./DMAcc/S/Name"),
            NewNode::leaf(Format::Bin, vec![0xff]),
        )
        .unwrap();
        assert!(matches!(
            DmAcc::read(&bad, &at),
            Err(MoError::NotUtf8 { .. })
        ));
        let mut bad = t.clone();
        bad.delete(&uri("./DMAcc/S/Name")).unwrap();
        bad.add(&uri("./DMAcc/S/Name/x"), NewNode::chr("x"))
            .unwrap();
        assert!(matches!(
            DmAcc::read(&bad, &at),
            Err(MoError::NotLeaf { .. })
        ));
        // Writing over a leaf where the account should be.
        let mut bad = Tree::new();
        bad.add(&uri("./DMAcc/S"), NewNode::chr("x")).unwrap();
        assert!(matches!(
            sample_acc().write(&mut bad, &at),
            Err(MoError::NotInterior { .. })
        ));
        assert!(matches!(
            DmAcc::read(&bad, &at),
            Err(MoError::NotInterior { .. })
        ));
        assert!(matches!(
            DmAcc::read(&Tree::new(), &at),
            Err(MoError::Tree { .. })
        ));
        // Without AddrType, the address is a URI; empty AAuthPref is absent.
        let mut lax = t.clone();
        lax.delete(&uri("./DMAcc/S/AppAddr/1/AddrType")).unwrap();
        set(&mut lax, "AAuthPref", "");
        let read = DmAcc::read(&lax, &at).unwrap();
        assert_eq!(read.app_addr[0].addr_type, AddrType::Uri);
        assert_eq!(read.aauth_pref, None);
        // An account made by `new`.
        let simple = DmAcc::new("s2", "https://s2/dm");
        simple.write(&mut t, &uri("./DMAcc/S2")).unwrap();
        assert_eq!(DmAcc::read(&t, &uri("./DMAcc/S2")).unwrap(), simple);
        assert_eq!(DmAcc::all(&t).unwrap().len(), 2);
    }

    #[test]
    fn dmacc_write_respects_tree_limits() {
        let mut t = Tree::with_limits(crate::tree::TreeLimits {
            max_nodes: 10,
            ..Default::default()
        });
        let at = uri("./DMAcc/S");
        assert!(matches!(
            sample_acc().write(&mut t, &at),
            Err(MoError::Tree {
                source: TreeError::TooManyNodes { .. }
            })
        ));
        assert_eq!(t.len(), 1);
        // A permanent node blocks pruning, and the write is rolled back.
        let mut t = Tree::new();
        sample_acc().write(&mut t, &at).unwrap();
        t.replace(
            &uri("./DMAcc/S/AppAuth/2"),
            NewNode::interior().with_acl(Acl::parse("Get=*").unwrap()),
        )
        .unwrap();
        let before = t.clone();
        t.add(
            &uri("./DMAcc/S/AppAuth/2/Keep"),
            NewNode::chr("k").permanent(),
        )
        .unwrap();
        let snapshot = t.clone();
        let mut acc = sample_acc();
        acc.app_auth.truncate(1);
        acc.name = Some("changed".into());
        assert!(matches!(
            acc.write(&mut t, &at),
            Err(MoError::Tree {
                source: TreeError::PermanentNode { .. }
            })
        ));
        assert_eq!(t, snapshot);
        assert_ne!(t, before);
    }

    #[test]
    fn devinfo_write_read() {
        let mut t = Tree::new();
        let mut info = DevInfo {
            dev_id: "IMEI:350000000000001".into(),
            man: "ACME".into(),
            model: "Sensor 3".into(),
            dm_v: "1.2".into(),
            lang: "en-US".into(),
            ext: BTreeMap::from([("FwBuild".to_owned(), "42".to_owned())]),
        };
        info.write(&mut t).unwrap();
        assert_eq!(DevInfo::read(&t).unwrap(), info);
        assert_eq!(
            t.node(&uri("./DevInfo")).unwrap().mime_type.as_deref(),
            Some(DEVINFO_MO_ID)
        );
        t.add(&uri("./DevInfo/Ext/Sub/x"), NewNode::chr("kept"))
            .unwrap();
        info.ext.clear();
        info.write(&mut t).unwrap();
        assert_eq!(DevInfo::read(&t).unwrap(), info);
        assert!(t.exists(&uri("./DevInfo/Ext/Sub/x")));
        assert!(!t.exists(&uri("./DevInfo/Ext/FwBuild")));
        t.delete(&uri("./DevInfo/Lang")).unwrap();
        assert!(matches!(DevInfo::read(&t), Err(MoError::Missing { .. })));
        info.dev_id.clear();
        assert!(matches!(
            info.write(&mut t),
            Err(MoError::InvalidField { .. })
        ));
        assert!(DevInfo::read(&Tree::new()).is_err());
    }

    #[test]
    fn name_escaping() {
        assert_eq!(escape_name("IMEI:35-1").unwrap(), "IMEI_3A35-1");
        assert_eq!(escape_name("a_b.c/d").unwrap(), "a_5Fb_2Ec_2Fd");
        assert_eq!(escape_name("é").unwrap(), "_C3_A9");
        assert_eq!(unescape_name("IMEI_3A35-1").unwrap(), "IMEI:35-1");
        assert_eq!(unescape_name("_C3_A9").unwrap(), "é");
        assert!(matches!(escape_name(""), Err(MoError::InvalidName { .. })));
        assert!(escape_name(&"a".repeat(64)).is_ok());
        assert!(escape_name(&"a".repeat(65)).is_err());
        assert!(escape_name(&":".repeat(22)).is_err());
        for bad in ["", "a_", "a_4", "a_4g", "a_4a", "a.b", "a:b", "_FF", "_C3"] {
            assert!(unescape_name(bad).is_err(), "{bad}");
        }
        let esc = escape_name("urn:uuid:123e4567-e89b-12d3-a456-426614174000").unwrap();
        assert!(esc.len() <= 64);
        assert!(DmUri::root().join(&esc).is_ok());
    }

    #[test]
    fn device_record_write_read_all_remove() {
        let mut t = Tree::new();
        let rec = sample_record();
        let at = rec.write(&mut t).unwrap();
        assert_eq!(at.as_str(), "./DeviceInventory/IMEI_3A350000000000001");
        assert_eq!(DeviceRecord::read(&t, &at).unwrap(), rec);
        assert_eq!(
            t.node(&uri("./DeviceInventory"))
                .unwrap()
                .mime_type
                .as_deref(),
            Some(DEVICE_INVENTORY_MO_ID)
        );
        let m = t.node(&uri(&format!("{at}/ServerIDs/2/Matched"))).unwrap();
        assert_eq!((m.format, m.text()), (Format::Bool, Some("false")));
        assert_eq!(
            DeviceRecord::find(&t, &rec.dev_id).unwrap(),
            Some(rec.clone())
        );
        assert_eq!(DeviceRecord::find(&t, "IMEI:2").unwrap(), None);
        // Update: fewer ServerIDs, new state, no DevType.
        let mut upd = rec.clone();
        upd.server_ids.truncate(1);
        upd.state = DeviceState::Detached;
        upd.dev_type = None;
        upd.write(&mut t).unwrap();
        assert_eq!(DeviceRecord::read(&t, &at).unwrap(), upd);
        assert!(!t.exists(&uri(&format!("{at}/ServerIDs/2"))));
        let mut other = rec.clone();
        other.dev_id = "MAC:00:11:22:33:44:55".into();
        other.server_ids.clear();
        other.write(&mut t).unwrap();
        let all = DeviceRecord::all(&t).unwrap();
        assert_eq!(all.len(), 2);
        assert!(DeviceRecord::remove(&mut t, &rec.dev_id).unwrap());
        assert!(!DeviceRecord::remove(&mut t, &rec.dev_id).unwrap());
        assert_eq!(
            DeviceRecord::all(&t).unwrap(),
            vec![(DeviceRecord::uri_for(&t, &other.dev_id).unwrap(), other)]
        );
    }

    #[test]
    fn device_record_errors() {
        let mut t = Tree::new();
        let mut r = sample_record();
        r.first_seen = "yesterday".into();
        assert!(matches!(
            r.write(&mut t),
            Err(MoError::InvalidField {
                field: "first_seen",
                ..
            })
        ));
        let mut r = sample_record();
        r.address = "a\nb".into();
        assert!(matches!(
            r.write(&mut t),
            Err(MoError::InvalidField {
                field: "address",
                ..
            })
        ));
        let mut r = sample_record();
        r.server_ids[0].server_id.clear();
        assert!(matches!(
            r.write(&mut t),
            Err(MoError::InvalidField {
                field: "server_ids",
                ..
            })
        ));
        let mut r = sample_record();
        r.dev_id = "x".repeat(100);
        assert!(matches!(r.write(&mut t), Err(MoError::InvalidName { .. })));

        let at = sample_record().write(&mut t).unwrap();
        let set = |t: &mut Tree, p: &str, v: &str| {
            t.replace_value(&uri(&format!("{at}/{p}")), v.as_bytes().to_vec())
                .unwrap()
        };
        let mut bad = t.clone();
        set(&mut bad, "State", "gone");
        assert!(matches!(
            DeviceRecord::read(&bad, &at),
            Err(MoError::InvalidValue { .. })
        ));
        let mut bad = t.clone();
        set(&mut bad, "LastSeen", "2024-13-01T00:00:00Z");
        assert!(matches!(
            DeviceRecord::read(&bad, &at),
            Err(MoError::InvalidValue { .. })
        ));
        let mut bad = t.clone();
        set(&mut bad, "DevId", "IMEI:9");
        assert!(matches!(
            DeviceRecord::read(&bad, &at),
            Err(MoError::InvalidValue {
                reason: "DevId does not match the record name",
                ..
            })
        ));
        let mut bad = t.clone();
        set(&mut bad, "ServerIDs/1/Matched", "yes");
        assert!(matches!(
            DeviceRecord::read(&bad, &at),
            Err(MoError::InvalidValue { .. })
        ));
        let mut bad = t.clone();
        bad.add(
            &uri(&format!("{at}/ServerIDs/x/ServerID")),
            NewNode::chr("s"),
        )
        .unwrap();
        assert!(matches!(
            DeviceRecord::read(&bad, &at),
            Err(MoError::InvalidValue { .. })
        ));
        let mut bad = t.clone();
        bad.add(&uri("./DeviceInventory/bad.name"), NewNode::interior())
            .unwrap();
        assert!(DeviceRecord::all(&bad).is_err());
    }

    #[test]
    fn server_ids_are_read_in_numeric_order() {
        let mut t = Tree::new();
        let mut r = sample_record();
        r.server_ids = (1..=12)
            .map(|i| ReportedServer {
                server_id: format!("s{i}"),
                matched: i % 2 == 0,
            })
            .collect();
        let at = r.write(&mut t).unwrap();
        assert_eq!(DeviceRecord::read(&t, &at).unwrap(), r);
    }

    #[test]
    fn rfc3339() {
        for ok in [
            "2024-05-01T12:00:00Z",
            "2024-05-01t12:00:00z",
            "2024-05-01 12:00:00+02:00",
            "2024-05-01T12:00:00.123456-11:30",
            "2016-12-31T23:59:60Z",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "",
            "2024-05-01",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T24:00:00Z",
            "2024-00-01T12:00:00Z",
            "2024-05-32T12:00:00Z",
            "2024-05-01T12:00:00+2:00",
            "2024-05-01T12:00:00Zjunk",
            "2024-05-01T12:00:00+02:00x",
            "+024-05-01T12:00:00Z",
            "２０２４-05-01T12:00:00Z",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    fn key() -> impl Strategy<Value = String> {
        "[A-Za-z0-9]{1,6}"
    }

    fn text() -> impl Strategy<Value = String> {
        "[ -~]{0,24}"
    }

    fn auth_type() -> impl Strategy<Value = AuthType> {
        proptest::sample::select(AuthType::ALL.to_vec())
    }

    prop_compose! {
        fn app_addr()(key in key(), addr in "[ -~]{1,24}",
                       addr_type in proptest::sample::select(AddrType::ALL.to_vec()),
                       ports in proptest::collection::btree_map(key(), any::<u16>(), 0..3)) -> AppAddr {
            AppAddr {
                key,
                addr,
                addr_type,
                ports: ports.into_iter().map(|(key, port_nbr)| Port { key, port_nbr }).collect(),
            }
        }
    }

    prop_compose! {
        fn app_auth()(key in key(),
                      level in proptest::sample::select(AuthLevel::ALL.to_vec()),
                      auth_type in auth_type(),
                      name in proptest::option::of(text()),
                      secret in proptest::option::of(text()),
                      data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24))) -> AppAuth {
            AppAuth {
                key,
                level,
                auth_type,
                name,
                secret: secret.map(Secret::new),
                data: data.map(|d| Secret::new(B64.encode(d))),
            }
        }
    }

    fn dedup_by_key<T>(mut v: Vec<T>, key: impl Fn(&T) -> String) -> Vec<T> {
        v.sort_by_key(&key);
        v.dedup_by_key(|x| key(x));
        v
    }

    prop_compose! {
        fn dmacc()(server_id in "[!-~][ -~]{0,20}",
                   name in proptest::option::of(text()),
                   pref_con_ref in proptest::option::of(text()),
                   app_addr in proptest::collection::vec(app_addr(), 0..3),
                   aauth_pref in proptest::option::of(auth_type()),
                   app_auth in proptest::collection::vec(app_auth(), 0..3),
                   bootstrap_server_url in proptest::option::of("[!-~]{1,30}")) -> DmAcc {
            DmAcc {
                server_id,
                name,
                pref_con_ref,
                app_addr: dedup_by_key(app_addr, |a| a.key.clone()),
                aauth_pref,
                app_auth: dedup_by_key(app_auth, |a| a.key.clone()),
                bootstrap_server_url,
            }
        }
    }

    prop_compose! {
        fn record()(dev_id in "[ -~]{1,16}",
                    man in text(), model in text(),
                    dev_type in proptest::option::of(text()),
                    address in text(),
                    state in proptest::sample::select(DeviceState::ALL.to_vec()),
                    server_ids in proptest::collection::vec(("[!-~]{1,12}", any::<bool>()), 0..14)) -> DeviceRecord {
            DeviceRecord {
                dev_id, man, model, dev_type, address, state,
                first_seen: "2024-01-02T03:04:05Z".into(),
                last_seen: "2024-01-02T03:04:05.678+01:00".into(),
                server_ids: server_ids.into_iter().map(|(server_id, matched)| ReportedServer { server_id, matched }).collect(),
            }
        }
    }

    proptest! {
        #[test]
        fn dmacc_round_trip(acc in dmacc(), again in dmacc()) {
            let mut t = Tree::new();
            let at = uri("./DMAcc/A");
            acc.write(&mut t, &at).unwrap();
            prop_assert_eq!(DmAcc::read(&t, &at).unwrap(), acc);
            // Overwriting with another account leaves exactly that account.
            again.write(&mut t, &at).unwrap();
            prop_assert_eq!(DmAcc::read(&t, &at).unwrap(), again);
        }

        #[test]
        fn device_record_round_trip(rec in record()) {
            let mut t = Tree::new();
            let at = rec.write(&mut t).unwrap();
            prop_assert_eq!(DeviceRecord::read(&t, &at).unwrap(), rec.clone());
            prop_assert_eq!(DeviceRecord::find(&t, &rec.dev_id).unwrap(), Some(rec));
        }

        #[test]
        fn name_escape_round_trip(id in "\\PC{1,12}") {
            if let Ok(name) = escape_name(&id) {
                prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
                prop_assert_eq!(unescape_name(&name).unwrap(), id);
            }
        }

        #[test]
        fn unescape_never_panics(s in any::<String>()) {
            let _ = unescape_name(&s);
        }

        #[test]
        fn rfc3339_never_panics(s in any::<String>()) {
            let _ = is_rfc3339(&s);
        }
    }
}
