//! Transport-free OMA DM 1.2 session state machines for both roles: `ClientSession` and `ServerSession`.
//! Services feed them decoded messages and send what they return; HTTP, storage and timing stay outside.

use std::collections::HashMap;

use thiserror::Error;

use crate::auth::{self, AuthScheme, DigestKey, HmacHeader, Nonce};
use crate::model::*;
use crate::secret::Secret;
use crate::tree::{Format, NewNode, Tree};
use crate::uri::DmUri;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Attempts at package 1 before a client gives up on authentication (DM 1.2 leaves it open; two
/// challenges are what servers in the field send before refusing).
pub const DEFAULT_MAX_AUTH_ATTEMPTS: u8 = 3;

/// Credentials one side presents to the other.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The scheme (`syncml:auth-basic`, `-md5` or the `x-syncml-hmac` header).
    pub scheme: AuthScheme,
    /// The account name (AAuthName).
    pub name: String,
    /// The password (AAuthSecret).
    pub secret: Secret,
}

/// A session broke the protocol or could not authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SessionError {
    /// The message belongs to another session.
    #[error("message for session {found:?}, this session is {expected:?}")]
    WrongSession {
        /// This session's ID.
        expected: String,
        /// The ID in the message.
        found: String,
    },
    /// The peer refused our credentials and no further attempt is allowed.
    #[error("authentication refused with status {code} after {attempts} attempts")]
    AuthFailed {
        /// The last status code (401 or 407).
        code: u16,
        /// Attempts made.
        attempts: u8,
    },
    /// The server aborted the session or refused it.
    #[error("session refused by the peer with status {code}")]
    Refused {
        /// The header status code.
        code: u16,
    },
    /// The session is over; no more messages are accepted.
    #[error("the session has ended")]
    Ended,
    /// Package 1 did not open a session with Alert 1200 or 1201.
    #[error("package 1 has no session alert (1200 or 1201)")]
    NoSessionAlert,
    /// A message arrived out of turn.
    #[error("protocol: {what}")]
    Protocol {
        /// What was wrong.
        what: String,
    },
}

impl SessionError {
    /// The DM status code for answering the message that caused this error.
    pub fn status_code(&self) -> u16 {
        match self {
            SessionError::AuthFailed { .. } => status_code::UNAUTHORIZED,
            SessionError::NoSessionAlert | SessionError::Protocol { .. } => {
                status_code::BAD_REQUEST
            }
            SessionError::WrongSession { .. } | SessionError::Ended => status_code::NOT_FOUND,
            SessionError::Refused { code } => *code,
        }
    }
}

/// A management tree as a DM session sees it: the commands of a server, executed for `server_id`.
/// Each operation answers a DM status code on failure.
pub trait TreeAccess {
    /// A saved state, to roll an `Atomic` back.
    type Checkpoint;

    /// `Get`: the result items (Source = the URI, Meta Format/Type, Data).
    fn get(&mut self, uri: &str, server_id: &str) -> Result<Vec<Item>, u16>;
    /// `Add` of one node.
    fn add(
        &mut self,
        uri: &str,
        meta: Option<&Meta>,
        data: Option<&Data>,
        server_id: &str,
    ) -> Result<(), u16>;
    /// `Replace` of one node.
    fn replace(
        &mut self,
        uri: &str,
        meta: Option<&Meta>,
        data: Option<&Data>,
        server_id: &str,
    ) -> Result<(), u16>;
    /// `Delete` of a node and its subtree.
    fn delete(&mut self, uri: &str, server_id: &str) -> Result<(), u16>;
    /// `Exec` of a node; returns the success status (200 or 202 for asynchronous work).
    fn exec(
        &mut self,
        _uri: &str,
        _data: Option<&Data>,
        _correlator: Option<&str>,
        _server_id: &str,
    ) -> Result<u16, u16> {
        Err(status_code::OPTIONAL_FEATURE_NOT_SUPPORTED)
    }
    /// A user-interaction alert (1100-1104); returns the status to answer (406 when unsupported).
    fn user_interaction(&mut self, _code: u16, _items: &[Item]) -> u16 {
        status_code::OPTIONAL_FEATURE_NOT_SUPPORTED
    }
    /// Save the current state.
    fn checkpoint(&mut self) -> Self::Checkpoint;
    /// Return to a saved state.
    fn restore(&mut self, checkpoint: Self::Checkpoint);
}

// =============================================================================================
// The in-memory tree as a session sees it

fn node_from(meta: Option<&Meta>, data: Option<&Data>) -> Result<NewNode, u16> {
    let format = match meta.and_then(|m| m.format.as_deref()) {
        Some(f) => Format::parse(f).ok_or(status_code::UNSUPPORTED_MEDIA_TYPE)?,
        None => Format::Chr,
    };
    if format == Format::Node {
        return Ok(NewNode::interior());
    }
    let bytes = match data {
        None => Vec::new(),
        Some(d) => d
            .value_bytes(format.is_binary())
            .map_err(|_| status_code::BAD_REQUEST)?,
    };
    let mut node = NewNode::leaf(format, bytes);
    if let Some(t) = meta.and_then(|m| m.type_.as_deref()) {
        node = node.with_type(t);
    }
    Ok(node)
}

fn parse_uri(uri: &str) -> Result<DmUri, u16> {
    let (path, _query) = DmUri::split_query(uri.trim());
    DmUri::try_from(path).map_err(|e| {
        if e.is_limit() {
            status_code::URI_TOO_LONG
        } else {
            status_code::BAD_REQUEST
        }
    })
}

/// The in-memory tree answers a server's commands with its ACLs and no-Get rules.
impl TreeAccess for Tree {
    type Checkpoint = Tree;

    fn get(&mut self, uri: &str, server_id: &str) -> Result<Vec<Item>, u16> {
        let u = parse_uri(uri)?;
        let view = self.get_as(&u, server_id).map_err(|e| e.status_code())?;
        let data = if view.format.is_binary() {
            Data::Text(STANDARD.encode(&view.value))
        } else {
            match String::from_utf8(view.value) {
                Ok(s) => Data::Text(s),
                Err(e) => Data::Binary(e.into_bytes()),
            }
        };
        let format = if view.format.is_binary() {
            Format::B64
        } else {
            view.format
        };
        Ok(vec![Item {
            source: Some(Location::new(u.as_str())),
            meta: Some(Meta {
                format: Some(format.as_str().to_owned()),
                type_: view.mime_type,
                ..Meta::default()
            }),
            data: Some(data),
            ..Item::default()
        }])
    }

