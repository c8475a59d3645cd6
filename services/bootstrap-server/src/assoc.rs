//! The Data of the `urn:oma:at:oma-gwmo:AssociatedGateway:1.0` Generic Alert (workflow 2): the gateway's
//! ID and address and the ServerIDs it should be bootstrapped for, as dmgw writes it; parse and format.
//!
//! # Format (dmgw's; the GwMO specification does not define one)
//! `Meta/Format` `chr`; UTF-8 text, one `Key=Value` per line (`\n` or `\r\n`):
//! ```text
//! GatewayID=IMEI:490154203237518
//! GatewayAddress=https://gw.example.net:8443/wan/v1/bootstrap
//! ServerID=dms-1
//! ServerID=dms-2
//! ```
//! - `GatewayID` (exactly once): the gateway's DevId.
//! - `GatewayAddress` (exactly once): the URL of the gateway's bootstrap push endpoint.
//! - `ServerID` (once or more, at most [`MAX_SERVER_IDS`]): a DM Server the gateway is to be bootstrapped
//!   for; repeats are dropped, order is kept.
//!
//! Keys compare case-insensitively; spaces around keys and values are ignored; blank lines are skipped;
//! lines with other keys are ignored (room for later fields). A line without `=`, an empty value, a
//! control character in a value, or data larger than [`MAX_DATA_LEN`] is an error.

use thiserror::Error;

/// Largest Data accepted, in bytes.
pub const MAX_DATA_LEN: usize = 16 * 1024;
/// Most ServerIDs in one alert.
pub const MAX_SERVER_IDS: usize = 64;
/// Longest value of `GatewayID` or `ServerID`, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// Longest value of `GatewayAddress`, in bytes.
pub const MAX_ADDRESS_LEN: usize = 2048;

/// Key of the gateway's ID.
pub const KEY_GATEWAY_ID: &str = "GatewayID";
/// Key of the gateway's push address.
pub const KEY_GATEWAY_ADDRESS: &str = "GatewayAddress";
/// Key of one ServerID.
pub const KEY_SERVER_ID: &str = "ServerID";

/// What an AssociatedGateway alert says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    /// The gateway's ID (its DevId).
    pub gateway_id: String,
    /// The URL of the gateway's bootstrap push endpoint.
    pub gateway_address: String,
    /// The ServerIDs to bootstrap the gateway for, without repeats, in order.
    pub server_ids: Vec<String>,
}

/// AssociatedGateway data that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AssocDataError {
    /// The data is larger than [`MAX_DATA_LEN`].
    #[error("data is {len} bytes long, the limit is {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A non-blank line has no `=`.
    #[error("line {line}: expected Key=Value")]
    NoEquals {
        /// Line number (1-based).
        line: usize,
    },
    /// A known key has an empty value.
    #[error("line {line}: {key} is empty")]
    EmptyValue {
        /// Line number (1-based).
        line: usize,
        /// The key.
        key: &'static str,
    },
    /// A value holds a control character.
    #[error("line {line}: {key} holds a control character")]
    ControlCharacter {
        /// Line number (1-based).
        line: usize,
        /// The key.
        key: &'static str,
    },
    /// A value is too long.
    #[error("line {line}: {key} is longer than {max} bytes")]
    ValueTooLong {
        /// Line number (1-based).
        line: usize,
        /// The key.
        key: &'static str,
        /// The limit.
        max: usize,
    },
    /// `GatewayID` or `GatewayAddress` appears twice.
    #[error("line {line}: {key} given more than once")]
    Duplicate {
        /// Line number (1-based) of the second occurrence.
        line: usize,
        /// The key.
        key: &'static str,
    },
    /// A mandatory key is missing.
    #[error("{key} is missing")]
    Missing {
        /// The key.
        key: &'static str,
    },
    /// More than [`MAX_SERVER_IDS`] ServerIDs.
    #[error("more than {max} ServerIDs")]
    TooManyServerIds {
        /// The limit.
        max: usize,
    },
}

