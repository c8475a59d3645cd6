//! Getting the gateway bootstrapped (steps 4-7): fetching a bootstrap by HTTPS GET (workflow 1),
//! checking a pushed one's MAC (workflow 2), and applying either to the DMAcc tree in one transaction.

use omadm::auth::PushKeyMaterial;
use omadm::bootstrap::{self, Bootstrap, BootstrapError};
use omadm::codec::{self, Encoding};
use omadm::element::Limits;
use omadm::secret::Secret;
use omadm::tree::Tree;
use thiserror::Error;

use crate::domain::{ApplyOutcome, Origin};
use crate::store::{Store, StoreError};

/// Largest bootstrap message accepted.
pub const MAX_BOOTSTRAP_BYTES: usize = 256 * 1024;

/// A bootstrap could not be obtained or used. Each variant's doc names the push endpoint's status.
#[derive(Debug, Error)]
pub enum GatewayBootstrapError {
    /// 400 (transport error for fetches): the URL is unusable.
    #[error("bootstrap URL: {0}")]
    Url(String),
    /// 502: the bootstrap server could not be reached.
    #[error("bootstrap server unreachable: {0}")]
    Transport(#[from] reqwest::Error),
    /// 502: the bootstrap server answered with an error.
    #[error("bootstrap server answered HTTP {0}")]
    Http(u16),
    /// 413: the message is too large.
    #[error("bootstrap message larger than {MAX_BOOTSTRAP_BYTES} bytes")]
    TooLarge,
    /// 401: the push's SEC/MAC are missing or wrong.
    #[error("push security: {0}")]
    Security(String),
    /// 400: not a valid bootstrap message.
    #[error("invalid bootstrap: {0}")]
    Invalid(#[from] BootstrapError),
    /// 403: the bootstrap is addressed to another gateway.
    #[error("bootstrap addressed to {found:?}, not to this gateway")]
    NotForUs {
        /// The target found (truncated).
        found: String,
    },
    /// 422: the bootstrap does not carry the account that was asked for.
    #[error("bootstrap carries no account for {server_id}")]
    MissingAccount {
        /// The ServerID asked for.
        server_id: String,
    },
    /// 500: the store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Decode a bootstrap message and check it is addressed to `gateway_id`.
pub fn decode_for(
    bytes: &[u8],
    gateway_id: &str,
    limits: &Limits,
) -> Result<Bootstrap, GatewayBootstrapError> {
    if bytes.len() > MAX_BOOTSTRAP_BYTES {
        return Err(GatewayBootstrapError::TooLarge);
    }
    let msg = codec::decode(bytes, limits).map_err(BootstrapError::from)?;
    let target = msg.hdr.target.loc_uri.trim();
    if target != gateway_id {
        return Err(GatewayBootstrapError::NotForUs {
            found: target.chars().take(96).collect(),
        });
    }
    Ok(Bootstrap::from_message(&msg, limits)?)
}

/// Apply a bootstrap's accounts to the gateway's DMAcc, all or nothing, never overwriting an
/// existing account unless `overwrite`.
pub async fn apply(
    store: &Store,
    b: &Bootstrap,
    overwrite: bool,
) -> Result<ApplyOutcome, GatewayBootstrapError> {
    let mut scratch = Tree::new();
    b.apply(&mut scratch)?;
    Ok(store
        .apply_dmacc(&scratch, Origin::Bootstrap, overwrite)
        .await?)
}

/// Verify a pushed bootstrap's `SEC`/`MAC` with the gateway's key material.
pub fn verify_push(
    content_type: &str,
    body: &[u8],
    pin: Option<&Secret>,
    imsi: Option<&Secret>,
) -> Result<(), GatewayBootstrapError> {
    let material = PushKeyMaterial {
        imsi: imsi.cloned(),
        pin: pin.cloned(),
    };
    if material.imsi.is_none() && material.pin.is_none() {
        return Err(GatewayBootstrapError::Security(
            "the gateway has no push key configured (--push-pin / --push-imsi)".into(),
        ));
    }
    bootstrap::verify_push(content_type, &material, body)
        .map(|_| ())
        .map_err(|e| GatewayBootstrapError::Security(e.to_string()))
}

/// Fetches bootstraps by HTTPS GET (workflow 1).
#[derive(Debug, Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    gateway_id: String,
    basic: Option<(String, Secret)>,
    allow_plain_http: bool,
}

impl Fetcher {
    /// A fetcher with its HTTP client (TLS, client identity set up by the caller).
    pub fn new(
        http: reqwest::Client,
        gateway_id: String,
        basic: Option<(String, Secret)>,
        allow_plain_http: bool,
    ) -> Fetcher {
        Fetcher {
            http,
            gateway_id,
            basic,
            allow_plain_http,
        }
    }

    /// GET the bootstrap for `server_id` from the bootstrap server at `base_url`
    /// (`{base_url}/bootstrap?server_id=...`, or the URL as given when it already has a path).
    pub async fn fetch(
        &self,
        base_url: &str,
        server_id: &str,
    ) -> Result<Bootstrap, GatewayBootstrapError> {
        let mut url = url::Url::parse(base_url.trim())
            .map_err(|e| GatewayBootstrapError::Url(e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_plain_http => {}
            other => {
                return Err(GatewayBootstrapError::Url(format!(
                    "scheme {other:?} not allowed (https required)"
                )));
            }
        }
        if url.path() == "/" || url.path().is_empty() {
            url.set_path("/bootstrap");
        }
        url.query_pairs_mut().append_pair("server_id", server_id);
        let mut req = self.http.get(url).header(
            reqwest::header::ACCEPT,
            format!("{}, {};q=0.9", Encoding::Wbxml.mime(), Encoding::Xml.mime()),
        );
        if let Some((name, secret)) = &self.basic {
            req = req.basic_auth(name, Some(secret.expose()));
        }
        let resp = telemetry::http::send(req).await?;
        if !resp.status().is_success() {
            return Err(GatewayBootstrapError::Http(resp.status().as_u16()));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_BOOTSTRAP_BYTES as u64)
        {
            return Err(GatewayBootstrapError::TooLarge);
        }
        let bytes = resp.bytes().await?;
        let b = decode_for(&bytes, &self.gateway_id, &Limits::default())?;
        let accounts = b.accounts()?;
        if !accounts.iter().any(|a| a.server_id == server_id) {
            return Err(GatewayBootstrapError::MissingAccount {
                server_id: server_id.to_owned(),
            });
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omadm::auth::Sec;
    use omadm::mo::DmAcc;
    use omadm::tnds::MgmtTree;

    fn message(target: &str) -> Vec<u8> {
        let mut t = Tree::new();
        let acc = DmAcc::new("dms-2", "https://dms2.example/dm");
        let uri = DmAcc::account_uri(&t, "dms-2").unwrap();
        acc.write(&mut t, &uri).unwrap();
        let tnds = MgmtTree::from_subtree(&t, &uri).unwrap();
        codec::encode(
            &bootstrap::build_tnds(target, "https://bs", &tnds, Encoding::Wbxml),
            Encoding::Wbxml,
        )
        .unwrap()
    }

    #[test]
    fn only_bootstraps_for_this_gateway_are_accepted() {
        let l = Limits::default();
        assert!(decode_for(&message("gw-1"), "gw-1", &l).is_ok());
        assert!(matches!(
            decode_for(&message("gw-2"), "gw-1", &l),
            Err(GatewayBootstrapError::NotForUs { .. })
        ));
        assert!(matches!(
            decode_for(b"<SyncML>", "gw-1", &l),
            Err(GatewayBootstrapError::Invalid(_))
        ));
        assert!(matches!(
            decode_for(&vec![b' '; MAX_BOOTSTRAP_BYTES + 1], "gw-1", &l),
            Err(GatewayBootstrapError::TooLarge)
        ));
    }

    #[test]
    fn pushes_need_a_matching_mac() {
        let body = message("gw-1");
        let pin = Secret::new("1234");
        let ct = bootstrap::sign_push(
            Encoding::Wbxml.mime(),
            Sec::UserPin,
            &PushKeyMaterial::pin(pin.clone()),
            &body,
        )
        .unwrap();
        assert!(verify_push(&ct, &body, Some(&pin), None).is_ok());
        assert!(verify_push(&ct, b"other", Some(&pin), None).is_err());
        assert!(verify_push(&ct, &body, Some(&Secret::new("9999")), None).is_err());
        assert!(verify_push(Encoding::Wbxml.mime(), &body, Some(&pin), None).is_err());
        assert!(verify_push(&ct, &body, None, None).is_err());
    }
}
