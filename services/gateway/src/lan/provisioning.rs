//! Step 1-3: the one-time provisioning file. A DM-profile bootstrap (Add to `./Inbox`, TNDS) gives the
//! device a DMAcc for the gateway with credentials made for it; only their digest is kept.

use actix_web::{HttpRequest, HttpResponse, web};
use omadm::auth::DigestKey;
use omadm::bootstrap;
use omadm::codec::{self, Encoding};
use omadm::mo::{AddrType, AppAddr, AppAuth, AuthLevel, AuthType, DmAcc};
use omadm::secret::Secret;
use omadm::tnds::MgmtTree;
use omadm::tree::Tree;
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::{LanError, LanState};
use crate::actors::inventory::SetState;
use crate::actors::{ActorError, TracedExt};
use crate::domain::{Millis, NewEvent};
use crate::store::{StoreError, events, lan};

/// The encoding the device asked for in `Accept` (XML when it names none).
pub fn negotiate(accept: Option<&str>) -> Result<Encoding, LanError> {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(Encoding::Xml);
    };
    let mut any = false;
    for part in accept.split(',') {
        let mime = part.split(';').next().unwrap_or("").trim();
        if let Some(enc) = Encoding::from_content_type(mime) {
            return Ok(enc);
        }
        any |= mime == "*/*" || mime == "application/*";
    }
    if any {
        Ok(Encoding::Xml)
    } else {
        Err(LanError::NotAcceptable)
    }
}

/// The device's account name at the gateway: stable per DevId, not revealing it.
pub fn device_account_name(dev_id: &str) -> String {
    let h = Sha256::digest(dev_id.as_bytes());
    format!("dev-{}", hex::encode(h.get(..8).unwrap_or_default()))
}

/// The DMAcc a device gets for the gateway.
pub fn gateway_account(
    gateway_id: &str,
    dm_url: &str,
    client: (&str, &Secret),
    server: (&str, &Secret),
) -> DmAcc {
    DmAcc {
        server_id: gateway_id.to_owned(),
        name: Some("dmgw gateway".into()),
        pref_con_ref: None,
        app_addr: vec![AppAddr {
            key: "1".into(),
            addr: dm_url.to_owned(),
            addr_type: AddrType::Uri,
            ports: Vec::new(),
        }],
        aauth_pref: Some(AuthType::Digest),
        app_auth: vec![
            AppAuth {
                key: "CLCRED".into(),
                level: AuthLevel::Clcred,
                auth_type: AuthType::Digest,
                name: Some(client.0.to_owned()),
                secret: Some(client.1.clone()),
                data: None,
            },
            AppAuth {
                key: "SRVCRED".into(),
                level: AuthLevel::Srvcred,
                auth_type: AuthType::Digest,
                name: Some(server.0.to_owned()),
                secret: Some(server.1.clone()),
                data: None,
            },
        ],
        bootstrap_server_url: None,
    }
}

/// The bootstrap message for one device.
pub fn bootstrap_message(
    dev_id: &str,
    source: &str,
    account: &DmAcc,
    encoding: Encoding,
) -> Result<Vec<u8>, LanError> {
    let internal = |e: &dyn std::fmt::Display| LanError::Internal(e.to_string());
    let mut tree = Tree::new();
    let uri = DmAcc::account_uri(&tree, &account.server_id).map_err(|e| internal(&e))?;
    account.write(&mut tree, &uri).map_err(|e| internal(&e))?;
    let tnds = MgmtTree::from_subtree(&tree, &uri).map_err(|e| internal(&e))?;
    let msg = bootstrap::build_tnds(dev_id, source, &tnds, encoding);
    codec::encode(&msg, encoding).map_err(|e| internal(&e))
}

