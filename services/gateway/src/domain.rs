//! The gateway's domain types: what the store takes and returns, and what the admin API serialises.
//! Pure values with their validation rules; no SQL, no actors. Secrets never appear in a view.

use std::fmt;
use std::time::Duration;

use omadm::mo::{AddrType, AuthLevel, AuthType, DeviceRecord, DeviceState, DmAcc, ReportedServer};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{IntoParams, PartialSchema, ToSchema};

/// Longest identifier (ServerID, DevId, alert type, correlator, node key), in bytes.
pub const MAX_ID_LEN: usize = 255;
/// Longest free text field (names, addresses, alert data), in bytes.
pub const MAX_TEXT_LEN: usize = 4096;
/// Longest URL (bootstrap URLs), in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Longest `last_error` kept; longer messages are truncated (at a character boundary).
pub const MAX_ERROR_LEN: usize = 1024;
/// Most ServerIDs a device may report.
pub const MAX_SERVERS_PER_DEVICE: usize = 64;
/// Largest event detail, in bytes of JSON.
pub const MAX_EVENT_DETAIL_LEN: usize = 16 * 1024;
/// Most items one batch call accepts.
pub const MAX_BATCH: usize = 10_000;
/// Default page size.
pub const DEFAULT_PAGE_LIMIT: u32 = 50;
/// Largest page size.
pub const MAX_PAGE_LIMIT: u32 = 500;

/// An input that breaks a domain rule. Never carries the offending value (it may be a secret).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    /// The field, e.g. `server_id`.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl ValidationError {
    /// A validation error on `field`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> ValidationError {
        ValidationError {
            field,
            reason: reason.into(),
        }
    }
}

/// Check an identifier: not blank, at most `MAX_ID_LEN` bytes, no control character.
pub fn check_id(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "empty"));
    }
    check_len_and_controls(field, value, MAX_ID_LEN)
}

/// Check free text: at most `MAX_TEXT_LEN` bytes, no control character.
pub fn check_text(field: &'static str, value: &str) -> Result<(), ValidationError> {
    check_len_and_controls(field, value, MAX_TEXT_LEN)
}

/// Check a URL: not blank, at most `MAX_URL_LEN` bytes, no control character or space.
pub fn check_url(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "empty"));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(ValidationError::new(field, "contains whitespace"));
    }
    check_len_and_controls(field, value, MAX_URL_LEN)
}

/// Check a DevId: an identifier that can also name a `./DeviceInventory/<X>` node.
pub fn check_dev_id(value: &str) -> Result<(), ValidationError> {
    check_id("dev_id", value)?;
    omadm::mo::escape_name(value)
        .map(|_| ())
        .map_err(|_| ValidationError::new("dev_id", "too long to name a tree node once escaped"))
}

/// Check the size of a batch: at most `MAX_BATCH` items.
pub fn check_batch(field: &'static str, len: usize) -> Result<(), ValidationError> {
    if len > MAX_BATCH {
        return Err(ValidationError::new(
            field,
            format!("{len} items, the limit is {MAX_BATCH}"),
        ));
    }
    Ok(())
}

fn check_len_and_controls(
    field: &'static str,
    value: &str,
    max: usize,
) -> Result<(), ValidationError> {
    if value.len() > max {
        return Err(ValidationError::new(
            field,
            format!("{} bytes, the limit is {max}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new(field, "control character"));
    }
    Ok(())
}

fn check_opt_text(field: &'static str, value: Option<&str>) -> Result<(), ValidationError> {
    value.map_or(Ok(()), |v| check_text(field, v))
}

/// `text` cut to at most `max` bytes at a character boundary, control characters replaced by
/// spaces (for error messages that are stored and shown).
pub fn truncate_text(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len().saturating_add(c.len_utf8()) > max {
            break;
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Time

/// A point in time: milliseconds since the Unix epoch, UTC (how the store keeps every time).
/// Serialised as RFC 3339 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub i64);

impl Millis {
    /// The current time.
    pub fn now() -> Millis {
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Millis(i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX))
    }

    /// Milliseconds since the Unix epoch.
    pub fn as_unix_ms(self) -> i64 {
        self.0
    }

    /// `self + d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Millis {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Millis(self.0.saturating_add(ms))
    }

    /// `self - d`, saturating.
    pub fn saturating_sub(self, d: Duration) -> Millis {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Millis(self.0.saturating_sub(ms))
    }

    /// RFC 3339 text (`2024-05-01T12:00:00.123Z`); `None` outside years 0000-9999.
    pub fn to_rfc3339(self) -> Option<String> {
        let nanos = i128::from(self.0).checked_mul(1_000_000)?;
        let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
        t.format(&Rfc3339).ok()
    }

    /// Parse RFC 3339 text (any offset; sub-millisecond digits are dropped).
    pub fn parse_rfc3339(text: &str) -> Option<Millis> {
        let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
            .ok()
            .map(Millis)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_rfc3339() {
            Some(text) => f.write_str(&text),
            None => write!(f, "{}ms", self.0),
        }
    }
}

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.to_rfc3339() {
            Some(text) => s.serialize_str(&text),
            None => Err(serde::ser::Error::custom("time out of the RFC 3339 range")),
        }
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        let text = String::deserialize(d)?;
        Millis::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom("not an RFC 3339 date-time"))
    }
}