impl AssocDataError {
    /// The DM status answering the alert: 412 (incomplete command) for a missing field, else 400.
    pub fn status_code(&self) -> u16 {
        match self {
            AssocDataError::Missing { .. } => omadm::model::status_code::INCOMPLETE_COMMAND,
            _ => omadm::model::status_code::BAD_REQUEST,
        }
    }
}

fn check_value(
    value: &str,
    line: usize,
    key: &'static str,
    max: usize,
) -> Result<String, AssocDataError> {
    if value.is_empty() {
        return Err(AssocDataError::EmptyValue { line, key });
    }
    if value.len() > max {
        return Err(AssocDataError::ValueTooLong { line, key, max });
    }
    if value.chars().any(char::is_control) {
        return Err(AssocDataError::ControlCharacter { line, key });
    }
    Ok(value.to_owned())
}

/// Parse AssociatedGateway data (see the module docs for the format).
pub fn parse(data: &str) -> Result<Association, AssocDataError> {
    if data.len() > MAX_DATA_LEN {
        return Err(AssocDataError::TooLong {
            len: data.len(),
            max: MAX_DATA_LEN,
        });
    }
    let mut gateway_id: Option<String> = None;
    let mut gateway_address: Option<String> = None;
    let mut server_ids: Vec<String> = Vec::new();
    for (index, raw) in data.split('\n').enumerate() {
        let line = index.saturating_add(1);
        let text = raw.strip_suffix('\r').unwrap_or(raw);
        if text.trim().is_empty() {
            continue;
        }
        let (key, value) = text
            .split_once('=')
            .ok_or(AssocDataError::NoEquals { line })?;
        let key = key.trim();
        let value = value.trim();
        if key.eq_ignore_ascii_case(KEY_GATEWAY_ID) {
            if gateway_id.is_some() {
                return Err(AssocDataError::Duplicate {
                    line,
                    key: KEY_GATEWAY_ID,
                });
            }
            gateway_id = Some(check_value(value, line, KEY_GATEWAY_ID, MAX_ID_LEN)?);
        } else if key.eq_ignore_ascii_case(KEY_GATEWAY_ADDRESS) {
            if gateway_address.is_some() {
                return Err(AssocDataError::Duplicate {
                    line,
                    key: KEY_GATEWAY_ADDRESS,
                });
            }
            gateway_address = Some(check_value(
                value,
                line,
                KEY_GATEWAY_ADDRESS,
                MAX_ADDRESS_LEN,
            )?);
        } else if key.eq_ignore_ascii_case(KEY_SERVER_ID) {
            let id = check_value(value, line, KEY_SERVER_ID, MAX_ID_LEN)?;
            if !server_ids.contains(&id) {
                if server_ids.len() >= MAX_SERVER_IDS {
                    return Err(AssocDataError::TooManyServerIds {
                        max: MAX_SERVER_IDS,
                    });
                }
                server_ids.push(id);
            }
        }
        // Other keys: ignored.
    }
    let gateway_id = gateway_id.ok_or(AssocDataError::Missing {
        key: KEY_GATEWAY_ID,
    })?;
    let gateway_address = gateway_address.ok_or(AssocDataError::Missing {
        key: KEY_GATEWAY_ADDRESS,
    })?;
    if server_ids.is_empty() {
        return Err(AssocDataError::Missing { key: KEY_SERVER_ID });
    }
    Ok(Association {
        gateway_id,
        gateway_address,
        server_ids,
    })
}