/// `GET /lan/v1/provisioning/{token}`.
pub async fn provision(
    lan: web::Data<LanState>,
    token: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, LanError> {
    let accept = req
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let encoding = negotiate(accept)?;
    let now = Millis::now();
    let mut tx = lan.store.begin().await?;
    let dev_id = match lan::consume_provisioning_token(&mut tx, &token, now).await {
        Ok(d) => d,
        Err(StoreError::NotFound { .. }) => return Err(LanError::Gone),
        Err(e) => return Err(e.into()),
    };
    let span = tracing::info_span!("provision", dev_id = %dev_id, encoding = encoding.mime());
    crate::onboarding::adopt_in(&mut tx, &span, &dev_id).await;
    let body = async {
        let name = device_account_name(&dev_id);
        let password = Secret::new(lan::new_token());
        let server_secret = Secret::new(lan::new_token());
        let creds = lan::DeviceCredentials {
            dev_id: dev_id.clone(),
            auth_name: name.clone(),
            digest_key: DigestKey::new(&name, &password),
            nonce: None,
            server_name: lan.settings.dev_id.clone(),
            server_secret: server_secret.clone(),
        };
        lan::put_credentials(&mut tx, &creds, now).await?;
        events::log(
            &mut tx,
            &[NewEvent {
                dev_id: Some(dev_id.clone()),
                kind: "provisioned".into(),
                detail: json!({ "encoding": encoding.mime(), "account": name }),
                at: now,
            }],
        )
        .await?;
        let account = gateway_account(
            &lan.settings.dev_id,
            &format!("{}/lan/v1/dm", lan.settings.lan_public_url),
            (&name, &password),
            (&lan.settings.dev_id, &server_secret),
        );
        let body = bootstrap_message(&dev_id, &lan.settings.lan_public_url, &account, encoding)?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok::<_, LanError>(body)
    }
    .instrument(span.clone())
    .await?;
    lan.actors
        .inventory
        .send(
            SetState {
                dev_id: dev_id.clone(),
                state: omadm::mo::DeviceState::Provisioned,
                event: "provisioning_fetched",
                detail: json!({}),
            }
            .in_span(span),
        )
        .await
        .map_err(ActorError::from)??;
    metrics::counter!("dmgw_provisioned_total").increment(1);
    Ok(HttpResponse::Ok()
        .content_type(encoding.mime())
        .insert_header(("Cache-Control", "no-store"))
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use omadm::bootstrap::Bootstrap;
    use omadm::element::Limits;

    #[test]
    fn accept_negotiation() {
        assert_eq!(negotiate(None).unwrap(), Encoding::Xml);
        assert_eq!(
            negotiate(Some("application/vnd.syncml.dm+wbxml")).unwrap(),
            Encoding::Wbxml
        );
        assert_eq!(
            negotiate(Some("text/html, */*;q=0.1")).unwrap(),
            Encoding::Xml
        );
        assert!(matches!(
            negotiate(Some("text/html")),
            Err(LanError::NotAcceptable)
        ));
    }

    #[test]
    fn the_bootstrap_gives_the_device_a_usable_account() {
        let pw = Secret::new("device-password");
        let srv = Secret::new("gateway-password");
        let acc = gateway_account(
            "urn:dmgw:gw1",
            "https://gw.lan:8443/lan/v1/dm",
            ("dev-1", &pw),
            ("urn:dmgw:gw1", &srv),
        );
        for enc in [Encoding::Xml, Encoding::Wbxml] {
            let bytes = bootstrap_message("IMEI:1", "https://gw.lan:8443", &acc, enc).unwrap();
            let accounts = Bootstrap::decode(&bytes, &Limits::default())
                .unwrap()
                .accounts()
                .unwrap();
            assert_eq!(accounts.len(), 1);
            let a = &accounts[0];
            assert_eq!(a.server_id, "urn:dmgw:gw1");
            assert_eq!(a.server_url(), Some("https://gw.lan:8443/lan/v1/dm"));
            let c = a.client_credentials().unwrap();
            assert_eq!(
                c.secret.as_ref().map(Secret::expose),
                Some("device-password")
            );
            assert_eq!(c.name.as_deref(), Some("dev-1"));
        }
    }

    #[test]
    fn account_names_are_stable_and_opaque() {
        let a = device_account_name("IMEI:1");
        assert_eq!(a, device_account_name("IMEI:1"));
        assert_ne!(a, device_account_name("IMEI:2"));
        assert!(!a.contains("IMEI"));
    }
}
