//! Discovery (step 1-1): learns of End Devices from HTTP announcements and DNS-SD browsing, tracks
//! their heartbeats, and declares lost the ones that fall silent. Logic in `DiscoveryLogic`.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use tracing::Instrument;

use super::inventory::{DeviceDiscovered, DeviceLost, Inventory};
use super::{ActorError, Traced, TracedExt};
use crate::domain::{DeviceUpsert, DeviceView, Millis, check_dev_id, check_url};
use crate::store::Store;

/// How the gateway learned of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `POST /lan/v1/announce`.
    Http,
    /// A DNS-SD/mDNS service the gateway browsed.
    DnsSd,
}

impl Via {
    /// As written in the event log.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Http => "http",
            Via::DnsSd => "dns-sd",
        }
    }
}

/// A device announced itself (or was found by browsing).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<DeviceView, ActorError>")]
pub struct Announce {
    /// The device's DevId.
    pub dev_id: String,
    /// Manufacturer.
    pub man: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Device type.
    pub dev_type: Option<String>,
    /// Where the gateway reaches the device (its callback base URL).
    pub callback_url: String,
    /// How it was found.
    pub via: Via,
}

/// A device's heartbeat.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct Heartbeat {
    /// The device's DevId.
    pub dev_id: String,
}

/// Look for devices whose heartbeat is overdue (sent by the actor's own timer).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Sweep;

/// The plain logic of Discovery: validation and heartbeat bookkeeping.
#[derive(Debug)]
pub struct DiscoveryLogic {
    timeout: Duration,
    last_seen: HashMap<String, Millis>,
}

impl DiscoveryLogic {
    /// Devices are lost after `timeout` without a heartbeat.
    pub fn new(timeout: Duration) -> DiscoveryLogic {
        DiscoveryLogic {
            timeout,
            last_seen: HashMap::new(),
        }
    }

    /// Check an announcement and turn it into an inventory upsert.
    pub fn accept(&mut self, a: &Announce, now: Millis) -> Result<DeviceUpsert, ActorError> {
        check_dev_id(&a.dev_id).map_err(|e| ActorError::Invalid {
            field: "dev_id",
            reason: e.reason,
        })?;
        check_url("callback_url", &a.callback_url).map_err(|e| ActorError::Invalid {
            field: "callback_url",
            reason: e.reason,
        })?;
        self.seen(&a.dev_id, now);
        Ok(DeviceUpsert {
            man: a.man.clone(),
            model: a.model.clone(),
            dev_type: a.dev_type.clone(),
            address: Some(a.callback_url.clone()),
            ..DeviceUpsert::seen(a.dev_id.clone(), now)
        })
    }

    /// Note a sign of life.
    pub fn seen(&mut self, dev_id: &str, now: Millis) {
        match self.last_seen.get_mut(dev_id) {
            Some(t) => *t = now,
            None => {
                self.last_seen.insert(dev_id.to_owned(), now);
            }
        }
    }

    /// True when the device is tracked.
    pub fn knows(&self, dev_id: &str) -> bool {
        self.last_seen.contains_key(dev_id)
    }

    /// The devices silent for longer than the timeout; they stop being tracked.
    pub fn sweep(&mut self, now: Millis) -> Vec<String> {
        let deadline = now.saturating_sub(self.timeout);
        let lost: Vec<String> = self
            .last_seen
            .iter()
            .filter(|(_, t)| **t < deadline)
            .map(|(d, _)| d.clone())
            .collect();
        for d in &lost {
            self.last_seen.remove(d);
        }
        lost
    }
}

/// The Discovery actor.
pub struct Discovery {
    logic: DiscoveryLogic,
    store: Store,
    inventory: Addr<Inventory>,
}

impl Discovery {
    /// A Discovery actor feeding `inventory`.
    pub fn new(store: Store, inventory: Addr<Inventory>, timeout: Duration) -> Discovery {
        Discovery {
            logic: DiscoveryLogic::new(timeout),
            store,
            inventory,
        }
    }
}

impl Actor for Discovery {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every =
            (self.logic.timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(15));
        ctx.run_interval(every, |_, ctx| ctx.notify(Sweep));
    }
}

