//! One simulated End Device as data: its management tree (DevInfo, DevDetail, DMAcc with ACLs), the
//! gateway account its provisioning installs, and the DM client session it opens (transport-free).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use omadm::alert::{self, GenericAlert};
use omadm::auth::AuthScheme;
use omadm::bootstrap::{Bootstrap, BootstrapError};
use omadm::element::Limits;
use omadm::mo::{self, DevInfo, DmAcc, MoError};
use omadm::model::{Command, Data};
use omadm::session::{ClientConfig, ClientSession, Credentials};
use omadm::tree::{Acl, AclCommand, NewNode, Tree, TreeError};
use omadm::uri::DmUri;
use thiserror::Error;

use crate::scenario::DeviceSpec;

/// `DevInfo/DmV` the simulated devices report.
pub const DM_VERSION: &str = "1.2";
/// `DevInfo/Lang` the simulated devices report.
pub const LANGUAGE: &str = "en-US";
/// The leaf under each account's `Ext` where the gateway hands over its ID and address (workflow 2).
pub const ASSOCIATED_GATEWAY_LEAF: &str = "AssociatedGateway";
/// The tag of the `BootstrappedDMSList` alert in the session's outcomes.
pub const DMS_LIST_TAG: &str = "bootstrapped-dms-list";

/// Something the device could not do with its own tree or with what the gateway sent.
#[derive(Debug, Error)]
pub enum DeviceError {
    /// A tree operation failed (building the tree, granting ACLs).
    #[error("tree: {0}")]
    Tree(#[from] TreeError),
    /// A management object could not be written or read.
    #[error("management object: {0}")]
    Mo(#[from] MoError),
    /// A URI could not be built.
    #[error("URI {uri:?}: {reason}")]
    Uri {
        /// The URI text.
        uri: String,
        /// What is wrong.
        reason: String,
    },
    /// The provisioning file is not a usable bootstrap.
    #[error("provisioning: {0}")]
    Bootstrap(#[from] BootstrapError),
    /// The provisioning bootstrap has no account for the gateway that asked for consent.
    #[error(
        "provisioning holds no account for the gateway {expected:?} that asked for consent (found {found:?})"
    )]
    NoGatewayAccount {
        /// The gateway_id of the consent request.
        expected: String,
        /// The ServerIDs the bootstrap carries.
        found: Vec<String>,
    },
    /// The provisioning bootstrap would also install or replace accounts of other servers.
    #[error("provisioning from {gateway:?} also carries accounts for {others:?}; refused")]
    ForeignAccounts {
        /// The gateway's ServerID.
        gateway: String,
        /// The other ServerIDs.
        others: Vec<String>,
    },
    /// The gateway's account is missing something the session needs.
    #[error("the gateway's account {server_id:?} has no {what}")]
    IncompleteAccount {
        /// The gateway's ServerID.
        server_id: String,
        /// What is missing.
        what: &'static str,
    },
    /// The gateway's account asks for an authentication the device cannot do.
    #[error("the gateway's account {server_id:?} uses {auth_type}, which a DM client cannot do")]
    UnsupportedAuth {
        /// The gateway's ServerID.
        server_id: String,
        /// The AAuthType.
        auth_type: String,
    },
    /// The gateway's ServerID cannot be written in a DM ACL, so it could not be granted access.
    #[error("the gateway's ServerID {server_id:?} holds &, +, = or * and cannot be granted an ACL")]
    UnwritableServerId {
        /// The ServerID.
        server_id: String,
    },
    /// A session was asked for before provisioning.
    #[error("the device has no gateway account yet")]
    NotProvisioned,
}

/// The account provisioning installed for the gateway, as the DM client uses it.
#[derive(Debug, Clone)]
pub struct GatewayAccount {
    /// The gateway's ServerID (its DevId).
    pub server_id: String,
    /// Where the account lives, e.g. `./DMAcc/gw-1`.
    pub uri: DmUri,
    /// The gateway's LAN DM URL (AppAddr).
    pub dm_url: String,
    /// The client credentials (CLCRED).
    pub credentials: Credentials,
    /// The nonce to compute md5/HMAC credentials with, when one is known (CLCRED AAuthData, or the
    /// last NextNonce the gateway sent).
    pub nonce: Option<Vec<u8>>,
}

/// A simulated End Device: its spec and its management tree.
#[derive(Debug, Clone)]
pub struct SimDevice {
    spec: DeviceSpec,
    tree: Tree,
    gateway: Option<GatewayAccount>,
}

fn uri(text: &str) -> Result<DmUri, DeviceError> {
    DmUri::try_from(text).map_err(|e| DeviceError::Uri {
        uri: text.to_owned(),
        reason: e.to_string(),
    })
}

fn child(parent: &DmUri, name: &str) -> Result<DmUri, DeviceError> {
    parent.join(name).map_err(|e| DeviceError::Uri {
        uri: format!("{}/{name}", parent.as_str()),
        reason: e.to_string(),
    })
}

/// Grant `commands` to `server_id` on the node's own ACL (starting from the ACL in force there).
fn grant(
    tree: &mut Tree,
    at: &DmUri,
    server_id: &str,
    commands: &[AclCommand],
) -> Result<(), DeviceError> {
    let current = tree
        .node(at)?
        .acl
        .clone()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| tree.effective_acl(at).clone());
    let acl = commands
        .iter()
        .fold(current, |acl, c| acl.allow(*c, server_id));
    tree.set_acl(at, Some(acl))?;
    Ok(())
}

