//! The LAN contract between the gateway and End Devices (ARCHITECTURE.md, "The LAN contract"): the
//! JSON bodies and paths of announce, heartbeat, consent and provisioning, as one device speaks them.

use serde::{Deserialize, Serialize};

/// `POST` here to announce a device (step 1-1), relative to the gateway's LAN base URL.
pub const ANNOUNCE_PATH: &str = "lan/v1/announce";
/// `POST` here to say the device is still present.
pub const HEARTBEAT_PATH: &str = "lan/v1/heartbeat";
/// `POST` here to answer a consent request (step 1-2).
pub const CONSENT_PATH: &str = "lan/v1/consent";
/// The gateway's LAN DM endpoint (step 1-4); devices use the AppAddr their provisioning gives.
pub const DM_PATH: &str = "lan/v1/dm";
/// The path under a device's callback URL where the gateway asks for consent.
pub const CALLBACK_CONSENT_SUFFIX: &str = "consent";

/// `POST /lan/v1/announce`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    /// The device's `DevInfo/DevId`.
    pub dev_id: String,
    /// `DevInfo/Man`.
    pub man: String,
    /// `DevInfo/Mod`.
    pub model: String,
    /// `DevDetail/DevTyp`, when the device has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_type: Option<String>,
    /// Where the gateway asks for consent: `POST {callback_url}/consent`.
    pub callback_url: String,
    /// The device's heartbeat interval, in whole seconds (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_secs: Option<u64>,
}

/// The gateway's `202` answer to an announcement.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AnnounceReply {
    /// The DevId the gateway recorded.
    #[serde(default)]
    pub dev_id: Option<String>,
    /// The device's state at the gateway (e.g. `discovered`).
    #[serde(default)]
    pub state: Option<String>,
}

/// `POST /lan/v1/heartbeat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The device's DevId.
    pub dev_id: String,
}

/// `POST {callback_url}/consent`: the gateway asks the device's user for consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRequest {
    /// The gateway's ID: its DevId, which is also the ServerID of the account provisioning gives.
    pub gateway_id: String,
    /// A name to show the user.
    #[serde(default)]
    pub gateway_name: Option<String>,
    /// The token to send back with the answer.
    pub consent_token: String,
}

/// `POST /lan/v1/consent`: the user's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentAnswer {
    /// The device's DevId.
    pub dev_id: String,
    /// The token of the request being answered.
    pub consent_token: String,
    /// True when the user allows the gateway to manage the device.
    pub allow: bool,
}

/// The gateway's `200` answer to a consent answer: a one-time provisioning URL when allowed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConsentReply {
    /// Where to GET the provisioning bootstrap (absolute, or relative to the gateway's base URL).
    #[serde(default)]
    pub provisioning_url: Option<String>,
}

/// An error body: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// The heartbeat interval as the announcement carries it: whole seconds, rounded up, at least 1.
pub fn heartbeat_secs(interval: std::time::Duration) -> u64 {
    let secs = interval.as_secs();
    let rounded = if interval.subsec_nanos() > 0 {
        secs.saturating_add(1)
    } else {
        secs
    };
    rounded.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn announce_omits_absent_optionals() {
        let a = Announce {
            dev_id: "IMEI:1".into(),
            man: "Acme".into(),
            model: "T".into(),
            dev_type: None,
            callback_url: "http://127.0.0.1:1/devices/IMEI_3A1".into(),
            heartbeat_secs: Some(30),
        };
        let json = serde_json::to_value(&a).unwrap();
        assert!(json.get("dev_type").is_none());
        assert_eq!(json["heartbeat_secs"], 30);
    }

    #[test]
    fn refused_consent_reply_is_an_empty_object() {
        let r: ConsentReply = serde_json::from_str("{}").unwrap();
        assert_eq!(r.provisioning_url, None);
    }

    #[test]
    fn heartbeat_seconds_round_up() {
        assert_eq!(heartbeat_secs(Duration::from_millis(50)), 1);
        assert_eq!(heartbeat_secs(Duration::from_millis(2500)), 3);
        assert_eq!(heartbeat_secs(Duration::from_secs(30)), 30);
    }
}
