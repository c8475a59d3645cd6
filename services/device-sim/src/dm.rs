//! The device's DM session with the gateway over HTTP(S) (step 1-4): package 1 with the
//! `BootstrappedDMSList` alert, the md5 challenge cycle, then the gateway's commands run on the tree.

use omadm::codec::{self, DecodeError, EncodeError, Encoding};
use omadm::element::Limits;
use omadm::model::{Command, SyncMl, status_code};
use omadm::session::{ClientStep, SessionError};
use serde::Serialize;
use thiserror::Error;
use tracing::field::Empty;
use tracing::{Instrument, debug, info};

use crate::client::{ClientError, Transport, resolve};
use crate::device::{DMS_LIST_TAG, DeviceError, SimDevice};

/// Most messages the device sends in one session before it gives up.
pub const MAX_ROUNDS: u32 = 32;
/// Most gateway commands recorded in a session summary.
pub const MAX_RECORDED_COMMANDS: usize = 64;

/// A DM session that did not complete.
#[derive(Debug, Error)]
pub enum DmError {
    /// The device has no usable gateway account, or its tree failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The session state machine refused (authentication failed, wrong session, ...).
    #[error("DM session: {0}")]
    Session(#[from] SessionError),
    /// The transport MAC (`syncml:auth-MAC`) could not be computed.
    #[error("computing the transport MAC: {0}")]
    Mac(#[from] omadm::auth::AuthError),
    /// A message could not be encoded.
    #[error("encoding a DM message: {0}")]
    Encode(#[from] EncodeError),
    /// The gateway's answer is not a DM message.
    #[error("decoding the gateway's DM message: {0}")]
    Decode(#[from] DecodeError),
    /// The HTTP exchange failed.
    #[error(transparent)]
    Http(#[from] ClientError),
    /// The session went on for more than [`MAX_ROUNDS`] messages.
    #[error("the session did not end after {rounds} messages")]
    TooLong {
        /// Messages sent.
        rounds: u32,
    },
    /// The gateway answered the `BootstrappedDMSList` alert with an error status.
    #[error("the gateway answered the BootstrappedDMSList alert with status {code}")]
    AlertRefused {
        /// The status code.
        code: u16,
    },
    /// The session ended without a status for the `BootstrappedDMSList` alert.
    #[error("the session ended without a status for the BootstrappedDMSList alert")]
    AlertUnanswered,
}

/// What happened in a completed session.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SessionSummary {
    /// The SessionID used.
    pub session_id: String,
    /// Messages the device sent.
    pub messages: u32,
    /// True when the gateway challenged the device (401/407) before accepting it.
    pub challenged: bool,
    /// The status the gateway gave the `BootstrappedDMSList` alert.
    pub alert_status: u16,
    /// The gateway's commands, as `"<Cmd> <target>"` (at most [`MAX_RECORDED_COMMANDS`]).
    pub gateway_commands: Vec<String>,
}

fn record_commands(msg: &SyncMl, out: &mut Vec<String>) {
    fn walk(cmds: &[Command], out: &mut Vec<String>) {
        for c in cmds {
            match c {
                Command::Status(_) | Command::Results(_) => {}
                Command::Atomic(k) | Command::Sequence(k) => walk(&k.commands, out),
                Command::Alert(a) => {
                    if out.len() < MAX_RECORDED_COMMANDS {
                        out.push(format!("Alert {}", a.code));
                    }
                }
                other => {
                    for item in other.items() {
                        if out.len() >= MAX_RECORDED_COMMANDS {
                            return;
                        }
                        let target = item.target_uri().unwrap_or("");
                        out.push(format!("{} {target}", other.name()));
                    }
                }
            }
        }
    }
    walk(&msg.body.commands, out);
}

/// Run a whole DM session with the gateway the device was provisioned for. When the device knows no
/// nonce for the gateway yet, package 1 goes without `Cred` so the gateway challenges (407) and
/// hands one out; package 1 is then sent again with credentials.
///
/// The session is a `dm session` span (child of the current one): `server_id` (the gateway's),
/// `session_id`, `messages`, `challenged`, `alert.status`; a failure sets the error status.
pub async fn run_session(
    transport: &Transport,
    device: &mut SimDevice,
    encoding: Encoding,
    limits: &Limits,
) -> Result<SessionSummary, DmError> {
    let span = tracing::info_span!(
        "dm session",
        server_id = Empty,
        session_id = Empty,
        dm.encoding = match encoding {
            Encoding::Xml => "xml",
            Encoding::Wbxml => "wbxml",
        },
        messages = Empty,
        challenged = Empty,
        alert.status = Empty,
        otel.status_code = Empty,
        otel.status_message = Empty,
    );
    let result = session(transport, device, encoding, limits, &span)
        .instrument(span.clone())
        .await;
    match &result {
        Ok(summary) => {
            span.record("messages", summary.messages);
            span.record("challenged", summary.challenged);
            span.record("alert.status", summary.alert_status);
        }
        Err(e) => {
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_message", tracing::field::display(e));
        }
    }
    result
}

async fn session(
    transport: &Transport,
    device: &mut SimDevice,
    encoding: Encoding,
    limits: &Limits,
    span: &tracing::Span,
) -> Result<SessionSummary, DmError> {
    let gw = device.gateway().ok_or(DeviceError::NotProvisioned)?;
    span.record("server_id", gw.server_id.as_str());
    let base = url::Url::parse(gw.dm_url.trim()).map_err(|e| ClientError::InvalidUrl {
        url: gw.dm_url.clone(),
        reason: e.to_string(),
    })?;
    let ask_for_challenge = gw.nonce.is_none();
    let session_id = format!("{}", rand::random_range(1..=65_535u32));
    span.record("session_id", session_id.as_str());
    let reported = device.reported_server_ids()?;
    info!(
        session_id = %session_id,
        dm_url = %base,
        server_ids = ?reported,
        ask_for_challenge,
        "DM session: package 1 with BootstrappedDMSList"
    );
    let mut session = device.session(&session_id)?;
    let mut msg = session.start()?;
    if ask_for_challenge {
        msg.hdr.cred = None;
    }
    let mut summary = SessionSummary {
        session_id,
        ..SessionSummary::default()
    };
    loop {
        if summary.messages >= MAX_ROUNDS {
            return Err(DmError::TooLong {
                rounds: summary.messages,
            });
        }
        let body = codec::encode(&msg, encoding)?;
        let mac = session.transport_mac(&body).transpose()?;
        let url = resolve(&base, &session.config().server_uri)?;
        summary.messages = summary.messages.saturating_add(1);
        debug!(msg_id = msg.hdr.msg_id, %url, bytes = body.len(), "DM message to the gateway");
        let reply_bytes = transport.post_dm(&url, encoding, body, mac).await?;
        let reply = codec::decode(&reply_bytes, limits)?;
        if let Some(hs) = reply.header_status()
            && matches!(
                hs.code,
                status_code::UNAUTHORIZED | status_code::MISSING_CREDENTIALS
            )
        {
            summary.challenged = true;
            debug!(code = hs.code, "challenged by the gateway");
        }
        let before = summary.gateway_commands.len();
        record_commands(&reply, &mut summary.gateway_commands);
        for c in summary.gateway_commands.iter().skip(before) {
            info!(command = %c, "gateway command");
        }
        match session.receive(&reply, device.tree_mut())? {
            ClientStep::Send(next) => msg = *next,
            ClientStep::Finished => break,
        }
    }
    if let Some(n) = session.next_nonce().map(<[u8]>::to_vec) {
        device.remember_nonce(&n);
    }
    let code = session
        .outcomes()
        .iter()
        .find(|o| o.tag.as_deref() == Some(DMS_LIST_TAG))
        .map(|o| o.code)
        .ok_or(DmError::AlertUnanswered)?;
    span.record("alert.status", code);
    if !(200..300).contains(&code) {
        return Err(DmError::AlertRefused { code });
    }
    summary.alert_status = code;
    info!(
        messages = summary.messages,
        challenged = summary.challenged,
        alert_status = code,
        "DM session ended"
    );
    Ok(summary)
}
