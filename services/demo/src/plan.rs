//! The cast of the demo: three DM Servers (one the gateway knows from the factory, two it only gets
//! through a DM Bootstrap Server), the four End Devices with their DM accounts, and their users' consent.

use std::collections::BTreeMap;
use std::time::Duration;

use device_sim::scenario::{AccountSpec, ConsentPolicy, DEFAULT_HEARTBEAT, DeviceSpec};
use omadm::codec::Encoding;

use crate::error::DemoError;

/// The gateway's DevId: its ServerID towards the devices, its identity towards the DM Servers and
/// the bootstrap server (the `G` of the passwords the bootstrap server derives).
pub const GATEWAY_DEV_ID: &str = "urn:dmgw:demo-gateway";
/// The gateway's account name: at the factory DM Server (the `G` of its derived password), and its
/// HTTP Basic user name at the bootstrap server (workflow 1; a Basic user name has no ':').
pub const GATEWAY_ACCOUNT: &str = "dmgw-demo-gateway";

/// A DM Server of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerPlan {
    /// Its ServerID.
    pub server_id: &'static str,
    /// What it stands for.
    pub name: &'static str,
    /// True when the gateway has a factory account for it.
    pub known_to_gateway: bool,
    /// True when the bootstrap server has a profile for it (it can bootstrap the gateway for it).
    pub bootstrap_profile: bool,
}

/// The DM Servers: `dms-1` is in the gateway's factory accounts; `dms-2` and `dms-3` are not, but
/// the demo's bootstrap server has a profile for each (sharing its master key), so the gateway
/// gets an account for them by workflow 1 (`dms-2`, through the smart plug) and workflow 2
/// (`dms-3`, through the smart meter).
pub const SERVERS: [ServerPlan; 3] = [
    ServerPlan {
        server_id: "dms-1",
        name: "operator DM Server",
        known_to_gateway: true,
        bootstrap_profile: false,
    },
    ServerPlan {
        server_id: "dms-2",
        name: "vendor DM Server",
        known_to_gateway: false,
        bootstrap_profile: true,
    },
    ServerPlan {
        server_id: "dms-3",
        name: "utility DM Server",
        known_to_gateway: false,
        bootstrap_profile: true,
    },
];

/// What a device's account says about its server's DM Bootstrap Server
/// (`./DMAcc/<X>/Ext/BootstrapServerURL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapUrl {
    /// The account names none.
    None,
    /// The account names the demo's bootstrap server and the gateway can read it: workflow 1.
    Visible,
    /// The device knows the bootstrap server but the gateway cannot read it: under policy `1,2`
    /// the gateway falls back to workflow 2, and the device relays its hand-over there.
    Hidden,
}

/// One DM account of a device (besides the gateway's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountPlan {
    /// The account's ServerID.
    pub server_id: &'static str,
    /// Its bootstrap-server URL.
    pub bootstrap_url: BootstrapUrl,
}

const fn account(server_id: &'static str, bootstrap_url: BootstrapUrl) -> AccountPlan {
    AccountPlan {
        server_id,
        bootstrap_url,
    }
}

/// An End Device of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevicePlan {
    /// `DevInfo/DevId`.
    pub dev_id: &'static str,
    /// What it is, for the story.
    pub name: &'static str,
    /// `DevInfo/Man`.
    pub man: &'static str,
    /// `DevInfo/Mod`.
    pub model: &'static str,
    /// What its user answers when the gateway asks for consent.
    pub consent: ConsentPolicy,
    /// The DM accounts it holds (their ServerIDs are reported in `BootstrappedDMSList`).
    pub accounts: &'static [AccountPlan],
    /// Encoding of its provisioning and DM session.
    pub encoding: Encoding,
}

