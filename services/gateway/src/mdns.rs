//! DNS-SD/mDNS browsing (step 1-1): devices that advertise `_omadm-dev._tcp.local.` with TXT
//! `dev_id=` (and `path=`, `scheme=`) are announced to Discovery like HTTP announcements.

use std::net::IpAddr;

use actix::Addr;
use mdns_sd::{ServiceDaemon, ServiceEvent};

use crate::actors::TracedExt;
use crate::actors::discovery::{Announce, Discovery, Via};

/// The service type devices advertise.
pub const SERVICE_TYPE: &str = "_omadm-dev._tcp.local.";

/// What a resolved DNS-SD service says about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    /// TXT `dev_id`.
    pub dev_id: Option<String>,
    /// TXT `scheme` (default https).
    pub scheme: Option<String>,
    /// TXT `path`: the callback base path.
    pub path: Option<String>,
    /// TXT `man`, `mod`.
    pub man: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// An address of the host.
    pub addr: Option<IpAddr>,
    /// The port.
    pub port: u16,
}

/// Turn an advertisement into an announcement; `None` when it lacks a DevId or an address, or
/// asks for plain HTTP while the gateway does not allow it.
pub fn announcement(a: &Advertised, allow_plain_http: bool) -> Option<Announce> {
    let dev_id = a
        .dev_id
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())?;
    let addr = a.addr?;
    let scheme = a.scheme.as_deref().unwrap_or("https");
    if scheme != "https" && !(scheme == "http" && allow_plain_http) {
        return None;
    }
    let host = match addr {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let path = a.path.as_deref().unwrap_or("").trim_end_matches('/');
    let path = if path.is_empty() || path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    Some(Announce {
        dev_id: dev_id.to_owned(),
        man: a.man.clone(),
        model: a.model.clone(),
        dev_type: None,
        callback_url: format!("{scheme}://{host}:{}{path}", a.port),
        via: Via::DnsSd,
    })
}

/// Browse for devices in the background until the process ends. Errors starting the mDNS daemon
/// are returned (the caller logs them and runs without DNS-SD).
pub fn start(
    discovery: Addr<Discovery>,
    allow_plain_http: bool,
) -> Result<ServiceDaemon, mdns_sd::Error> {
    let daemon = ServiceDaemon::new()?;
    let events = daemon.browse(SERVICE_TYPE)?;
    actix_web::rt::spawn(async move {
        while let Ok(event) = events.recv_async().await {
            let ServiceEvent::ServiceResolved(info) = event else {
                continue;
            };
            let txt = |k: &str| info.get_property_val_str(k).map(str::to_owned);
            let ad = Advertised {
                dev_id: txt("dev_id"),
                scheme: txt("scheme"),
                path: txt("path"),
                man: txt("man"),
                model: txt("mod"),
                addr: info.get_addresses().iter().map(|a| a.to_ip_addr()).next(),
                port: info.get_port(),
            };
            match announcement(&ad, allow_plain_http) {
                Some(a) => {
                    let span = tracing::info_span!(
                        "onboard device",
                        dev_id = %a.dev_id,
                        via = "dns-sd",
                        outcome = tracing::field::Empty
                    );
                    match discovery.send(a.in_span(span.clone())).await {
                        Ok(Ok(d)) if d.state == omadm::mo::DeviceState::Discovered => {
                            crate::onboarding::open(&d.dev_id, span);
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "discovery unavailable"),
                    }
                }
                None => {
                    tracing::debug!(service = %info.get_fullname(), "DNS-SD service without a usable DevId or address")
                }
            }
        }
    });
    Ok(daemon)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ad() -> Advertised {
        Advertised {
            dev_id: Some("IMEI:1".into()),
            scheme: None,
            path: Some("devices/IMEI_3A1".into()),
            man: Some("Acme".into()),
            model: None,
            addr: Some("192.0.2.7".parse().unwrap()),
            port: 8443,
        }
    }

    #[test]
    fn advertisements_become_announcements() {
        let a = announcement(&ad(), false).unwrap();
        assert_eq!(a.callback_url, "https://192.0.2.7:8443/devices/IMEI_3A1");
        assert_eq!(a.via, Via::DnsSd);
        let v6 = Advertised {
            addr: Some("2001:db8::1".parse().unwrap()),
            path: None,
            ..ad()
        };
        assert_eq!(
            announcement(&v6, false).unwrap().callback_url,
            "https://[2001:db8::1]:8443"
        );
    }

    #[test]
    fn unusable_advertisements_are_ignored() {
        assert!(
            announcement(
                &Advertised {
                    dev_id: None,
                    ..ad()
                },
                false
            )
            .is_none()
        );
        assert!(announcement(&Advertised { addr: None, ..ad() }, false).is_none());
        let plain = Advertised {
            scheme: Some("http".into()),
            ..ad()
        };
        assert!(announcement(&plain, false).is_none());
        assert!(announcement(&plain, true).is_some());
    }
}
