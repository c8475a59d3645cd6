//! Workflow 2, the device's part (change request step 5): relay each hand-over the gateway wrote to
//! `./DMAcc/<X>/Ext/AssociatedGateway` to that account's DM Bootstrap Server as an
//! `AssociatedGateway` Generic Alert, in a DM session with the bootstrap server (`{base}/dm`).

use std::collections::BTreeMap;

use omadm::alert::{self, GenericAlert};
use omadm::codec::{self, Encoding};
use omadm::element::Limits;
use omadm::model::Data;
use omadm::session::{ClientConfig, ClientSession, ClientStep};
use serde::Serialize;
use tracing::field::Empty;
use tracing::{Instrument, info, warn};
use url::Url;

use crate::client::{Transport, resolve};
use crate::device::SimDevice;
use crate::dm::{DmError, MAX_ROUNDS};

/// The tag of the relayed alert in the session's outcomes.
const RELAY_TAG: &str = "associated-gateway";

/// What happened to one relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelayOutcome {
    /// The bootstrap server's DM URL.
    pub url: String,
    /// The status the bootstrap server gave the alert, if the session got that far.
    pub status: Option<u16>,
    /// Why the relay failed, if it did.
    pub error: Option<String>,
}

/// The DM endpoint of a bootstrap server from its base URL (`Ext/BootstrapServerURL`): the path
/// becomes `/dm` (a base with a path, e.g. `/bootstrap`, is replaced too), the query is dropped.
pub fn dm_url(base: &str) -> Result<Url, url::ParseError> {
    let mut u = Url::parse(base.trim())?;
    u.set_path("/dm");
    u.set_query(None);
    Ok(u)
}

#[allow(clippy::too_many_arguments)] // one call site; a struct for it would only rename the list
async fn relay_one(
    transport: &Transport,
    device: &mut SimDevice,
    url: &Url,
    node_source: String,
    data: String,
    encoding: Encoding,
    limits: &Limits,
) -> Result<u16, DmError> {
    let session_id = format!("{}", rand::random_range(1..=65_535u32));
    let cfg = ClientConfig::new(
        url.as_str(),
        "bootstrap",
        device.spec().dev_id.clone(),
        session_id,
    );
    let ga = GenericAlert {
        alert_type: alert::ASSOCIATED_GATEWAY.into(),
        format: Some("chr".into()),
        mark: None,
        source: Some(node_source),
        target: None,
        data: Some(Data::Text(data)),
    };
    let correlator = format!("assoc-{}", rand::random::<u32>());
    let mut session = ClientSession::new(
        cfg,
        &[("./DevInfo/DevId", device.spec().dev_id.as_str())],
        vec![(
            alert::build(Some(&correlator), &[ga]),
            Some(RELAY_TAG.to_owned()),
        )],
    );
    let mut msg = session.start()?;
    let mut rounds = 0;
    loop {
        rounds += 1;
        if rounds > MAX_ROUNDS {
            return Err(DmError::TooLong { rounds });
        }
        let body = codec::encode(&msg, encoding)?;
        let to = resolve(url, &session.config().server_uri)?;
        let reply = transport.post_dm(&to, encoding, body, None).await?;
        let reply = codec::decode(&reply, limits)?;
        match session.receive(&reply, device.tree_mut())? {
            ClientStep::Send(next) => msg = *next,
            ClientStep::Finished => break,
        }
    }
    session
        .outcomes()
        .iter()
        .find(|o| o.tag.as_deref() == Some(RELAY_TAG))
        .map(|o| o.code)
        .ok_or(DmError::AlertUnanswered)
}

/// Relay every hand-over the gateway wrote; returns the outcome per ServerID. Each relay is a
/// `bootstrap relay` span (child of the current one) whose requests carry `traceparent`, so the
/// bootstrap server's push goes on in the same trace.
pub async fn relay_associations(
    transport: &Transport,
    device: &mut SimDevice,
    encoding: Encoding,
    limits: &Limits,
) -> BTreeMap<String, RelayOutcome> {
    let mut out = BTreeMap::new();
    let handovers = device.associated_gateways().unwrap_or_default();
    for (server_id, data) in handovers {
        let account = device
            .spec()
            .accounts
            .iter()
            .find(|a| a.server_id == server_id)
            .cloned();
        let Some(account) = account else { continue };
        let Some(base) = account.bootstrap_server_url.clone() else {
            warn!(server_id = %server_id, "hand-over for an account with no known bootstrap server");
            out.insert(
                server_id,
                RelayOutcome {
                    url: String::new(),
                    status: None,
                    error: Some("the device knows no bootstrap server for this account".into()),
                },
            );
            continue;
        };
        let url = match dm_url(&base) {
            Ok(u) => u,
            Err(e) => {
                out.insert(
                    server_id,
                    RelayOutcome {
                        url: base,
                        status: None,
                        error: Some(e.to_string()),
                    },
                );
                continue;
            }
        };
        let source = format!("./DMAcc/{}/Ext/AssociatedGateway", account.node_name);
        let span = tracing::info_span!(
            "bootstrap relay",
            workflow = 2,
            server_id = %server_id,
            url = %url,
            dm.status = Empty,
            otel.status_code = Empty,
            otel.status_message = Empty,
        );
        let result = relay_one(transport, device, &url, source, data, encoding, limits)
            .instrument(span.clone())
            .await;
        let _entered = span.enter();
        let outcome = match result {
            Ok(code) => {
                span.record("dm.status", code);
                if !(200..300).contains(&code) {
                    span.record("otel.status_code", "ERROR");
                }
                info!(server_id = %server_id, %url, code, "hand-over relayed to the bootstrap server");
                RelayOutcome {
                    url: url.to_string(),
                    status: Some(code),
                    error: None,
                }
            }
            Err(e) => {
                span.record("otel.status_code", "ERROR");
                span.record("otel.status_message", tracing::field::display(&e));
                warn!(server_id = %server_id, %url, error = %e, "hand-over relay failed");
                RelayOutcome {
                    url: url.to_string(),
                    status: None,
                    error: Some(e.to_string()),
                }
            }
        };
        out.insert(server_id, outcome);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_dm_urls() {
        assert_eq!(
            dm_url("https://bs.example.com").unwrap().as_str(),
            "https://bs.example.com/dm"
        );
        assert_eq!(
            dm_url("https://bs.example.com:8444/bootstrap?x=1")
                .unwrap()
                .as_str(),
            "https://bs.example.com:8444/dm"
        );
        assert!(dm_url("not a url").is_err());
    }
}