/// The devices: a thermostat with only `dms-1` whose user allows at once; a smart plug with `dms-1`
/// and `dms-2` (speaking WBXML, its `dms-2` account naming the bootstrap server: workflow 1) whose
/// user allows after a second; a camera whose user refuses; and a smart meter with only `dms-3`
/// whose bootstrap-server URL the gateway cannot read (workflow 2: the meter relays the gateway's
/// hand-over to the bootstrap server, which pushes to the gateway).
pub const DEVICES: [DevicePlan; 4] = [
    DevicePlan {
        dev_id: "IMEI:356938035643809",
        name: "thermostat",
        man: "Acme",
        model: "Thermo 3",
        consent: ConsentPolicy::Allow,
        accounts: &[account("dms-1", BootstrapUrl::None)],
        encoding: Encoding::Xml,
    },
    DevicePlan {
        dev_id: "MAC:00-1B-44-11-3A-B7",
        name: "smart plug",
        man: "Plugs Inc",
        model: "P100",
        consent: ConsentPolicy::AllowAfter(Duration::from_secs(1)),
        accounts: &[
            account("dms-1", BootstrapUrl::None),
            account("dms-2", BootstrapUrl::Visible),
        ],
        encoding: Encoding::Wbxml,
    },
    DevicePlan {
        dev_id: "IMEI:490154203237518",
        name: "camera",
        man: "Lens Co",
        model: "Cam 2",
        consent: ConsentPolicy::Refuse,
        accounts: &[account("dms-1", BootstrapUrl::None)],
        encoding: Encoding::Xml,
    },
    DevicePlan {
        dev_id: "MAC:00-50-C2-9F-41-07",
        name: "smart meter",
        man: "Metering AG",
        model: "M-7",
        consent: ConsentPolicy::Allow,
        accounts: &[account("dms-3", BootstrapUrl::Hidden)],
        encoding: Encoding::Xml,
    },
];

/// The plan of the server `server_id`, if it is one of the demo's.
pub fn server(server_id: &str) -> Option<&'static ServerPlan> {
    SERVERS.iter().find(|s| s.server_id == server_id)
}

/// How a consent policy reads in the story.
pub fn consent_text(policy: ConsentPolicy) -> String {
    match policy {
        ConsentPolicy::Allow => "allow".into(),
        ConsentPolicy::Refuse => "refuse".into(),
        ConsentPolicy::AllowAfter(d) => format!("allow after {}", seconds(d)),
        ConsentPolicy::RefuseAfter(d) => format!("refuse after {}", seconds(d)),
    }
}

