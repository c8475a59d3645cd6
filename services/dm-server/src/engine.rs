//! The DM Server without HTTP: decodes a request body, finds or opens its session, runs `omadm`'s
//! `ServerSession`, records alerts, nonces, sessions and command outcomes, and encodes the reply.
//!
//! Everything is behind one mutex: a message is processed (CPU only, microseconds) and its journal lines
//! flushed while holding it, so requests of one session, and the store, stay consistent. The HTTP layer
//! calls [`Engine::handle`] on the blocking pool.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use omadm::alert::{self, GenericAlerts};
use omadm::auth::{AuthScheme, Nonce};
use omadm::codec::{self, Encoding};
use omadm::element::Limits;
use omadm::model::{Alert, Command, Data, Item, ItemCmd, Meta, SyncMl, alert_code};
use omadm::session::{ServerConfig, ServerEvent, ServerSession, ServerState};
use omadm::uri::DmUri;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::Span;

use crate::accounts::{Accounts, Directory};
use crate::error::{DmReplyTo, ServiceError, StoreError};
use crate::observe;
use crate::sessions::SessionTable;
use crate::store::{
    AlertOutcome, AlertQuery, AlertRecord, AuthOutcome, CommandKind, CommandRecord, CommandState,
    Page, ResultItem, SessionEnd, SessionRecord, Store,
};

/// Client messages accepted in one session before it is ended as an error.
pub const MAX_MESSAGES_PER_SESSION: u32 = 100;

/// What the engine runs with.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This server's ServerID.
    pub server_id: String,
    /// The public URL of the DM endpoint (SyncHdr Source, RespURI base).
    pub server_uri: String,
    /// The scheme clients authenticate with.
    pub scheme: AuthScheme,
    /// Status answering a Generic Alert (200 or 202).
    pub accept_status: u16,
    /// Decoder limits.
    pub limits: Limits,
    /// Body size limit of the DM endpoint, in bytes.
    pub max_body: usize,
    /// Most sessions open at once.
    pub max_sessions: usize,
    /// Idle time after which a session is dropped.
    pub session_idle: Duration,
}

/// One DM request as the transport received it.
#[derive(Debug, Clone)]
pub struct DmRequest {
    /// The body.
    pub body: Vec<u8>,
    /// Its encoding (from the Content-Type).
    pub encoding: Encoding,
    /// The session token of the RespURI (`?s=`), if present.
    pub token: Option<String>,
    /// The `x-syncml-hmac` header, if present.
    pub hmac: Option<String>,
}

/// The answer to a DM request.
#[derive(Debug, Clone)]
pub struct DmReply {
    /// The encoded message.
    pub body: Vec<u8>,
    /// Its encoding (that of the request).
    pub encoding: Encoding,
}

/// `POST /api/v1/commands` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCommand {
    /// The client's DevId.
    pub dev_id: String,
    /// `get` or `replace`.
    pub command: CommandKind,
    /// Target URI (e.g. `./DevInfo/Mod`).
    pub uri: String,
    /// Value (Replace only).
    #[serde(default)]
    pub value: Option<String>,
    /// `Meta/Format` of a Replace (default `chr`).
    #[serde(default)]
    pub format: Option<String>,
}

/// Filters and page of `GET /api/v1/sessions` and `GET /api/v1/commands`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ListQuery {
    /// Client DevId.
    pub dev_id: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
    /// Records to skip.
    pub offset: Option<usize>,
}

/// `GET /healthz` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
    /// This server's ServerID.
    pub server_id: String,
    /// Sessions open.
    pub open_sessions: usize,
    /// Alerts recorded.
    pub alerts: usize,
}

struct Active {
    dm: ServerSession,
    record: SessionRecord,
}

struct Inner {
    store: Store,
    sessions: SessionTable<Active>,
}

