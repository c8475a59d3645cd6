//! Step 1-4: the gateway's local DM server. Devices open authenticated DM sessions and send the
//! `BootstrappedDMSList` Generic Alert; the gateway reads their DMAcc (ServerIDs, bootstrap URLs).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use omadm::alert;
use omadm::auth::{AuthScheme, DigestKey, Nonce};
use omadm::codec::{self, Encoding};
use omadm::element::Limits;
use omadm::model::{Command, Data, SyncMl};
use omadm::secret::Secret;
use omadm::session::{ClientDirectory, ServerConfig, ServerEvent, ServerSession};
use tracing::Instrument;

use super::{DM_SESSION_IDLE, LanError, LanState};
use crate::actors::bootstrap_client::record_handovers;
use crate::actors::inventory::DeviceReady;
use crate::actors::{ActorError, TracedExt};
use crate::config::WorkflowPolicy;
use crate::domain::ServerReport;
use crate::store::lan::DeviceCredentials;

/// Most DM sessions with devices open at once.
pub const MAX_SESSIONS: usize = 10_000;

/// What the gateway learns from one device's session.
#[derive(Debug, Default)]
struct Findings {
    /// The ServerIDs the device reported in `BootstrappedDMSList`.
    reported: Option<Vec<String>>,
    /// True once the Get of `./DMAcc` was queued.
    dmacc_asked: bool,
    /// True once the workflow-2 hand-overs were queued.
    handed_over: bool,
    /// ServerIDs handed over whose workflow-2 jobs are not recorded yet.
    handovers: Vec<String>,
    /// The device's DMAcc node names, from the Get of `./DMAcc`.
    nodes: Vec<String>,
    /// node -> ServerID, from the Gets of `./DMAcc/<X>/ServerID`.
    server_ids: BTreeMap<String, String>,
    /// node -> bootstrap-server URL, from `./DMAcc/<X>/Ext/BootstrapServerURL`.
    urls: BTreeMap<String, String>,
}

impl Findings {
    /// The reported servers with the bootstrap URL the device holds for each, if any.
    fn reports(&self) -> Vec<ServerReport> {
        let by_server: HashMap<&str, &str> = self
            .server_ids
            .iter()
            .filter_map(|(node, sid)| self.urls.get(node).map(|u| (sid.as_str(), u.as_str())))
            .collect();
        self.reported
            .iter()
            .flatten()
            .map(|sid| ServerReport {
                server_id: sid.clone(),
                bootstrap_url: by_server.get(sid.as_str()).map(|u| (*u).to_owned()),
            })
            .collect()
    }
}

struct Entry {
    session: ServerSession,
    findings: Findings,
    encoding: Encoding,
    last_used: Instant,
    dev_id: String,
    /// The `dm session` span, under the device's onboarding; each message is a child.
    span: tracing::Span,
}

/// The open DM sessions with devices, keyed by the token in their RespURI.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.map.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Sessions").field("open", &n).finish()
    }
}

impl Sessions {
    fn take(&self, token: &str) -> Option<Entry> {
        let mut m = self.map.lock().ok()?;
        m.retain(|_, e| e.last_used.elapsed() < DM_SESSION_IDLE);
        m.remove(token)
    }

    fn put(&self, token: String, entry: Entry) -> Result<(), LanError> {
        let mut m = self
            .map
            .lock()
            .map_err(|_| LanError::Internal("session table poisoned".into()))?;
        if m.len() >= MAX_SESSIONS {
            return Err(LanError::Unavailable);
        }
        m.insert(token, entry);
        Ok(())
    }
}

/// The one device the directory speaks for, with the credentials it was provisioned with.
struct DeviceDirectory {
    creds: Option<DeviceCredentials>,
}

impl ClientDirectory for DeviceDirectory {
    fn password(&self, _: &str, _: &str) -> Option<Secret> {
        // Device passwords are not kept; only their digest (see `digest_key`).
        None
    }

    fn digest_key(&self, dev_id: &str, name: &str) -> Option<DigestKey> {
        self.creds
            .as_ref()
            .filter(|c| c.dev_id == dev_id && c.auth_name == name)
            .map(|c| c.digest_key.clone())
    }

    fn nonce(&self, dev_id: &str) -> Option<Vec<u8>> {
        self.creds
            .as_ref()
            .filter(|c| c.dev_id == dev_id)
            .and_then(|c| c.nonce.as_deref())
            .and_then(|n| Nonce::from_b64(n).ok())
            .map(|n| n.as_bytes().to_vec())
    }
}

