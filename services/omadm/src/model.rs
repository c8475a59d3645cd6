//! The typed SyncML DM 1.2 message model: header, body, every DM command, items, Meta, Cred and Chal.
//! Builders assign CmdIDs; `codec` maps the model to and from the generic element tree.

use std::borrow::Cow;

use crate::element::Element;

/// DTD version written in `VerDTD`.
pub const VER_DTD: &str = "1.2";
/// Protocol version written in `VerProto`.
pub const VER_PROTO: &str = "DM/1.2";

/// Alert codes of OMA DM 1.2 (RepPro section 6.6.2 / DM Protocol section 8.7).
pub mod alert_code {
    /// Server-initiated management session (answer to a notification).
    pub const SERVER_INITIATED: u16 = 1200;
    /// Client-initiated management session.
    pub const CLIENT_INITIATED: u16 = 1201;
    /// Next message: the sender wants the next message of a multi-message package.
    pub const NEXT_MESSAGE: u16 = 1222;
    /// Session abort.
    pub const SESSION_ABORT: u16 = 1223;
    /// Client event.
    pub const CLIENT_EVENT: u16 = 1224;
    /// No end of data (large object).
    pub const NO_END_OF_DATA: u16 = 1225;
    /// Generic Alert.
    pub const GENERIC: u16 = 1226;
    /// User interaction: display.
    pub const DISPLAY: u16 = 1100;
    /// User interaction: confirm or reject.
    pub const CONFIRM: u16 = 1101;
    /// User interaction: text input.
    pub const TEXT_INPUT: u16 = 1102;
    /// User interaction: single choice.
    pub const SINGLE_CHOICE: u16 = 1103;
    /// User interaction: multiple choice.
    pub const MULTIPLE_CHOICE: u16 = 1104;
}

/// Status codes of OMA DM 1.2 that dmgw produces or interprets.
pub mod status_code {
    /// OK.
    pub const OK: u16 = 200;
    /// Accepted for processing.
    pub const ACCEPTED: u16 = 202;
    /// Authentication accepted.
    pub const AUTH_ACCEPTED: u16 = 212;
    /// Chunked item accepted.
    pub const CHUNK_ACCEPTED: u16 = 213;
    /// Not executed (e.g. user refused, or a later command after an abort).
    pub const NOT_EXECUTED: u16 = 215;
    /// Atomic roll back OK.
    pub const ATOMIC_ROLLBACK_OK: u16 = 216;
    /// Bad request.
    pub const BAD_REQUEST: u16 = 400;
    /// Invalid credentials.
    pub const UNAUTHORIZED: u16 = 401;
    /// Forbidden.
    pub const FORBIDDEN: u16 = 403;
    /// Not found.
    pub const NOT_FOUND: u16 = 404;
    /// Command not allowed.
    pub const NOT_ALLOWED: u16 = 405;
    /// Optional feature not supported.
    pub const OPTIONAL_FEATURE_NOT_SUPPORTED: u16 = 406;
    /// Missing credentials.
    pub const MISSING_CREDENTIALS: u16 = 407;
    /// Incomplete command.
    pub const INCOMPLETE_COMMAND: u16 = 412;
    /// Request entity too large.
    pub const TOO_LARGE: u16 = 413;
    /// Request-URI too long.
    pub const URI_TOO_LONG: u16 = 414;
    /// Unsupported media type or format.
    pub const UNSUPPORTED_MEDIA_TYPE: u16 = 415;
    /// Already exists.
    pub const ALREADY_EXISTS: u16 = 418;
    /// Permission denied.
    pub const PERMISSION_DENIED: u16 = 425;
    /// Command failed.
    pub const COMMAND_FAILED: u16 = 500;
    /// Atomic failed.
    pub const ATOMIC_FAILED: u16 = 507;
    /// Atomic roll back failed.
    pub const ATOMIC_ROLLBACK_FAILED: u16 = 516;
}

/// A whole SyncML DM message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncMl {
    /// The header.
    pub hdr: SyncHdr,
    /// The body.
    pub body: SyncBody,
}

/// A `Target` or `Source`: a LocURI and an optional LocName.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// `LocURI`.
    pub loc_uri: String,
    /// `LocName`.
    pub loc_name: Option<String>,
}

impl Location {
    /// A location with only a URI.
    pub fn new(uri: impl Into<String>) -> Location {
        Location {
            loc_uri: uri.into(),
            loc_name: None,
        }
    }

    /// A location with a URI and a name.
    pub fn named(uri: impl Into<String>, name: impl Into<String>) -> Location {
        Location {
            loc_uri: uri.into(),
            loc_name: Some(name.into()),
        }
    }
}