    fn add(
        &mut self,
        uri: &str,
        meta: Option<&Meta>,
        data: Option<&Data>,
        server_id: &str,
    ) -> Result<(), u16> {
        let u = parse_uri(uri)?;
        let node = node_from(meta, data)?;
        self.add_as(&u, node, server_id)
            .map_err(|e| e.status_code())
    }

    fn replace(
        &mut self,
        uri: &str,
        meta: Option<&Meta>,
        data: Option<&Data>,
        server_id: &str,
    ) -> Result<(), u16> {
        let u = parse_uri(uri)?;
        let node = node_from(meta, data)?;
        self.replace_as(&u, node, server_id)
            .map_err(|e| e.status_code())
    }

    fn delete(&mut self, uri: &str, server_id: &str) -> Result<(), u16> {
        let u = parse_uri(uri)?;
        self.delete_as(&u, server_id).map_err(|e| e.status_code())
    }

    fn checkpoint(&mut self) -> Tree {
        self.clone()
    }

    fn restore(&mut self, checkpoint: Tree) {
        *self = checkpoint;
    }
}

/// A one-Status message refusing a client message the server could not process: the header's
/// Status carries `code` (400, 401, 413, ...) and the reason as item data. `session_id` and
/// `msg_ref` come from the refused message when its header could be read ("0"/0 otherwise).
pub fn error_message(
    session_id: &str,
    msg_ref: u32,
    client: &str,
    server_uri: &str,
    code: u16,
    reason: &str,
) -> SyncMl {
    let session_id = if session_id.trim().is_empty() {
        "0"
    } else {
        session_id
    };
    let reason: String = reason.chars().take(256).collect();
    SyncMl::new(SyncHdr::new(
        session_id,
        1,
        Location::new(client),
        Location::new(server_uri),
    ))
    .with(Command::Status(Status {
        msg_ref,
        cmd_ref: 0,
        cmd: "SyncHdr".into(),
        target_refs: if client.is_empty() {
            Vec::new()
        } else {
            vec![client.to_owned()]
        },
        code,
        items: vec![Item::data(Data::Text(reason))],
        ..Status::default()
    }))
    .finish()
}

// =============================================================================================
// Client

/// What a DM client session is set up with.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server's URI (SyncHdr Target).
    pub server_uri: String,
    /// The server's ServerID (for the tree's access checks).
    pub server_id: String,
    /// This client's DevId (SyncHdr Source LocURI).
    pub dev_id: String,
    /// The session ID, chosen by the client.
    pub session_id: String,
    /// Client credentials (CLCRED); `None` sends none.
    pub credentials: Option<Credentials>,
    /// The nonce the server last sent (raw bytes), for md5 and HMAC.
    pub server_nonce: Vec<u8>,
    /// `MaxMsgSize` to announce.
    pub max_msg_size: Option<u64>,
    /// Attempts at package 1 before giving up.
    pub max_auth_attempts: u8,
    /// The session alert: 1201 client-initiated, 1200 answering a notification.
    pub session_alert: u16,
}

impl ClientConfig {
    /// A client-initiated session with defaults for the optional settings.
    pub fn new(
        server_uri: impl Into<String>,
        server_id: impl Into<String>,
        dev_id: impl Into<String>,
        session_id: impl Into<String>,
    ) -> ClientConfig {
        ClientConfig {
            server_uri: server_uri.into(),
            server_id: server_id.into(),
            dev_id: dev_id.into(),
            session_id: session_id.into(),
            credentials: None,
            server_nonce: Vec::new(),
            max_msg_size: None,
            max_auth_attempts: DEFAULT_MAX_AUTH_ATTEMPTS,
            session_alert: alert_code::CLIENT_INITIATED,
        }
    }
}

/// The state of a client session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Package 1 not yet built.
    Initial,
    /// Waiting for the server's answer to our last message.
    AwaitingServer,
    /// The session is over.
    Finished,
}

/// What the client should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientStep {
    /// Send this message and feed the answer back.
    Send(Box<SyncMl>),
    /// The session is over.
    Finished,
}

/// The status a server gave to one of the commands the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// The command's CmdID in the message it went in.
    pub cmd_id: u32,
    /// The command's name.
    pub cmd: String,
    /// The status code.
    pub code: u16,
    /// The tag the caller gave the command (e.g. an outbox row ID), if any.
    pub tag: Option<String>,
}