/// What the gateway knows when it plans a device session's next commands.
#[derive(Debug, Clone, Default)]
pub struct PlanContext {
    /// ServerIDs of the gateway's own DMAcc accounts.
    pub known: BTreeSet<String>,
    /// Bootstrap workflow policy.
    pub policy: WorkflowPolicy,
    /// The gateway's DevId.
    pub gateway_id: String,
    /// Where bootstrap servers push (workflow 2).
    pub push_url: String,
}

/// The workflow-2 hand-over written to `./DMAcc/<X>/Ext/AssociatedGateway` (dmgw's format, one
/// `key=value` per line): the gateway's ID and push address and the ServerID to bootstrap.
pub fn handover_data(gateway_id: &str, push_url: &str, server_id: &str) -> String {
    format!("GatewayID={gateway_id}\nGatewayAddress={push_url}\nServerID={server_id}")
}

/// Look at a device message before the session answers it, and queue the gateway's follow-up
/// commands: after `BootstrappedDMSList`, a Get of `./DMAcc`; after the node list, Gets of each
/// account's ServerID and bootstrap-server URL; once those are known, the workflow-2 hand-over
/// (a Replace of `Ext/AssociatedGateway`) for each unmatched server the policy sends that way.
fn plan(session: &mut ServerSession, findings: &mut Findings, msg: &SyncMl, ctx: &PlanContext) {
    for cmd in &msg.body.commands {
        match cmd {
            Command::Alert(a) if a.code == omadm::model::alert_code::GENERIC => {
                let Ok(parsed) = alert::parse(a) else {
                    continue;
                };
                for ga in parsed.alerts {
                    if alert::same_type(&ga.alert_type, alert::BOOTSTRAPPED_DMS_LIST) {
                        // A package 1 resent after a challenge carries the alert again: the last
                        // (authenticated) one counts, and ./DMAcc is asked for once.
                        let text = ga.data.as_ref().and_then(Data::as_text).unwrap_or_default();
                        findings.reported = Some(alert::parse_server_id_list(&text));
                        if !findings.dmacc_asked {
                            findings.dmacc_asked = true;
                            session.queue(Command::get("./DMAcc"), Some("dmacc".into()));
                        }
                    }
                }
            }
            Command::Results(r) => {
                for item in &r.items {
                    let (Some(uri), Some(value)) = (
                        item.source_uri(),
                        item.data.as_ref().and_then(Data::as_text),
                    ) else {
                        continue;
                    };
                    let parts: Vec<&str> = uri.trim_start_matches("./").split('/').collect();
                    match parts.as_slice() {
                        ["DMAcc"] if findings.nodes.is_empty() => {
                            findings.nodes = value
                                .split('/')
                                .map(str::trim)
                                .filter(|n| !n.is_empty())
                                .take(64)
                                .map(str::to_owned)
                                .collect();
                            // The account the gateway provisioned itself is not asked about.
                            let own = omadm::mo::escape_name(&ctx.gateway_id).ok();
                            for node in &findings.nodes {
                                if own.as_deref() == Some(node.as_str()) {
                                    continue;
                                }
                                session
                                    .queue(Command::get(format!("./DMAcc/{node}/ServerID")), None);
                                session.queue(
                                    Command::get(format!("./DMAcc/{node}/Ext/BootstrapServerURL")),
                                    None,
                                );
                            }
                        }
                        ["DMAcc", node, "ServerID"] => {
                            findings
                                .server_ids
                                .insert((*node).to_owned(), value.trim().to_owned());
                        }
                        ["DMAcc", node, "Ext", "BootstrapServerURL"] => {
                            findings
                                .urls
                                .insert((*node).to_owned(), value.trim().to_owned());
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if findings.handed_over || findings.server_ids.is_empty() {
        return;
    }
    let Some(reported) = &findings.reported else {
        return;
    };
    findings.handed_over = true;
    for (node, sid) in &findings.server_ids {
        if !reported.contains(sid) || ctx.known.contains(sid) {
            continue;
        }
        let has_url = findings.urls.get(node).is_some_and(|u| !u.is_empty());
        let two = match ctx.policy {
            WorkflowPolicy::Two => true,
            WorkflowPolicy::OneThenTwo => !has_url,
            WorkflowPolicy::One => false,
        };
        if two {
            findings.handovers.push(sid.clone());
            session.queue(
                Command::replace_chr(
                    format!("./DMAcc/{node}/Ext/AssociatedGateway"),
                    handover_data(&ctx.gateway_id, &ctx.push_url, sid),
                ),
                Some(format!("handover:{sid}")),
            );
        }
    }
}

/// One span per DM command of a message, under `parent`: the device's commands with the status
/// the gateway answers (`dm.status`), the device's Status for each earlier gateway command, and
/// the gateway's own commands in the reply. URIs and codes only: never data or credentials.
fn command_spans(parent: &tracing::Span, incoming: &SyncMl, reply: &SyncMl) {
    let answered: HashMap<u32, u16> = reply
        .body
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Status(st) if st.msg_ref == incoming.hdr.msg_id && st.cmd_ref != 0 => {
                Some((st.cmd_ref, st.code))
            }
            _ => None,
        })
        .collect();
    if let Some(hdr) = reply.body.commands.iter().find_map(|c| match c {
        Command::Status(st) if st.cmd_ref == 0 => Some(st.code),
        _ => None,
    }) {
        parent.record("dm.status", hdr);
    }
    for cmd in &incoming.body.commands {
        match cmd {
            Command::Status(st) => {
                let span = tracing::info_span!(
                    parent: parent,
                    "dm command",
                    otel.name = "Status",
                    dm.from = "device",
                    dm.cmd = %st.cmd,
                    dm.cmd_ref = st.cmd_ref,
                    dm.status = st.code,
                    otel.status_code = tracing::field::Empty,
                );
                if st.code >= 400 && st.code != 401 && st.code != 407 {
                    span.record("otel.status_code", "ERROR");
                }
            }
            other => {
                let status = answered.get(&other.cmd_id()).copied();
                let span = tracing::info_span!(
                    parent: parent,
                    "dm command",
                    otel.name = other.name(),
                    dm.from = "device",
                    dm.cmd_id = other.cmd_id(),
                    dm.status = status,
                    alert.code = tracing::field::Empty,
                    otel.status_code = tracing::field::Empty,
                );
                if let Command::Alert(a) = other {
                    span.record("alert.code", a.code);
                }
                if status.is_some_and(|c| c >= 400) {
                    span.record("otel.status_code", "ERROR");
                }
            }
        }
    }
    for cmd in &reply.body.commands {
        if let Command::Status(_) = cmd {
            continue;
        }
        let target = match cmd {
            Command::Get(c)
            | Command::Replace(c)
            | Command::Add(c)
            | Command::Delete(c)
            | Command::Exec(c)
            | Command::Copy(c) => c
                .items
                .first()
                .and_then(|i| i.target.as_ref())
                .map(|t| t.loc_uri.clone()),
            _ => None,
        };
        let _span = tracing::info_span!(
            parent: parent,
            "dm command",
            otel.name = cmd.name(),
            dm.from = "gateway",
            dm.cmd_id = cmd.cmd_id(),
            dm.target = target.as_deref(),
        );
    }
}

/// An HTTP 400 whose body is a SyncML message carrying the DM status of the refusal.
fn dm_error(encoding: Encoding, msg: &SyncMl) -> HttpResponse {
    match codec::encode(msg, encoding) {
        Ok(body) => HttpResponse::BadRequest()
            .content_type(encoding.mime())
            .body(body),
        Err(_) => HttpResponse::BadRequest().finish(),
    }
}

fn session_token(req: &HttpRequest) -> Option<String> {
    web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("s").cloned())
}

/// `POST /lan/v1/dm`: one message of a device's DM session.
pub async fn dm(
    lan: web::Data<LanState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, LanError> {
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let encoding = Encoding::from_content_type(content_type).ok_or_else(|| {
        LanError::BadRequest(format!(
            "Content-Type must be {} or {}",
            codec::MIME_XML,
            codec::MIME_WBXML
        ))
    })?;
    let limits = Limits {
        max_message_bytes: lan.settings.max_body_bytes,
        ..Limits::default()
    };
    let server_uri = format!("{}/lan/v1/dm", lan.settings.lan_public_url);
    let msg = match codec::decode_as(&body, encoding, &limits) {
        Ok(m) => m,
        Err(e) => {
            metrics::counter!("dmgw_lan_dm_messages_total", "outcome" => "malformed").increment(1);
            tracing::warn!(error = %e, "malformed DM message from a device");
            return Ok(dm_error(
                encoding,
                &omadm::session::error_message(
                    "0",
                    0,
                    "",
                    &server_uri,
                    e.status_code(),
                    &format!("malformed SyncML DM message: {e}"),
                ),
            ));
        }
    };
    let dev_id = msg.hdr.source.loc_uri.clone();
    let token = session_token(&req);
    let mut entry = match token.as_deref().and_then(|t| lan.sessions.take(t)) {
        Some(e) if e.dev_id == dev_id => e,
        Some(_) => {
            return Err(LanError::BadRequest(
                "session belongs to another device".into(),
            ));
        }
        None => {
            let cfg = ServerConfig::new(
                format!("{}/lan/v1/dm", lan.settings.lan_public_url),
                AuthScheme::Md5,
            );
            let span = tracing::info_span!(
                "dm session",
                dev_id = %dev_id,
                session_id = %msg.hdr.session_id,
                dm.auth = tracing::field::Empty,
                servers = tracing::field::Empty,
            );
            crate::onboarding::adopt(&lan.store, &span, &dev_id).await;
            Entry {
                session: ServerSession::new(cfg),
                findings: Findings::default(),
                encoding,
                last_used: Instant::now(),
                dev_id: dev_id.clone(),
                span,
            }
        }
    };
    let span = tracing::info_span!(
        parent: &entry.span,
        "dm message",
        dev_id = %dev_id,
        msg_id = msg.hdr.msg_id,
        dm.status = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let message_span = span.clone();
    async move {
        let token = token.unwrap_or_else(crate::store::lan::new_token);
        // The RespURI carries the session token for the device's next message.
        entry.session.set_resp_uri(Some(format!(
            "{}/lan/v1/dm?s={token}",
            lan.settings.lan_public_url
        )));
        let creds = lan.store.device_credentials(&dev_id).await?;
        let dir = DeviceDirectory { creds };
        let ctx = PlanContext {
            known: lan.store.server_ids().await?,
            policy: lan.settings.workflow,
            gateway_id: lan.settings.dev_id.clone(),
            push_url: format!("{}/wan/v1/bootstrap", lan.settings.wan_public_url),
        };
        plan(&mut entry.session, &mut entry.findings, &msg, &ctx);
        let nonce = Nonce::generate().map_err(|e| LanError::Internal(e.to_string()))?;
        let step = match entry.session.receive(&msg, &dir, None, nonce) {
            Ok(step) => step,
            Err(e) => {
                let code = e.status_code();
                tracing::warn!(error = %e, code, "DM session error");
                message_span.record("dm.status", code);
                message_span.record("otel.status_code", "ERROR");
                return Ok(dm_error(
                    entry.encoding,
                    &omadm::session::error_message(
                        &msg.hdr.session_id,
                        msg.hdr.msg_id,
                        &msg.hdr.source.loc_uri,
                        &server_uri,
                        code,
                        &e.to_string(),
                    ),
                ));
            }
        };
        // The reply carries the hand-overs: their jobs exist before the device can relay them,
        // so the push that follows always finds its job (only for an authenticated session).
        if entry.session.dev_id().is_some() && !entry.findings.handovers.is_empty() {
            let servers = std::mem::take(&mut entry.findings.handovers);
            record_handovers(&lan.store, &dev_id, &servers).await?;
        }
        if let Some(n) = &step.issued_nonce {
            lan.store
                .set_device_nonce(&dev_id, &Nonce::from_bytes(n.clone()).to_b64())
                .await?;
        }
        command_spans(&message_span, &msg, &step.reply);
        for ev in &step.events {
            match ev {
                // 407 is the normal first contact (the device learns its nonce); 401 is a failure.
                ServerEvent::AuthFailed { code: 407, .. } => {
                    tracing::debug!("device challenged (407)");
                }
                ServerEvent::AuthFailed { code, .. } => {
                    metrics::counter!("dmgw_lan_auth_failures_total").increment(1);
                    metrics::counter!("dmgw_lan_dm_sessions_total", "status" => "auth_failed")
                        .increment(1);
                    tracing::warn!(code, "device failed to authenticate");
                    entry.span.record("dm.auth", "failed");
                    message_span.record("otel.status_code", "ERROR");
                }
                ServerEvent::Authenticated { .. } => {
                    metrics::counter!("dmgw_lan_dm_sessions_total", "status" => "authenticated")
                        .increment(1);
                    entry.span.record("dm.auth", "ok");
                }
                _ => {}
            }
        }
        let reply = codec::encode(&step.reply, entry.encoding)
            .map_err(|e| LanError::Internal(e.to_string()))?;
        if step.ends {
            if entry.session.dev_id().is_some() && entry.findings.reported.is_some() {
                let servers = entry.findings.reports();
                tracing::info!(servers = servers.len(), "device reported its DM servers");
                entry.span.record("servers", servers.len());
                lan.actors
                    .inventory
                    .send(
                        DeviceReady {
                            dev_id: dev_id.clone(),
                            devinfo: None,
                            servers,
                        }
                        .traced(),
                    )
                    .await
                    .map_err(ActorError::from)??;
            }
        } else {
            entry.last_used = Instant::now();
            lan.sessions.put(token, entry)?;
        }
        Ok(HttpResponse::Ok().content_type(encoding.mime()).body(reply))
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use omadm::model::{Item, Location, Meta, Results, SyncHdr};
    use omadm::session::ServerConfig;

    fn msg(cmds: Vec<Command>) -> SyncMl {
        let mut m = SyncMl::new(SyncHdr::new(
            "1",
            1,
            Location::new("gw"),
            Location::new("d"),
        ));
        for c in cmds {
            m.push(c);
        }
        m
    }

    fn result(uri: &str, value: &str) -> Item {
        Item {
            source: Some(Location::new(uri)),
            meta: Some(Meta::format("chr")),
            data: Some(Data::Text(value.into())),
            ..Item::default()
        }
    }

    #[test]
    fn the_plan_reads_the_device_dmacc() {
        let mut s = ServerSession::new(ServerConfig::new("gw", AuthScheme::Md5));
        let mut f = Findings::default();
        let ga = alert::GenericAlert {
            alert_type: alert::BOOTSTRAPPED_DMS_LIST.into(),
            data: Some(Data::Text("dms-1\ndms-2".into())),
            ..alert::GenericAlert::default()
        };
        let ctx = PlanContext {
            known: ["dms-1".to_string()].into(),
            policy: WorkflowPolicy::OneThenTwo,
            gateway_id: "gw".into(),
            push_url: "https://gw/wan/v1/bootstrap".into(),
        };
        plan(&mut s, &mut f, &msg(vec![alert::build(None, &[ga])]), &ctx);
        assert_eq!(s.queued(), 1);
        let listing = Command::Results(Results {
            // `gw` is the gateway's own account: not read back.
            items: vec![result("./DMAcc", "a/b/gw")],
            ..Results::default()
        });
        plan(&mut s, &mut f, &msg(vec![listing]), &ctx);
        assert_eq!(s.queued(), 5);
        let values = Command::Results(Results {
            items: vec![
                result("./DMAcc/a/ServerID", "dms-1"),
                result("./DMAcc/b/ServerID", "dms-2"),
                result("./DMAcc/b/Ext/BootstrapServerURL", "https://bs.example/b"),
            ],
            ..Results::default()
        });
        plan(&mut s, &mut f, &msg(vec![values]), &ctx);
        // dms-2 is unknown but has a bootstrap URL: workflow 1, no hand-over.
        assert_eq!(s.queued(), 5);
        let r = f.reports();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].bootstrap_url, None);
        assert_eq!(r[1].bootstrap_url.as_deref(), Some("https://bs.example/b"));
        assert!(f.handovers.is_empty());
    }

    #[test]
    fn a_hand_over_is_noted_for_its_job() {
        let mut s = ServerSession::new(ServerConfig::new("gw", AuthScheme::Md5));
        let mut f = Findings::default();
        let ga = alert::GenericAlert {
            alert_type: alert::BOOTSTRAPPED_DMS_LIST.into(),
            data: Some(Data::Text("dms-1\ndms-3".into())),
            ..alert::GenericAlert::default()
        };
        let ctx = PlanContext {
            known: ["dms-1".to_string()].into(),
            policy: WorkflowPolicy::OneThenTwo,
            gateway_id: "gw".into(),
            push_url: "https://gw/wan/v1/bootstrap".into(),
        };
        plan(&mut s, &mut f, &msg(vec![alert::build(None, &[ga])]), &ctx);
        let values = Command::Results(Results {
            items: vec![
                result("./DMAcc/a/ServerID", "dms-1"),
                result("./DMAcc/c/ServerID", "dms-3"),
            ],
            ..Results::default()
        });
        let queued = s.queued();
        plan(&mut s, &mut f, &msg(vec![values]), &ctx);
        // dms-3 is unknown and has no bootstrap URL: handed over (workflow 2), its job to record.
        assert_eq!(s.queued(), queued + 1);
        assert_eq!(f.handovers, ["dms-3"]);
    }
}
