//! The gateway's five actors and the typed messages they exchange (see ARCHITECTURE.md):
//! Discovery -> Inventory -> Matching -> Alerting / BootstrapClient, each a thin shell over a plain struct.

pub mod alerting;
pub mod bootstrap_client;
pub mod discovery;
pub mod inventory;
pub mod matching;
pub mod traced;

use std::sync::Arc;

use actix::{Addr, MailboxError, Supervisor};
use thiserror::Error;

pub use traced::{Traced, TracedExt};

use crate::config::Settings;
use crate::store::{Store, StoreError};

pub use alerting::{AlertSender, Alerting};
pub use bootstrap_client::BootstrapClient;
pub use discovery::Discovery;
pub use inventory::Inventory;
pub use matching::Matching;

/// An actor could not do what a message asked.
#[derive(Debug, Error)]
pub enum ActorError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The message's content is not acceptable.
    #[error("{field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The device is not known.
    #[error("device {dev_id} is not known")]
    UnknownDevice {
        /// The device.
        dev_id: String,
    },
    /// The receiving actor is gone (stopping, or restarting after a failure).
    #[error("actor unavailable: {0}")]
    Unavailable(#[from] MailboxError),
    /// A batch this request was part of failed; the cause was logged.
    #[error("the batch failed: {reason}")]
    Batch {
        /// The failure, as text (shared by every request of the batch).
        reason: String,
    },
}

/// The addresses of the running actors. Cloned into the admin API's state.
#[derive(Clone)]
pub struct ActorAddrs {
    /// Discovery (announcements, heartbeats, lost devices).
    pub discovery: Addr<Discovery>,
    /// Inventory (the Device Inventory MO records, batched writes).
    pub inventory: Addr<Inventory>,
    /// Matching (ServerIDs against the DMAcc tree).
    pub matching: Addr<Matching>,
    /// Alerting (the outbox and DM sessions to DM Servers).
    pub alerting: Addr<Alerting>,
    /// BootstrapClient (bootstrap jobs).
    pub bootstrap: Addr<BootstrapClient>,
}

impl std::fmt::Debug for ActorAddrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ActorAddrs")
    }
}

impl ActorAddrs {
    /// Operator detach (`DELETE /api/v1/devices/{dev_id}`).
    pub async fn detach(&self, dev_id: &str) -> Result<crate::domain::DeviceView, ActorError> {
        self.inventory
            .send(
                inventory::DetachDevice {
                    dev_id: dev_id.to_owned(),
                }
                .traced(),
            )
            .await?
    }

    /// The gateway's DMAcc tree changed (an account was added or removed).
    pub async fn accounts_changed(&self, server_ids: Vec<String>) -> Result<usize, ActorError> {
        self.matching
            .send(matching::AccountsChanged { server_ids }.traced())
            .await?
    }

    /// Ask every actor to finish in-flight work (flush batches, end deliveries) before exit.
    pub async fn drain(&self) {
        let _ = self.inventory.send(inventory::Drain).await;
        let _ = self.alerting.send(alerting::Drain).await;
    }
}

/// Start the actors, supervised: an actor that stops on a failure is restarted and resumes from
/// the store. Must run inside an actix system.
pub fn start(
    store: Store,
    settings: &Settings,
    sender: Arc<dyn AlertSender>,
    bootstrap: Arc<bootstrap_client::BootstrapSettings>,
) -> ActorAddrs {
    let retry = settings.alert_retry;
    let s = store.clone();
    let alerting = Supervisor::start(move |_| Alerting::new(s, retry, sender));
    let s = store.clone();
    let a = alerting.clone();
    let bootstrap = Supervisor::start(move |_| BootstrapClient::new(s, bootstrap));
    let s = store.clone();
    let b = bootstrap.clone();
    let matching = Supervisor::start(move |_| Matching::new(s, a, b));
    bootstrap.do_send(bootstrap_client::Wire {
        matching: matching.clone(),
    });
    let s = store.clone();
    let m = matching.clone();
    let al = alerting.clone();
    let inventory = Supervisor::start(move |_| Inventory::new(s, m, al));
    let i = inventory.clone();
    let timeout = settings.heartbeat_timeout;
    let discovery = Supervisor::start(move |_| Discovery::new(store, i, timeout));
    ActorAddrs {
        discovery,
        inventory,
        matching,
        alerting,
        bootstrap,
    }
}

/// Count and log an actor restart (supervision is never silent).
pub(crate) fn restarted(actor: &'static str) {
    metrics::counter!("dmgw_actor_restarts_total", "actor" => actor).increment(1);
    tracing::warn!(
        actor,
        "actor restarted after a failure; resuming from the store"
    );
}