/// `SyncHdr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncHdr {
    /// `VerDTD`, normally "1.2".
    pub ver_dtd: String,
    /// `VerProto`, normally "DM/1.2".
    pub ver_proto: String,
    /// `SessionID`, chosen by the client and fixed for the session.
    pub session_id: String,
    /// `MsgID`, unique per message within the session.
    pub msg_id: u32,
    /// `Target`: the recipient (server URI, or the client's DevId).
    pub target: Location,
    /// `Source`: the sender.
    pub source: Location,
    /// `RespURI`: where the next message is to be sent.
    pub resp_uri: Option<String>,
    /// `NoResp`.
    pub no_resp: bool,
    /// `Cred`.
    pub cred: Option<Cred>,
    /// `Meta` (e.g. MaxMsgSize).
    pub meta: Option<Meta>,
}

impl SyncHdr {
    /// A DM 1.2 header with the standard versions and no credentials.
    pub fn new(
        session_id: impl Into<String>,
        msg_id: u32,
        target: Location,
        source: Location,
    ) -> SyncHdr {
        SyncHdr {
            ver_dtd: VER_DTD.to_owned(),
            ver_proto: VER_PROTO.to_owned(),
            session_id: session_id.into(),
            msg_id,
            target,
            source,
            resp_uri: None,
            no_resp: false,
            cred: None,
            meta: None,
        }
    }
}

/// `SyncBody`: the commands in order, and whether `Final` closes the package.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncBody {
    /// Commands in document order.
    pub commands: Vec<Command>,
    /// `Final` present.
    pub final_: bool,
}

/// `Meta` / `MetInf` fields used by OMA DM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// `Format` (b64, bin, chr, int, node, xml, ...).
    pub format: Option<String>,
    /// `Type` (MIME type, auth type, or alert type URN).
    pub type_: Option<String>,
    /// `Mark` (Generic Alert importance).
    pub mark: Option<String>,
    /// `Size`.
    pub size: Option<u64>,
    /// `NextNonce` (b64).
    pub next_nonce: Option<String>,
    /// `MaxMsgSize`.
    pub max_msg_size: Option<u64>,
    /// `MaxObjSize`.
    pub max_obj_size: Option<u64>,
    /// `Version`.
    pub version: Option<String>,
    /// `EMI` (experimental meta information).
    pub emi: Option<String>,
}

impl Meta {
    /// Meta with just a Format.
    pub fn format(format: impl Into<String>) -> Meta {
        Meta {
            format: Some(format.into()),
            ..Meta::default()
        }
    }

    /// Meta with just a Type.
    pub fn type_(type_: impl Into<String>) -> Meta {
        Meta {
            type_: Some(type_.into()),
            ..Meta::default()
        }
    }

    /// Meta with Type and Format.
    pub fn typed(type_: impl Into<String>, format: impl Into<String>) -> Meta {
        Meta {
            type_: Some(type_.into()),
            format: Some(format.into()),
            ..Meta::default()
        }
    }

    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        *self == Meta::default()
    }
}

/// `Cred`: credentials, `Meta` names the scheme (`syncml:auth-md5`) and format (`b64`).
#[derive(Clone, PartialEq, Eq)]
pub struct Cred {
    /// `Meta` with Type and Format.
    pub meta: Meta,
    /// `Data`: the credential value (a digest or b64(name:password); treated as sensitive).
    pub data: String,
}

impl std::fmt::Debug for Cred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cred")
            .field("meta", &self.meta)
            .field("data", &"<redacted>")
            .finish()
    }
}

/// `Chal`: an authentication challenge; `Meta` carries Type, Format and NextNonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chal {
    /// `Meta`.
    pub meta: Meta,
}

/// Item `Data`: text, binary (WBXML OPAQUE or b64 in XML), or embedded markup (e.g. a TNDS MgmtTree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// Character data.
    Text(String),
    /// Binary data.
    Binary(Vec<u8>),
    /// An embedded XML/WBXML document (e.g. `MgmtTree`).
    Xml(Element),
}

impl Data {
    /// The data as text where it is text (binary is decoded as UTF-8 when valid).
    pub fn as_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Data::Text(t) => Some(Cow::Borrowed(t.as_str())),
            Data::Binary(b) => std::str::from_utf8(b).ok().map(Cow::Borrowed),
            Data::Xml(_) => None,
        }
    }
}

/// `Data` that cannot be a node value of the Format it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("data is not valid base64 for a b64/bin node")]
pub struct NotBase64;