impl SimDevice {
    /// Build the device's tree: `./DevInfo`, `./DevDetail/DevTyp`, and one `./DMAcc/<X>` per account
    /// (ServerID, AppAddr, `Ext/BootstrapServerURL` when known, an empty `Ext/AssociatedGateway`).
    /// Each account's own server may Get, Replace, Add and Delete in it; `./DMAcc` lets them Get.
    pub fn new(spec: DeviceSpec) -> Result<SimDevice, DeviceError> {
        let mut tree = Tree::new();
        DevInfo {
            dev_id: spec.dev_id.clone(),
            man: spec.man.clone(),
            model: spec.model.clone(),
            dm_v: DM_VERSION.to_owned(),
            lang: LANGUAGE.to_owned(),
            ext: BTreeMap::new(),
        }
        .write(&mut tree)?;
        if let Some(t) = &spec.dev_type {
            tree.add(&uri("./DevDetail/DevTyp")?, NewNode::chr(t))?;
        }
        let root = uri("./DMAcc")?;
        tree.add(&root, NewNode::interior())?;
        let mut root_acl = Acl::empty();
        for a in &spec.accounts {
            let at = child(&root, &a.node_name)?;
            let mut acc = DmAcc::new(a.server_id.clone(), a.addr.clone());
            if !a.hide_bootstrap_url {
                acc.bootstrap_server_url = a.bootstrap_server_url.clone();
            }
            acc.write(&mut tree, &at)?;
            let ext = child(&at, "Ext")?;
            if !tree.exists(&ext) {
                tree.add(&ext, NewNode::interior())?;
            }
            tree.add(&child(&ext, ASSOCIATED_GATEWAY_LEAF)?, NewNode::chr(""))?;
            let acl = [
                AclCommand::Add,
                AclCommand::Delete,
                AclCommand::Get,
                AclCommand::Replace,
            ]
            .into_iter()
            .fold(Acl::empty(), |acl, c| acl.allow(c, &a.server_id));
            tree.set_acl(&at, Some(acl))?;
            root_acl = root_acl.allow(AclCommand::Get, &a.server_id);
        }
        if !root_acl.is_empty() {
            tree.set_acl(&root, Some(root_acl))?;
        }
        Ok(SimDevice {
            spec,
            tree,
            gateway: None,
        })
    }