/// The DM Server's state and logic.
pub struct Engine {
    cfg: EngineConfig,
    accounts: Accounts,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn data_text(d: &Data) -> (String, bool) {
    match d {
        Data::Text(t) => (t.clone(), false),
        Data::Binary(b) => match std::str::from_utf8(b) {
            Ok(s) => (s.to_owned(), false),
            Err(_) => (STANDARD.encode(b), true),
        },
        Data::Xml(e) => {
            let mut out = Vec::new();
            omadm::xml::encode_fragment(e, &mut out);
            (String::from_utf8_lossy(&out).into_owned(), false)
        }
    }
}

fn result_item(item: &Item) -> ResultItem {
    let meta = item.meta.as_ref();
    let (data, data_base64) = match item.data.as_ref().map(data_text) {
        Some((d, b)) => (Some(d), b),
        None => (None, false),
    };
    ResultItem {
        uri: item.source_uri().or(item.target_uri()).map(str::to_owned),
        format: meta.and_then(|m| m.format.clone()),
        mime_type: meta.and_then(|m| m.type_.clone()),
        data,
        data_base64,
    }
}

fn to_command(c: &CommandRecord) -> Command {
    match c.command {
        CommandKind::Get => Command::get(c.uri.clone()),
        CommandKind::Replace => Command::Replace(ItemCmd {
            items: vec![
                Item::target(c.uri.clone())
                    .with_meta(Meta::format(
                        c.format.clone().unwrap_or_else(|| "chr".into()),
                    ))
                    .with_data(c.value.clone().unwrap_or_default()),
            ],
            ..ItemCmd::default()
        }),
    }
}

/// Set the status the reply gives to command `cmd_ref` of message `msg_ref`.
fn set_status(reply: &mut SyncMl, msg_ref: u32, cmd_ref: u32, code: u16) {
    for c in &mut reply.body.commands {
        if let Command::Status(s) = c
            && s.msg_ref == msg_ref
            && s.cmd_ref == cmd_ref
        {
            s.code = code;
        }
    }
}

fn encoding_name(e: Encoding) -> &'static str {
    match e {
        Encoding::Xml => "xml",
        Encoding::Wbxml => "wbxml",
    }
}

/// The RespURI of a session: the public URL with the session token as query parameter `s`.
pub fn resp_uri(server_uri: &str, token: &str) -> String {
    let sep = if server_uri.contains('?') { '&' } else { '?' };
    format!("{server_uri}{sep}s={token}")
}