impl Data {
    /// The bytes this data stores as a node value: for a binary Format (`b64`, `bin`) text is
    /// base64 (whitespace ignored); markup is written as an XML fragment.
    pub fn value_bytes(&self, binary_format: bool) -> Result<Vec<u8>, NotBase64> {
        use base64::Engine as _;
        Ok(match self {
            Data::Text(t) if binary_format => {
                let compact: String = t.split_ascii_whitespace().collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact.as_bytes())
                    .map_err(|_| NotBase64)?
            }
            Data::Text(t) => t.as_bytes().to_vec(),
            Data::Binary(b) => b.clone(),
            Data::Xml(e) => {
                let mut out = Vec::new();
                crate::xml::encode_fragment(e, &mut out);
                out
            }
        })
    }
}

impl From<&str> for Data {
    fn from(s: &str) -> Data {
        Data::Text(s.to_owned())
    }
}

impl From<String> for Data {
    fn from(s: String) -> Data {
        Data::Text(s)
    }
}

/// `Item`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Item {
    /// `Target`.
    pub target: Option<Location>,
    /// `Source`.
    pub source: Option<Location>,
    /// `Meta`.
    pub meta: Option<Meta>,
    /// `Data`.
    pub data: Option<Data>,
    /// `MoreData` (large object chunking).
    pub more_data: bool,
}

impl Item {
    /// An item addressed to a target URI.
    pub fn target(uri: impl Into<String>) -> Item {
        Item {
            target: Some(Location::new(uri)),
            ..Item::default()
        }
    }

    /// An item whose source is a URI.
    pub fn source(uri: impl Into<String>) -> Item {
        Item {
            source: Some(Location::new(uri)),
            ..Item::default()
        }
    }

    /// An item with only data.
    pub fn data(data: impl Into<Data>) -> Item {
        Item {
            data: Some(data.into()),
            ..Item::default()
        }
    }

    /// Builder: set Meta.
    pub fn with_meta(mut self, meta: Meta) -> Item {
        self.meta = Some(meta);
        self
    }

    /// Builder: set Data.
    pub fn with_data(mut self, data: impl Into<Data>) -> Item {
        self.data = Some(data.into());
        self
    }

    /// The target's LocURI, if any.
    pub fn target_uri(&self) -> Option<&str> {
        self.target.as_ref().map(|l| l.loc_uri.as_str())
    }

    /// The source's LocURI, if any.
    pub fn source_uri(&self) -> Option<&str> {
        self.source.as_ref().map(|l| l.loc_uri.as_str())
    }
}

/// `Alert`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Alert {
    /// `CmdID`.
    pub cmd_id: u32,
    /// `NoResp`.
    pub no_resp: bool,
    /// `Data`: the alert code.
    pub code: u16,
    /// `Correlator` (Generic Alert answering an asynchronous Exec, or dmgw's de-duplication key).
    pub correlator: Option<String>,
    /// Items.
    pub items: Vec<Item>,
}

/// The item-carrying commands: Add, Replace, Delete, Get, Exec, Copy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ItemCmd {
    /// `CmdID`.
    pub cmd_id: u32,
    /// `NoResp`.
    pub no_resp: bool,
    /// `Cred`.
    pub cred: Option<Cred>,
    /// `Meta` applying to every item.
    pub meta: Option<Meta>,
    /// `Correlator` (Exec only).
    pub correlator: Option<String>,
    /// Items.
    pub items: Vec<Item>,
}

/// `Atomic` or `Sequence`: a command list executed together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Container {
    /// `CmdID`.
    pub cmd_id: u32,
    /// `NoResp`.
    pub no_resp: bool,
    /// `Meta`.
    pub meta: Option<Meta>,
    /// Nested commands.
    pub commands: Vec<Command>,
}

/// `Status`: the answer to one received command (or to the header, with `cmd_ref` 0).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// `CmdID`.
    pub cmd_id: u32,
    /// `MsgRef`.
    pub msg_ref: u32,
    /// `CmdRef` (0 refers to SyncHdr).
    pub cmd_ref: u32,
    /// `Cmd`: the name of the command answered (`SyncHdr`, `Alert`, `Get`, ...).
    pub cmd: String,
    /// `TargetRef`s.
    pub target_refs: Vec<String>,
    /// `SourceRef`s.
    pub source_refs: Vec<String>,
    /// `Cred` (server credentials in the answer to the header).
    pub cred: Option<Cred>,
    /// `Chal`: an authentication challenge.
    pub chal: Option<Chal>,
    /// `Data`: the status code.
    pub code: u16,
    /// Items.
    pub items: Vec<Item>,
}

