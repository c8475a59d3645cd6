//! Generic Alert (1226) build and parse, and the GwMO alert types of the OMNA DM Alert Types registry.
//! The type URN is written `root:type` (see `docs`: the registry shows them in two columns).

use thiserror::Error;

use crate::model::{Alert, Command, Data, Item, Location, Meta, alert_code};

/// Root of the GwMO alert types in the OMNA registry.
pub const GWMO_ROOT: &str = "urn:oma:at:oma-gwmo";
/// Gateway -> DM Server: an End Device was attached (the change request's DEVICE_ATTACH_ALERT).
pub const DEVICE_ATTACHED: &str = "urn:oma:at:oma-gwmo:deviceattached:1.0";
/// Gateway -> DM Server: an End Device left.
pub const DEVICE_DETACHED: &str = "urn:oma:at:oma-gwmo:devicedetached:1.0";
/// End Device -> Gateway: the ServerIDs the device is bootstrapped with (step 1-4).
pub const BOOTSTRAPPED_DMS_LIST: &str = "urn:oma:at:oma-gwmo:BootstrappedDMSList:1.0";
/// End Device -> DM (Bootstrap) Server: the gateway's ID and publicly routable address (workflow 2).
pub const ASSOCIATED_GATEWAY: &str = "urn:oma:at:oma-gwmo:AssociatedGateway:1.0";
/// Gateway -> DM Server: aggregated fan-out results.
pub const RESULT_AGGREGATION: &str = "urn:oma:at:oma-gwmo:resultaggregation:1.0";
/// Gateway -> DM Server: fan-out completion status.
pub const COMPLETION_STATUS: &str = "urn:oma:at:oma-gwmo:completionstatus:1.0";

/// True when two alert type URNs name the same type (URNs compare case-insensitively here, as
/// senders differ in the case of the type segment).
pub fn same_type(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// One Generic Alert item, typed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GenericAlert {
    /// The alert type URN (`Meta/Type`, mandatory).
    pub alert_type: String,
    /// `Meta/Format` of the data (`chr`, `xml`, `b64`, ...).
    pub format: Option<String>,
    /// `Meta/Mark` (`critical`, `major`, `minor`, `warning`, `informational`, `harmless`, `indeterminate`).
    pub mark: Option<String>,
    /// `Source/LocURI`: the management object node that raised the alert.
    pub source: Option<String>,
    /// `Target/LocURI`, rarely used.
    pub target: Option<String>,
    /// The alert's data.
    pub data: Option<Data>,
}

/// A Generic Alert command as received: the correlator and its items.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GenericAlerts {
    /// `Correlator`.
    pub correlator: Option<String>,
    /// One entry per Item.
    pub alerts: Vec<GenericAlert>,
}

/// A Generic Alert that breaks the rules of DM Protocol 1.2 section 8.7.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AlertError {
    /// The Alert's code is not 1226.
    #[error("alert code {code} is not a Generic Alert (1226)")]
    NotGeneric {
        /// The code found.
        code: u16,
    },
    /// An item has no `Meta/Type`.
    #[error("generic alert item {index} has no Meta/Type")]
    MissingType {
        /// Index of the item (0-based).
        index: usize,
    },
    /// The Alert carries no item.
    #[error("generic alert has no item")]
    NoItems,
}

impl AlertError {
    /// The DM status code that answers this error (412 incomplete command, or 400).
    pub fn status_code(&self) -> u16 {
        match self {
            AlertError::NotGeneric { .. } => crate::model::status_code::BAD_REQUEST,
            AlertError::MissingType { .. } | AlertError::NoItems => {
                crate::model::status_code::INCOMPLETE_COMMAND
            }
        }
    }
}

impl GenericAlert {
    /// A Generic Alert of a type with chr data.
    pub fn new(alert_type: impl Into<String>) -> GenericAlert {
        GenericAlert {
            alert_type: alert_type.into(),
            ..GenericAlert::default()
        }
    }

    fn to_item(&self) -> Item {
        Item {
            source: self.source.as_deref().map(Location::new),
            target: self.target.as_deref().map(Location::new),
            meta: Some(Meta {
                type_: Some(self.alert_type.clone()),
                format: self.format.clone(),
                mark: self.mark.clone(),
                ..Meta::default()
            }),
            data: self.data.clone(),
            more_data: false,
        }
    }
}

