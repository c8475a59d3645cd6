//! Looking at the running system from outside the devices: the gateway's Device Inventory, DMAcc
//! accounts, alert outbox and bootstrap jobs (through its store, in-process), what each DM Server
//! received and what the bootstrap server issued and was asked (through their JSON APIs over
//! HTTPS). One [`Snapshot`] per look; every look is bounded in time.

use std::collections::BTreeMap;
use std::time::Duration;

use bootstrap_server::records::{AssociationRecord, BootstrapRecord};
use gateway::domain::{
    AccountView, AlertFilter, AlertRow, BootstrapJob, DeviceFilter, DeviceView, JobFilter, Page,
};
use gateway::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest a look may take (each request).
pub const LOOK_TIMEOUT: Duration = Duration::from_secs(2);

/// A look failed (the next one may succeed).
#[derive(Debug, Error)]
pub enum ObserveError {
    /// The gateway's store did not answer.
    #[error("gateway store: {0}")]
    Store(#[from] StoreError),
    /// A DM Server's API did not answer, or not as expected.
    #[error("DM Server {server_id}: {reason}")]
    DmServer {
        /// Its ServerID.
        server_id: String,
        /// Why.
        reason: String,
    },
    /// The bootstrap server's API did not answer, or not as expected.
    #[error("bootstrap server: {0}")]
    BootstrapServer(String),
    /// The look took longer than [`LOOK_TIMEOUT`].
    #[error("no answer within {LOOK_TIMEOUT:?}")]
    Timeout,
}

/// A Generic Alert as a DM Server's `GET /api/v1/alerts` shows it (the fields the demo uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedAlert {
    /// The server's sequence number.
    pub id: u64,
    /// The alert type URN.
    pub alert_type: String,
    /// The alert's data: for `deviceattached`, the End Device's DevId.
    pub data: Option<String>,
    /// The Alert's correlator.
    pub correlator: Option<String>,
    /// The client that sent it (the gateway's DevId).
    pub dev_id: String,
    /// When it was received (RFC 3339).
    pub received_at: String,
}

#[derive(Debug, Deserialize)]
struct ApiPage<T> {
    items: Vec<T>,
}

/// Everything one look saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The gateway's Device Inventory records.
    pub devices: Vec<DeviceView>,
    /// The gateway's alert outbox.
    pub outbox: Vec<AlertRow>,
    /// The gateway's bootstrap jobs.
    pub jobs: Vec<BootstrapJob>,
    /// The gateway's DMAcc accounts (no secrets).
    pub accounts: Vec<AccountView>,
    /// The Generic Alerts each DM Server received, by ServerID.
    pub received: BTreeMap<String, Vec<ReceivedAlert>>,
    /// The bootstrap server's `GET /api/v1/bootstraps` (both workflows, with push deliveries).
    pub bootstraps: Vec<BootstrapRecord>,
    /// The bootstrap server's `GET /api/v1/associations` (AssociatedGateway alerts from devices).
    pub associations: Vec<AssociationRecord>,
}

/// Takes snapshots.
#[derive(Debug, Clone)]
pub struct Observer {
    store: Store,
    http: reqwest::Client,
    /// (ServerID, API base URL) of each DM Server.
    servers: Vec<(String, String)>,
    /// The bootstrap server's base URL.
    bootstrap: String,
}

impl Observer {
    /// An observer of the gateway's `store`, of the DM Servers at `servers` ((ServerID, base
    /// URL) pairs) and of the bootstrap server at `bootstrap`, trusting only the CA certificate `ca_pem`.
    pub fn new(
        store: Store,
        servers: Vec<(String, String)>,
        bootstrap: String,
        ca_pem: &[u8],
    ) -> Result<Observer, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(LOOK_TIMEOUT)
            .tls_certs_only([reqwest::Certificate::from_pem(ca_pem)?])
            .build()?;
        Ok(Observer {
            store,
            http,
            servers,
            bootstrap,
        })
    }

    /// One look at the gateway and every DM Server.
    pub async fn snapshot(&self) -> Result<Snapshot, ObserveError> {
        tokio::time::timeout(LOOK_TIMEOUT, self.look())
            .await
            .map_err(|_| ObserveError::Timeout)?
    }

    async fn look(&self) -> Result<Snapshot, ObserveError> {
        let page = Page::first();
        let devices = self
            .store
            .list_devices(&DeviceFilter::default(), &page)
            .await?
            .items;
        let outbox = self
            .store
            .list_alerts(&AlertFilter::default(), &page)
            .await?
            .items;
        let jobs = self
            .store
            .list_jobs(&JobFilter::default(), &page)
            .await?
            .items;
        let accounts = self.store.list_accounts(&page).await?.items;
        let mut received = BTreeMap::new();
        for (server_id, base) in &self.servers {
            received.insert(server_id.clone(), self.alerts_of(server_id, base).await?);
        }
        let bootstraps = self
            .bootstrap_list("bootstraps")
            .await
            .map_err(ObserveError::BootstrapServer)?;
        let associations = self
            .bootstrap_list("associations")
            .await
            .map_err(ObserveError::BootstrapServer)?;
        Ok(Snapshot {
            devices,
            outbox,
            jobs,
            accounts,
            received,
            bootstraps,
            associations,
        })
    }

    /// `GET {base}{path}?limit=1000`, its `items`.
    async fn items<T: serde::de::DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
    ) -> Result<Vec<T>, String> {
        let resp = self
            .http
            .get(format!("{}{path}", base.trim_end_matches('/')))
            .query(&[("limit", "1000")])
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !resp.status().is_success() {
            return Err(format!("GET {path} answered {}", resp.status()));
        }
        let page: ApiPage<T> = resp.json().await.map_err(|e| e.without_url().to_string())?;
        Ok(page.items)
    }

    /// One of the bootstrap server's lists (`bootstraps`, `associations`).
    async fn bootstrap_list<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
    ) -> Result<Vec<T>, String> {
        self.items(&self.bootstrap, &format!("/api/v1/{what}"))
            .await
    }

    async fn alerts_of(
        &self,
        server_id: &str,
        base: &str,
    ) -> Result<Vec<ReceivedAlert>, ObserveError> {
        self.items(base, "/api/v1/alerts")
            .await
            .map_err(|reason| ObserveError::DmServer {
                server_id: server_id.to_owned(),
                reason,
            })
    }
}