impl PartialSchema for Millis {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339 date-time (UTC)"))
            .into()
    }
}

impl ToSchema for Millis {}

// ---------------------------------------------------------------------------------------------
// Text enums

/// A closed set of values stored as text: `as_str`, `parse`, `Display`, snake_case serde.
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as stored.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The value stored as `text` (exact match).
            pub fn parse(text: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str() == text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

stored_enum! {
    /// Where a DMAcc account came from.
    Origin {
        /// Built into the gateway's configuration.
        Factory => "factory",
        /// Added by an operator through the admin API.
        Operator => "operator",
        /// Written by a DM bootstrap (workflow 1 or 2).
        Bootstrap => "bootstrap",
    }
}

stored_enum! {
    /// The state of an outbox alert.
    AlertState {
        /// Waiting to be delivered (or retried) at `next_attempt_at`.
        Pending => "pending",
        /// The DM Server acknowledged it.
        Delivered => "delivered",
        /// Given up after too many attempts.
        Failed => "failed",
    }
}

stored_enum! {
    /// The state of a bootstrap job.
    JobState {
        /// Waiting to run at `next_attempt_at`.
        Pending => "pending",
        /// A worker runs it; `next_attempt_at` is its lease end.
        InProgress => "in_progress",
        /// Workflow 2: waiting for the bootstrap server's push until `next_attempt_at`.
        AwaitingPush => "awaiting_push",
        /// The account was bootstrapped.
        Done => "done",
        /// Given up.
        Failed => "failed",
    }
}

impl JobState {
    /// True when the job still has work to do (it can become due).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            JobState::Pending | JobState::InProgress | JobState::AwaitingPush
        )
    }

    /// True when a job in `self` may move to `next`. `Done` is final; `Failed` may only be
    /// re-opened as `Pending` (an operator's retry); staying in the same state is allowed for
    /// open states (a retry updates attempts and the next attempt time).
    pub fn can_become(self, next: JobState) -> bool {
        match self {
            JobState::Done => false,
            JobState::Failed => next == JobState::Pending,
            JobState::Pending | JobState::InProgress | JobState::AwaitingPush => true,
        }
    }
}

/// Which bootstrap workflow a job runs: 1 (the gateway fetches the bootstrap by HTTPS GET) or 2
/// (the device asks the bootstrap server, which pushes to the gateway). Serialised as 1 or 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workflow {
    /// Workflow 1.
    One,
    /// Workflow 2.
    Two,
}

impl Workflow {
    /// 1 or 2.
    pub fn number(self) -> i64 {
        match self {
            Workflow::One => 1,
            Workflow::Two => 2,
        }
    }

    /// The workflow numbered `n`.
    pub fn from_number(n: i64) -> Option<Workflow> {
        match n {
            1 => Some(Workflow::One),
            2 => Some(Workflow::Two),
            _ => None,
        }
    }
}

impl Serialize for Workflow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.number())
    }
}

impl<'de> Deserialize<'de> for Workflow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Workflow, D::Error> {
        let n = i64::deserialize(d)?;
        Workflow::from_number(n).ok_or_else(|| serde::de::Error::custom("workflow must be 1 or 2"))
    }
}

impl PartialSchema for Workflow {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .enum_values(Some([1, 2]))
            .description(Some("bootstrap workflow: 1 (HTTPS GET) or 2 (push)"))
            .into()
    }
}

impl ToSchema for Workflow {}

// ---------------------------------------------------------------------------------------------
// Schemas and serialisation of the omadm enums (omadm knows nothing of serde for them)

fn text_enum_schema(values: Vec<&'static str>, nullable: bool, description: &str) -> ObjectBuilder {
    let ty: SchemaType = if nullable {
        [Type::String, Type::Null].into_iter().collect()
    } else {
        SchemaType::new(Type::String)
    };
    ObjectBuilder::new()
        .schema_type(ty)
        .enum_values(Some(values))
        .description(Some(description))
}

fn device_state_schema() -> ObjectBuilder {
    text_enum_schema(
        DeviceState::ALL.iter().map(|s| s.as_str()).collect(),
        false,
        "the device's state in the onboarding flow",
    )
}