/// Build an `Alert 1226` command carrying these alerts (one Item each); CmdID is set on push.
pub fn build(correlator: Option<&str>, alerts: &[GenericAlert]) -> Command {
    Command::Alert(Alert {
        cmd_id: 0,
        no_resp: false,
        code: alert_code::GENERIC,
        correlator: correlator.map(str::to_owned),
        items: alerts.iter().map(GenericAlert::to_item).collect(),
    })
}

/// Parse a received Alert as a Generic Alert.
pub fn parse(alert: &Alert) -> Result<GenericAlerts, AlertError> {
    if alert.code != alert_code::GENERIC {
        return Err(AlertError::NotGeneric { code: alert.code });
    }
    if alert.items.is_empty() {
        return Err(AlertError::NoItems);
    }
    let alerts = alert
        .items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let meta = item.meta.as_ref();
            let alert_type = meta
                .and_then(|m| m.type_.clone())
                .filter(|t| !t.trim().is_empty())
                .ok_or(AlertError::MissingType { index })?;
            Ok(GenericAlert {
                alert_type,
                format: meta.and_then(|m| m.format.clone()),
                mark: meta.and_then(|m| m.mark.clone()),
                source: item.source_uri().map(str::to_owned),
                target: item.target_uri().map(str::to_owned),
                data: item.data.clone(),
            })
        })
        .collect::<Result<Vec<_>, AlertError>>()?;
    Ok(GenericAlerts {
        correlator: alert.correlator.clone(),
        alerts,
    })
}

/// The ServerIDs of a `BootstrappedDMSList` alert's data: dmgw's documented format is one ServerID
/// per line (chr); commas and semicolons are accepted as separators too. Duplicates and blanks drop.
pub fn parse_server_id_list(data: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in data
        .split(['\n', '\r', ',', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !out.iter().any(|o| o == id) {
            out.push(id.to_owned());
        }
    }
    out
}

/// Format ServerIDs as the data of a `BootstrappedDMSList` alert (one per line).
pub fn format_server_id_list<S: AsRef<str>>(ids: &[S]) -> String {
    ids.iter().map(AsRef::as_ref).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_then_parse() {
        let ga = GenericAlert {
            alert_type: DEVICE_ATTACHED.into(),
            format: Some("xml".into()),
            mark: Some("informational".into()),
            source: Some("./DeviceInventory/d1".into()),
            target: None,
            data: Some(Data::Text("<x/>".into())),
        };
        let Command::Alert(a) = build(Some("corr-7"), std::slice::from_ref(&ga)) else {
            panic!("not an alert");
        };
        assert_eq!(a.code, 1226);
        let parsed = parse(&a).unwrap();
        assert_eq!(parsed.correlator.as_deref(), Some("corr-7"));
        assert_eq!(parsed.alerts, vec![ga]);
    }

    #[test]
    fn rejects_non_generic_and_missing_type() {
        let a = Alert {
            code: 1201,
            ..Alert::default()
        };
        assert_eq!(parse(&a), Err(AlertError::NotGeneric { code: 1201 }));
        let a = Alert {
            code: 1226,
            ..Alert::default()
        };
        assert_eq!(parse(&a), Err(AlertError::NoItems));
        let a = Alert {
            code: 1226,
            items: vec![Item::data("x")],
            ..Alert::default()
        };
        assert_eq!(parse(&a), Err(AlertError::MissingType { index: 0 }));
        assert_eq!(AlertError::NoItems.status_code(), 412);
    }

    #[test]
    fn type_comparison_is_case_insensitive() {
        assert!(same_type(
            "urn:oma:at:oma-gwmo:bootstrappeddmslist:1.0",
            BOOTSTRAPPED_DMS_LIST
        ));
        assert!(DEVICE_ATTACHED.starts_with(GWMO_ROOT));
    }

    #[test]
    fn server_id_lists() {
        assert_eq!(
            parse_server_id_list(" a\r\nb,c;;a\n"),
            vec!["a".to_string(), "b".into(), "c".into()]
        );
        assert_eq!(format_server_id_list(&["x", "y"]), "x\ny");
        assert!(parse_server_id_list("").is_empty());
    }
}
