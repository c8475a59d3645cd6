//! What the DM Server tells operators besides its records: the span of each DM message and of each
//! command in it, and the Prometheus counters. Attributes name things, never credentials.

use omadm::model::{Command, SyncMl, alert_code};
use tracing::Span;
use tracing::field::Empty;

/// Counter of DM messages answered, by the code of the reply's SyncHdr Status (`status`).
pub const SESSIONS_TOTAL: &str = "dm_server_sessions_total";
/// Counter of Generic Alert items, by type (`type`, a known URN or `other`) and `outcome`
/// (`recorded`, `duplicate`, `refused`).
pub const ALERTS_TOTAL: &str = "dm_server_alerts_total";

/// Longest attribute value copied from a client's message.
const MAX_ATTRIBUTE: usize = 200;

/// The Generic Alert types a label may name; anything else is `other` (clients choose the type, and
/// a label must stay a small set).
const KNOWN_ALERT_TYPES: &[&str] = &[
    omadm::alert::DEVICE_ATTACHED,
    omadm::alert::DEVICE_DETACHED,
    omadm::alert::BOOTSTRAPPED_DMS_LIST,
    omadm::alert::ASSOCIATED_GATEWAY,
    omadm::alert::RESULT_AGGREGATION,
    omadm::alert::COMPLETION_STATUS,
    "urn:oma:at:gwmo:1.0:deviceattached",
];

/// The `type` label of an alert type.
pub fn alert_type_label(alert_type: &str) -> &'static str {
    KNOWN_ALERT_TYPES
        .iter()
        .find(|k| omadm::alert::same_type(k, alert_type))
        .copied()
        .unwrap_or("other")
}

/// Count Generic Alert items.
pub fn count_alert(alert_type: &str, outcome: &'static str) {
    metrics::counter!(ALERTS_TOTAL, "type" => alert_type_label(alert_type), "outcome" => outcome)
        .increment(1);
}

/// Count one answered DM message by its SyncHdr status.
pub fn count_message(status: u16) {
    metrics::counter!(SESSIONS_TOTAL, "status" => status.to_string()).increment(1);
}

/// At most [`MAX_ATTRIBUTE`] characters of a client-given text.
pub fn cut(text: &str) -> &str {
    match text.char_indices().nth(MAX_ATTRIBUTE) {
        Some((i, _)) => text.get(..i).unwrap_or(text),
        None => text,
    }
}

/// The span of one DM message (a child of the current span: the HTTP request's). The caller fills
/// `dev_id`, `session_id`, `msg_id` once the message is decoded, then `auth`, `dm.status`.
pub fn message_span(server_id: &str, encoding: &'static str) -> Span {
    tracing::info_span!(
        "dm session",
        server_id = %server_id,
        dev_id = Empty,
        session_id = Empty,
        msg_id = Empty,
        account = Empty,
        auth = Empty,
        dm.encoding = encoding,
        dm.status = Empty,
        session.messages = Empty,
        session.end = Empty,
        otel.status_code = Empty,
        otel.status_message = Empty,
    )
}

/// Record what the decoded header says on a message span.
pub fn record_header(span: &Span, msg: &SyncMl) {
    span.record("dev_id", cut(&msg.hdr.source.loc_uri));
    span.record("session_id", cut(&msg.hdr.session_id));
    span.record("msg_id", msg.hdr.msg_id);
}

/// Mark a span failed.
pub fn fail(span: &Span, message: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_message", cut(message));
}

/// The `auth` attribute of a message: `challenge` for a 407 (credentials asked for), `failed` for
/// any other refusal, `ok` once authenticated.
pub fn auth_value(refused_with: Option<u16>, authenticated: bool) -> Option<&'static str> {
    match refused_with {
        Some(omadm::model::status_code::MISSING_CREDENTIALS) => Some("challenge"),
        Some(_) => Some("failed"),
        None if authenticated => Some("ok"),
        None => None,
    }
}

/// The Generic Alert types of an Alert command's items, comma-separated.
pub fn alert_types(cmd: &omadm::model::Alert) -> String {
    let types: Vec<&str> = cmd
        .items
        .iter()
        .filter_map(|i| i.meta.as_ref().and_then(|m| m.type_.as_deref()))
        .map(cut)
        .collect();
    types.join(",")
}

/// One span per command of a client message (children of the current span), with the command's
/// name, CmdID and, for an Alert, its code and Generic Alert types; for a Status the client gives to
/// one of the server's commands, the code it reports. Item data and credentials are never read.
pub fn command_spans(msg: &SyncMl) -> Vec<(u32, Span)> {
    msg.body
        .commands
        .iter()
        .map(|c| {
            let span = tracing::info_span!(
                "dm command",
                otel.name = c.name(),
                dm.cmd = c.name(),
                dm.cmd_id = c.cmd_id(),
                dm.target = Empty,
                dm.items = c.items().len(),
                alert.code = Empty,
                alert.type = Empty,
                dm.cmd_ref = Empty,
                dm.ref_cmd = Empty,
                dm.status = Empty,
                otel.status_code = Empty,
            );
            match c {
                Command::Alert(a) => {
                    span.record("alert.code", a.code);
                    if a.code == alert_code::GENERIC {
                        span.record("alert.type", alert_types(a));
                    }
                }
                Command::Status(s) => {
                    span.record("dm.cmd_ref", s.cmd_ref);
                    span.record("dm.ref_cmd", cut(&s.cmd));
                    span.record("dm.status", s.code);
                }
                Command::Results(r) => {
                    span.record("dm.cmd_ref", r.cmd_ref);
                }
                other => {
                    if let Some(t) = other.items().first().and_then(|i| i.target_uri()) {
                        span.record("dm.target", cut(t));
                    }
                }
            }
            (c.cmd_id(), span)
        })
        .collect()
}

/// Record on each command span the status the reply gives to it (`dm.status`); 4xx and 5xx codes
/// other than the authentication challenges (401, 407) mark the span failed.
pub fn record_statuses(spans: &[(u32, Span)], reply: &SyncMl, msg_id: u32) {
    for (cmd_id, span) in spans {
        let Some(status) = reply
            .statuses()
            .find(|s| s.msg_ref == msg_id && s.cmd_ref == *cmd_id && *cmd_id != 0)
        else {
            continue;
        };
        span.record("dm.status", status.code);
        if status.code >= 400
            && status.code != omadm::model::status_code::UNAUTHORIZED
            && status.code != omadm::model::status_code::MISSING_CREDENTIALS
        {
            span.record("otel.status_code", "ERROR");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_type_labels_are_a_closed_set() {
        assert_eq!(
            alert_type_label("URN:OMA:AT:OMA-GWMO:DEVICEATTACHED:1.0"),
            omadm::alert::DEVICE_ATTACHED
        );
        assert_eq!(alert_type_label("urn:x:anything"), "other");
        assert_eq!(alert_type_label(""), "other");
    }

    #[test]
    fn auth_values() {
        assert_eq!(auth_value(Some(407), false), Some("challenge"));
        assert_eq!(auth_value(Some(401), false), Some("failed"));
        assert_eq!(auth_value(None, true), Some("ok"));
        assert_eq!(auth_value(None, false), None);
    }

    #[test]
    fn long_texts_are_cut() {
        assert_eq!(cut(&"é".repeat(300)).chars().count(), MAX_ATTRIBUTE);
        assert_eq!(cut("short"), "short");
    }
}