fn addr_type_schema() -> ObjectBuilder {
    text_enum_schema(
        AddrType::ALL.iter().map(|s| s.as_str()).collect(),
        false,
        "AddrType",
    )
}

fn auth_level_schema() -> ObjectBuilder {
    text_enum_schema(
        AuthLevel::ALL.iter().map(|s| s.as_str()).collect(),
        false,
        "AAuthLevel",
    )
}

fn auth_type_schema() -> ObjectBuilder {
    text_enum_schema(
        AuthType::ALL.iter().map(|s| s.as_str()).collect(),
        false,
        "AAuthType",
    )
}

fn opt_auth_type_schema() -> ObjectBuilder {
    text_enum_schema(
        AuthType::ALL.iter().map(|s| s.as_str()).collect(),
        true,
        "AAuthPref",
    )
}

fn ser_display<T: fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn ser_opt_display<T: fmt::Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

// ---------------------------------------------------------------------------------------------
// Accounts

/// One `AppAddr/<X>/Port/<X>` entry of an account view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PortView {
    /// The `<X>` node name.
    pub key: String,
    /// `PortNbr`.
    pub port_nbr: u16,
}

/// One `AppAddr/<X>` entry of an account view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AddressView {
    /// The `<X>` node name.
    pub key: String,
    /// `Addr`: the server's URL or IP address.
    pub addr: String,
    /// `AddrType`.
    #[serde(serialize_with = "ser_display")]
    #[schema(schema_with = addr_type_schema)]
    pub addr_type: AddrType,
    /// `Port/<X>` entries.
    pub ports: Vec<PortView>,
}

/// One `AppAuth/<X>` entry of an account view: which credentials exist, never their values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuthView {
    /// The `<X>` node name.
    pub key: String,
    /// `AAuthLevel`.
    #[serde(serialize_with = "ser_display")]
    #[schema(schema_with = auth_level_schema)]
    pub level: AuthLevel,
    /// `AAuthType`.
    #[serde(serialize_with = "ser_display")]
    #[schema(schema_with = auth_type_schema)]
    pub auth_type: AuthType,
    /// `AAuthName`: the user name.
    pub name: Option<String>,
    /// True when an `AAuthSecret` is stored.
    pub has_secret: bool,
    /// True when an `AAuthData` (nonce) is stored.
    pub has_data: bool,
}

/// A DMAcc account as the admin API shows it: everything but the secrets and nonces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AccountView {
    /// `ServerID`.
    pub server_id: String,
    /// The account's node name (`./DMAcc/<node_name>`).
    pub node_name: String,
    /// `Name`.
    pub name: Option<String>,
    /// `PrefConRef`.
    pub pref_con_ref: Option<String>,
    /// `AAuthPref`.
    #[serde(serialize_with = "ser_opt_display")]
    #[schema(schema_with = opt_auth_type_schema)]
    pub aauth_pref: Option<AuthType>,
    /// `AppAddr/<X>` entries.
    pub addresses: Vec<AddressView>,
    /// `AppAuth/<X>` entries, without secrets.
    pub auths: Vec<AuthView>,
    /// `Ext/BootstrapServerURL`.
    pub bootstrap_server_url: Option<String>,
    /// Where the account came from.
    pub origin: Origin,
    /// When it was created.
    pub created_at: Millis,
    /// When it was last written.
    pub updated_at: Millis,
}

impl AccountView {
    /// The view of a stored account (drops the secrets).
    pub fn of(stored: &StoredAccount) -> AccountView {
        let acc = &stored.account;
        AccountView {
            server_id: acc.server_id.clone(),
            node_name: stored.node_name.clone(),
            name: acc.name.clone(),
            pref_con_ref: acc.pref_con_ref.clone(),
            aauth_pref: acc.aauth_pref,
            addresses: acc
                .app_addr
                .iter()
                .map(|a| AddressView {
                    key: a.key.clone(),
                    addr: a.addr.clone(),
                    addr_type: a.addr_type,
                    ports: a
                        .ports
                        .iter()
                        .map(|p| PortView {
                            key: p.key.clone(),
                            port_nbr: p.port_nbr,
                        })
                        .collect(),
                })
                .collect(),
            auths: acc
                .app_auth
                .iter()
                .map(|a| AuthView {
                    key: a.key.clone(),
                    level: a.level,
                    auth_type: a.auth_type,
                    name: a.name.clone(),
                    has_secret: a.secret.is_some(),
                    has_data: a.data.is_some(),
                })
                .collect(),
            bootstrap_server_url: acc.bootstrap_server_url.clone(),
            origin: stored.origin,
            created_at: stored.created_at,
            updated_at: stored.updated_at,
        }
    }
}

