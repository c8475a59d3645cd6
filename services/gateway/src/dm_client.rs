//! The gateway as a DM client of its DM Servers (WAN face): one client-initiated DM session carries
//! every due alert for a server as Generic Alerts, and answers the server's Gets from the gateway's tree.

use std::time::Duration;

use futures_util::future::BoxFuture;
use omadm::alert::{self, GenericAlert};
use omadm::auth::{AuthScheme, Nonce};
use omadm::codec::{self, Encoding};
use omadm::element::Limits;
use omadm::mo::{AuthType, DevInfo, escape_name};
use omadm::model::{Data, status_code};
use omadm::session::{ClientConfig, ClientSession, ClientStep, Credentials};
use thiserror::Error;
use tracing::Instrument;

use crate::actors::alerting::{AlertSender, DeliveryReport};
use crate::domain::{AlertId, AlertRow, StoredAccount};
use crate::store::Store;

/// Most round trips one session may take before it is abandoned.
pub const MAX_ROUNDS: usize = 16;

/// A DM session with a server failed as a whole.
#[derive(Debug, Error)]
pub enum SessionFailure {
    /// The account cannot be used for a session.
    #[error("account: {0}")]
    Account(String),
    /// HTTP transport failure (connection, TLS, timeout).
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// The server answered with an HTTP error.
    #[error("server answered HTTP {0}")]
    Http(u16),
    /// The server's answer is not a valid DM message.
    #[error("server message: {0}")]
    Decode(#[from] codec::DecodeError),
    /// Our message could not be encoded.
    #[error("encode: {0}")]
    Encode(#[from] codec::EncodeError),
    /// The DM session broke down (authentication refused, protocol error).
    #[error("session: {0}")]
    Session(#[from] omadm::session::SessionError),
    /// The server kept the session going too long.
    #[error("session did not end within {MAX_ROUNDS} messages")]
    TooLong,
    /// Reading the gateway's tree failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Delivers alerts over real OMA DM sessions.
#[derive(Debug, Clone)]
pub struct DmClientSender {
    http: reqwest::Client,
    store: Store,
    devinfo: DevInfo,
    encoding: Encoding,
    limits: Limits,
}

impl DmClientSender {
    /// A sender using `http` (TLS set up by the caller), answering for the gateway `devinfo`.
    pub fn new(http: reqwest::Client, store: Store, devinfo: DevInfo, encoding: Encoding) -> Self {
        DmClientSender {
            http,
            store,
            devinfo,
            encoding,
            limits: Limits::default(),
        }
    }

    /// The HTTP client the gateway uses towards the WAN: rustls, given timeouts, extra trust anchors.
    pub fn http_client(
        timeout: Duration,
        extra_roots: &[reqwest::Certificate],
    ) -> Result<reqwest::Client, reqwest::Error> {
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("dmgw/", env!("CARGO_PKG_VERSION")));
        for c in extra_roots {
            b = b.add_root_certificate(c.clone());
        }
        b.build()
    }

    fn credentials(
        stored: &StoredAccount,
    ) -> Result<(Credentials, String, Vec<u8>), SessionFailure> {
        let auth = stored
            .account
            .client_credentials()
            .ok_or_else(|| SessionFailure::Account("no CLCRED credentials".into()))?;
        let scheme = match auth.auth_type {
            AuthType::Basic => AuthScheme::Basic,
            AuthType::Digest => AuthScheme::Md5,
            AuthType::Hmac => AuthScheme::Hmac,
            other => {
                return Err(SessionFailure::Account(format!(
                    "AAuthType {other} is not supported for DM sessions"
                )));
            }
        };
        let nonce = auth
            .data
            .as_ref()
            .and_then(|d| Nonce::from_b64(d.expose()).ok())
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        Ok((
            Credentials {
                scheme,
                name: auth.name.clone().unwrap_or_default(),
                secret: auth.secret.clone().unwrap_or_default(),
            },
            auth.key.clone(),
            nonce,
        ))
    }

    fn alert_commands(alerts: &[AlertRow]) -> Vec<(omadm::model::Command, Option<String>)> {
        alerts
            .iter()
            .map(|a| {
                let source = escape_name(&a.dev_id)
                    .ok()
                    .map(|x| format!("./DeviceInventory/{x}"));
                let ga = GenericAlert {
                    alert_type: a.alert_type.clone(),
                    format: Some("chr".into()),
                    mark: Some("informational".into()),
                    source,
                    target: None,
                    data: a.data.clone().map(Data::Text),
                };
                (
                    alert::build(Some(&a.correlator), std::slice::from_ref(&ga)),
                    Some(a.id.0.to_string()),
                )
            })
            .collect()
    }

    /// Run one DM session carrying `alerts`; returns the outcome per alert.
    pub async fn session(
        &self,
        stored: &StoredAccount,
        alerts: &[AlertRow],
    ) -> Result<(Vec<(AlertId, u16)>, Option<(String, String)>), SessionFailure> {
        let acc = &stored.account;
        let url = acc
            .server_url()
            .ok_or_else(|| SessionFailure::Account("no AppAddr".into()))?
            .to_owned();
        let (creds, auth_key, nonce) = Self::credentials(stored)?;
        let mut cfg = ClientConfig::new(
            url,
            acc.server_id.clone(),
            self.devinfo.dev_id.clone(),
            format!("{:X}", rand::random::<u32>()),
        );
        cfg.credentials = Some(creds);
        cfg.server_nonce = nonce;
        cfg.max_msg_size = Some(self.limits.max_message_bytes as u64);
        let devinfo = [
            ("./DevInfo/DevId", self.devinfo.dev_id.as_str()),
            ("./DevInfo/Man", self.devinfo.man.as_str()),
            ("./DevInfo/Mod", self.devinfo.model.as_str()),
            ("./DevInfo/DmV", self.devinfo.dm_v.as_str()),
            ("./DevInfo/Lang", self.devinfo.lang.as_str()),
        ];
        let mut session = ClientSession::new(cfg, &devinfo, Self::alert_commands(alerts));
        let mut tree = self.store.management_tree(&self.devinfo).await?;
        let mut msg = session.start()?;
        let mut rounds = 0;
        loop {
            rounds += 1;
            if rounds > MAX_ROUNDS {
                return Err(SessionFailure::TooLong);
            }
            let body = codec::encode(&msg, self.encoding)?;
            let mut req = self
                .http
                .post(session.config().server_uri.clone())
                .header(reqwest::header::CONTENT_TYPE, self.encoding.mime())
                .header(reqwest::header::ACCEPT, self.encoding.mime());
            if let Some(mac) = session.transport_mac(&body) {
                let mac = mac.map_err(|e| SessionFailure::Account(e.to_string()))?;
                req = req.header(omadm::auth::HMAC_HEADER_NAME, mac);
            }
            let resp = telemetry::http::send(req.body(body)).await?;
            if !resp.status().is_success() {
                return Err(SessionFailure::Http(resp.status().as_u16()));
            }
            let bytes = resp.bytes().await?;
            let reply = codec::decode(&bytes, &self.limits)?;
            match session.receive(&reply, &mut tree)? {
                ClientStep::Send(next) => msg = *next,
                ClientStep::Finished => break,
            }
        }
        let outcomes = session
            .outcomes()
            .iter()
            .filter_map(|o| {
                let id = o.tag.as_deref()?.parse::<i64>().ok()?;
                Some((AlertId(id), o.code))
            })
            .collect();
        let next = session
            .next_nonce()
            .map(|n| (auth_key, Nonce::from_bytes(n.to_vec()).to_b64()));
        Ok((outcomes, next))
    }
}

/// Turn a session's per-alert statuses into a delivery report.
pub fn report(alerts: &[AlertRow], outcomes: &[(AlertId, u16)]) -> DeliveryReport {
    let mut r = DeliveryReport {
        statuses: outcomes.to_vec(),
        ..DeliveryReport::default()
    };
    for a in alerts {
        match outcomes.iter().find(|(id, _)| *id == a.id).map(|(_, c)| *c) {
            Some(status_code::OK | status_code::ACCEPTED) => r.delivered.push(a.id),
            Some(code) => r
                .failed
                .push((a.id, format!("server answered status {code}"))),
            None => r
                .failed
                .push((a.id, "the server gave no status for the alert".into())),
        }
    }
    r
}

impl AlertSender for DmClientSender {
    fn deliver(
        &self,
        account: StoredAccount,
        alerts: Vec<AlertRow>,
    ) -> BoxFuture<'_, DeliveryReport> {
        let span = tracing::info_span!(
            "dm session",
            server_id = %account.account.server_id,
            alerts = alerts.len(),
            otel.status_code = tracing::field::Empty,
        );
        Box::pin(
            async move {
                match self.session(&account, &alerts).await {
                    Ok((outcomes, next_nonce)) => {
                        metrics::counter!("dmgw_dm_sessions_total", "outcome" => "ok").increment(1);
                        DeliveryReport {
                            next_nonce,
                            ..report(&alerts, &outcomes)
                        }
                    }
                    Err(e) => {
                        metrics::counter!("dmgw_dm_sessions_total", "outcome" => "failed")
                            .increment(1);
                        tracing::warn!(error = %e, "DM session failed");
                        tracing::Span::current().record("otel.status_code", "ERROR");
                        let reason = e.to_string();
                        DeliveryReport {
                            failed: alerts.iter().map(|a| (a.id, reason.clone())).collect(),
                            ..DeliveryReport::default()
                        }
                    }
                }
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AlertState, Millis};

    fn row(id: i64) -> AlertRow {
        AlertRow {
            id: AlertId(id),
            dev_id: "IMEI:1".into(),
            server_id: "s".into(),
            alert_type: alert::DEVICE_ATTACHED.into(),
            correlator: format!("c{id}"),
            data: Some("IMEI:1".into()),
            state: AlertState::Pending,
            attempts: 0,
            next_attempt_at: Millis(0),
            last_error: None,
            created_at: Millis(0),
            delivered_at: None,
        }
    }

    #[test]
    fn statuses_become_a_report() {
        let alerts = [row(1), row(2), row(3)];
        let r = report(&alerts, &[(AlertId(1), 200), (AlertId(2), 500)]);
        assert_eq!(r.delivered, vec![AlertId(1)]);
        assert_eq!(r.failed.len(), 2);
        assert!(r.failed[0].1.contains("500"));
        assert!(r.failed[1].1.contains("no status"));
    }

    #[test]
    fn alerts_become_generic_alerts_with_their_correlator_and_tag() {
        let cmds = DmClientSender::alert_commands(&[row(7)]);
        let (omadm::model::Command::Alert(a), Some(tag)) = &cmds[0] else {
            panic!("not an alert")
        };
        assert_eq!(tag, "7");
        assert_eq!(a.correlator.as_deref(), Some("c7"));
        let parsed = alert::parse(a).unwrap();
        assert_eq!(
            parsed.alerts[0].source.as_deref(),
            Some("./DeviceInventory/IMEI_3A1")
        );
    }
}