    /// The device's spec.
    pub fn spec(&self) -> &DeviceSpec {
        &self.spec
    }

    /// The device's management tree.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The device's management tree, for a DM session to execute commands on.
    pub fn tree_mut(&mut self) -> &mut Tree {
        &mut self.tree
    }

    /// The gateway account, once provisioned.
    pub fn gateway(&self) -> Option<&GatewayAccount> {
        self.gateway.as_ref()
    }

    /// The ServerIDs of every DM account the device holds except the gateway's, in node order: what
    /// the `BootstrappedDMSList` alert reports.
    pub fn reported_server_ids(&self) -> Result<Vec<String>, DeviceError> {
        let gw = self.gateway.as_ref().map(|g| g.server_id.as_str());
        Ok(DmAcc::all(&self.tree)?
            .into_iter()
            .map(|(_, a)| a.server_id)
            .filter(|s| Some(s.as_str()) != gw)
            .collect())
    }

    /// The values the gateway wrote to `Ext/AssociatedGateway`, by ServerID (non-empty ones only).
    pub fn associated_gateways(&self) -> Result<BTreeMap<String, String>, DeviceError> {
        let mut out = BTreeMap::new();
        for (at, acc) in DmAcc::all(&self.tree)? {
            let leaf = child(&child(&at, "Ext")?, ASSOCIATED_GATEWAY_LEAF)?;
            if let Ok(node) = self.tree.node(&leaf)
                && let Some(text) = node.text().filter(|t| !t.is_empty())
            {
                out.insert(acc.server_id, text.to_owned());
            }
        }
        Ok(out)
    }

    /// Step 1-3: decode the provisioning bootstrap and apply it. It must carry exactly the account of
    /// the gateway that asked for consent (`gateway_id`), with an AppAddr and CLCRED credentials of a
    /// SyncML scheme; an older account of that gateway is replaced. The gateway may then Get and
    /// Replace under `./DMAcc` (its own account and the others).
    pub fn apply_provisioning(
        &mut self,
        bytes: &[u8],
        gateway_id: &str,
        limits: &Limits,
    ) -> Result<&GatewayAccount, DeviceError> {
        let bootstrap = Bootstrap::decode(bytes, limits)?;
        let accounts = bootstrap.accounts()?;
        let Some(acc) = accounts.iter().find(|a| a.server_id == gateway_id) else {
            return Err(DeviceError::NoGatewayAccount {
                expected: gateway_id.to_owned(),
                found: accounts.iter().map(|a| a.server_id.clone()).collect(),
            });
        };
        let others: Vec<String> = accounts
            .iter()
            .filter(|a| a.server_id != gateway_id)
            .map(|a| a.server_id.clone())
            .collect();
        if !others.is_empty() {
            return Err(DeviceError::ForeignAccounts {
                gateway: gateway_id.to_owned(),
                others,
            });
        }
        if gateway_id.contains(['&', '+', '=', '*']) || gateway_id.chars().any(char::is_control) {
            return Err(DeviceError::UnwritableServerId {
                server_id: gateway_id.to_owned(),
            });
        }
        let incomplete = |what| DeviceError::IncompleteAccount {
            server_id: gateway_id.to_owned(),
            what,
        };
        let dm_url = acc
            .server_url()
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| incomplete("AppAddr"))?
            .trim()
            .to_owned();
        let clcred = acc
            .client_credentials()
            .ok_or_else(|| incomplete("CLCRED credentials"))?;
        let scheme = AuthScheme::from_aauth_type(clcred.auth_type.as_str()).map_err(|_| {
            DeviceError::UnsupportedAuth {
                server_id: gateway_id.to_owned(),
                auth_type: clcred.auth_type.as_str().to_owned(),
            }
        })?;
        let name = clcred
            .name
            .clone()
            .ok_or_else(|| incomplete("CLCRED AAuthName"))?;
        let secret = clcred
            .secret
            .clone()
            .ok_or_else(|| incomplete("CLCRED AAuthSecret"))?;
        let nonce = clcred
            .data
            .as_ref()
            .and_then(|d| B64.decode(d.expose().trim()).ok())
            .filter(|n| !n.is_empty());