/// A DMAcc account as stored, secrets included (for DM sessions and the management tree).
/// `Debug` shows no secret (`DmAcc` redacts them); it is deliberately not `Serialize`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAccount {
    /// The account's node name (`./DMAcc/<node_name>`).
    pub node_name: String,
    /// Where it came from.
    pub origin: Origin,
    /// The account, with secrets.
    pub account: DmAcc,
    /// When it was created.
    pub created_at: Millis,
    /// When it was last written.
    pub updated_at: Millis,
}

/// What `insert_or_replace_account` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteOutcome {
    /// A new account was written.
    Inserted,
    /// An account with the ServerID existed and was overwritten.
    Replaced,
    /// An account with the ServerID existed and was kept as it was.
    Skipped,
}

/// The result of an account write: what happened and the account as now stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AccountWrite {
    /// What happened.
    pub outcome: WriteOutcome,
    /// The account as stored after the write.
    pub account: AccountView,
}

/// What `apply_dmacc` did with each ServerID of the tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ApplyOutcome {
    /// ServerIDs that were new and were added.
    pub added: Vec<String>,
    /// ServerIDs that existed and were overwritten (only with `overwrite`).
    pub replaced: Vec<String>,
    /// ServerIDs that existed and were kept (without `overwrite`).
    pub skipped: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Devices

/// A ServerID a device reported, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ServerView {
    /// The ServerID.
    pub server_id: String,
    /// True when the gateway has a DMAcc account for it.
    pub matched: bool,
    /// The bootstrap server URL the device gave for it (workflow 1), if any.
    pub bootstrap_url: Option<String>,
    /// When the device reported it.
    pub reported_at: Millis,
}

/// A Device Inventory record as the store and the admin API see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DeviceView {
    /// `DevId`.
    pub dev_id: String,
    /// `Man`.
    pub man: Option<String>,
    /// `Mod`.
    pub model: Option<String>,
    /// `DevType`.
    pub dev_type: Option<String>,
    /// `DmV`.
    pub dm_v: Option<String>,
    /// `Lang`.
    pub lang: Option<String>,
    /// The LAN address (host, host:port or URL).
    pub address: Option<String>,
    /// Where the device is in the onboarding flow.
    #[schema(schema_with = device_state_schema)]
    pub state: DeviceState,
    /// First seen.
    pub first_seen: Millis,
    /// Last seen.
    pub last_seen: Millis,
    /// Last written.
    pub updated_at: Millis,
    /// The ServerIDs it reported, in report order.
    pub servers: Vec<ServerView>,
}

impl DeviceView {
    /// The record `./DeviceInventory/<X>` shows for this device.
    pub fn to_record(&self) -> Result<DeviceRecord, ValidationError> {
        let time = |field, m: Millis| {
            m.to_rfc3339()
                .ok_or_else(|| ValidationError::new(field, "out of the RFC 3339 range"))
        };
        Ok(DeviceRecord {
            dev_id: self.dev_id.clone(),
            man: self.man.clone().unwrap_or_default(),
            model: self.model.clone().unwrap_or_default(),
            dev_type: self.dev_type.clone(),
            address: self.address.clone().unwrap_or_default(),
            state: self.state,
            first_seen: time("first_seen", self.first_seen)?,
            last_seen: time("last_seen", self.last_seen)?,
            server_ids: self
                .servers
                .iter()
                .map(|s| ReportedServer {
                    server_id: s.server_id.clone(),
                    matched: s.matched,
                })
                .collect(),
        })
    }
}

/// One device to insert or update in `upsert_devices`. `None` identity fields keep what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceUpsert {
    /// `DevId`.
    pub dev_id: String,
    /// `Man`.
    pub man: Option<String>,
    /// `Mod`.
    pub model: Option<String>,
    /// `DevType`.
    pub dev_type: Option<String>,
    /// `DmV`.
    pub dm_v: Option<String>,
    /// `Lang`.
    pub lang: Option<String>,
    /// The LAN address.
    pub address: Option<String>,
    /// The new state; `None` keeps the stored one (a new device starts `discovered`).
    pub state: Option<DeviceState>,
    /// When it was seen (first_seen of a new device, last_seen of every device).
    pub seen_at: Millis,
}

impl DeviceUpsert {
    /// A device seen at `seen_at`, identity unknown, state unchanged.
    pub fn seen(dev_id: impl Into<String>, seen_at: Millis) -> DeviceUpsert {
        DeviceUpsert {
            dev_id: dev_id.into(),
            man: None,
            model: None,
            dev_type: None,
            dm_v: None,
            lang: None,
            address: None,
            state: None,
            seen_at,
        }
    }