impl Supervised for Discovery {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // Heartbeat times are soft state: devices that keep beating are tracked again.
        self.logic.last_seen.clear();
        super::restarted("discovery");
    }
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("logic", &self.logic)
            .finish()
    }
}

impl Handler<Traced<Announce>> for Discovery {
    type Result = ResponseFuture<Result<DeviceView, ActorError>>;

    fn handle(&mut self, m: Traced<Announce>, _: &mut Context<Self>) -> Self::Result {
        let Traced { span, msg } = m;
        let accepted = span.in_scope(|| self.logic.accept(&msg, Millis::now()));
        let inventory = self.inventory.clone();
        Box::pin(
            async move {
                let upsert = accepted?;
                metrics::counter!("dmgw_discovery_announcements_total", "via" => msg.via.as_str())
                    .increment(1);
                inventory
                    .send(
                        DeviceDiscovered {
                            upsert,
                            via: msg.via,
                            traceparent: telemetry::traceparent(),
                        }
                        .traced(),
                    )
                    .await?
            }
            .instrument(span),
        )
    }
}

impl Handler<Traced<Heartbeat>> for Discovery {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    fn handle(&mut self, m: Traced<Heartbeat>, _: &mut Context<Self>) -> Self::Result {
        let Traced { span, msg } = m;
        let now = Millis::now();
        if self.logic.knows(&msg.dev_id) {
            self.logic.seen(&msg.dev_id, now);
            return Box::pin(fut::ready(Ok(())));
        }
        // Not tracked (e.g. after a restart): accept it if the inventory holds it as present.
        let store = self.store.clone();
        let dev_id = msg.dev_id.clone();
        Box::pin(
            async move { store.device(&dev_id).await }
                .instrument(span)
                .into_actor(self)
                .map(move |found, act, _| match found {
                    Ok(d) if !matches!(d.state, omadm::mo::DeviceState::Lost) => {
                        act.logic.seen(&msg.dev_id, now);
                        Ok(())
                    }
                    Ok(_) | Err(crate::store::StoreError::NotFound { .. }) => {
                        Err(ActorError::UnknownDevice { dev_id: msg.dev_id })
                    }
                    Err(e) => Err(e.into()),
                }),
        )
    }
}

impl Handler<Sweep> for Discovery {
    type Result = ();

    fn handle(&mut self, _: Sweep, _: &mut Context<Self>) {
        for dev_id in self.logic.sweep(Millis::now()) {
            let span = tracing::info_span!("device lost", dev_id = %dev_id);
            metrics::counter!("dmgw_devices_lost_total").increment(1);
            self.inventory.do_send(DeviceLost { dev_id }.in_span(span));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce(dev_id: &str, url: &str) -> Announce {
        Announce {
            dev_id: dev_id.into(),
            man: Some("Acme".into()),
            model: None,
            dev_type: None,
            callback_url: url.into(),
            via: Via::Http,
        }
    }

    #[test]
    fn announcements_are_validated() {
        let mut l = DiscoveryLogic::new(Duration::from_secs(10));
        let up = l
            .accept(
                &announce("IMEI:1", "https://10.0.0.5:8443/devices/1"),
                Millis(1000),
            )
            .unwrap();
        assert_eq!(
            up.address.as_deref(),
            Some("https://10.0.0.5:8443/devices/1")
        );
        assert!(matches!(
            l.accept(&announce("", "https://x/y"), Millis(0)),
            Err(ActorError::Invalid {
                field: "dev_id",
                ..
            })
        ));
        assert!(matches!(
            l.accept(&announce("IMEI:2", "not a url"), Millis(0)),
            Err(ActorError::Invalid {
                field: "callback_url",
                ..
            })
        ));
    }

    #[test]
    fn silent_devices_are_swept_once() {
        let mut l = DiscoveryLogic::new(Duration::from_secs(10));
        l.seen("a", Millis(0));
        l.seen("b", Millis(5_000));
        assert!(l.sweep(Millis(9_000)).is_empty());
        assert_eq!(l.sweep(Millis(12_000)), vec!["a".to_string()]);
        assert!(l.sweep(Millis(12_000)).is_empty());
        l.seen("b", Millis(14_000));
        assert!(l.sweep(Millis(20_000)).is_empty());
        assert!(l.knows("b") && !l.knows("a"));
    }
}