impl Engine {
    /// An engine over a loaded store.
    pub fn new(cfg: EngineConfig, accounts: Accounts, store: Store) -> Engine {
        let sessions = SessionTable::new(cfg.max_sessions, cfg.session_idle);
        Engine {
            cfg,
            accounts,
            inner: Mutex::new(Inner { store, sessions }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters
        // more than refusing every later request would; carry on with the data.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Process one DM message. `now` drives session expiry. Runs in a `dm session` span (a child of
    /// the current one) naming the client, the session, the answer and the authentication outcome,
    /// with one child span per command of the message.
    pub fn handle(&self, req: DmRequest, now: Instant) -> Result<DmReply, ServiceError> {
        let span = observe::message_span(&self.cfg.server_id, encoding_name(req.encoding));
        let _entered = span.enter();
        match self.handle_message(&span, req, now) {
            Ok((reply, status)) => {
                if let Some(code) = status {
                    span.record("dm.status", code);
                    observe::count_message(code);
                }
                Ok(reply)
            }
            Err(e) => {
                let code = e.dm_status();
                span.record("dm.status", code);
                observe::count_message(code);
                observe::fail(&span, &e.to_string());
                Err(e)
            }
        }
    }

    /// [`Engine::handle`] inside its span: the reply and its SyncHdr status code.
    fn handle_message(
        &self,
        span: &Span,
        req: DmRequest,
        now: Instant,
    ) -> Result<(DmReply, Option<u16>), ServiceError> {
        let wall = OffsetDateTime::now_utc();
        let mut reply_to = DmReplyTo {
            encoding: req.encoding,
            server_uri: self.cfg.server_uri.clone(),
            session_id: String::new(),
            msg_ref: 0,
            client: String::new(),
        };
        let mut msg = match codec::decode_as(&req.body, req.encoding, &self.cfg.limits) {
            Ok(m) => m,
            Err(e) => {
                return Err(ServiceError::MalformedMessage {
                    code: e.status_code(),
                    reason: e.to_string(),
                    reply_to: Box::new(reply_to),
                });
            }
        };
        reply_to.session_id = msg.hdr.session_id.clone();
        reply_to.msg_ref = msg.hdr.msg_id;
        reply_to.client = msg.hdr.source.loc_uri.clone();
        observe::record_header(span, &msg);
        let dev_id = msg.hdr.source.loc_uri.clone();
        let key = (msg.hdr.session_id.clone(), dev_id.clone());

        let mut guard = self.lock();
        let inner = &mut *guard;
        self.expire_locked(inner, now, wall)?;

        let (token, created) = match inner.sessions.find(req.token.as_deref(), &key) {
            Some(t) => (t, false),
            None => {
                let token = uuid::Uuid::new_v4().simple().to_string();
                let mut scfg = ServerConfig::new(self.cfg.server_uri.clone(), self.cfg.scheme);
                scfg.resp_uri = Some(resp_uri(&self.cfg.server_uri, &token));
                let record = SessionRecord {
                    id: token.clone(),
                    session_id: key.0.clone(),
                    dev_id: dev_id.clone(),
                    account: None,
                    auth: AuthOutcome::Pending,
                    started_at: wall,
                    ended_at: None,
                    messages: 0,
                    encoding: encoding_name(req.encoding).to_owned(),
                    final_status: None,
                    last_code: None,
                    alerts_recorded: 0,
                    alerts_duplicate: 0,
                };
                let active = Active {
                    dm: ServerSession::new(scfg),
                    record,
                };
                match inner
                    .sessions
                    .insert(token.clone(), key.clone(), active, now)
                {
                    Ok(_) => {
                        tracing::info!(session = %token, dev_id = %dev_id, session_id = %key.0, "session opened");
                    }
                    Err(full) => {
                        return Err(ServiceError::TooManySessions {
                            limit: full.limit,
                            reply_to: Box::new(reply_to),
                        });
                    }
                }
                (token, true)
            }
        };

        let result = self.process(span, inner, &token, &mut msg, &req, now, wall);
        let outcome = match result {
            Ok(step) => step,
            Err(SessionFailure { code, reason, end }) => {
                if created {
                    // A first message that opens nothing leaves no trace.
                    inner.sessions.remove(&token);
                    inner.store.release_session(&token, wall)?;
                } else if end && let Some(a) = inner.sessions.remove(&token) {
                    self.finalize(inner, a, SessionEnd::Error, wall)?;
                }
                inner.store.flush()?;
                return Err(ServiceError::Session {
                    code,
                    reason,
                    reply_to: Box::new(reply_to),
                });
            }
        };
        let Processed {
            reply,
            ends,
            end,
            status,
        } = outcome;
        if ends && let Some(a) = inner.sessions.remove(&token) {
            span.record("session.end", end.as_str());
            if matches!(end, SessionEnd::AuthFailed | SessionEnd::Error) {
                observe::fail(span, end.as_str());
            }
            self.finalize(inner, a, end, wall)?;
        }
        inner.store.flush()?;
        drop(guard);
        let body = codec::encode(&reply, req.encoding)
            .map_err(|source| ServiceError::Encode { source })?;
        Ok((
            DmReply {
                body,
                encoding: req.encoding,
            },
            status,
        ))
    }

    #[allow(clippy::too_many_arguments)] // one caller; the span joins the message's parts
    fn process(
        &self,
        span: &Span,
        inner: &mut Inner,
        token: &str,
        msg: &mut SyncMl,
        req: &DmRequest,
        now: Instant,
        wall: OffsetDateTime,
    ) -> Result<Processed, SessionFailure> {
        let dev_id = msg.hdr.source.loc_uri.clone();
        let Some(active) = inner.sessions.touch(token, now) else {
            return Err(SessionFailure {
                code: 404,
                reason: "session vanished".into(),
                end: false,
            });
        };
        active.record.messages = active.record.messages.saturating_add(1);
        span.record("session.messages", active.record.messages);
        if active.record.messages > MAX_MESSAGES_PER_SESSION {
            return Err(SessionFailure {
                code: 400,
                reason: format!("more than {MAX_MESSAGES_PER_SESSION} messages in one session"),
                end: true,
            });
        }
        // Commands an operator queued for this client go into this session (sent once authenticated).
        if active.dm.state() != ServerState::Ended {
            let cmds = inner
                .store
                .assign_pending(&dev_id, token)
                .map_err(SessionFailure::store)?;
            for c in cmds {
                active.dm.queue(to_command(&c), Some(c.id.clone()));
            }
        }
        let mut hmac = req.hmac.as_deref();
        if active.dm.state() == ServerState::AwaitingPackage1
            && self.cfg.scheme != AuthScheme::Basic
            && inner.store.nonce(&dev_id).is_none()
        {
            // A digest over a nonce this server never issued cannot be right: treat it as no
            // credentials, so the client gets 407 with a NextNonce (first contact), not 401.
            msg.hdr.cred = None;
            hmac = None;
        }
        let nonce = Nonce::generate().map_err(|e| SessionFailure {
            code: 500,
            reason: e.to_string(),
            end: false,
        })?;
        let dir = Directory {
            accounts: &self.accounts,
            nonces: inner.store.nonces(),
        };
        let commands = observe::command_spans(msg);
        let step = active
            .dm
            .receive(msg, &dir, hmac.map(|h| (h, req.body.as_slice())), nonce)
            .map_err(|e| SessionFailure {
                code: e.status_code(),
                reason: e.to_string(),
                end: matches!(e, omadm::session::SessionError::Ended),
            })?;
        let mut reply = step.reply;
        active.record.last_code = reply.header_status().map(|s| s.code);
        let mut aborted = false;
        let mut auth_refused = false;
        let mut refused_with = None;
        for event in step.events {
            match event {
                ServerEvent::Authenticated { name, .. } => {
                    tracing::info!(session = %token, dev_id = %dev_id, account = %name, "client authenticated");
                    active.record.auth = AuthOutcome::Authenticated;
                    active.record.account = Some(name);
                }
                ServerEvent::AuthFailed { code, .. } => {
                    tracing::info!(session = %token, dev_id = %dev_id, code, "client authentication refused");
                    auth_refused = true;
                    refused_with = Some(code);
                    // 407 asks for credentials (first contact); 401 refused the ones given.
                    if code != omadm::model::status_code::MISSING_CREDENTIALS {
                        active.record.auth = AuthOutcome::Failed;
                    }
                }
                ServerEvent::Alert(a) if a.code == alert_code::GENERIC => {
                    let command = commands
                        .iter()
                        .find(|(id, _)| *id == a.cmd_id)
                        .map_or_else(Span::none, |(_, s)| s.clone());
                    let code = command
                        .in_scope(|| {
                            record_generic(
                                &mut inner.store,
                                &mut active.record,
                                &a,
                                &msg.hdr.session_id,
                                self.cfg.accept_status,
                                wall,
                            )
                        })
                        .map_err(SessionFailure::store)?;
                    if !a.no_resp {
                        set_status(&mut reply, msg.hdr.msg_id, a.cmd_id, code);
                    }
                }
                ServerEvent::Alert(a) if a.code == alert_code::SESSION_ABORT => aborted = true,
                ServerEvent::Status {
                    tag: Some(id),
                    code,
                    ..
                } => {
                    tracing::info!(session = %token, command = %id, code, "command answered");
                    inner
                        .store
                        .command_status(&id, code, wall)
                        .map_err(SessionFailure::store)?;
                }
                ServerEvent::Results {
                    results,
                    tag: Some(id),
                } => {
                    let items = results.items.iter().map(result_item).collect();
                    inner
                        .store
                        .command_results(&id, items)
                        .map_err(SessionFailure::store)?;
                }
                ServerEvent::Reported { .. }
                | ServerEvent::Alert(_)
                | ServerEvent::Status { .. }
                | ServerEvent::Results { .. } => {}
            }
        }
        if let Some(n) = step.issued_nonce {
            inner
                .store
                .set_nonce(&dev_id, n)
                .map_err(SessionFailure::store)?;
        }
        if active.dm.queued() == 0 {
            inner
                .store
                .mark_sent(token, wall)
                .map_err(SessionFailure::store)?;
        }
        if step.ends && auth_refused && active.record.auth == AuthOutcome::Pending {
            active.record.auth = AuthOutcome::Failed;
        }
        observe::record_statuses(&commands, &reply, msg.hdr.msg_id);
        if let Some(auth) = observe::auth_value(
            refused_with,
            active.record.auth == AuthOutcome::Authenticated,
        ) {
            span.record("auth", auth);
        }
        if let Some(account) = &active.record.account {
            span.record("account", observe::cut(account));
        }
        let end = if aborted {
            SessionEnd::Aborted
        } else if active.record.auth == AuthOutcome::Failed {
            SessionEnd::AuthFailed
        } else {
            SessionEnd::Completed
        };
        Ok(Processed {
            status: reply.header_status().map(|s| s.code),
            reply,
            ends: step.ends,
            end,
        })
    }

    fn finalize(
        &self,
        inner: &mut Inner,
        active: Active,
        end: SessionEnd,
        wall: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut record = active.record;
        record.ended_at = Some(wall);
        record.final_status = Some(end);
        tracing::info!(
            session = %record.id,
            dev_id = %record.dev_id,
            session_id = %record.session_id,
            messages = record.messages,
            end = ?end,
            alerts = record.alerts_recorded,
            duplicates = record.alerts_duplicate,
            "session ended"
        );
        let id = record.id.clone();
        inner.store.record_session(record)?;
        inner.store.release_session(&id, wall)
    }

    fn expire_locked(
        &self,
        inner: &mut Inner,
        now: Instant,
        wall: OffsetDateTime,
    ) -> Result<(), StoreError> {
        for a in inner.sessions.expire(now) {
            self.finalize(inner, a, SessionEnd::Expired, wall)?;
        }
        Ok(())
    }

    /// Drop sessions idle for longer than the timeout (called periodically).
    pub fn sweep(&self, now: Instant) -> Result<(), StoreError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.sessions.is_empty() {
            return Ok(());
        }
        self.expire_locked(inner, now, OffsetDateTime::now_utc())?;
        inner.store.flush()
    }

    /// Close every open session (as `shutdown`) and flush the data file.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let wall = OffsetDateTime::now_utc();
        for a in inner.sessions.drain() {
            self.finalize(inner, a, SessionEnd::Shutdown, wall)?;
        }
        inner.store.flush()
    }

    /// Queue a command for a client's next (or current) session.
    pub fn queue_command(&self, new: NewCommand) -> Result<CommandRecord, ServiceError> {
        let bad = |what: &str| ServiceError::BadRequest { what: what.into() };
        if new.dev_id.trim().is_empty() {
            return Err(bad("dev_id must not be empty"));
        }
        let uri = DmUri::try_from(new.uri.trim()).map_err(|e| ServiceError::BadRequest {
            what: format!("uri: {e}"),
        })?;
        match (new.command, &new.value) {
            (CommandKind::Get, Some(_)) => return Err(bad("a get takes no value")),
            (CommandKind::Get, None) if new.format.is_some() => {
                return Err(bad("a get takes no format"));
            }
            (CommandKind::Replace, None) => return Err(bad("a replace needs a value")),
            _ => {}
        }
        let record = CommandRecord {
            id: uuid::Uuid::new_v4().to_string(),
            dev_id: new.dev_id,
            command: new.command,
            uri: uri.as_str().to_owned(),
            value: new.value,
            format: new.format,
            state: CommandState::Pending,
            attempts: 0,
            session: None,
            status: None,
            results: Vec::new(),
            created_at: OffsetDateTime::now_utc(),
            sent_at: None,
            completed_at: None,
        };
        let mut guard = self.lock();
        guard.store.add_command(record.clone())?;
        guard.store.flush()?;
        tracing::info!(command = %record.id, dev_id = %record.dev_id, uri = %record.uri, kind = ?record.command, "command queued");
        Ok(record)
    }

    /// Commands, oldest first.
    pub fn commands(&self, q: &ListQuery) -> Page<CommandRecord> {
        let all = self.lock().store.commands(q.dev_id.as_deref());
        let refs = all.iter().collect();
        crate::store::page(refs, q.limit, q.offset)
    }

    /// Alerts matching the query.
    pub fn alerts(&self, q: &AlertQuery) -> Page<AlertRecord> {
        self.lock().store.alerts(q)
    }

    /// Sessions (finished, then open ones), oldest first.
    pub fn sessions(&self, q: &ListQuery) -> Page<SessionRecord> {
        let guard = self.lock();
        let mut all: Vec<&SessionRecord> = guard
            .store
            .sessions()
            .chain(guard.sessions.values().map(|a| &a.record))
            .filter(|s| q.dev_id.as_deref().is_none_or(|d| d == s.dev_id))
            .collect();
        all.sort_by_key(|s| s.started_at);
        crate::store::page(all, q.limit, q.offset)
    }

    /// Health summary.
    pub fn health(&self) -> Health {
        let guard = self.lock();
        Health {
            status: "ok",
            server_id: self.cfg.server_id.clone(),
            open_sessions: guard.sessions.len(),
            alerts: guard.store.alerts(&AlertQuery::default()).total,
        }
    }
}

struct Processed {
    reply: SyncMl,
    ends: bool,
    end: SessionEnd,
    /// The code of the reply's SyncHdr Status.
    status: Option<u16>,
}

/// A message the session refused; `end` closes the session.
struct SessionFailure {
    code: u16,
    reason: String,
    end: bool,
}

impl SessionFailure {
    fn store(e: StoreError) -> SessionFailure {
        tracing::error!(error = %e, "data file write failed");
        SessionFailure {
            code: 500,
            reason: "cannot record".into(),
            end: false,
        }
    }
}

/// Record one Generic Alert command; returns the status to answer it with.
fn record_generic(
    store: &mut Store,
    record: &mut SessionRecord,
    a: &Alert,
    session_id: &str,
    accept_status: u16,
    wall: OffsetDateTime,
) -> Result<u16, StoreError> {
    let GenericAlerts { correlator, alerts } = match alert::parse(a) {
        Ok(g) => g,
        Err(e) => {
            tracing::info!(session = %record.id, error = %e, "generic alert refused");
            let types = observe::alert_types(a);
            observe::count_alert(types.split(',').next().unwrap_or_default(), "refused");
            return Ok(e.status_code());
        }
    };
    let records = alerts
        .into_iter()
        .map(|g| {
            let (data, data_base64) = match g.data.as_ref().map(data_text) {
                Some((d, b)) => (Some(d), b),
                None => (None, false),
            };
            AlertRecord {
                id: 0,
                alert_type: g.alert_type,
                source: g.source,
                target: g.target,
                format: g.format,
                mark: g.mark,
                data,
                data_base64,
                correlator: correlator.clone(),
                dev_id: record.dev_id.clone(),
                account: record.account.clone(),
                session_id: session_id.to_owned(),
                session: record.id.clone(),
                received_at: wall,
            }
        })
        .collect::<Vec<_>>();
    let types: Vec<String> = records.iter().map(|r| r.alert_type.clone()).collect();
    match store.record_alerts(&record.dev_id, correlator.as_deref(), records)? {
        AlertOutcome::Recorded(n) => {
            for t in &types {
                observe::count_alert(t, "recorded");
            }
            record.alerts_recorded = record
                .alerts_recorded
                .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            tracing::info!(session = %record.id, dev_id = %record.dev_id, correlator = ?correlator, types = ?types, "generic alert recorded");
        }
        AlertOutcome::Duplicate => {
            for t in &types {
                observe::count_alert(t, "duplicate");
            }
            record.alerts_duplicate = record.alerts_duplicate.saturating_add(1);
            tracing::info!(session = %record.id, dev_id = %record.dev_id, correlator = ?correlator, "generic alert repeated: answered, not recorded");
        }
    }
    Ok(accept_status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_uri_appends_the_token() {
        assert_eq!(resp_uri("http://h/dm", "t"), "http://h/dm?s=t");
        assert_eq!(resp_uri("http://h/dm?x=1", "t"), "http://h/dm?x=1&s=t");
    }

    #[test]
    fn commands_are_checked() {
        let cfg = EngineConfig {
            server_id: "s".into(),
            server_uri: "http://h/dm".into(),
            scheme: AuthScheme::Md5,
            accept_status: 200,
            limits: Limits::default(),
            max_body: 1 << 20,
            max_sessions: 4,
            session_idle: Duration::from_secs(60),
        };
        let e = Engine::new(
            cfg,
            Accounts::new("s", Vec::new(), None),
            Store::in_memory("s"),
        );
        let get = |uri: &str, value: Option<&str>, kind| NewCommand {
            dev_id: "d".into(),
            command: kind,
            uri: uri.into(),
            value: value.map(str::to_owned),
            format: None,
        };
        assert!(
            e.queue_command(get("./DevInfo/Mod", None, CommandKind::Get))
                .is_ok()
        );
        assert!(
            e.queue_command(get("./a/../b", None, CommandKind::Get))
                .is_err()
        );
        assert!(
            e.queue_command(get("./X", Some("v"), CommandKind::Get))
                .is_err()
        );
        assert!(
            e.queue_command(get("./X", None, CommandKind::Replace))
                .is_err()
        );
        assert_eq!(e.commands(&ListQuery::default()).total, 1);
    }

    #[test]
    fn generic_alert_status_is_rewritten() {
        let mut store = Store::in_memory("s");
        let mut rec = SessionRecord {
            id: "t".into(),
            session_id: "1".into(),
            dev_id: "d".into(),
            account: None,
            auth: AuthOutcome::Authenticated,
            started_at: OffsetDateTime::UNIX_EPOCH,
            ended_at: None,
            messages: 1,
            encoding: "xml".into(),
            final_status: None,
            last_code: None,
            alerts_recorded: 0,
            alerts_duplicate: 0,
        };
        let Command::Alert(a) = alert::build(
            Some("c"),
            &[alert::GenericAlert::new(alert::DEVICE_ATTACHED)],
        ) else {
            panic!()
        };
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(
            record_generic(&mut store, &mut rec, &a, "1", 202, now).unwrap(),
            202
        );
        assert_eq!(
            record_generic(&mut store, &mut rec, &a, "1", 202, now).unwrap(),
            202
        );
        assert_eq!((rec.alerts_recorded, rec.alerts_duplicate), (1, 1));
        let empty = Alert {
            code: 1226,
            ..Alert::default()
        };
        assert_eq!(
            record_generic(&mut store, &mut rec, &empty, "1", 200, now).unwrap(),
            412
        );
    }
}