    /// Check the fields.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_dev_id(&self.dev_id)?;
        check_opt_text("man", self.man.as_deref())?;
        check_opt_text("model", self.model.as_deref())?;
        check_opt_text("dev_type", self.dev_type.as_deref())?;
        check_opt_text("dm_v", self.dm_v.as_deref())?;
        check_opt_text("lang", self.lang.as_deref())?;
        check_opt_text("address", self.address.as_deref())
    }
}

/// Upsert result: the device as stored, and whether it was new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertedDevice {
    /// The device as stored after the upsert.
    pub device: DeviceView,
    /// True when the device was inserted (first seen now).
    pub created: bool,
}

/// A state change for `set_device_states`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// The device.
    pub dev_id: String,
    /// Its new state.
    pub state: DeviceState,
}

/// A ServerID a device reported (step 1-4), with the bootstrap server URL it gave for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReport {
    /// The ServerID.
    pub server_id: String,
    /// The bootstrap server URL (workflow 1), if known.
    pub bootstrap_url: Option<String>,
}

impl ServerReport {
    /// Check the fields.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_id("server_id", &self.server_id)?;
        self.bootstrap_url
            .as_deref()
            .map_or(Ok(()), |u| check_url("bootstrap_url", u))
    }
}

/// Which devices `list_devices` returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct DeviceFilter {
    /// Only devices in this state.
    pub state: Option<DeviceState>,
}

// ---------------------------------------------------------------------------------------------
// Alert outbox

/// The id of an outbox alert.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(transparent)]
pub struct AlertId(pub i64);

/// An alert to enqueue: one device x server x alert type, identified by its correlator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    /// The device the alert is about.
    pub dev_id: String,
    /// The DM Server to tell.
    pub server_id: String,
    /// The Generic Alert type, e.g. `urn:oma:at:gwmo:1.0:deviceattached`.
    pub alert_type: String,
    /// Unique per alert: a repeat enqueue with it is a no-op.
    pub correlator: String,
    /// The alert's data (the Item payload), if any.
    pub data: Option<String>,
    /// When to try first.
    pub next_attempt_at: Millis,
}

impl NewAlert {
    /// Check the fields.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_dev_id(&self.dev_id)?;
        check_id("server_id", &self.server_id)?;
        check_id("alert_type", &self.alert_type)?;
        check_id("correlator", &self.correlator)?;
        check_opt_text("data", self.data.as_deref())
    }
}

/// An outbox alert as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AlertRow {
    /// Its id.
    pub id: AlertId,
    /// The device.
    pub dev_id: String,
    /// The DM Server.
    pub server_id: String,
    /// The Generic Alert type.
    pub alert_type: String,
    /// The correlator.
    pub correlator: String,
    /// The alert's data.
    pub data: Option<String>,
    /// Its state.
    pub state: AlertState,
    /// Delivery attempts that failed so far.
    pub attempts: u32,
    /// When it is next due (pending alerts).
    pub next_attempt_at: Millis,
    /// The last delivery error.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: Millis,
    /// When it was delivered.
    pub delivered_at: Option<Millis>,
}

/// `enqueue_alerts` result: the alert as stored, and whether this call created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueuedAlert {
    /// The alert as stored.
    pub alert: AlertRow,
    /// False when the correlator was already enqueued (the call was a no-op for it).
    pub created: bool,
}

/// Which alerts `list_alerts` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AlertFilter {
    /// Only alerts in this state.
    pub state: Option<AlertState>,
    /// Only alerts to this DM Server.
    pub server_id: Option<String>,
    /// Only alerts about this device.
    pub dev_id: Option<String>,
}

/// Alerts per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct AlertCounts {
    /// Pending alerts.
    pub pending: u64,
    /// Delivered alerts.
    pub delivered: u64,
    /// Failed alerts.
    pub failed: u64,
}

// ---------------------------------------------------------------------------------------------
// Bootstrap jobs

/// The id of a bootstrap job.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(transparent)]
pub struct JobId(pub i64);

/// A bootstrap job to create (or find) for a ServerID a device reported and the gateway lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The ServerID to get an account for.
    pub server_id: String,
    /// The device that reported it.
    pub dev_id: String,
    /// The workflow.
    pub workflow: Workflow,
    /// The bootstrap server URL (workflow 1), if known.
    pub bootstrap_url: Option<String>,
    /// When to run first.
    pub next_attempt_at: Millis,
}

impl NewJob {
    /// Check the fields.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_id("server_id", &self.server_id)?;
        check_dev_id(&self.dev_id)?;
        self.bootstrap_url
            .as_deref()
            .map_or(Ok(()), |u| check_url("bootstrap_url", u))
    }
}

