//! The bootstrap server without HTTP: authenticates gateways and issues workflow-1 bootstraps, runs the
//! End Devices' DM sessions (`omadm::session::ServerSession`), turns AssociatedGateway alerts into push
//! jobs (workflow 2), and keeps the records the API shows.
//!
//! State sits behind one mutex; a DM message is processed (CPU only) while holding it. The HTTP layer
//! calls [`Engine::handle`] on the blocking pool and hands the returned [`PushJob`]s to the pusher.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dm_server::accounts::Accounts;
use dm_server::engine::{DmReply, DmRequest, resp_uri};
use dm_server::error::DmReplyTo;
use dm_server::sessions::SessionTable;
use omadm::alert::{self, ASSOCIATED_GATEWAY, GenericAlert};
use omadm::auth::{AuthScheme, FORMAT_B64, META_TYPE_BASIC, Nonce, basic_credential};
use omadm::codec::{self, Encoding};
use omadm::element::Limits;
use omadm::model::{Command, Cred, Meta, SyncMl, alert_code, status_code};
use omadm::secret::Secret;
use omadm::session::{ClientDirectory, ServerConfig, ServerEvent, ServerSession, ServerState};
use serde::Serialize;
use time::OffsetDateTime;
use tracing::Span;
use url::Url;

use crate::assoc;
use crate::config::{DeviceAuth, PushSettings};
use crate::error::{ServiceError, truncate};
use crate::issue;
use crate::observe;
use crate::profiles::{Profiles, TrustedGateway, check_push_url};
use crate::records::{
    AssociationOutcome, AssociationRecord, BootstrapRecord, ClientAuth, Delivery, DeliveryState,
    ListQuery, Page, Records,
};

/// Client messages accepted in one device session before it is ended as an error.
pub const MAX_MESSAGES_PER_SESSION: u32 = 50;
/// Devices whose last nonce is remembered (md5); beyond this an arbitrary one is forgotten.
pub const MAX_NONCES: usize = 100_000;
/// The account name of the stand-in credentials with `--device-auth none`.
const ANONYMOUS: &str = "anonymous";

/// What the engine runs with.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This server's public base URL (bootstrap SyncHdr Source).
    pub public_url: String,
    /// The public URL of the DM endpoint (SyncHdr Source of DM replies, RespURI base).
    pub dm_uri: String,
    /// How devices authenticate.
    pub device_auth: DeviceAuth,
    /// Decoder limits.
    pub limits: Limits,
    /// Body size limit of the DM endpoint, in bytes.
    pub max_body: usize,
    /// Most sessions open at once.
    pub max_sessions: usize,
    /// Idle time after which a session is dropped.
    pub session_idle: Duration,
    /// Records kept of each kind.
    pub history: usize,
    /// How bootstraps are pushed.
    pub push: PushSettings,
}

/// A bootstrap to push to a gateway: the exact body and its signed Content-Type.
#[derive(Clone)]
pub struct PushJob {
    /// The bootstrap record it delivers.
    pub record_id: u64,
    /// The gateway's push endpoint.
    pub url: Url,
    /// The encoded bootstrap message.
    pub body: Vec<u8>,
    /// `<mime>; SEC=...; MAC=...`.
    pub content_type: String,
    /// The ServerID of the DM Server the bootstrap is for.
    pub server_id: String,
    /// The gateway it goes to.
    pub gateway_id: String,
    /// The W3C `traceparent` of the span that decided the push (its association), so the delivery
    /// continues that trace.
    pub traceparent: Option<String>,
}

impl std::fmt::Debug for PushJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body holds the gateway's password: never print it.
        f.debug_struct("PushJob")
            .field("record_id", &self.record_id)
            .field("url", &observe::shown_url(&self.url))
            .field("server_id", &self.server_id)
            .field("gateway_id", &self.gateway_id)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// How one push attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The gateway answered 2xx.
    Delivered {
        /// The HTTP status.
        status: u16,
    },
    /// Failed; another attempt follows at `next_at`.
    Retry {
        /// The HTTP status, when the gateway answered.
        status: Option<u16>,
        /// Why.
        error: String,
        /// When the next attempt is due.
        next_at: OffsetDateTime,
    },
    /// Failed for good.
    GaveUp {
        /// The HTTP status, when the gateway answered.
        status: Option<u16>,
        /// Why.
        error: String,
    },
}

/// `GET /healthz` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
    /// DM Server profiles loaded.
    pub profiles: usize,
    /// Trusted gateways.
    pub gateways: usize,
    /// Device DM sessions open.
    pub open_sessions: usize,
    /// Bootstrap records kept.
    pub bootstraps: usize,
    /// Association records kept.
    pub associations: usize,
    /// Pushes queued or retrying.
    pub pending_pushes: usize,
}

