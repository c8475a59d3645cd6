//! The cast of the demo: the two DM Servers (one the gateway knows from the factory, one it does
//! not) and the three End Devices, with their DM accounts and how their users answer consent.

use std::collections::BTreeMap;
use std::time::Duration;

use device_sim::scenario::{AccountSpec, ConsentPolicy, DEFAULT_HEARTBEAT, DeviceSpec};
use omadm::codec::Encoding;

use crate::error::DemoError;

/// The gateway's DevId: its ServerID towards the devices, its identity towards the DM Servers.
pub const GATEWAY_DEV_ID: &str = "urn:dmgw:demo-gateway";
/// The gateway's account name at the DM Servers (the `G` of derived passwords).
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
}

/// The DM Servers: `dms-1` is in the gateway's factory accounts, `dms-2` is not (a bootstrap
/// would bring it; the bootstrap workflows are not part of this demo yet).
pub const SERVERS: [ServerPlan; 2] = [
    ServerPlan {
        server_id: "dms-1",
        name: "operator DM Server",
        known_to_gateway: true,
    },
    ServerPlan {
        server_id: "dms-2",
        name: "vendor DM Server",
        known_to_gateway: false,
    },
];

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
    /// The ServerIDs of the DM accounts it holds (reported in `BootstrappedDMSList`).
    pub servers: &'static [&'static str],
    /// Encoding of its provisioning and DM session.
    pub encoding: Encoding,
}

/// The devices: a thermostat with only `dms-1` whose user allows at once, a smart plug with
/// `dms-1` and `dms-2` (speaking WBXML) whose user allows after a second, and a camera whose user refuses.
pub const DEVICES: [DevicePlan; 3] = [
    DevicePlan {
        dev_id: "IMEI:356938035643809",
        name: "thermostat",
        man: "Acme",
        model: "Thermo 3",
        consent: ConsentPolicy::Allow,
        servers: &["dms-1"],
        encoding: Encoding::Xml,
    },
    DevicePlan {
        dev_id: "MAC:00-1B-44-11-3A-B7",
        name: "smart plug",
        man: "Plugs Inc",
        model: "P100",
        consent: ConsentPolicy::AllowAfter(Duration::from_secs(1)),
        servers: &["dms-1", "dms-2"],
        encoding: Encoding::Wbxml,
    },
    DevicePlan {
        dev_id: "IMEI:490154203237518",
        name: "camera",
        man: "Lens Co",
        model: "Cam 2",
        consent: ConsentPolicy::Refuse,
        servers: &["dms-1"],
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
    /// The simulated device, its accounts pointing at the DM Servers' URLs (`dm_urls` by ServerID).
    pub fn spec(&self, dm_urls: &BTreeMap<String, String>) -> Result<DeviceSpec, DemoError> {
        let bad = |reason: String| DemoError::Device {
            dev_id: self.dev_id.to_owned(),
            reason,
        };
        let accounts = self
            .servers
            .iter()
            .map(|id| {
                let addr = dm_urls
                    .get(*id)
                    .ok_or_else(|| bad(format!("no DM Server {id} is running")))?;
                Ok(AccountSpec {
                    server_id: (*id).to_owned(),
                    addr: addr.clone(),
                    bootstrap_server_url: None,
                    node_name: omadm::mo::escape_name(id).map_err(|e| bad(e.to_string()))?,
                    hide_bootstrap_url: false,
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

    /// The servers the gateway should alert once this device is attached (it holds an account for
    /// them and so does the gateway); none when the user refuses.
    pub fn expected_alerts(&self) -> Vec<&'static str> {
        if !self.consent.allows() {
            return Vec::new();
        }
        self.servers
            .iter()
            .copied()
            .filter(|s| server(s).is_some_and(|p| p.known_to_gateway))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cast_is_as_the_story_needs() {
        let expected: Vec<Vec<&str>> = DEVICES.iter().map(|d| d.expected_alerts()).collect();
        assert_eq!(expected, vec![vec!["dms-1"], vec!["dms-1"], vec![]]);
        assert_eq!(consent_text(DEVICES[1].consent), "allow after 1.0s");
        assert!(server("dms-2").is_some_and(|s| !s.known_to_gateway));
    }

    #[test]
    fn specs_point_at_the_running_servers() {
        let urls: BTreeMap<String, String> = [
            ("dms-1".to_owned(), "https://127.0.0.1:1/dm".to_owned()),
            ("dms-2".to_owned(), "https://127.0.0.1:2/dm".to_owned()),
        ]
        .into();
        let spec = DEVICES[1].spec(&urls).unwrap();
        assert_eq!(spec.accounts.len(), 2);
        assert_eq!(spec.accounts[1].addr, "https://127.0.0.1:2/dm");
        assert_eq!(spec.dm_encoding, Encoding::Wbxml);
        let only_one: BTreeMap<String, String> =
            [("dms-1".to_owned(), "https://127.0.0.1:1/dm".to_owned())].into();
        assert!(DEVICES[1].spec(&only_one).is_err());
    }
}