/// A bootstrap job as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BootstrapJob {
    /// Its id.
    pub id: JobId,
    /// The ServerID.
    pub server_id: String,
    /// The device.
    pub dev_id: String,
    /// The workflow.
    pub workflow: Workflow,
    /// The bootstrap server URL.
    pub bootstrap_url: Option<String>,
    /// Its state.
    pub state: JobState,
    /// Attempts so far.
    pub attempts: u32,
    /// When it is next due (see `JobState`).
    pub next_attempt_at: Millis,
    /// The last error.
    pub last_error: Option<String>,
    /// When it was created.
    pub created_at: Millis,
    /// When it was last written.
    pub updated_at: Millis,
}

/// `create_or_get_job` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedJob {
    /// The job as stored.
    pub job: BootstrapJob,
    /// False when a job for (server_id, dev_id) existed (and was returned unchanged).
    pub created: bool,
}

/// A change to a bootstrap job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobUpdate {
    /// The new state (checked with `JobState::can_become`).
    pub state: JobState,
    /// Count one more attempt.
    pub count_attempt: bool,
    /// The new last error (`None` clears it). Truncated to `MAX_ERROR_LEN`.
    pub last_error: Option<String>,
    /// When the job is next due.
    pub next_attempt_at: Millis,
    /// A bootstrap URL learnt meanwhile; `None` keeps the stored one.
    pub bootstrap_url: Option<String>,
}

/// Which jobs `list_jobs` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs for this ServerID.
    pub server_id: Option<String>,
}

/// Bootstrap jobs per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct JobCounts {
    /// Pending jobs.
    pub pending: u64,
    /// Jobs in progress.
    pub in_progress: u64,
    /// Jobs waiting for a push.
    pub awaiting_push: u64,
    /// Finished jobs.
    pub done: u64,
    /// Failed jobs.
    pub failed: u64,
}

// ---------------------------------------------------------------------------------------------
// Events

/// The id of an event.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(transparent)]
pub struct EventId(pub i64);

/// An event to log.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The device it is about, if any.
    pub dev_id: Option<String>,
    /// What happened: `[a-z0-9_.-]{1,64}`, e.g. `device.discovered`.
    pub kind: String,
    /// Details, a JSON value (an object by convention). Never a secret.
    pub detail: serde_json::Value,
    /// When it happened.
    pub at: Millis,
}

impl NewEvent {
    /// Check the fields; returns the detail as JSON text.
    pub fn validate(&self) -> Result<String, ValidationError> {
        if let Some(dev_id) = &self.dev_id {
            check_dev_id(dev_id)?;
        }
        let kind_ok = !self.kind.is_empty()
            && self.kind.len() <= 64
            && self.kind.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
            });
        if !kind_ok {
            return Err(ValidationError::new("kind", "must match [a-z0-9_.-]{1,64}"));
        }
        let detail = serde_json::to_string(&self.detail)
            .map_err(|_| ValidationError::new("detail", "not serialisable"))?;
        if detail.len() > MAX_EVENT_DETAIL_LEN {
            return Err(ValidationError::new(
                "detail",
                format!(
                    "{} bytes of JSON, the limit is {MAX_EVENT_DETAIL_LEN}",
                    detail.len()
                ),
            ));
        }
        Ok(detail)
    }
}

/// A logged event.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Event {
    /// Its id (events are ordered by id).
    pub id: EventId,
    /// The device it is about.
    pub dev_id: Option<String>,
    /// What happened.
    pub kind: String,
    /// Details.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// When it happened.
    pub at: Millis,
}

// ---------------------------------------------------------------------------------------------
// Pagination

/// A page request: at most `limit` items (1..=500, default 50) after the cursor `after` (keyset
/// pagination on the store's row order; pass `Paged::next_after` of the previous page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PageQuery")]
pub struct Page {
    limit: u32,
    after: Option<i64>,
}

/// The raw form of [`Page`] (e.g. query parameters), validated by `Page::try_from`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Most items to return (1..=500, default 50).
    pub limit: Option<u32>,
    /// The cursor: `next_after` of the previous page.
    pub after: Option<i64>,
}

impl Page {
    /// A page of `limit` items after `after`; `limit` must be 1..=500.
    pub fn new(limit: u32, after: Option<i64>) -> Result<Page, ValidationError> {
        if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
            return Err(ValidationError::new(
                "limit",
                format!("must be 1..={MAX_PAGE_LIMIT}"),
            ));
        }
        Ok(Page { limit, after })
    }

    /// The first page of `DEFAULT_PAGE_LIMIT` items.
    pub fn first() -> Page {
        Page {
            limit: DEFAULT_PAGE_LIMIT,
            after: None,
        }
    }

    /// The page size.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The cursor.
    pub fn after(&self) -> Option<i64> {
        self.after
    }
}

impl Default for Page {
    fn default() -> Page {
        Page::first()
    }
}

impl TryFrom<PageQuery> for Page {
    type Error = ValidationError;