/// A DM client session (a device, or the gateway towards a DM Server).
#[derive(Debug)]
pub struct ClientSession {
    cfg: ClientConfig,
    state: ClientState,
    msg_id: u32,
    attempts: u8,
    authenticated: bool,
    /// Package 1 commands after the session alert, with their caller tags.
    initial: Vec<(Command, Option<String>)>,
    /// For each message we sent (MsgID), CmdID -> (command name, tag).
    sent: HashMap<u32, HashMap<u32, (&'static str, Option<String>)>>,
    outcomes: Vec<CommandOutcome>,
    next_nonce: Option<Vec<u8>>,
    pending_results: Vec<Command>,
}

impl ClientSession {
    /// A session that will send `devinfo` (URI, value) as a Replace and then `commands` (each with an
    /// optional tag that comes back in [`CommandOutcome::tag`]) in package 1.
    pub fn new(
        cfg: ClientConfig,
        devinfo: &[(&str, &str)],
        commands: Vec<(Command, Option<String>)>,
    ) -> ClientSession {
        let mut initial = Vec::with_capacity(commands.len().saturating_add(1));
        if !devinfo.is_empty() {
            let items = devinfo
                .iter()
                .map(|(uri, value)| {
                    Item::source(*uri)
                        .with_meta(Meta::format("chr"))
                        .with_data(Data::Text((*value).to_owned()))
                })
                .collect();
            initial.push((
                Command::Replace(ItemCmd {
                    items,
                    ..ItemCmd::default()
                }),
                None,
            ));
        }
        initial.extend(commands);
        ClientSession {
            cfg,
            state: ClientState::Initial,
            msg_id: 0,
            attempts: 0,
            authenticated: false,
            initial,
            sent: HashMap::new(),
            outcomes: Vec::new(),
            next_nonce: None,
            pending_results: Vec::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The session's configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// True once the server accepted our credentials (212 or 200 on the header).
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// The statuses the server gave to our commands so far.
    pub fn outcomes(&self) -> &[CommandOutcome] {
        &self.outcomes
    }

    /// The NextNonce the server sent last (raw bytes): store it for the next session.
    pub fn next_nonce(&self) -> Option<&[u8]> {
        self.next_nonce.as_deref()
    }

    fn header(&mut self) -> SyncHdr {
        self.msg_id = self.msg_id.saturating_add(1);
        let name = self.cfg.credentials.as_ref().map(|c| c.name.clone());
        let mut hdr = SyncHdr::new(
            self.cfg.session_id.clone(),
            self.msg_id,
            Location::new(self.cfg.server_uri.clone()),
            Location {
                loc_uri: self.cfg.dev_id.clone(),
                loc_name: name,
            },
        );
        if let Some(n) = self.cfg.max_msg_size {
            hdr.meta = Some(Meta {
                max_msg_size: Some(n),
                ..Meta::default()
            });
        }
        hdr
    }

    fn cred(&self) -> Option<Cred> {
        let c = self.cfg.credentials.as_ref()?;
        let data = match c.scheme {
            AuthScheme::Basic => auth::basic_credential(&c.name, &c.secret)
                .expose()
                .to_owned(),
            AuthScheme::Md5 => auth::md5_credential(&c.name, &c.secret, &self.cfg.server_nonce),
            // HMAC travels in the transport header, never in Cred.
            AuthScheme::Hmac => return None,
        };
        Some(Cred {
            meta: Meta::typed(c.scheme.meta_type(), "b64"),
            data,
        })
    }

    /// Build package 1 (again, after a challenge).
    fn package1(&mut self) -> SyncMl {
        self.attempts = self.attempts.saturating_add(1);
        let mut hdr = self.header();
        hdr.cred = self.cred();
        let mut msg = SyncMl::new(hdr);
        msg.push(Command::alert(self.cfg.session_alert));
        let mut ids = HashMap::new();
        for (cmd, tag) in &self.initial {
            let id = msg.push(cmd.clone());
            ids.insert(id, (cmd.name(), tag.clone()));
        }
        self.sent.insert(self.msg_id, ids);
        msg.finish()
    }

    /// Start the session: package 1.
    pub fn start(&mut self) -> Result<SyncMl, SessionError> {
        if self.state != ClientState::Initial {
            return Err(SessionError::Protocol {
                what: "session already started".into(),
            });
        }
        self.state = ClientState::AwaitingServer;
        Ok(self.package1())
    }

    /// The `x-syncml-hmac` header value for an encoded message body, when the scheme is HMAC.
    pub fn transport_mac(&self, body: &[u8]) -> Option<Result<String, auth::AuthError>> {
        let c = self.cfg.credentials.as_ref()?;
        (c.scheme == AuthScheme::Hmac)
            .then(|| auth::hmac_header(&c.name, &c.secret, &self.cfg.server_nonce, body))
    }

    /// Feed the server's answer; executes its commands against `tree` and says what to do next.
    pub fn receive<T: TreeAccess>(
        &mut self,
        msg: &SyncMl,
        tree: &mut T,
    ) -> Result<ClientStep, SessionError> {
        if self.state != ClientState::AwaitingServer {
            return Err(SessionError::Ended);
        }
        if msg.hdr.session_id != self.cfg.session_id {
            return Err(SessionError::WrongSession {
                expected: self.cfg.session_id.clone(),
                found: msg.hdr.session_id.clone(),
            });
        }
        if let Some(uri) = &msg.hdr.resp_uri
            && !uri.trim().is_empty()
        {
            self.cfg.server_uri = uri.trim().to_owned();
        }
        // Nonces: any Chal carries the nonce to use next.
        for s in msg.statuses() {
            if let Some(n) = s
                .chal
                .as_ref()
                .and_then(|c| c.meta.next_nonce.as_deref())
                .and_then(|n| Nonce::from_b64(n).ok())
            {
                self.cfg.server_nonce = n.as_bytes().to_vec();
                self.next_nonce = Some(n.as_bytes().to_vec());
            }
        }
        if let Some(hs) = msg.header_status().filter(|s| s.msg_ref == self.msg_id) {
            match hs.code {
                status_code::UNAUTHORIZED | status_code::MISSING_CREDENTIALS => {
                    self.authenticated = false;
                    if let Some(scheme) = hs
                        .chal
                        .as_ref()
                        .and_then(|c| c.meta.type_.as_deref())
                        .and_then(|t| AuthScheme::from_meta_type(t).ok())
                        && let Some(c) = self.cfg.credentials.as_mut()
                    {
                        c.scheme = scheme;
                    }
                    let can_retry = self.cfg.credentials.is_some()
                        && self.attempts < self.cfg.max_auth_attempts;
                    if can_retry && self.sent.len() == self.attempts as usize {
                        return Ok(ClientStep::Send(Box::new(self.package1())));
                    }
                    self.state = ClientState::Finished;
                    return Err(SessionError::AuthFailed {
                        code: hs.code,
                        attempts: self.attempts,
                    });
                }
                status_code::OK | status_code::AUTH_ACCEPTED => self.authenticated = true,
                code if code >= 300 => {
                    self.state = ClientState::Finished;
                    return Err(SessionError::Refused { code });
                }
                _ => {}
            }
        }
        self.record_outcomes(msg);
        let server_msg = msg.hdr.msg_id;
        let mut reply = SyncMl::new(self.header());
        reply.push(Command::Status(Status {
            msg_ref: server_msg,
            cmd_ref: 0,
            cmd: "SyncHdr".into(),
            target_refs: vec![msg.hdr.target.loc_uri.clone()],
            source_refs: vec![msg.hdr.source.loc_uri.clone()],
            code: status_code::OK,
            ..Status::default()
        }));
        let mut abort = false;
        for cmd in &msg.body.commands {
            if let Command::Alert(a) = cmd
                && a.code == alert_code::SESSION_ABORT
            {
                abort = true;
            }
            self.execute(cmd, server_msg, tree, &mut reply);
        }
        for r in self.pending_results.drain(..) {
            reply.push(r);
        }
        self.sent.insert(self.msg_id, HashMap::new());
        if abort {
            self.state = ClientState::Finished;
            return Ok(ClientStep::Finished);
        }
        if !msg.has_operations() {
            if msg.body.final_ {
                // DM Protocol 8.4: a server message with only Status and Final ends the session.
                self.state = ClientState::Finished;
                return Ok(ClientStep::Finished);
            }
            // The server's package continues: ask for the next message.
            reply.push(Command::alert(alert_code::NEXT_MESSAGE));
        }
        Ok(ClientStep::Send(Box::new(reply.finish())))
    }

    fn record_outcomes(&mut self, msg: &SyncMl) {
        for s in msg.statuses().filter(|s| s.cmd_ref != 0) {
            let tag = self
                .sent
                .get(&s.msg_ref)
                .and_then(|m| m.get(&s.cmd_ref))
                .and_then(|(_, t)| t.clone());
            self.outcomes.push(CommandOutcome {
                cmd_id: s.cmd_ref,
                cmd: s.cmd.clone(),
                code: s.code,
                tag,
            });
        }
    }

    fn execute<T: TreeAccess>(
        &mut self,
        cmd: &Command,
        msg_ref: u32,
        tree: &mut T,
        reply: &mut SyncMl,
    ) {
        let server = self.cfg.server_id.clone();
        let status = |code: u16, targets: Vec<String>| Status {
            msg_ref,
            cmd_ref: cmd.cmd_id(),
            cmd: cmd.name().to_owned(),
            target_refs: targets,
            code,
            ..Status::default()
        };
        let codes = match cmd {
            Command::Status(_) | Command::Results(_) => return,
            Command::Alert(a) => {
                let code = match a.code {
                    alert_code::DISPLAY..=alert_code::MULTIPLE_CHOICE => {
                        tree.user_interaction(a.code, &a.items)
                    }
                    _ => status_code::OK,
                };
                vec![(code, None)]
            }
            Command::Get(k) => {
                let mut out = Vec::with_capacity(k.items.len());
                let mut found = Vec::new();
                for item in &k.items {
                    let uri = item.target_uri().unwrap_or("");
                    match tree.get(uri, &server) {
                        Ok(items) => {
                            found.extend(items);
                            out.push((status_code::OK, Some(uri.to_owned())));
                        }
                        Err(code) => out.push((code, Some(uri.to_owned()))),
                    }
                }
                if !found.is_empty() {
                    self.pending_results.push(Command::Results(Results {
                        msg_ref,
                        cmd_ref: k.cmd_id,
                        items: found,
                        ..Results::default()
                    }));
                }
                out
            }
            Command::Add(k) | Command::Replace(k) | Command::Delete(k) | Command::Exec(k) => k
                .items
                .iter()
                .map(|item| {
                    let uri = item.target_uri().unwrap_or("");
                    let meta = item.meta.as_ref().or(k.meta.as_ref());
                    let data = item.data.as_ref();
                    let r = match cmd {
                        Command::Add(_) => tree.add(uri, meta, data, &server).map(|_| 200),
                        Command::Replace(_) => tree.replace(uri, meta, data, &server).map(|_| 200),
                        Command::Delete(_) => tree.delete(uri, &server).map(|_| 200),
                        _ => tree.exec(uri, data, k.correlator.as_deref(), &server),
                    };
                    (r.unwrap_or_else(|c| c), Some(uri.to_owned()))
                })
                .collect(),
            Command::Copy(_) => vec![(status_code::OPTIONAL_FEATURE_NOT_SUPPORTED, None)],
            Command::Atomic(k) => {
                let cp = tree.checkpoint();
                let mut inner = SyncMl::new(reply.hdr.clone());
                let before = self.pending_results.len();
                for c in &k.commands {
                    self.execute(c, msg_ref, tree, &mut inner);
                }
                let failed = inner.statuses().any(|s| s.code >= 300);
                if failed {
                    tree.restore(cp);
                    self.pending_results.truncate(before);
                    reply.push(Command::Status(status(status_code::ATOMIC_FAILED, vec![])));
                    for c in &k.commands {
                        reply.push(Command::Status(Status {
                            msg_ref,
                            cmd_ref: c.cmd_id(),
                            cmd: c.name().to_owned(),
                            code: status_code::ATOMIC_ROLLBACK_OK,
                            ..Status::default()
                        }));
                    }
                } else {
                    reply.push(Command::Status(status(status_code::OK, vec![])));
                    for c in inner.body.commands {
                        reply.push(c);
                    }
                }
                return;
            }
            Command::Sequence(k) => {
                reply.push(Command::Status(status(status_code::OK, vec![])));
                for c in &k.commands {
                    self.execute(c, msg_ref, tree, reply);
                }
                return;
            }
        };
        if cmd.no_resp() {
            return;
        }
        if codes.len() <= 1 {
            let code = codes.first().map_or(status_code::OK, |c| c.0);
            reply.push(Command::Status(status(code, Vec::new())));
        } else {
            // Per-item status when a command carries several items (RepPro 6.6.15).
            for (code, target) in codes {
                reply.push(Command::Status(status(code, target.into_iter().collect())));
            }
        }
    }
}

// =============================================================================================
// Server

/// What the server knows of its clients: their passwords and the nonces it issued to them.
pub trait ClientDirectory {
    /// The password of account `name` of device `dev_id`, if it is known.
    fn password(&self, dev_id: &str, name: &str) -> Option<Secret>;
    /// The stored digest `b64(md5(name:password))` of that account: enough for auth-md5 and HMAC,
    /// so a server need not keep passwords. Derived from `password` unless overridden.
    fn digest_key(&self, dev_id: &str, name: &str) -> Option<DigestKey> {
        self.password(dev_id, name)
            .map(|p| DigestKey::new(name, &p))
    }
    /// The NextNonce this server last issued to `dev_id` (raw bytes), if any.
    fn nonce(&self, dev_id: &str) -> Option<Vec<u8>>;
}

/// What a server session is set up with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The server's own URI (SyncHdr Source of its messages).
    pub server_uri: String,
    /// The scheme clients must authenticate with.
    pub scheme: AuthScheme,
    /// Failed authentications allowed before the session is refused.
    pub max_auth_attempts: u8,
    /// `RespURI` to give the client, if the transport wants one (e.g. with a session token).
    pub resp_uri: Option<String>,
}

impl ServerConfig {
    /// A server requiring `scheme`.
    pub fn new(server_uri: impl Into<String>, scheme: AuthScheme) -> ServerConfig {
        ServerConfig {
            server_uri: server_uri.into(),
            scheme,
            max_auth_attempts: DEFAULT_MAX_AUTH_ATTEMPTS,
            resp_uri: None,
        }
    }
}

/// The state of a server session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Waiting for (an authenticated) package 1.
    AwaitingPackage1,
    /// Authenticated; exchanging commands and results.
    Open,
    /// Over.
    Ended,
}

/// Something the server learned from a client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// The client authenticated.
    Authenticated {
        /// The client's DevId.
        dev_id: String,
        /// The account name it used.
        name: String,
    },
    /// The client failed to authenticate.
    AuthFailed {
        /// The client's DevId.
        dev_id: String,
        /// The status code answered (401 or 407).
        code: u16,
    },
    /// A value the client reported about itself (package 1 Replace, e.g. `./DevInfo/Man`).
    Reported {
        /// The node's URI.
        uri: String,
        /// Its value.
        value: String,
    },
    /// An Alert from the client (Generic Alerts included; parse them with `alert::parse`).
    Alert(Box<Alert>),
    /// The status the client gave to one of our commands.
    Status {
        /// The CmdID of our command.
        cmd_ref: u32,
        /// The command name.
        cmd: String,
        /// Status code.
        code: u16,
        /// The tag given when the command was queued.
        tag: Option<String>,
    },
    /// Results of one of our Gets.
    Results {
        /// The Results command.
        results: Box<Results>,
        /// The tag given when the Get was queued.
        tag: Option<String>,
    },
}

