//! The one JSON line the demo ends with: each device's final state, the gateway's accounts and
//! bootstrap jobs, what each DM Server received, what the bootstrap server issued and was asked, and
//! how long it took. Serialisable both ways, so tests parse the binary's output. No secrets.

use bootstrap_server::records::{AssociationRecord, BootstrapRecord};
use serde::{Deserialize, Serialize};

use crate::observe::Snapshot;
use crate::plan::{self, consent_text};
use crate::story::{Tracker, short_type};

/// Why the demo stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `--exit`: everything settled.
    Settled,
    /// `--exit`: the timeout passed first.
    Timeout,
    /// Ctrl-C (or the caller's stop signal).
    Interrupted,
}

/// The gateway, as the demo ran it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewaySummary {
    /// Its DevId.
    pub dev_id: String,
    /// The LAN face's base URL.
    pub lan_url: String,
    /// The WAN face's base URL (pushed bootstraps).
    pub wan_url: String,
    /// The admin API's base URL.
    pub admin_url: String,
    /// The SQLite database file.
    pub database: String,
}

/// One device at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSummary {
    /// Its DevId.
    pub dev_id: String,
    /// What it is.
    pub name: String,
    /// Its user's consent policy.
    pub consent: String,
    /// The ServerIDs of its DM accounts.
    pub accounts: Vec<String>,
    /// The gateway's final state of it (`attached`, `waiting_bootstrap`, `refused`, ...); `None`
    /// when the gateway never recorded it.
    pub state: Option<String>,
    /// How its onboarding ended on the device's side (`done`, `refused`, `failed`).
    pub device_outcome: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The ServerIDs the gateway recorded for it.
    pub reported: Vec<String>,
    /// Those the gateway holds an account for.
    pub matched: Vec<String>,
    /// Those it does not.
    pub unmatched: Vec<String>,
    /// The DM Servers that received `deviceattached` for it.
    pub alerted: Vec<String>,
    /// Workflow-2 hand-overs it relayed to its bootstrap server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relayed: Vec<RelaySummary>,
    /// True once it settled.
    pub settled: bool,
    /// When it settled, in ms since the devices started.
    pub settled_ms: Option<u64>,
    /// The story in one line.
    pub story: String,
}

/// A workflow-2 hand-over a device relayed to its bootstrap server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelaySummary {
    /// The ServerID handed over.
    pub server_id: String,
    /// The bootstrap server's DM URL.
    pub url: String,
    /// The status that answered the AssociatedGateway alert.
    pub status: Option<u16>,
    /// Why the relay failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A DMAcc account of the gateway at the end (never its credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSummary {
    /// Its ServerID.
    pub server_id: String,
    /// Where it came from: `factory`, `operator` or `bootstrap`.
    pub origin: String,
    /// The DM Server's address (`AppAddr`).
    pub addr: Option<String>,
}

/// The bootstrap server at the end: its `GET /api/v1/bootstraps` and `GET /api/v1/associations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapServerSummary {
    /// Its base URL (what the devices' accounts name).
    pub url: String,
    /// The bootstraps it issued: workflow 1 (GET by the gateway) and 2 (pushed, with delivery).
    pub bootstraps: Vec<BootstrapRecord>,
    /// The AssociatedGateway alerts devices relayed to it.
    pub associations: Vec<AssociationRecord>,
}

/// A Generic Alert a DM Server received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSummary {
    /// The alert type, short (`deviceattached`).
    #[serde(rename = "type")]
    pub alert_type: String,
    /// The End Device it is about (the alert's data).
    pub device: Option<String>,
    /// The client that sent it (the gateway).
    pub from: String,
    /// Its correlator.
    pub correlator: Option<String>,
    /// When it was received.
    pub received_at: String,
}

/// One DM Server at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmServerSummary {
    /// Its ServerID.
    pub server_id: String,
    /// Its DM URL.
    pub dm_url: String,
    /// True when the gateway had a factory account for it.
    pub known_to_gateway: bool,
    /// True when the bootstrap server has a profile for it.
    pub bootstrap_profile: bool,
    /// The origin of the gateway's account for it at the end (`factory`, `bootstrap`); `None`
    /// when the gateway has none.
    pub gateway_account: Option<String>,
    /// The number of `deviceattached` alerts it received.
    pub deviceattached: usize,
    /// Every Generic Alert it received.
    pub alerts: Vec<AlertSummary>,
}

/// One bootstrap job of the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    /// Its id.
    pub id: i64,
    /// The ServerID it is for.
    pub server_id: String,
    /// The device that reported it.
    pub dev_id: String,
    /// 1 or 2.
    pub workflow: i64,
    /// Its state.
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// The bootstrap-server URL the device gave (workflow 1).
    pub bootstrap_url: Option<String>,
    /// The last error (or, when done, a note).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The JSON summary line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// True when every device settled and none failed.
    pub ok: bool,
    /// True when every device settled.
    pub settled: bool,
    /// Why the demo stopped.
    pub stopped_by: StopReason,
    /// Milliseconds from the devices' start to the stop (or to settling, with `--exit`).
    pub elapsed_ms: u64,
    /// Milliseconds to start the servers before the devices.
    pub startup_ms: u64,
    /// True: every HTTP hop is TLS with the demo's CA.
    pub tls: bool,
    /// The demo's data folder.
    pub data_dir: String,
    /// The gateway.
    pub gateway: GatewaySummary,
    /// The devices, in plan order.
    pub devices: Vec<DeviceSummary>,
    /// The DM Servers.
    pub dm_servers: Vec<DmServerSummary>,
    /// The gateway's DMAcc accounts.
    pub gateway_accounts: Vec<AccountSummary>,
    /// The gateway's bootstrap jobs.
    pub bootstrap_jobs: Vec<JobSummary>,
    /// The DM Bootstrap Server.
    pub bootstrap_server: BootstrapServerSummary,
    /// What each unsettled device still waited for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsettled: Vec<String>,
}