    fn try_from(q: PageQuery) -> Result<Page, ValidationError> {
        Page::new(q.limit.unwrap_or(DEFAULT_PAGE_LIMIT), q.after)
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Paged<T> {
    /// The items.
    pub items: Vec<T>,
    /// The cursor of the next page; `None` on the last page.
    pub next_after: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use omadm::mo::{AppAddr, AppAuth, Port};
    use omadm::secret::Secret;

    #[test]
    fn millis_rfc3339_round_trip() {
        let m = Millis(1_714_564_800_123);
        assert_eq!(m.to_rfc3339().unwrap(), "2024-05-01T12:00:00.123Z");
        assert_eq!(Millis::parse_rfc3339("2024-05-01T12:00:00.123Z"), Some(m));
        assert_eq!(
            Millis::parse_rfc3339("2024-05-01T14:00:00.123+02:00"),
            Some(m)
        );
        assert_eq!(Millis(0).to_rfc3339().unwrap(), "1970-01-01T00:00:00Z");
        assert!(omadm::mo::is_rfc3339(&m.to_rfc3339().unwrap()));
        assert_eq!(Millis(i64::MAX).to_rfc3339(), None);
        assert_eq!(Millis::parse_rfc3339("yesterday"), None);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            "\"2024-05-01T12:00:00.123Z\""
        );
        let back: Millis = serde_json::from_str("\"2024-05-01T12:00:00.123Z\"").unwrap();
        assert_eq!(back, m);
        assert!(serde_json::to_string(&Millis(i64::MAX)).is_err());
        assert_eq!(
            m.saturating_add(Duration::from_secs(1)),
            Millis(1_714_564_801_123)
        );
        assert_eq!(
            Millis(i64::MAX).saturating_add(Duration::MAX),
            Millis(i64::MAX)
        );
        assert_eq!(m.saturating_sub(Duration::from_millis(123)).0 % 1000, 0);
        assert!(Millis::now() > m);
        assert_eq!(m.to_string(), "2024-05-01T12:00:00.123Z");
    }

    #[test]
    fn stored_enums() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(*s));
            assert_eq!(
                serde_json::to_string(s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        for s in AlertState::ALL {
            assert_eq!(AlertState::parse(s.as_str()), Some(*s));
        }
        for s in Origin::ALL {
            assert_eq!(Origin::parse(s.as_str()), Some(*s));
        }
        assert_eq!(Origin::parse("Factory"), None);
        assert_eq!(Workflow::from_number(1), Some(Workflow::One));
        assert_eq!(Workflow::from_number(3), None);
        assert_eq!(serde_json::to_string(&Workflow::Two).unwrap(), "2");
        assert!(serde_json::from_str::<Workflow>("3").is_err());
    }

    #[test]
    fn job_transitions() {
        use JobState::*;
        assert!(Pending.can_become(InProgress));
        assert!(InProgress.can_become(AwaitingPush));
        assert!(InProgress.can_become(Pending));
        assert!(AwaitingPush.can_become(Done));
        assert!(Pending.can_become(Pending));
        assert!(Failed.can_become(Pending));
        assert!(!Failed.can_become(Done));
        assert!(!Failed.can_become(InProgress));
        for s in JobState::ALL {
            assert!(!Done.can_become(*s));
        }
        assert!(Pending.is_open() && AwaitingPush.is_open() && !Done.is_open());
    }

    #[test]
    fn validation() {
        assert!(check_id("x", "a").is_ok());
        assert_eq!(check_id("x", " ").unwrap_err().reason, "empty");
        assert!(check_id("x", "a\nb").is_err());
        assert!(check_id("x", &"a".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(check_url("u", "https://bs/x").is_ok());
        assert!(check_url("u", "https://bs/ x").is_err());
        assert!(check_dev_id("IMEI:350000000000001").is_ok());
        assert!(check_dev_id(&":".repeat(30)).is_err());
        assert!(check_batch("b", MAX_BATCH).is_ok());
        assert!(check_batch("b", MAX_BATCH + 1).is_err());
        let mut up = DeviceUpsert::seen("IMEI:1", Millis(1));
        assert!(up.validate().is_ok());
        up.address = Some("a\u{7}".into());
        assert_eq!(up.validate().unwrap_err().field, "address");
        let alert = NewAlert {
            dev_id: "IMEI:1".into(),
            server_id: "s".into(),
            alert_type: "t".into(),
            correlator: String::new(),
            data: None,
            next_attempt_at: Millis(0),
        };
        assert_eq!(alert.validate().unwrap_err().field, "correlator");
        let ev = |kind: &str| NewEvent {
            dev_id: None,
            kind: kind.into(),
            detail: serde_json::json!({}),
            at: Millis(0),
        };
        assert_eq!(ev("device.discovered").validate().unwrap(), "{}");
        assert!(ev("Device").validate().is_err());
        assert!(ev("").validate().is_err());
        let mut big = ev("x");
        big.detail = serde_json::json!({ "a": "b".repeat(MAX_EVENT_DETAIL_LEN) });
        assert!(big.validate().is_err());
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate_text("abc", 2), "ab");
        assert_eq!(truncate_text("aé", 2), "a");
        assert_eq!(truncate_text("a\nb", 10), "a b");
    }

    #[test]
    fn page_bounds() {
        assert!(Page::new(0, None).is_err());
        assert!(Page::new(501, None).is_err());
        assert_eq!(Page::new(500, Some(3)).unwrap().after(), Some(3));
        assert_eq!(Page::default().limit(), DEFAULT_PAGE_LIMIT);
        let p: Page = serde_json::from_str(r#"{"after": 7}"#).unwrap();
        assert_eq!((p.limit(), p.after()), (50, Some(7)));
        assert!(serde_json::from_str::<Page>(r#"{"limit": 1000}"#).is_err());
    }

    #[test]
    fn account_view_has_no_secret() {
        let stored = StoredAccount {
            node_name: "S".into(),
            origin: Origin::Operator,
            account: DmAcc {
                server_id: "s".into(),
                name: None,
                pref_con_ref: None,
                app_addr: vec![AppAddr {
                    key: "1".into(),
                    addr: "https://s/dm".into(),
                    addr_type: AddrType::Uri,
                    ports: vec![Port {
                        key: "1".into(),
                        port_nbr: 443,
                    }],
                }],
                aauth_pref: Some(AuthType::Digest),
                app_auth: vec![AppAuth {
                    key: "1".into(),
                    level: AuthLevel::Clcred,
                    auth_type: AuthType::Digest,
                    name: Some("gw".into()),
                    secret: Some(Secret::new("hunter2-secret")),
                    data: Some(Secret::new("bm9uY2U=")),
                }],
                bootstrap_server_url: None,
            },
            created_at: Millis(0),
            updated_at: Millis(0),
        };
        let view = AccountView::of(&stored);
        assert!(view.auths.iter().all(|a| a.has_secret && a.has_data));
        let json = serde_json::to_string(&view).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(!json.contains("bm9uY2U"), "{json}");
        assert!(json.contains("\"aauth_pref\":\"DIGEST\""), "{json}");
        assert!(json.contains("\"addr_type\":\"URI\""), "{json}");
        assert!(!format!("{stored:?}").contains("hunter2"));
    }

    #[test]
    fn schemas_describe_the_wire_format() {
        let json = |s: RefOr<Schema>| serde_json::to_string(&s).unwrap();
        let account = json(AccountView::schema());
        for expected in ["\"DIGEST\"", "Millis", "AuthView", "AddressView"] {
            assert!(account.contains(expected), "{expected} in {account}");
        }
        let auth = json(AuthView::schema());
        for expected in ["\"CLCRED\"", "\"HMAC\"", "has_secret", "has_data"] {
            assert!(auth.contains(expected), "{expected} in {auth}");
        }
        assert!(!auth.contains("\"secret\""), "{auth}");
        assert!(json(AddressView::schema()).contains("\"IPv6\""));
        assert!(json(Millis::schema()).contains("date-time"));
        let device = json(DeviceView::schema());
        assert!(device.contains("\"waiting_bootstrap\""), "{device}");
        let job = json(BootstrapJob::schema());
        assert!(
            job.contains("in_progress") || job.contains("JobState"),
            "{job}"
        );
        assert!(json(Workflow::schema()).contains("integer"));
        let page = json(Paged::<AlertRow>::schema());
        assert!(page.contains("next_after"), "{page}");
    }

    #[test]
    fn device_view_to_record() {
        let view = DeviceView {
            dev_id: "IMEI:1".into(),
            man: None,
            model: Some("M".into()),
            dev_type: None,
            dm_v: None,
            lang: None,
            address: Some("10.0.0.2".into()),
            state: DeviceState::Attached,
            first_seen: Millis(1_714_564_800_000),
            last_seen: Millis(1_714_564_800_500),
            updated_at: Millis(1_714_564_800_500),
            servers: vec![ServerView {
                server_id: "s".into(),
                matched: true,
                bootstrap_url: None,
                reported_at: Millis(0),
            }],
        };
        let rec = view.to_record().unwrap();
        assert!(rec.validate().is_ok());
        assert_eq!(rec.man, "");
        assert_eq!(rec.last_seen, "2024-05-01T12:00:00.5Z");
        assert_eq!(rec.server_ids.len(), 1);
        let mut bad = view;
        bad.first_seen = Millis(i64::MIN);
        assert_eq!(bad.to_record().unwrap_err().field, "first_seen");
    }
}