/// `1.2s` style.
pub fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl DevicePlan {
    /// The ServerIDs of its accounts, in plan order.
    pub fn server_ids(&self) -> Vec<&'static str> {
        self.accounts.iter().map(|a| a.server_id).collect()
    }

    /// Its accounts in words: `dms-1, dms-2 (bootstrap URL visible)`.
    pub fn accounts_text(&self) -> String {
        self.accounts
            .iter()
            .map(|a| match a.bootstrap_url {
                BootstrapUrl::None => a.server_id.to_owned(),
                BootstrapUrl::Visible => format!("{} (bootstrap URL readable)", a.server_id),
                BootstrapUrl::Hidden => format!("{} (bootstrap URL hidden)", a.server_id),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The simulated device, its accounts pointing at the DM Servers' URLs (`dm_urls` by ServerID)
    /// and, where the plan says so, at the bootstrap server's base URL `bootstrap_url`.
    pub fn spec(
        &self,
        dm_urls: &BTreeMap<String, String>,
        bootstrap_url: &str,
    ) -> Result<DeviceSpec, DemoError> {
        let bad = |reason: String| DemoError::Device {
            dev_id: self.dev_id.to_owned(),
            reason,
        };
        let accounts = self
            .accounts
            .iter()
            .map(|a| {
                let id = a.server_id;
                let addr = dm_urls
                    .get(id)
                    .ok_or_else(|| bad(format!("no DM Server {id} is running")))?;
                Ok(AccountSpec {
                    server_id: id.to_owned(),
                    addr: addr.clone(),
                    bootstrap_server_url: (a.bootstrap_url != BootstrapUrl::None)
                        .then(|| bootstrap_url.to_owned()),
                    node_name: omadm::mo::escape_name(id).map_err(|e| bad(e.to_string()))?,
                    hide_bootstrap_url: a.bootstrap_url == BootstrapUrl::Hidden,
                })
            })
            .collect::<Result<Vec<_>, DemoError>>()?;
        Ok(DeviceSpec {
            dev_id: self.dev_id.to_owned(),
            man: self.man.to_owned(),
            model: self.model.to_owned(),
            dev_type: Some(self.name.to_owned()),
            consent: self.consent,
            heartbeat: DEFAULT_HEARTBEAT,
            provisioning_encoding: self.encoding,
            dm_encoding: self.encoding,
            accounts,
        })
    }

    /// The servers that should receive `deviceattached` for this device in the end: those it holds
    /// an account for that the gateway knows or can be bootstrapped for; none when the user refuses.
    pub fn expected_alerts(&self) -> Vec<&'static str> {
        if !self.consent.allows() {
            return Vec::new();
        }
        self.accounts
            .iter()
            .map(|a| a.server_id)
            .filter(|s| server(s).is_some_and(|p| p.known_to_gateway || p.bootstrap_profile))
            .collect()
    }

    /// The workflow by which the gateway is expected to get an account for `server_id` through this
    /// device (policy `1,2`): 1 when the device's account names a readable bootstrap-server URL,
    /// 2 otherwise; `None` when the gateway knows the server already or the user refuses.
    pub fn expected_workflow(&self, server_id: &str) -> Option<i64> {
        let known = server(server_id).is_some_and(|p| p.known_to_gateway);
        if known || !self.consent.allows() {
            return None;
        }
        let a = self.accounts.iter().find(|a| a.server_id == server_id)?;
        Some(if a.bootstrap_url == BootstrapUrl::Visible {
            1
        } else {
            2
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cast_is_as_the_story_needs() {
        let expected: Vec<Vec<&str>> = DEVICES.iter().map(|d| d.expected_alerts()).collect();
        assert_eq!(
            expected,
            vec![vec!["dms-1"], vec!["dms-1", "dms-2"], vec![], vec!["dms-3"]]
        );
        assert_eq!(consent_text(DEVICES[1].consent), "allow after 1.0s");
        assert!(server("dms-2").is_some_and(|s| !s.known_to_gateway && s.bootstrap_profile));
        assert_eq!(DEVICES[1].expected_workflow("dms-1"), None);
        assert_eq!(DEVICES[1].expected_workflow("dms-2"), Some(1));
        assert_eq!(DEVICES[3].expected_workflow("dms-3"), Some(2));
        assert_eq!(DEVICES[2].expected_workflow("dms-1"), None);
        assert_eq!(
            DEVICES[1].accounts_text(),
            "dms-1, dms-2 (bootstrap URL readable)"
        );
    }

    #[test]
    fn specs_point_at_the_running_servers() {
        let urls: BTreeMap<String, String> = [
            ("dms-1".to_owned(), "https://127.0.0.1:1/dm".to_owned()),
            ("dms-2".to_owned(), "https://127.0.0.1:2/dm".to_owned()),
            ("dms-3".to_owned(), "https://127.0.0.1:3/dm".to_owned()),
        ]
        .into();
        let bs = "https://127.0.0.1:4";
        let spec = DEVICES[1].spec(&urls, bs).unwrap();
        assert_eq!(spec.accounts.len(), 2);
        assert_eq!(spec.accounts[1].addr, "https://127.0.0.1:2/dm");
        assert_eq!(spec.accounts[0].bootstrap_server_url, None);
        assert_eq!(spec.accounts[1].bootstrap_server_url.as_deref(), Some(bs));
        assert!(!spec.accounts[1].hide_bootstrap_url);
        assert_eq!(spec.dm_encoding, Encoding::Wbxml);
        let meter = DEVICES[3].spec(&urls, bs).unwrap();
        assert_eq!(meter.accounts[0].bootstrap_server_url.as_deref(), Some(bs));
        assert!(meter.accounts[0].hide_bootstrap_url);
        let only_one: BTreeMap<String, String> =
            [("dms-1".to_owned(), "https://127.0.0.1:1/dm".to_owned())].into();
        assert!(DEVICES[1].spec(&only_one, bs).is_err());
    }
}