impl Summary {
    /// The device with this DevId.
    pub fn device(&self, dev_id: &str) -> Option<&DeviceSummary> {
        self.devices.iter().find(|d| d.dev_id == dev_id)
    }

    /// The DM Server with this ServerID.
    pub fn dm_server(&self, server_id: &str) -> Option<&DmServerSummary> {
        self.dm_servers.iter().find(|d| d.server_id == server_id)
    }

    /// The gateway's account for this ServerID.
    pub fn gateway_account(&self, server_id: &str) -> Option<&AccountSummary> {
        self.gateway_accounts
            .iter()
            .find(|a| a.server_id == server_id)
    }
}

/// What the run knows besides the tracker and the last snapshot.
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// Why it stopped.
    pub stopped_by: StopReason,
    /// Devices' start to stop.
    pub elapsed_ms: u64,
    /// Start-up time.
    pub startup_ms: u64,
    /// The data folder.
    pub data_dir: String,
    /// The gateway.
    pub gateway: GatewaySummary,
    /// (ServerID, DM URL) of each DM Server.
    pub dm_urls: Vec<(String, String)>,
    /// The bootstrap server's base URL.
    pub bootstrap_url: String,
}

/// Put the summary together.
pub fn build(facts: RunFacts, tracker: &Tracker, last: &Snapshot) -> Summary {
    let devices: Vec<DeviceSummary> = tracker
        .devices()
        .iter()
        .map(|t| DeviceSummary {
            dev_id: t.plan.dev_id.to_owned(),
            name: t.plan.name.to_owned(),
            consent: consent_text(t.plan.consent),
            accounts: t.plan.server_ids().into_iter().map(str::to_owned).collect(),
            state: t.state.map(|s| s.as_str().to_owned()),
            device_outcome: t.sim.as_ref().map(|r| {
                serde_json::to_value(r.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("{:?}", r.outcome))
            }),
            failure: t.failure.clone(),
            reported: t.reported.clone(),
            matched: t.matched.clone(),
            unmatched: t.unmatched.clone(),
            alerted: t.alerted.iter().cloned().collect(),
            relayed: t
                .relayed
                .iter()
                .map(|(server_id, r)| RelaySummary {
                    server_id: server_id.clone(),
                    url: r.url.clone(),
                    status: r.status,
                    error: r.error.clone(),
                })
                .collect(),
            settled: t.settled_at.is_some(),
            settled_ms: t
                .settled_at
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            story: t.chain(),
        })
        .collect();
    let dm_servers = facts
        .dm_urls
        .iter()
        .map(|(server_id, dm_url)| {
            let alerts: Vec<AlertSummary> = last
                .received
                .get(server_id)
                .map(|v| v.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|a| AlertSummary {
                    alert_type: short_type(&a.alert_type).to_owned(),
                    device: a.data.as_deref().map(|d| d.trim().to_owned()),
                    from: a.dev_id.clone(),
                    correlator: a.correlator.clone(),
                    received_at: a.received_at.clone(),
                })
                .collect();
            DmServerSummary {
                server_id: server_id.clone(),
                dm_url: dm_url.clone(),
                known_to_gateway: plan::server(server_id).is_some_and(|p| p.known_to_gateway),
                bootstrap_profile: plan::server(server_id).is_some_and(|p| p.bootstrap_profile),
                gateway_account: last
                    .accounts
                    .iter()
                    .find(|a| &a.server_id == server_id)
                    .map(|a| a.origin.as_str().to_owned()),
                deviceattached: last
                    .received
                    .get(server_id)
                    .map(|v| {
                        v.iter()
                            .filter(|a| {
                                omadm::alert::same_type(
                                    &a.alert_type,
                                    omadm::alert::DEVICE_ATTACHED,
                                )
                            })
                            .count()
                    })
                    .unwrap_or(0),
                alerts,
            }
        })
        .collect();
    let bootstrap_jobs = last
        .jobs
        .iter()
        .map(|j| JobSummary {
            id: j.id.0,
            server_id: j.server_id.clone(),
            dev_id: j.dev_id.clone(),
            workflow: j.workflow.number(),
            state: j.state.as_str().to_owned(),
            attempts: j.attempts,
            bootstrap_url: j.bootstrap_url.clone(),
            last_error: j.last_error.clone(),
        })
        .collect();
    let gateway_accounts = last
        .accounts
        .iter()
        .map(|a| AccountSummary {
            server_id: a.server_id.clone(),
            origin: a.origin.as_str().to_owned(),
            addr: a.addresses.first().map(|x| x.addr.clone()),
        })
        .collect();
    let settled = tracker.all_settled();
    Summary {
        ok: settled && !tracker.any_failed(),
        settled,
        stopped_by: facts.stopped_by,
        elapsed_ms: facts.elapsed_ms,
        startup_ms: facts.startup_ms,
        tls: true,
        data_dir: facts.data_dir,
        gateway: facts.gateway,
        devices,
        dm_servers,
        gateway_accounts,
        bootstrap_jobs,
        bootstrap_server: BootstrapServerSummary {
            url: facts.bootstrap_url,
            bootstraps: last.bootstraps.clone(),
            associations: last.associations.clone(),
        },
        unsettled: tracker.unsettled(),
    }
}