        let mut next = self.tree.clone();
        if let Some((old, _)) = DmAcc::find_by_server_id(&next, gateway_id)? {
            next.delete(&old)?;
        }
        bootstrap.apply(&mut next)?;
        let (at, _) =
            DmAcc::find_by_server_id(&next, gateway_id)?.ok_or_else(|| incomplete("node"))?;
        let root = DmAcc::root(&next)?;
        let mut granted = vec![root.clone()];
        for name in next.children(&root)? {
            granted.push(child(&root, name)?);
        }
        for node in &granted {
            grant(
                &mut next,
                node,
                gateway_id,
                &[AclCommand::Get, AclCommand::Replace],
            )?;
        }
        self.tree = next;
        Ok(self.gateway.insert(GatewayAccount {
            server_id: gateway_id.to_owned(),
            uri: at,
            dm_url,
            credentials: Credentials {
                scheme,
                name,
                secret,
            },
            nonce,
        }))
    }

    /// Keep the NextNonce the gateway sent, for the next session.
    pub fn remember_nonce(&mut self, nonce: &[u8]) {
        if let Some(g) = self.gateway.as_mut()
            && !nonce.is_empty()
        {
            g.nonce = Some(nonce.to_vec());
        }
    }

    /// Step 1-4: the DM client session with the gateway. Package 1 carries Alert 1201, the DevInfo
    /// Replace and a Generic Alert `BootstrappedDMSList` listing [`SimDevice::reported_server_ids`]
    /// one per line (tagged [`DMS_LIST_TAG`]).
    pub fn session(&self, session_id: &str) -> Result<ClientSession, DeviceError> {
        let gw = self.gateway.as_ref().ok_or(DeviceError::NotProvisioned)?;
        let mut cfg = ClientConfig::new(
            gw.dm_url.clone(),
            gw.server_id.clone(),
            self.spec.dev_id.clone(),
            session_id,
        );
        cfg.credentials = Some(gw.credentials.clone());
        cfg.server_nonce = gw.nonce.clone().unwrap_or_default();
        let ids = self.reported_server_ids()?;
        let dms_list = GenericAlert {
            alert_type: alert::BOOTSTRAPPED_DMS_LIST.to_owned(),
            format: Some("chr".to_owned()),
            source: Some(format!("./{}", mo::DMACC_ROOT)),
            data: Some(Data::Text(alert::format_server_id_list(&ids))),
            ..GenericAlert::default()
        };
        let alert_cmd: Command = alert::build(None, &[dms_list]);
        let devinfo = [
            ("./DevInfo/DevId", self.spec.dev_id.as_str()),
            ("./DevInfo/Man", self.spec.man.as_str()),
            ("./DevInfo/Mod", self.spec.model.as_str()),
            ("./DevInfo/DmV", DM_VERSION),
            ("./DevInfo/Lang", LANGUAGE),
        ];
        Ok(ClientSession::new(
            cfg,
            &devinfo,
            vec![(alert_cmd, Some(DMS_LIST_TAG.to_owned()))],
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use omadm::codec::{self, Encoding};
    use omadm::mo::{AppAuth, AuthLevel, AuthType};
    use omadm::secret::Secret;
    use omadm::session::TreeAccess;
    use omadm::tnds::MgmtTree;

    use super::*;
    use crate::scenario::{AccountSpec, ConsentPolicy};

    const GW: &str = "GW:0001";

    fn spec() -> DeviceSpec {
        DeviceSpec {
            dev_id: "IMEI:356938035643809".into(),
            man: "Acme".into(),
            model: "Thermo 3".into(),
            dev_type: Some("thermostat".into()),
            consent: ConsentPolicy::Allow,
            heartbeat: Duration::from_secs(30),
            provisioning_encoding: Encoding::Xml,
            dm_encoding: Encoding::Xml,
            accounts: vec![
                AccountSpec {
                    server_id: "dms-1".into(),
                    addr: "https://dms1.example.com/dm".into(),
                    bootstrap_server_url: Some("https://bs1.example.com/bs".into()),
                    node_name: "dms-1".into(),
                    hide_bootstrap_url: false,
                },
                AccountSpec {
                    server_id: "dms-2".into(),
                    addr: "https://dms2.example.com/dm".into(),
                    bootstrap_server_url: None,
                    node_name: "Acc2".into(),
                    hide_bootstrap_url: false,
                },
            ],
        }
    }

    /// A provisioning bootstrap as a gateway builds it.
    fn provisioning(accounts: &[(&str, AuthType)], enc: Encoding) -> Vec<u8> {
        let mut t = Tree::new();
        for (id, auth) in accounts {
            let mut acc = DmAcc::new(*id, "https://gw.lan/lan/v1/dm");
            acc.app_auth = vec![AppAuth {
                key: "CL".into(),
                level: AuthLevel::Clcred,
                auth_type: *auth,
                name: Some("dev-1".into()),
                secret: Some(Secret::new("pw")),
                data: None,
            }];
            let at = DmAcc::account_uri(&t, id).unwrap();
            acc.write(&mut t, &at).unwrap();
        }
        let tnds = MgmtTree::from_subtree(&t, &uri("./DMAcc").unwrap()).unwrap();
        let msg = omadm::bootstrap::build_tnds("dev", GW, &tnds, enc);
        codec::encode(&msg, enc).unwrap()
    }

    #[test]
    fn tree_holds_devinfo_and_accounts() {
        let d = SimDevice::new(spec()).unwrap();
        let info = DevInfo::read(d.tree()).unwrap();
        assert_eq!(info.man, "Acme");
        let accounts = DmAcc::all(d.tree()).unwrap();
        assert_eq!(accounts.len(), 2);
        assert_eq!(
            d.reported_server_ids().unwrap(),
            vec!["dms-2".to_string(), "dms-1".into()]
        );
        // Each server sees its own account only.
        let mut t = d.tree().clone();
        assert!(TreeAccess::get(&mut t, "./DMAcc/dms-1/ServerID", "dms-1").is_ok());
        assert_eq!(
            TreeAccess::get(&mut t, "./DMAcc/dms-1/ServerID", "dms-2"),
            Err(425)
        );
        assert!(d.associated_gateways().unwrap().is_empty());
    }

    #[test]
    fn provisioning_grants_the_gateway_get_and_replace() {
        for enc in [Encoding::Xml, Encoding::Wbxml] {
            let mut d = SimDevice::new(spec()).unwrap();
            let mut t = d.tree().clone();
            assert_eq!(
                TreeAccess::get(&mut t, "./DMAcc/dms-1/Ext/BootstrapServerURL", GW),
                Err(425)
            );
            let bytes = provisioning(&[(GW, AuthType::Digest)], enc);
            let gw = d
                .apply_provisioning(&bytes, GW, &Limits::default())
                .unwrap()
                .clone();
            assert_eq!(gw.credentials.scheme, AuthScheme::Md5);
            assert_eq!(gw.dm_url, "https://gw.lan/lan/v1/dm");
            assert!(gw.nonce.is_none());
            let t = d.tree_mut();
            let items = TreeAccess::get(t, "./DMAcc/dms-1/Ext/BootstrapServerURL", GW).unwrap();
            assert_eq!(
                items[0].data.as_ref().unwrap().as_text().unwrap(),
                "https://bs1.example.com/bs"
            );
            assert_eq!(
                TreeAccess::get(t, "./DMAcc/Acc2/Ext/BootstrapServerURL", GW),
                Err(404)
            );
            TreeAccess::replace(
                t,
                "./DMAcc/Acc2/Ext/AssociatedGateway",
                None,
                Some(&Data::Text("GW:0001 https://gw.example".into())),
                GW,
            )
            .unwrap();
            // The gateway may not add accounts, nor read secrets.
            assert_eq!(
                TreeAccess::add(t, "./DMAcc/evil/ServerID", None, None, GW),
                Err(425)
            );
            let secret = format!(
                "{}/AppAuth/CL/AAuthSecret",
                DmAcc::account_uri(d.tree(), GW).unwrap().as_str()
            );
            assert_eq!(TreeAccess::get(d.tree_mut(), &secret, GW), Err(405));
            assert_eq!(
                d.associated_gateways()
                    .unwrap()
                    .get("dms-2")
                    .map(String::as_str),
                Some("GW:0001 https://gw.example")
            );
            assert_eq!(
                d.reported_server_ids().unwrap(),
                vec!["dms-2".to_string(), "dms-1".into()]
            );
            // Provisioning again replaces the gateway's account.
            d.apply_provisioning(&bytes, GW, &Limits::default())
                .unwrap();
            assert_eq!(DmAcc::all(d.tree()).unwrap().len(), 3);
        }
    }

    #[test]
    fn provisioning_is_checked() {
        let mut d = SimDevice::new(spec()).unwrap();
        let limits = Limits::default();
        let other = provisioning(&[("someone-else", AuthType::Digest)], Encoding::Xml);
        assert!(matches!(
            d.apply_provisioning(&other, GW, &limits),
            Err(DeviceError::NoGatewayAccount { .. })
        ));
        let extra = provisioning(
            &[(GW, AuthType::Digest), ("dms-1", AuthType::Digest)],
            Encoding::Xml,
        );
        assert!(matches!(
            d.apply_provisioning(&extra, GW, &limits),
            Err(DeviceError::ForeignAccounts { .. })
        ));
        let x509 = provisioning(&[(GW, AuthType::X509)], Encoding::Xml);
        assert!(matches!(
            d.apply_provisioning(&x509, GW, &limits),
            Err(DeviceError::UnsupportedAuth { .. })
        ));
        assert!(matches!(
            d.apply_provisioning(b"garbage", GW, &limits),
            Err(DeviceError::Bootstrap(_))
        ));
        assert!(d.gateway().is_none());
        assert!(matches!(d.session("1"), Err(DeviceError::NotProvisioned)));
        // Nothing was applied.
        assert_eq!(DmAcc::all(d.tree()).unwrap().len(), 2);
    }

    #[test]
    fn package_one_carries_the_dms_list() {
        let mut d = SimDevice::new(spec()).unwrap();
        let bytes = provisioning(&[(GW, AuthType::Digest)], Encoding::Xml);
        d.apply_provisioning(&bytes, GW, &Limits::default())
            .unwrap();
        let mut s = d.session("7").unwrap();
        let p1 = s.start().unwrap();
        let ga = p1
            .body
            .commands
            .iter()
            .find_map(|c| match c {
                Command::Alert(a) if a.code == 1226 => Some(alert::parse(a).unwrap()),
                _ => None,
            })
            .unwrap();
        let item = &ga.alerts[0];
        assert!(alert::same_type(
            &item.alert_type,
            alert::BOOTSTRAPPED_DMS_LIST
        ));
        let ids = alert::parse_server_id_list(&item.data.as_ref().unwrap().as_text().unwrap());
        assert_eq!(ids, vec!["dms-2".to_string(), "dms-1".into()]);
        assert_eq!(p1.hdr.source.loc_uri, "IMEI:356938035643809");
        assert_eq!(p1.hdr.source.loc_name.as_deref(), Some("dev-1"));
    }
}