struct Active {
    dm: ServerSession,
    dev_id: String,
    messages: u32,
}

struct Inner {
    sessions: SessionTable<Active>,
    nonces: HashMap<String, Vec<u8>>,
    records: Records,
}

/// The bootstrap server's state and logic.
pub struct Engine {
    cfg: EngineConfig,
    profiles: Profiles,
    devices: Accounts,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// What a device session's server sees: the device accounts (or anyone, with `none`) and nonces.
struct DeviceDirectory<'a> {
    mode: DeviceAuth,
    accounts: &'a Accounts,
    nonces: &'a HashMap<String, Vec<u8>>,
    anonymous: &'a Secret,
}

impl ClientDirectory for DeviceDirectory<'_> {
    fn password(&self, dev_id: &str, name: &str) -> Option<Secret> {
        match self.mode {
            DeviceAuth::None => (name == ANONYMOUS).then(|| self.anonymous.clone()),
            DeviceAuth::Basic | DeviceAuth::Md5 => self.accounts.password(dev_id, name),
        }
    }

    fn nonce(&self, dev_id: &str) -> Option<Vec<u8>> {
        self.nonces.get(dev_id).cloned()
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

/// Who sent an alert.
struct Sender<'a> {
    dev_id: &'a str,
    account: Option<&'a str>,
    session_id: &'a str,
    correlator: Option<&'a str>,
}

/// The text of an AssociatedGateway item's Data: chr text (binary when valid UTF-8), or base64 text
/// when `Meta/Format` is `b64`.
fn association_text(item: &GenericAlert) -> Result<String, &'static str> {
    let data = item.data.as_ref().ok_or("the alert carries no Data")?;
    let text = data
        .as_text()
        .ok_or("Data must be text (Format chr), not markup")?;
    if item
        .format
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case(FORMAT_B64))
    {
        let compact: String = text.split_ascii_whitespace().collect();
        let bytes = STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| "Data is not valid base64 (Format b64)")?;
        return String::from_utf8(bytes).map_err(|_| "Data is not UTF-8 text");
    }
    Ok(text.into_owned())
}