/// `Results`: the data answering a Get.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Results {
    /// `CmdID`.
    pub cmd_id: u32,
    /// `MsgRef`.
    pub msg_ref: u32,
    /// `CmdRef`.
    pub cmd_ref: u32,
    /// `Meta`.
    pub meta: Option<Meta>,
    /// `TargetRef`s.
    pub target_refs: Vec<String>,
    /// `SourceRef`s.
    pub source_refs: Vec<String>,
    /// Items.
    pub items: Vec<Item>,
}

/// A DM command in a SyncBody (or nested in Atomic/Sequence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `Alert`.
    Alert(Alert),
    /// `Add`.
    Add(ItemCmd),
    /// `Replace`.
    Replace(ItemCmd),
    /// `Delete`.
    Delete(ItemCmd),
    /// `Get`.
    Get(ItemCmd),
    /// `Exec`.
    Exec(ItemCmd),
    /// `Copy`.
    Copy(ItemCmd),
    /// `Atomic`.
    Atomic(Container),
    /// `Sequence`.
    Sequence(Container),
    /// `Status`.
    Status(Status),
    /// `Results`.
    Results(Results),
}

impl Command {
    /// The element name of the command, as written in `Status/Cmd`.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Alert(_) => "Alert",
            Command::Add(_) => "Add",
            Command::Replace(_) => "Replace",
            Command::Delete(_) => "Delete",
            Command::Get(_) => "Get",
            Command::Exec(_) => "Exec",
            Command::Copy(_) => "Copy",
            Command::Atomic(_) => "Atomic",
            Command::Sequence(_) => "Sequence",
            Command::Status(_) => "Status",
            Command::Results(_) => "Results",
        }
    }

    /// The command's `CmdID`.
    pub fn cmd_id(&self) -> u32 {
        match self {
            Command::Alert(a) => a.cmd_id,
            Command::Add(c)
            | Command::Replace(c)
            | Command::Delete(c)
            | Command::Get(c)
            | Command::Exec(c)
            | Command::Copy(c) => c.cmd_id,
            Command::Atomic(c) | Command::Sequence(c) => c.cmd_id,
            Command::Status(s) => s.cmd_id,
            Command::Results(r) => r.cmd_id,
        }
    }

    /// Set the command's `CmdID`.
    pub fn set_cmd_id(&mut self, id: u32) {
        match self {
            Command::Alert(a) => a.cmd_id = id,
            Command::Add(c)
            | Command::Replace(c)
            | Command::Delete(c)
            | Command::Get(c)
            | Command::Exec(c)
            | Command::Copy(c) => c.cmd_id = id,
            Command::Atomic(c) | Command::Sequence(c) => c.cmd_id = id,
            Command::Status(s) => s.cmd_id = id,
            Command::Results(r) => r.cmd_id = id,
        }
    }

    /// True for `NoResp` commands (no Status expected).
    pub fn no_resp(&self) -> bool {
        match self {
            Command::Alert(a) => a.no_resp,
            Command::Add(c)
            | Command::Replace(c)
            | Command::Delete(c)
            | Command::Get(c)
            | Command::Exec(c)
            | Command::Copy(c) => c.no_resp,
            Command::Atomic(c) | Command::Sequence(c) => c.no_resp,
            Command::Status(_) | Command::Results(_) => true,
        }
    }

    /// The items of the command (empty for containers).
    pub fn items(&self) -> &[Item] {
        match self {
            Command::Alert(a) => &a.items,
            Command::Add(c)
            | Command::Replace(c)
            | Command::Delete(c)
            | Command::Get(c)
            | Command::Exec(c)
            | Command::Copy(c) => &c.items,
            Command::Atomic(_) | Command::Sequence(_) => &[],
            Command::Status(s) => &s.items,
            Command::Results(r) => &r.items,
        }
    }

    /// An `Alert` with a code and no items.
    pub fn alert(code: u16) -> Command {
        Command::Alert(Alert {
            code,
            ..Alert::default()
        })
    }

    /// A `Get` of one URI.
    pub fn get(uri: impl Into<String>) -> Command {
        Command::Get(ItemCmd {
            items: vec![Item::target(uri)],
            ..ItemCmd::default()
        })
    }

    /// A `Replace` reporting one of the sender's own chr leaves (Item/Source), as a client sends
    /// its DevInfo in package 1.
    pub fn report_chr(uri: impl Into<String>, value: impl Into<String>) -> Command {
        Command::Replace(ItemCmd {
            items: vec![
                Item::source(uri)
                    .with_meta(Meta::format("chr"))
                    .with_data(Data::Text(value.into())),
            ],
            ..ItemCmd::default()
        })
    }

    /// A `Replace` of one leaf of the receiver's tree with a chr value (Item/Target).
    pub fn replace_chr(uri: impl Into<String>, value: impl Into<String>) -> Command {
        Command::Replace(ItemCmd {
            items: vec![
                Item::target(uri)
                    .with_meta(Meta::format("chr"))
                    .with_data(Data::Text(value.into())),
            ],
            ..ItemCmd::default()
        })
    }
}