/// The server's answer to one client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStep {
    /// The message to send back.
    pub reply: SyncMl,
    /// What the message told us.
    pub events: Vec<ServerEvent>,
    /// A NextNonce issued to the client: store it for `ClientDirectory::nonce`.
    pub issued_nonce: Option<Vec<u8>>,
    /// True when the reply ends the session.
    pub ends: bool,
}

/// A DM server session (a DM Server, or the gateway towards its devices).
#[derive(Debug)]
pub struct ServerSession {
    cfg: ServerConfig,
    state: ServerState,
    session_id: Option<String>,
    dev_id: Option<String>,
    name: Option<String>,
    msg_id: u32,
    failures: u8,
    queue: Vec<(Command, Option<String>)>,
    /// For each message we sent (MsgID), CmdID -> (tag, answered by a Status yet).
    sent: HashMap<u32, HashMap<u32, (Option<String>, bool)>>,
    outstanding: usize,
}

fn header_status(msg: &SyncMl, code: u16) -> Status {
    Status {
        msg_ref: msg.hdr.msg_id,
        cmd_ref: 0,
        cmd: "SyncHdr".into(),
        target_refs: vec![msg.hdr.target.loc_uri.clone()],
        source_refs: vec![msg.hdr.source.loc_uri.clone()],
        code,
        ..Status::default()
    }
}