/// Format an association as AssociatedGateway data (what a device or the gateway sends).
pub fn format(a: &Association) -> String {
    let mut out = format!(
        "{KEY_GATEWAY_ID}={}\n{KEY_GATEWAY_ADDRESS}={}",
        a.gateway_id, a.gateway_address
    );
    for id in &a.server_ids {
        out.push('\n');
        out.push_str(KEY_SERVER_ID);
        out.push('=');
        out.push_str(id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_documented_example() {
        let a = parse(
            "GatewayID=IMEI:490154203237518\r\n\
             GatewayAddress=https://gw.example.net:8443/wan/v1/bootstrap\r\n\
             \r\n\
             serverid = dms-1\n\
             ServerID=dms-2\n\
             ServerID=dms-1\n\
             Comment=ignored=really\n",
        )
        .unwrap();
        assert_eq!(a.gateway_id, "IMEI:490154203237518");
        assert_eq!(
            a.gateway_address,
            "https://gw.example.net:8443/wan/v1/bootstrap"
        );
        assert_eq!(a.server_ids, vec!["dms-1".to_string(), "dms-2".into()]);
        assert_eq!(parse(&format(&a)).unwrap(), a);
    }

    #[test]
    fn errors() {
        let ok_tail = "GatewayAddress=https://gw/p\nServerID=s";
        assert_eq!(
            parse(ok_tail),
            Err(AssocDataError::Missing {
                key: KEY_GATEWAY_ID
            })
        );
        assert_eq!(
            parse("GatewayID=g\nServerID=s"),
            Err(AssocDataError::Missing {
                key: KEY_GATEWAY_ADDRESS
            })
        );
        assert_eq!(
            parse("GatewayID=g\nGatewayAddress=https://gw/p"),
            Err(AssocDataError::Missing { key: KEY_SERVER_ID })
        );
        assert_eq!(
            parse(&format!("GatewayID=g\nGatewayID=h\n{ok_tail}")),
            Err(AssocDataError::Duplicate {
                line: 2,
                key: KEY_GATEWAY_ID
            })
        );
        assert_eq!(
            parse(&format!("GatewayID g\n{ok_tail}")),
            Err(AssocDataError::NoEquals { line: 1 })
        );
        assert_eq!(
            parse(&format!("GatewayID=\n{ok_tail}")),
            Err(AssocDataError::EmptyValue {
                line: 1,
                key: KEY_GATEWAY_ID
            })
        );
        assert_eq!(
            parse(&format!("GatewayID=a\u{7}b\n{ok_tail}")),
            Err(AssocDataError::ControlCharacter {
                line: 1,
                key: KEY_GATEWAY_ID
            })
        );
        let many: String = (0..=MAX_SERVER_IDS)
            .map(|i| format!("ServerID=s{i}\n"))
            .collect();
        assert_eq!(
            parse(&format!("GatewayID=g\nGatewayAddress=https://gw/p\n{many}")),
            Err(AssocDataError::TooManyServerIds {
                max: MAX_SERVER_IDS
            })
        );
        assert!(matches!(
            parse(&"x".repeat(MAX_DATA_LEN + 1)),
            Err(AssocDataError::TooLong { .. })
        ));
        assert!(matches!(
            parse(&format!(
                "GatewayID={}\n{ok_tail}",
                "g".repeat(MAX_ID_LEN + 1)
            )),
            Err(AssocDataError::ValueTooLong { .. })
        ));
        assert_eq!(
            AssocDataError::Missing { key: KEY_SERVER_ID }.status_code(),
            412
        );
        assert_eq!(AssocDataError::NoEquals { line: 1 }.status_code(), 400);
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,400}|[=\\n\\rA-Za-z:/ ]{0,400}") {
            let _ = parse(&s);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&String::from_utf8_lossy(&b));
        }

        #[test]
        fn round_trip(
            gw in "[A-Za-z0-9:._-]{1,40}",
            addr in "https://[a-z]{1,10}(:[0-9]{1,5})?/[a-z/]{0,20}",
            ids in proptest::collection::vec("[A-Za-z0-9:._/-]{1,30}", 1..10),
        ) {
            let mut unique: Vec<String> = Vec::new();
            for id in ids {
                if !unique.contains(&id) {
                    unique.push(id);
                }
            }
            let a = Association { gateway_id: gw, gateway_address: addr, server_ids: unique };
            prop_assert_eq!(parse(&format(&a)).unwrap(), a);
        }
    }
}