impl SyncMl {
    /// A message with this header and no commands.
    pub fn new(hdr: SyncHdr) -> SyncMl {
        SyncMl {
            hdr,
            body: SyncBody::default(),
        }
    }

    /// Append a command, giving it the next free CmdID (1-based, in document order).
    pub fn push(&mut self, mut cmd: Command) -> u32 {
        let id = self.next_cmd_id();
        cmd.set_cmd_id(id);
        if let Command::Atomic(c) | Command::Sequence(c) = &mut cmd {
            let mut next = id;
            renumber(&mut c.commands, &mut next);
        }
        self.body.commands.push(cmd);
        id
    }

    /// Builder: append a command (see [`SyncMl::push`]).
    pub fn with(mut self, cmd: Command) -> SyncMl {
        self.push(cmd);
        self
    }

    /// Builder: set `Final`.
    pub fn finish(mut self) -> SyncMl {
        self.body.final_ = true;
        self
    }

    /// The next CmdID to use: one more than the largest in the message, nested commands included.
    pub fn next_cmd_id(&self) -> u32 {
        fn max_id(cmds: &[Command]) -> u32 {
            cmds.iter()
                .map(|c| match c {
                    Command::Atomic(k) | Command::Sequence(k) => k.cmd_id.max(max_id(&k.commands)),
                    other => other.cmd_id(),
                })
                .max()
                .unwrap_or(0)
        }
        max_id(&self.body.commands).saturating_add(1)
    }

    /// All Status commands of the body, in order.
    pub fn statuses(&self) -> impl Iterator<Item = &Status> {
        self.body.commands.iter().filter_map(|c| match c {
            Command::Status(s) => Some(s),
            _ => None,
        })
    }

    /// The Status answering the header (CmdRef 0), if present.
    pub fn header_status(&self) -> Option<&Status> {
        self.statuses().find(|s| s.cmd_ref == 0)
    }

    /// True when the body holds anything other than Status commands (DM Protocol 8.4:
    /// a message with only Status and Final ends the session when sent by the server).
    pub fn has_operations(&self) -> bool {
        self.body
            .commands
            .iter()
            .any(|c| !matches!(c, Command::Status(_)))
    }
}

fn renumber(cmds: &mut [Command], next: &mut u32) {
    for c in cmds {
        *next = next.saturating_add(1);
        c.set_cmd_id(*next);
        if let Command::Atomic(k) | Command::Sequence(k) = c {
            renumber(&mut k.commands, next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr() -> SyncHdr {
        SyncHdr::new(
            "1",
            1,
            Location::new("https://dm.example"),
            Location::new("IMEI:1"),
        )
    }

    #[test]
    fn push_assigns_sequential_ids_including_nested() {
        let mut m = SyncMl::new(hdr());
        assert_eq!(m.push(Command::alert(alert_code::CLIENT_INITIATED)), 1);
        let atomic = Command::Atomic(Container {
            commands: vec![Command::get("./A"), Command::get("./B")],
            ..Container::default()
        });
        assert_eq!(m.push(atomic), 2);
        assert_eq!(m.next_cmd_id(), 5);
        assert_eq!(m.push(Command::get("./C")), 5);
        match &m.body.commands[1] {
            Command::Atomic(c) => {
                let ids: Vec<u32> = c.commands.iter().map(Command::cmd_id).collect();
                assert_eq!(ids, vec![3, 4]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn cred_debug_redacts_data() {
        let c = Cred {
            meta: Meta::typed("syncml:auth-basic", "b64"),
            data: "dXNlcjpodW50ZXIy".into(),
        };
        assert!(!format!("{c:?}").contains("dXNlcjpodW50ZXIy"));
    }

    #[test]
    fn status_only_message_has_no_operations() {
        let mut m = SyncMl::new(hdr());
        m.push(Command::Status(Status {
            cmd: "SyncHdr".into(),
            code: 200,
            ..Status::default()
        }));
        assert!(!m.has_operations());
        assert!(m.header_status().is_some());
        m.push(Command::get("./DevInfo"));
        assert!(m.has_operations());
    }
}