impl ServerSession {
    /// A new session waiting for package 1.
    pub fn new(cfg: ServerConfig) -> ServerSession {
        ServerSession {
            cfg,
            state: ServerState::AwaitingPackage1,
            session_id: None,
            dev_id: None,
            name: None,
            msg_id: 0,
            failures: 0,
            queue: Vec::new(),
            sent: HashMap::new(),
            outstanding: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// The authenticated client's DevId.
    pub fn dev_id(&self) -> Option<&str> {
        self.dev_id.as_deref()
    }

    /// The account name the client authenticated with.
    pub fn account_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The session ID (once package 1 arrived).
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// Set the `RespURI` given to the client from the next reply on (e.g. with a session token).
    pub fn set_resp_uri(&mut self, uri: Option<String>) {
        self.cfg.resp_uri = uri;
    }

    /// Queue a command to send to the client in the next reply; `tag` comes back in its events.
    pub fn queue(&mut self, cmd: Command, tag: Option<String>) {
        self.queue.push((cmd, tag));
    }

    /// Commands queued and not yet sent.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn challenge(&self, nonce: &Nonce) -> Chal {
        Chal {
            meta: Meta {
                type_: Some(self.cfg.scheme.meta_type().to_owned()),
                format: Some("b64".into()),
                next_nonce: Some(nonce.to_b64()),
                ..Meta::default()
            },
        }
    }

    fn verify<D: ClientDirectory>(
        &self,
        msg: &SyncMl,
        dir: &D,
        hmac: Option<(&str, &[u8])>,
    ) -> Result<String, u16> {
        let dev_id = msg.hdr.source.loc_uri.as_str();
        let nonce = dir.nonce(dev_id).unwrap_or_default();
        let fallback_name = msg.hdr.source.loc_name.as_deref().unwrap_or(dev_id);
        match self.cfg.scheme {
            AuthScheme::Hmac => {
                let (value, body) = hmac.ok_or(status_code::MISSING_CREDENTIALS)?;
                let header = HmacHeader::parse(value).map_err(|_| status_code::UNAUTHORIZED)?;
                let key = dir
                    .digest_key(dev_id, &header.username)
                    .ok_or(status_code::UNAUTHORIZED)?;
                auth::verify_hmac_with_key(&header, &key, &nonce, body)
                    .map(|_| header.username.clone())
                    .map_err(|_| status_code::UNAUTHORIZED)
            }
            scheme => {
                let cred = msg
                    .hdr
                    .cred
                    .as_ref()
                    .ok_or(status_code::MISSING_CREDENTIALS)?;
                let given = cred
                    .meta
                    .type_
                    .as_deref()
                    .and_then(|t| AuthScheme::from_meta_type(t).ok())
                    .unwrap_or(AuthScheme::Basic);
                if given != scheme {
                    // Credentials of a weaker or other scheme: ask for the one we require.
                    return Err(status_code::MISSING_CREDENTIALS);
                }
                match scheme {
                    AuthScheme::Basic => {
                        auth::verify_basic(&cred.data, |name| dir.password(dev_id, name))
                            .map_err(|_| status_code::UNAUTHORIZED)
                    }
                    _ => {
                        let key = dir
                            .digest_key(dev_id, fallback_name)
                            .ok_or(status_code::UNAUTHORIZED)?;
                        auth::verify_md5_with_key(&cred.data, &key, &nonce)
                            .map(|_| fallback_name.to_owned())
                            .map_err(|_| status_code::UNAUTHORIZED)
                    }
                }
            }
        }
    }

    fn reply_header(&mut self, msg: &SyncMl) -> SyncHdr {
        self.msg_id = self.msg_id.saturating_add(1);
        let mut hdr = SyncHdr::new(
            msg.hdr.session_id.clone(),
            self.msg_id,
            Location::new(msg.hdr.source.loc_uri.clone()),
            Location::new(self.cfg.server_uri.clone()),
        );
        hdr.resp_uri = self.cfg.resp_uri.clone();
        hdr
    }

    /// Feed one client message. `hmac` is the `x-syncml-hmac` header value and the exact body bytes,
    /// when the transport carried them. `new_nonce` is used when the server has to issue a nonce.
    pub fn receive<D: ClientDirectory>(
        &mut self,
        msg: &SyncMl,
        dir: &D,
        hmac: Option<(&str, &[u8])>,
        new_nonce: Nonce,
    ) -> Result<ServerStep, SessionError> {
        match self.state {
            ServerState::Ended => return Err(SessionError::Ended),
            ServerState::Open => {
                if let (Some(sid), Some(dev)) = (&self.session_id, &self.dev_id)
                    && (sid != &msg.hdr.session_id || dev != &msg.hdr.source.loc_uri)
                {
                    return Err(SessionError::WrongSession {
                        expected: sid.clone(),
                        found: msg.hdr.session_id.clone(),
                    });
                }
                return Ok(self.continue_open(msg, false));
            }
            ServerState::AwaitingPackage1 => {}
        }
        if let Some(sid) = &self.session_id
            && sid != &msg.hdr.session_id
        {
            return Err(SessionError::WrongSession {
                expected: sid.clone(),
                found: msg.hdr.session_id.clone(),
            });
        }
        let has_session_alert = msg.body.commands.iter().any(|c| {
            matches!(c, Command::Alert(a)
                if a.code == alert_code::CLIENT_INITIATED || a.code == alert_code::SERVER_INITIATED)
        });
        if !has_session_alert {
            return Err(SessionError::NoSessionAlert);
        }
        self.session_id = Some(msg.hdr.session_id.clone());
        let dev_id = msg.hdr.source.loc_uri.clone();
        match self.verify(msg, dir, hmac) {
            Ok(name) => {
                self.state = ServerState::Open;
                self.dev_id = Some(dev_id.clone());
                self.name = Some(name.clone());
                let mut step = self.continue_open(msg, true);
                step.events
                    .insert(0, ServerEvent::Authenticated { dev_id, name });
                // A fresh nonce for the next session (md5 and HMAC), sent with 212.
                if self.cfg.scheme != AuthScheme::Basic
                    && let Some(Command::Status(hs)) = step.reply.body.commands.first_mut()
                {
                    hs.chal = Some(self.challenge(&new_nonce));
                    step.issued_nonce = Some(new_nonce.as_bytes().to_vec());
                }
                Ok(step)
            }
            Err(code) => {
                self.failures = self.failures.saturating_add(1);
                let mut hs = header_status(msg, code);
                hs.chal = Some(self.challenge(&new_nonce));
                let hdr = self.reply_header(msg);
                let mut reply = SyncMl::new(hdr);
                reply.push(Command::Status(hs));
                let ends = self.failures >= self.cfg.max_auth_attempts;
                if ends {
                    self.state = ServerState::Ended;
                }
                Ok(ServerStep {
                    reply: reply.finish(),
                    events: vec![ServerEvent::AuthFailed { dev_id, code }],
                    issued_nonce: Some(new_nonce.as_bytes().to_vec()),
                    ends,
                })
            }
        }
    }

    /// Process an authenticated client message: statuses, results, alerts, reports; then send what
    /// is queued, or end the session when nothing is queued and nothing is outstanding.
    fn continue_open(&mut self, msg: &SyncMl, just_authenticated: bool) -> ServerStep {
        let mut events = Vec::new();
        let hdr = self.reply_header(msg);
        let mut reply = SyncMl::new(hdr);
        let code = if just_authenticated {
            status_code::AUTH_ACCEPTED
        } else {
            status_code::OK
        };
        reply.push(Command::Status(header_status(msg, code)));
        let mut next_message_requested = false;
        for cmd in &msg.body.commands {
            let ack = |code: u16| {
                Command::Status(Status {
                    msg_ref: msg.hdr.msg_id,
                    cmd_ref: cmd.cmd_id(),
                    cmd: cmd.name().to_owned(),
                    code,
                    ..Status::default()
                })
            };
            match cmd {
                Command::Status(s) => {
                    let tag = self.take_tag(s.msg_ref, s.cmd_ref);
                    events.push(ServerEvent::Status {
                        cmd_ref: s.cmd_ref,
                        cmd: s.cmd.clone(),
                        code: s.code,
                        tag,
                    });
                }
                Command::Results(r) => {
                    let tag = self
                        .sent
                        .get(&r.msg_ref)
                        .and_then(|m| m.get(&r.cmd_ref))
                        .and_then(|(t, _)| t.clone());
                    events.push(ServerEvent::Results {
                        results: Box::new(r.clone()),
                        tag,
                    });
                }
                Command::Alert(a) => {
                    if a.code == alert_code::NEXT_MESSAGE {
                        next_message_requested = true;
                    }
                    if a.code == alert_code::SESSION_ABORT {
                        self.state = ServerState::Ended;
                    }
                    events.push(ServerEvent::Alert(Box::new(a.clone())));
                    if !a.no_resp {
                        reply.push(ack(status_code::OK));
                    }
                }
                Command::Replace(k) | Command::Add(k) => {
                    for item in &k.items {
                        if let (Some(uri), Some(value)) = (
                            item.source_uri().or(item.target_uri()),
                            item.data.as_ref().and_then(Data::as_text),
                        ) {
                            events.push(ServerEvent::Reported {
                                uri: uri.to_owned(),
                                value: value.into_owned(),
                            });
                        }
                    }
                    if !k.no_resp {
                        reply.push(ack(status_code::OK));
                    }
                }
                other => {
                    if !other.no_resp() {
                        reply.push(ack(status_code::OPTIONAL_FEATURE_NOT_SUPPORTED));
                    }
                }
            }
        }
        let _ = next_message_requested;
        if self.state == ServerState::Ended {
            return ServerStep {
                reply: reply.finish(),
                events,
                issued_nonce: None,
                ends: true,
            };
        }
        let mut ids = HashMap::new();
        for (cmd, tag) in self.queue.drain(..) {
            let expects_status = !cmd.no_resp();
            let id = reply.push(cmd);
            if expects_status {
                ids.insert(id, (tag, false));
            }
        }
        self.outstanding = self.outstanding.saturating_add(ids.len());
        let ends = !reply.has_operations() && self.outstanding == 0;
        self.sent.insert(self.msg_id, ids);
        if ends {
            self.state = ServerState::Ended;
        }
        ServerStep {
            reply: reply.finish(),
            events,
            issued_nonce: None,
            ends,
        }
    }

    fn take_tag(&mut self, msg_ref: u32, cmd_ref: u32) -> Option<String> {
        let (tag, answered) = self.sent.get_mut(&msg_ref)?.get_mut(&cmd_ref)?;
        if !*answered {
            *answered = true;
            self.outstanding = self.outstanding.saturating_sub(1);
        }
        tag.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::alert::{self, GenericAlert};
    use crate::codec::{self, Encoding};
    use crate::element::Limits;

    const DEV: &str = "IMEI:356938035643809";
    const SRV: &str = "https://dms.example.com/dm";

    #[derive(Default)]
    struct Dir {
        password: String,
        nonce: RefCell<Option<Vec<u8>>>,
    }

    impl ClientDirectory for Dir {
        fn password(&self, dev_id: &str, name: &str) -> Option<Secret> {
            (dev_id == DEV && name == "dev-user").then(|| Secret::new(self.password.clone()))
        }
        fn nonce(&self, _dev_id: &str) -> Option<Vec<u8>> {
            self.nonce.borrow().clone()
        }
    }

    fn device_tree() -> Tree {
        let mut t = Tree::new();
        for (uri, v) in [
            ("./DevInfo/DevId", DEV),
            ("./DevInfo/Man", "Acme"),
            ("./DevInfo/Mod", "Thermo 3"),
        ] {
            t.add(&DmUri::try_from(uri).unwrap(), NewNode::chr(v))
                .unwrap();
        }
        t
    }

    fn client(scheme: AuthScheme, password: &str, nonce: &[u8]) -> ClientSession {
        let mut cfg = ClientConfig::new(SRV, "dms-1", DEV, "5");
        cfg.credentials = Some(Credentials {
            scheme,
            name: "dev-user".into(),
            secret: Secret::new(password),
        });
        cfg.server_nonce = nonce.to_vec();
        let ga = GenericAlert {
            alert_type: alert::BOOTSTRAPPED_DMS_LIST.into(),
            format: Some("chr".into()),
            data: Some(Data::Text("dms-1\ndms-2".into())),
            ..GenericAlert::default()
        };
        ClientSession::new(
            cfg,
            &[("./DevInfo/DevId", DEV), ("./DevInfo/Man", "Acme")],
            vec![(alert::build(Some("c-1"), &[ga]), Some("outbox-7".into()))],
        )
    }

    /// Run a whole session through the real codec; returns the server's events.
    fn run(
        c: &mut ClientSession,
        s: &mut ServerSession,
        dir: &Dir,
        tree: &mut Tree,
        enc: Encoding,
    ) -> Result<Vec<ServerEvent>, SessionError> {
        let limits = Limits::default();
        let mut events = Vec::new();
        let mut out = c.start()?;
        for round in 0..10 {
            let body = codec::encode(&out, enc).unwrap();
            let mac = c.transport_mac(&body).map(|r| r.unwrap());
            let received = codec::decode(&body, &limits).unwrap();
            assert!(
                crate::validate::validate(&received).is_empty(),
                "round {round}"
            );
            let nonce = Nonce::from_bytes(vec![round as u8; 16]);
            let step = s.receive(
                &received,
                dir,
                mac.as_deref().map(|m| (m, body.as_slice())),
                nonce,
            )?;
            if let Some(n) = &step.issued_nonce {
                *dir.nonce.borrow_mut() = Some(n.clone());
            }
            events.extend(step.events);
            let bytes = codec::encode(&step.reply, enc).unwrap();
            let reply = codec::decode(&bytes, &limits).unwrap();
            match c.receive(&reply, tree)? {
                ClientStep::Send(m) => out = *m,
                ClientStep::Finished => {
                    assert!(step.ends, "client finished but server did not end");
                    return Ok(events);
                }
            }
        }
        panic!("session did not end");
    }

    fn server(scheme: AuthScheme) -> ServerSession {
        ServerSession::new(ServerConfig::new(SRV, scheme))
    }

    #[test]
    fn md5_challenge_cycle_then_generic_alert() {
        for enc in [Encoding::Xml, Encoding::Wbxml] {
            let dir = Dir {
                password: "s3cret".into(),
                nonce: RefCell::new(Some(b"server-nonce-1".to_vec())),
            };
            // The client holds a stale nonce: the first attempt is refused with 401 and a new nonce.
            let mut c = client(AuthScheme::Md5, "s3cret", b"stale");
            let mut s = server(AuthScheme::Md5);
            let events = run(&mut c, &mut s, &dir, &mut device_tree(), enc).unwrap();
            assert!(matches!(
                events[0],
                ServerEvent::AuthFailed { code: 401, .. }
            ));
            assert!(events.iter().any(
                |e| matches!(e, ServerEvent::Authenticated { name, .. } if name == "dev-user")
            ));
            let ga = events
                .iter()
                .find_map(|e| match e {
                    ServerEvent::Alert(a) if a.code == 1226 => Some(alert::parse(a).unwrap()),
                    _ => None,
                })
                .unwrap();
            assert_eq!(ga.correlator.as_deref(), Some("c-1"));
            assert!(events.iter().any(|e| matches!(e, ServerEvent::Reported { uri, value } if uri == "./DevInfo/Man" && value == "Acme")));
            assert!(c.authenticated());
            let outcome = c
                .outcomes()
                .iter()
                .find(|o| o.cmd == "Alert" && o.tag.is_some())
                .unwrap();
            assert_eq!(
                (outcome.code, outcome.tag.as_deref()),
                (200, Some("outbox-7"))
            );
            // The nonce issued with 212 is what the client keeps for next time.
            assert_eq!(c.next_nonce(), dir.nonce.borrow().as_deref());
        }
    }

    #[test]
    fn missing_credentials_get_407_then_basic_succeeds() {
        let dir = Dir {
            password: "pw".into(),
            ..Dir::default()
        };
        let mut c = client(AuthScheme::Basic, "pw", b"");
        // Start without credentials in the first message: the server asks with 407.
        let saved = c.cfg.credentials.take();
        let first = c.start().unwrap();
        c.cfg.credentials = saved;
        let mut s = server(AuthScheme::Basic);
        let step = s
            .receive(&first, &dir, None, Nonce::from_bytes(vec![1; 16]))
            .unwrap();
        assert_eq!(step.reply.header_status().unwrap().code, 407);
        let ClientStep::Send(second) = c.receive(&step.reply, &mut device_tree()).unwrap() else {
            panic!("client gave up");
        };
        assert!(second.hdr.cred.is_some());
        let step = s
            .receive(&second, &dir, None, Nonce::from_bytes(vec![2; 16]))
            .unwrap();
        assert_eq!(step.reply.header_status().unwrap().code, 212);
        assert!(step.ends);
    }

    #[test]
    fn wrong_password_fails_after_the_allowed_attempts() {
        let dir = Dir {
            password: "right".into(),
            ..Dir::default()
        };
        let mut c = client(AuthScheme::Md5, "wrong", b"");
        let mut s = server(AuthScheme::Md5);
        let err = run(&mut c, &mut s, &dir, &mut device_tree(), Encoding::Xml).unwrap_err();
        assert_eq!(
            err,
            SessionError::AuthFailed {
                code: 401,
                attempts: DEFAULT_MAX_AUTH_ATTEMPTS
            }
        );
        assert_eq!(s.state(), ServerState::Ended);
    }

    #[test]
    fn hmac_transport_authentication() {
        let dir = Dir {
            password: "k".into(),
            nonce: RefCell::new(Some(vec![9; 16])),
        };
        let mut c = client(AuthScheme::Hmac, "k", &[9; 16]);
        let mut s = server(AuthScheme::Hmac);
        let events = run(&mut c, &mut s, &dir, &mut device_tree(), Encoding::Wbxml).unwrap();
        assert!(matches!(events[0], ServerEvent::Authenticated { .. }));
        // A tampered body fails.
        let mut c = client(AuthScheme::Hmac, "k", &[9; 16]);
        let m = c.start().unwrap();
        let body = codec::encode(&m, Encoding::Xml).unwrap();
        let mac = c.transport_mac(&body).unwrap().unwrap();
        let step = server(AuthScheme::Hmac)
            .receive(
                &m,
                &dir,
                Some((&mac, b"tampered")),
                Nonce::from_bytes(vec![3; 16]),
            )
            .unwrap();
        assert_eq!(step.reply.header_status().unwrap().code, 401);
    }

    #[test]
    fn server_commands_run_against_the_tree() {
        let dir = Dir {
            password: "pw".into(),
            ..Dir::default()
        };
        let mut c = client(AuthScheme::Basic, "pw", b"");
        let mut s = server(AuthScheme::Basic);
        s.queue(Command::get("./DevInfo/Mod"), Some("get-mod".into()));
        s.queue(Command::get("./DevInfo/Nope"), Some("get-missing".into()));
        s.queue(
            Command::Add(ItemCmd {
                items: vec![Item::target("./Ext/Note").with_data("hello")],
                ..ItemCmd::default()
            }),
            Some("add".into()),
        );
        s.queue(
            Command::Atomic(Container {
                commands: vec![
                    Command::replace_chr("./DevInfo/Man", "Evil"),
                    Command::Delete(ItemCmd {
                        items: vec![Item::target("./Missing")],
                        ..ItemCmd::default()
                    }),
                ],
                ..Container::default()
            }),
            Some("atomic".into()),
        );
        let mut tree = device_tree();
        let events = run(&mut c, &mut s, &dir, &mut tree, Encoding::Xml).unwrap();
        let status = |tag: &str| {
            events
                .iter()
                .find_map(|e| match e {
                    ServerEvent::Status {
                        tag: Some(t), code, ..
                    } if t == tag => Some(*code),
                    _ => None,
                })
                .unwrap()
        };
        assert_eq!(status("get-mod"), 200);
        assert_eq!(status("get-missing"), 404);
        assert_eq!(status("add"), 200);
        assert_eq!(status("atomic"), 507);
        let results = events
            .iter()
            .find_map(|e| match e {
                ServerEvent::Results { results, tag } if tag.as_deref() == Some("get-mod") => {
                    Some(results.clone())
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(
            results.items[0]
                .data
                .as_ref()
                .and_then(Data::as_text)
                .as_deref(),
            Some("Thermo 3")
        );
        // The Atomic rolled back: the Replace before the failing Delete left no trace.
        let man = tree
            .get(&DmUri::try_from("./DevInfo/Man").unwrap())
            .unwrap();
        assert_eq!(man.value, b"Acme");
        assert!(tree.exists(&DmUri::try_from("./Ext/Note").unwrap()));
    }

    #[test]
    fn messages_of_another_session_or_without_session_alert_are_refused() {
        let dir = Dir::default();
        let mut s = server(AuthScheme::Basic);
        let mut m = SyncMl::new(SyncHdr::new("9", 1, Location::new(SRV), Location::new(DEV)));
        m.push(Command::get("./X"));
        assert_eq!(
            s.receive(&m, &dir, None, Nonce::from_bytes(vec![0; 16])),
            Err(SessionError::NoSessionAlert)
        );
        let mut c = client(AuthScheme::Basic, "pw", b"");
        c.start().unwrap();
        let other = SyncMl::new(SyncHdr::new(
            "other",
            1,
            Location::new(DEV),
            Location::new(SRV),
        ));
        assert!(matches!(
            c.receive(&other, &mut device_tree()),
            Err(SessionError::WrongSession { .. })
        ));
    }
}