impl Engine {
    /// An engine over loaded profiles.
    pub fn new(cfg: EngineConfig, profiles: Profiles) -> Engine {
        let devices = Accounts::new("bootstrap", profiles.devices.clone(), None);
        let inner = Inner {
            sessions: SessionTable::new(cfg.max_sessions, cfg.session_idle),
            nonces: HashMap::new(),
            records: Records::new(cfg.history),
        };
        Engine {
            cfg,
            profiles,
            devices,
            inner: Mutex::new(inner),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The profiles.
    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The records stay usable after a panic elsewhere; refusing every later request would be worse.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    // ---------------------------------------------------------------------------------------------
    // Workflow 1

    /// Authenticate a gateway by its client certificate's fingerprint, else by HTTP Basic credentials
    /// (the value of the `Authorization` header).
    pub fn authenticate_gateway(
        &self,
        certificate: Option<&[u8; 32]>,
        authorization: Option<&str>,
    ) -> Result<(&TrustedGateway, ClientAuth), ServiceError> {
        if let Some(fp) = certificate
            && let Some(gw) = self.profiles.gateway_by_fingerprint(fp)
        {
            return Ok((gw, ClientAuth::Certificate));
        }
        let Some(value) = authorization else {
            return Err(ServiceError::Unauthorized {
                reason: if certificate.is_some() {
                    "the client certificate is not trusted and no Basic credentials were given"
                } else {
                    "no client certificate and no Basic credentials"
                },
            });
        };
        let wrong = ServiceError::Unauthorized {
            reason: "wrong credentials",
        };
        let (scheme, token) = value
            .trim()
            .split_once(' ')
            .ok_or(ServiceError::Unauthorized {
                reason: "malformed Authorization header",
            })?;
        if !scheme.eq_ignore_ascii_case("basic") || token.len() > 1024 {
            return Err(ServiceError::Unauthorized {
                reason: "only Basic credentials are accepted",
            });
        }
        let decoded = STANDARD
            .decode(token.trim().as_bytes())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(ServiceError::Unauthorized {
                reason: "malformed Basic credentials",
            })?;
        let (user, password) = decoded.split_once(':').ok_or(ServiceError::Unauthorized {
            reason: "malformed Basic credentials",
        })?;
        let given = Secret::new(password);
        match self.profiles.gateway_by_username(user) {
            // `Secret` compares in constant time.
            Some(gw) if gw.basic.as_ref().is_some_and(|b| b.password == given) => {
                Ok((gw, ClientAuth::Basic))
            }
            _ => Err(wrong),
        }
    }

    /// Issue a workflow-1 bootstrap of `server_id` to an authenticated gateway: the encoded message.
    pub fn issue_workflow1(
        &self,
        gateway: &TrustedGateway,
        server_id: &str,
        encoding: Encoding,
        client_auth: ClientAuth,
    ) -> Result<Vec<u8>, ServiceError> {
        let profile = self
            .profiles
            .server(server_id)
            .filter(|_| gateway.may_receive(server_id))
            .ok_or_else(|| ServiceError::UnknownServer {
                server_id: truncate(server_id, 100),
            })?;
        let body =
            issue::bootstrap_message(profile, &gateway.gateway_id, &self.cfg.public_url, encoding)?;
        let id = self.lock().records.add_bootstrap(BootstrapRecord {
            id: 0,
            issued_at: OffsetDateTime::now_utc(),
            workflow: 1,
            gateway_id: gateway.gateway_id.clone(),
            server_id: profile.server_id.clone(),
            encoding: encoding_name(encoding).to_owned(),
            client_auth: Some(client_auth),
            association: None,
            delivery: None,
        });
        tracing::info!(
            bootstrap = id,
            workflow = 1,
            gateway_id = %gateway.gateway_id,
            server_id = %profile.server_id,
            client_auth = ?client_auth,
            encoding = encoding_name(encoding),
            "bootstrap issued"
        );
        Ok(body)
    }

    // ---------------------------------------------------------------------------------------------
    // Workflow 2: device DM sessions

    /// Process one DM message of an End Device; returns the reply and the pushes to start. Runs in a
    /// `bootstrap request` span (child of the current one) with one child span per command; each
    /// AssociatedGateway item gets an `association` span, which the pushes it starts continue.
    pub fn handle(
        &self,
        req: DmRequest,
        now: Instant,
    ) -> Result<(DmReply, Vec<PushJob>), ServiceError> {
        let span = observe::request_span(encoding_name(req.encoding));
        let _entered = span.enter();
        match self.handle_message(&span, req, now) {
            Ok((reply, jobs, status)) => {
                if let Some(code) = status {
                    span.record("dm.status", code);
                }
                span.record("pushes", jobs.len());
                Ok((reply, jobs))
            }
            Err(e) => {
                span.record("dm.status", e.dm_status());
                observe::fail(&span, &e.to_string());
                Err(e)
            }
        }
    }

    /// [`Engine::handle`] inside its span; also returns the reply's SyncHdr status code.
    fn handle_message(
        &self,
        span: &Span,
        req: DmRequest,
        now: Instant,
    ) -> Result<(DmReply, Vec<PushJob>, Option<u16>), ServiceError> {
        let mut reply_to = DmReplyTo {
            encoding: req.encoding,
            server_uri: self.cfg.dm_uri.clone(),
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
        dm_server::observe::record_header(span, &msg);
        let dev_id = msg.hdr.source.loc_uri.clone();
        let key = (msg.hdr.session_id.clone(), dev_id.clone());
        let nonce = Nonce::generate().map_err(|source| ServiceError::Nonce { source })?;
        let anonymous = Secret::new(nonce.to_b64());

        let mut guard = self.lock();
        let inner = &mut *guard;
        for a in inner.sessions.expire(now) {
            tracing::info!(dev_id = %a.dev_id, "device session expired");
        }
        let (token, created) = match inner.sessions.find(req.token.as_deref(), &key) {
            Some(t) => (t, false),
            None => {
                let token = uuid::Uuid::new_v4().simple().to_string();
                let scheme = match self.cfg.device_auth {
                    DeviceAuth::None | DeviceAuth::Basic => AuthScheme::Basic,
                    DeviceAuth::Md5 => AuthScheme::Md5,
                };
                let mut scfg = ServerConfig::new(self.cfg.dm_uri.clone(), scheme);
                scfg.resp_uri = Some(resp_uri(&self.cfg.dm_uri, &token));
                let active = Active {
                    dm: ServerSession::new(scfg),
                    dev_id: dev_id.clone(),
                    messages: 0,
                };
                if let Err(full) = inner
                    .sessions
                    .insert(token.clone(), key.clone(), active, now)
                {
                    return Err(ServiceError::TooManySessions {
                        limit: full.limit,
                        reply_to: Box::new(reply_to),
                    });
                }
                tracing::info!(session = %token, dev_id = %dev_id, session_id = %key.0, "device session opened");
                (token, true)
            }
        };

        let Some(active) = inner.sessions.touch(&token, now) else {
            return Err(ServiceError::Session {
                code: status_code::NOT_FOUND,
                reason: "session vanished".into(),
                reply_to: Box::new(reply_to),
            });
        };
        active.messages = active.messages.saturating_add(1);
        let fail = |code: u16, reason: String, reply_to: DmReplyTo| ServiceError::Session {
            code,
            reason,
            reply_to: Box::new(reply_to),
        };
        if active.messages > MAX_MESSAGES_PER_SESSION {
            inner.sessions.remove(&token);
            return Err(fail(
                status_code::BAD_REQUEST,
                format!("more than {MAX_MESSAGES_PER_SESSION} messages in one session"),
                reply_to,
            ));
        }
        if active.dm.state() == ServerState::AwaitingPackage1 {
            match self.cfg.device_auth {
                // Any device: stand-in credentials that only this message can carry.
                DeviceAuth::None => {
                    msg.hdr.cred = Some(Cred {
                        meta: Meta {
                            type_: Some(META_TYPE_BASIC.to_owned()),
                            format: Some(FORMAT_B64.to_owned()),
                            ..Meta::default()
                        },
                        data: basic_credential(ANONYMOUS, &anonymous).expose().to_owned(),
                    });
                }
                // A digest over a nonce this server never issued cannot be right: ask for credentials.
                DeviceAuth::Md5 if !inner.nonces.contains_key(&dev_id) => msg.hdr.cred = None,
                DeviceAuth::Md5 | DeviceAuth::Basic => {}
            }
        }
        let dir = DeviceDirectory {
            mode: self.cfg.device_auth,
            accounts: &self.devices,
            nonces: &inner.nonces,
            anonymous: &anonymous,
        };
        let commands = dm_server::observe::command_spans(&msg);
        let step = match active.dm.receive(&msg, &dir, None, nonce) {
            Ok(step) => step,
            Err(e) => {
                let ended = matches!(e, omadm::session::SessionError::Ended);
                if created || ended {
                    inner.sessions.remove(&token);
                }
                return Err(fail(e.status_code(), e.to_string(), reply_to));
            }
        };
        let mut reply = step.reply;
        let mut account: Option<String> = active.dm.account_name().map(str::to_owned);
        if self.cfg.device_auth == DeviceAuth::None {
            account = None;
        }
        let mut alerts = Vec::new();
        let mut refused_with = None;
        for event in step.events {
            match event {
                ServerEvent::Authenticated { .. } => {
                    tracing::info!(session = %token, dev_id = %dev_id, account = ?account, "device authenticated");
                }
                ServerEvent::AuthFailed { code, .. } => {
                    tracing::info!(session = %token, dev_id = %dev_id, code, "device authentication refused");
                    refused_with = Some(code);
                }
                ServerEvent::Alert(a) if a.code == alert_code::GENERIC => alerts.push(a),
                _ => {}
            }
        }
        if let Some(n) = step.issued_nonce {
            if inner.nonces.len() >= MAX_NONCES
                && !inner.nonces.contains_key(&dev_id)
                && let Some(k) = inner.nonces.keys().next().cloned()
            {
                inner.nonces.remove(&k);
            }
            inner.nonces.insert(dev_id.clone(), n);
        }
        let auth = if self.cfg.device_auth == DeviceAuth::None {
            Some("none")
        } else {
            dm_server::observe::auth_value(refused_with, active.dm.account_name().is_some())
        };
        if let Some(auth) = auth {
            span.record("auth", auth);
        }
        if step.ends {
            inner.sessions.remove(&token);
            tracing::info!(session = %token, dev_id = %dev_id, "device session ended");
        }

        let wall = OffsetDateTime::now_utc();
        let mut jobs = Vec::new();
        for a in alerts {
            let sender = Sender {
                dev_id: &dev_id,
                account: account.as_deref(),
                session_id: &msg.hdr.session_id,
                correlator: a.correlator.as_deref(),
            };
            let command = commands
                .iter()
                .find(|(id, _)| *id == a.cmd_id)
                .map_or_else(Span::none, |(_, s)| s.clone());
            let code = command
                .in_scope(|| self.generic_alert(&mut inner.records, &sender, &a, wall, &mut jobs));
            if !a.no_resp {
                set_status(&mut reply, msg.hdr.msg_id, a.cmd_id, code);
            }
        }
        drop(guard);
        dm_server::observe::record_statuses(&commands, &reply, msg.hdr.msg_id);
        let status = reply.header_status().map(|s| s.code);
        let body = codec::encode(&reply, req.encoding)
            .map_err(|source| ServiceError::Encode { source })?;
        Ok((
            DmReply {
                body,
                encoding: req.encoding,
            },
            jobs,
            status,
        ))
    }

    /// Handle one Generic Alert command; returns the status answering it.
    fn generic_alert(
        &self,
        records: &mut Records,
        sender: &Sender<'_>,
        a: &omadm::model::Alert,
        wall: OffsetDateTime,
        jobs: &mut Vec<PushJob>,
    ) -> u16 {
        let parsed = match alert::parse(a) {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(dev_id = %sender.dev_id, error = %e, "generic alert refused");
                return e.status_code();
            }
        };
        if !parsed
            .alerts
            .iter()
            .any(|g| alert::same_type(&g.alert_type, ASSOCIATED_GATEWAY))
        {
            // Other alert types are acknowledged and not acted on.
            tracing::info!(dev_id = %sender.dev_id, types = ?parsed.alerts.iter().map(|g| g.alert_type.as_str()).collect::<Vec<_>>(), "generic alert ignored");
            return status_code::OK;
        }
        if let Some(c) = sender.correlator
            && let Some(prev) = records.repeated_association(sender.dev_id, c)
        {
            tracing::info!(dev_id = %sender.dev_id, correlator = c, association = prev.id, "AssociatedGateway repeated: answered, not acted on again");
            observe::count_association("repeated");
            return prev.status;
        }
        let mut code = status_code::OK;
        for g in parsed
            .alerts
            .iter()
            .filter(|g| alert::same_type(&g.alert_type, ASSOCIATED_GATEWAY))
        {
            let c = self.association(records, sender, g, wall, jobs);
            if code == status_code::OK {
                code = c;
            }
        }
        code
    }

    /// Handle one AssociatedGateway item in its `association` span: check it, record it, and queue
    /// the pushes (which continue that span's trace). Returns the status.
    fn association(
        &self,
        records: &mut Records,
        sender: &Sender<'_>,
        item: &GenericAlert,
        wall: OffsetDateTime,
        jobs: &mut Vec<PushJob>,
    ) -> u16 {
        let span = observe::association_span(sender.dev_id);
        let _entered = span.enter();
        let (status, outcome) = self.associate(records, sender, item, wall, jobs, &span);
        span.record("dm.status", status);
        span.record("outcome", outcome.as_str());
        observe::count_association(outcome.as_str());
        if outcome != AssociationOutcome::Accepted {
            observe::fail(&span, outcome.as_str());
        }
        status
    }

    /// [`Engine::association`] inside its span: the status and the outcome.
    fn associate(
        &self,
        records: &mut Records,
        sender: &Sender<'_>,
        item: &GenericAlert,
        wall: OffsetDateTime,
        jobs: &mut Vec<PushJob>,
        span: &Span,
    ) -> (u16, AssociationOutcome) {
        let mut rec = AssociationRecord {
            id: 0,
            received_at: wall,
            dev_id: sender.dev_id.to_owned(),
            account: sender.account.map(str::to_owned),
            session_id: sender.session_id.to_owned(),
            correlator: sender.correlator.map(str::to_owned),
            gateway_id: None,
            gateway_address: None,
            server_ids: Vec::new(),
            unknown_server_ids: Vec::new(),
            status: status_code::OK,
            outcome: AssociationOutcome::Accepted,
            reason: None,
            bootstraps: Vec::new(),
        };
        let planned = self.plan_association(records, item, &mut rec);
        if let Some(g) = &rec.gateway_id {
            span.record("gateway_id", observe::cut(g));
        }
        if !rec.server_ids.is_empty() {
            span.record("server_ids", observe::cut(&rec.server_ids.join(",")));
        }
        let planned = match planned {
            Ok(p) => p,
            Err((status, outcome, reason)) => {
                rec.status = status;
                rec.outcome = outcome;
                rec.reason = Some(reason);
                let id = records.add_association(rec.clone());
                tracing::info!(
                    association = id,
                    dev_id = %rec.dev_id,
                    gateway_id = ?rec.gateway_id,
                    status,
                    outcome = ?outcome,
                    reason = ?rec.reason,
                    "AssociatedGateway refused"
                );
                return (status, outcome);
            }
        };
        let traceparent = telemetry::traceparent_of(span);
        let association_id = records.add_association(rec.clone());
        let mut ids = Vec::with_capacity(planned.len());
        for p in planned {
            match p {
                Planned::Existing(id) => ids.push(id),
                Planned::New {
                    server_id,
                    url,
                    body,
                    content_type,
                    sec,
                } => {
                    let id = records.add_bootstrap(BootstrapRecord {
                        id: 0,
                        issued_at: wall,
                        workflow: 2,
                        gateway_id: rec.gateway_id.clone().unwrap_or_default(),
                        server_id: server_id.clone(),
                        encoding: encoding_name(self.cfg.push.encoding).to_owned(),
                        client_auth: None,
                        association: Some(association_id),
                        delivery: Some(Delivery {
                            url: url.to_string(),
                            sec,
                            state: DeliveryState::Pending,
                            attempts: 0,
                            max_attempts: self.cfg.push.max_attempts,
                            last_http_status: None,
                            last_error: None,
                            next_attempt_at: None,
                            delivered_at: None,
                        }),
                    });
                    tracing::info!(
                        bootstrap = id,
                        workflow = 2,
                        gateway_id = ?rec.gateway_id,
                        server_id = %server_id,
                        url = %url,
                        "bootstrap issued, push queued"
                    );
                    jobs.push(PushJob {
                        record_id: id,
                        url,
                        body,
                        content_type,
                        server_id,
                        gateway_id: rec.gateway_id.clone().unwrap_or_default(),
                        traceparent: traceparent.clone(),
                    });
                    ids.push(id);
                }
            }
        }
        if let Some(r) = records.association_mut(association_id) {
            r.bootstraps = ids;
        }
        tracing::info!(
            association = association_id,
            dev_id = %rec.dev_id,
            gateway_id = ?rec.gateway_id,
            server_ids = ?rec.server_ids,
            unknown = ?rec.unknown_server_ids,
            "AssociatedGateway accepted"
        );
        (status_code::OK, AssociationOutcome::Accepted)
    }

    /// Check an AssociatedGateway item and build its bootstraps, filling `rec` with what it says.
    fn plan_association(
        &self,
        records: &Records,
        item: &GenericAlert,
        rec: &mut AssociationRecord,
    ) -> Result<Vec<Planned>, (u16, AssociationOutcome, String)> {
        let malformed = |code: u16, reason: String| (code, AssociationOutcome::Malformed, reason);
        let refused = |code: u16, reason: String| (code, AssociationOutcome::Refused, reason);
        let text =
            association_text(item).map_err(|r| malformed(status_code::BAD_REQUEST, r.into()))?;
        let a = assoc::parse(&text).map_err(|e| malformed(e.status_code(), e.to_string()))?;
        rec.gateway_id = Some(a.gateway_id.clone());
        rec.gateway_address = Some(a.gateway_address.clone());
        rec.server_ids = a.server_ids.clone();
        let forbidden = status_code::FORBIDDEN;
        let gw = self
            .profiles
            .gateway(&a.gateway_id)
            .ok_or_else(|| refused(forbidden, "the gateway is not trusted".into()))?;
        let key = gw.push.as_ref().ok_or_else(|| {
            refused(
                forbidden,
                "no push key (pin/imsi) is configured for the gateway".into(),
            )
        })?;
        let url = check_push_url(&a.gateway_address, self.cfg.push.allow_http)
            .map_err(|r| refused(forbidden, format!("GatewayAddress {r}")))?;
        let allowed = if gw.push_urls.is_empty() {
            self.cfg.push.any_address
        } else {
            gw.push_urls.contains(&url)
        };
        if !allowed {
            return Err(refused(
                forbidden,
                if gw.push_urls.is_empty() {
                    "the gateway has no push_urls and --push-any-address is off".into()
                } else {
                    "GatewayAddress is not one of the gateway's push_urls".into()
                },
            ));
        }
        let (known, unknown): (Vec<&String>, Vec<&String>) = a
            .server_ids
            .iter()
            .partition(|s| self.profiles.server(s).is_some() && gw.may_receive(s));
        rec.unknown_server_ids = unknown.into_iter().cloned().collect();
        if known.is_empty() {
            return Err(refused(
                status_code::NOT_FOUND,
                "no profile for any of the ServerIDs".into(),
            ));
        }
        let mut planned = Vec::with_capacity(known.len());
        for server_id in known {
            let Some(profile) = self.profiles.server(server_id) else {
                continue;
            };
            if let Some(id) = records.pending_push(&gw.gateway_id, server_id, url.as_str()) {
                planned.push(Planned::Existing(id));
                continue;
            }
            let failed = |e: crate::error::IssueError| {
                tracing::error!(error = %e, server_id = %server_id, "cannot build a pushed bootstrap");
                (
                    status_code::COMMAND_FAILED,
                    AssociationOutcome::Failed,
                    "the bootstrap could not be built".to_owned(),
                )
            };
            let body = issue::bootstrap_message(
                profile,
                &gw.gateway_id,
                &self.cfg.public_url,
                self.cfg.push.encoding,
            )
            .map_err(failed)?;
            let content_type =
                issue::push_content_type(&body, self.cfg.push.encoding, key).map_err(failed)?;
            planned.push(Planned::New {
                server_id: server_id.clone(),
                url: url.clone(),
                body,
                content_type,
                sec: key.sec.name().to_owned(),
            });
        }
        Ok(planned)
    }

    // ---------------------------------------------------------------------------------------------
    // Push bookkeeping, records

    /// Record the outcome of attempt number `attempt` of the push of bootstrap `id`.
    pub fn record_push(&self, id: u64, attempt: u32, outcome: &AttemptOutcome) {
        let mut guard = self.lock();
        let Some(d) = guard.records.delivery_mut(id) else {
            return;
        };
        d.attempts = attempt;
        match outcome {
            AttemptOutcome::Delivered { status } => {
                d.state = DeliveryState::Delivered;
                d.last_http_status = Some(*status);
                d.last_error = None;
                d.next_attempt_at = None;
                d.delivered_at = Some(OffsetDateTime::now_utc());
            }
            AttemptOutcome::Retry {
                status,
                error,
                next_at,
            } => {
                d.state = DeliveryState::Retrying;
                d.last_http_status = *status;
                d.last_error = Some(truncate(error, 300));
                d.next_attempt_at = Some(*next_at);
            }
            AttemptOutcome::GaveUp { status, error } => {
                d.state = DeliveryState::Failed;
                d.last_http_status = *status;
                d.last_error = Some(truncate(error, 300));
                d.next_attempt_at = None;
            }
        }
    }

    /// Bootstraps matching the query.
    pub fn bootstraps(&self, q: &ListQuery) -> Page<BootstrapRecord> {
        self.lock().records.bootstraps(q)
    }

    /// Associations matching the query.
    pub fn associations(&self, q: &ListQuery) -> Page<AssociationRecord> {
        self.lock().records.associations(q)
    }

    /// Drop device sessions idle for longer than the timeout (called periodically).
    pub fn sweep(&self, now: Instant) {
        let mut guard = self.lock();
        for a in guard.sessions.expire(now) {
            tracing::info!(dev_id = %a.dev_id, "device session expired");
        }
    }

    /// Health summary.
    pub fn health(&self) -> Health {
        let guard = self.lock();
        let (bootstraps, associations, pending_pushes) = guard.records.counts();
        Health {
            status: "ok",
            profiles: self.profiles.servers.len(),
            gateways: self.profiles.gateways.len(),
            open_sessions: guard.sessions.len(),
            bootstraps,
            associations,
            pending_pushes,
        }
    }
}

/// One bootstrap an association asks for.
enum Planned {
    /// A push of the same bootstrap to the same address is still queued or retrying.
    Existing(u64),
    /// A new push.
    New {
        server_id: String,
        url: Url,
        body: Vec<u8>,
        content_type: String,
        sec: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::{LoadOptions, parse_profiles};
    use proptest::prelude::*;
    use std::path::Path;

    const FP: [u8; 32] = [7; 32];

    fn engine(device_auth: DeviceAuth) -> Engine {
        let text = format!(
            "[[servers]]\nserver_id=\"dms-1\"\naddress=\"https://dms/dm\"\nmaster_key_env=\"K\"\n\
             [[gateways]]\ngateway_id=\"IMEI:1\"\npin=\"1234\"\nusername=\"gw\"\npassword=\"pw:with:colons\"\n\
             cert_sha256=\"{}\"\npush_urls=[\"https://gw.example/push\"]\n",
            hex::encode(FP)
        );
        let env = |v: &str| (v == "K").then(|| "key".to_owned());
        let profiles = parse_profiles(
            &text,
            Path::new("p.toml"),
            &LoadOptions {
                base_dir: Path::new("."),
                env: &env,
                allow_http_push: false,
            },
        )
        .unwrap();
        Engine::new(
            EngineConfig {
                public_url: "https://bs.example".into(),
                dm_uri: "https://bs.example/dm".into(),
                device_auth,
                limits: Limits::default(),
                max_body: 1 << 16,
                max_sessions: 4,
                session_idle: Duration::from_secs(60),
                history: 100,
                push: PushSettings::default(),
            },
            profiles,
        )
    }

    fn basic(user_pass: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_pass))
    }

    #[test]
    fn gateway_authentication() {
        let e = engine(DeviceAuth::None);
        let (gw, how) = e.authenticate_gateway(Some(&FP), None).unwrap();
        assert_eq!(
            (gw.gateway_id.as_str(), how),
            ("IMEI:1", ClientAuth::Certificate)
        );
        // The password may itself hold ':' (only the first one separates).
        let (gw, how) = e
            .authenticate_gateway(Some(&[0; 32]), Some(&basic("gw:pw:with:colons")))
            .unwrap();
        assert_eq!((gw.gateway_id.as_str(), how), ("IMEI:1", ClientAuth::Basic));
        assert!(
            e.authenticate_gateway(
                None,
                Some(&format!("basic  {}", STANDARD.encode("gw:pw:with:colons")))
            )
            .is_ok()
        );
        for bad in [
            None,
            Some(basic("gw:nope")),
            Some(basic("IMEI:1:pw:with:colons")),
            Some(basic("no-colon")),
            Some("Digest x".to_owned()),
            Some("Basic ***".to_owned()),
            Some(format!("Basic {}", STANDARD.encode([0xff, b':', 0xfe]))),
            Some(format!("Basic {}", "A".repeat(5000))),
        ] {
            assert!(
                matches!(
                    e.authenticate_gateway(Some(&[1; 32]), bad.as_deref()),
                    Err(ServiceError::Unauthorized { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn workflow1_refuses_unknown_servers() {
        let e = engine(DeviceAuth::None);
        let (gw, how) = e.authenticate_gateway(Some(&FP), None).unwrap();
        assert!(matches!(
            e.issue_workflow1(gw, "nope", Encoding::Xml, how),
            Err(ServiceError::UnknownServer { .. })
        ));
        assert!(e.issue_workflow1(gw, "dms-1", Encoding::Wbxml, how).is_ok());
        assert_eq!(e.health().bootstraps, 1);
    }

    #[test]
    fn association_data_as_chr_or_b64() {
        let mut g = GenericAlert::new(ASSOCIATED_GATEWAY);
        assert!(association_text(&g).is_err());
        g.data = Some(omadm::model::Data::Text("GatewayID=x".into()));
        assert_eq!(association_text(&g).unwrap(), "GatewayID=x");
        g.format = Some("B64".into());
        g.data = Some(omadm::model::Data::Text(STANDARD.encode("GatewayID=y")));
        assert_eq!(association_text(&g).unwrap(), "GatewayID=y");
        g.data = Some(omadm::model::Data::Text("%%%".into()));
        assert!(association_text(&g).is_err());
    }

    #[test]
    fn push_outcomes_update_the_record() {
        let e = engine(DeviceAuth::None);
        let id = e.lock().records.add_bootstrap(BootstrapRecord {
            id: 0,
            issued_at: OffsetDateTime::UNIX_EPOCH,
            workflow: 2,
            gateway_id: "IMEI:1".into(),
            server_id: "dms-1".into(),
            encoding: "wbxml".into(),
            client_auth: None,
            association: None,
            delivery: Some(Delivery {
                url: "https://gw.example/push".into(),
                sec: "USERPIN".into(),
                state: DeliveryState::Pending,
                attempts: 0,
                max_attempts: 3,
                last_http_status: None,
                last_error: None,
                next_attempt_at: None,
                delivered_at: None,
            }),
        });
        assert_eq!(e.health().pending_pushes, 1);
        e.record_push(
            id,
            1,
            &AttemptOutcome::Retry {
                status: Some(503),
                error: "x".repeat(1000),
                next_at: OffsetDateTime::UNIX_EPOCH,
            },
        );
        let r = e.bootstraps(&ListQuery::default()).items.remove(0);
        let d = r.delivery.unwrap();
        assert_eq!(
            (d.state, d.attempts, d.last_http_status),
            (DeliveryState::Retrying, 1, Some(503))
        );
        assert_eq!(d.last_error.unwrap().len(), 300);
        e.record_push(id, 2, &AttemptOutcome::Delivered { status: 204 });
        let d = e
            .bootstraps(&ListQuery::default())
            .items
            .remove(0)
            .delivery
            .unwrap();
        assert_eq!(d.state, DeliveryState::Delivered);
        assert!(d.last_error.is_none() && d.delivered_at.is_some());
        assert_eq!(e.health().pending_pushes, 0);
        // Unknown ids are ignored.
        e.record_push(99, 1, &AttemptOutcome::Delivered { status: 200 });
    }

    proptest! {
        #[test]
        fn arbitrary_authorization_never_panics(h in "\\PC{0,200}", fp in any::<[u8; 32]>()) {
            let e = engine(DeviceAuth::None);
            let _ = e.authenticate_gateway(Some(&fp), Some(&h));
            let _ = e.authenticate_gateway(None, Some(&format!("Basic {h}")));
        }

        #[test]
        fn arbitrary_dm_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300), wbxml in any::<bool>()) {
            let e = engine(DeviceAuth::Md5);
            let encoding = if wbxml { Encoding::Wbxml } else { Encoding::Xml };
            let _ = e.handle(DmRequest { body, encoding, token: None, hmac: None }, Instant::now());
        }
    }
}
