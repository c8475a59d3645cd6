//! Starting and stopping the demo's services in this process: the DM Servers (dm-server library),
//! the gateway (`Application::build`), and the simulated devices (device-sim's `Fleet` and its
//! consent callback server). Every listener is on 127.0.0.1 with an ephemeral port, and TLS.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use device_sim::callback::{CallbackConfig, CallbackServer};
use device_sim::client::{GatewayClient, HttpSettings, TargetPolicy, Transport};
use device_sim::fleet::{Fleet, FleetContext};
use dm_server::config::{MasterKey, TlsFiles};
use dm_server::{Config, RunningServer};
use gateway::config::ServeArgs;
use gateway::startup::{Application, StartupError, StopHandle};
use gateway::state::AppState;
use omadm::element::Limits;
use serde::Serialize;

use crate::datadir::write_private;
use crate::error::DemoError;
use crate::pki::Pki;
use crate::plan::{self, DevicePlan, GATEWAY_ACCOUNT, GATEWAY_DEV_ID, ServerPlan};

/// How long each part gets to stop.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// A random secret of `bytes` random bytes, as hex (ASCII, so no whitespace to trim).
pub fn random_hex(bytes: usize) -> String {
    let raw: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(raw)
}

/// A running DM Server.
#[derive(Debug)]
pub struct DmServer {
    /// Its plan.
    pub plan: ServerPlan,
    /// The server.
    pub server: RunningServer,
}

impl DmServer {
    /// Its DM URL (where DM clients post).
    pub fn dm_url(&self) -> String {
        self.server.dm_url().to_owned()
    }
}

/// Start the DM Servers of the plan: TLS, md5 client authentication, passwords derived from
/// `master_key`, JSON Lines data files in `dir`.
pub fn start_dm_servers(
    pki: &Pki,
    master_key: &str,
    dir: &Path,
) -> Result<Vec<DmServer>, DemoError> {
    let mut out = Vec::new();
    for plan in plan::SERVERS {
        let mut cfg = Config::new(plan.server_id);
        cfg.listen = loopback();
        cfg.tls = Some(TlsFiles {
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
        });
        cfg.master_key =
            Some(
                MasterKey::new(master_key).map_err(|source| DemoError::DmServerConfig {
                    server_id: plan.server_id.to_owned(),
                    source,
                })?,
            );
        cfg.data_file = Some(dir.join(format!("{}.jsonl", plan.server_id)));
        cfg.handle_signals = false;
        let server = dm_server::start(cfg).map_err(|source| DemoError::DmServer {
            server_id: plan.server_id.to_owned(),
            source,
        })?;
        out.push(DmServer { plan, server });
    }
    Ok(out)
}

/// Stop the DM Servers (their data files are flushed).
pub async fn stop_dm_servers(servers: Vec<DmServer>) {
    for s in servers {
        let id = s.plan.server_id;
        match tokio::time::timeout(STOP_TIMEOUT, s.server.stop()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(server_id = id, error = %e, "DM Server stopped badly"),
            Err(_) => tracing::warn!(server_id = id, "DM Server did not stop in time"),
        }
    }
}

/// One `[[account]]` of the gateway's factory accounts file.
#[derive(Debug, Serialize)]
struct FactoryAccount<'a> {
    server_id: &'a str,
    name: &'a str,
    addr: String,
    auth_type: &'a str,
    auth_name: &'a str,
    auth_secret: String,
}

#[derive(Debug, Serialize)]
struct FactoryFile<'a> {
    account: Vec<FactoryAccount<'a>>,
}

/// Write the gateway's factory accounts: one per DM Server it knows, with the password the
/// server derives for the gateway's account name from the shared master key.
pub fn write_factory_accounts(
    path: &Path,
    servers: &[DmServer],
    master_key: &str,
) -> Result<(), DemoError> {
    let account = servers
        .iter()
        .filter(|s| s.plan.known_to_gateway)
        .map(|s| FactoryAccount {
            server_id: s.plan.server_id,
            name: s.plan.name,
            addr: s.dm_url(),
            auth_type: "DIGEST",
            auth_name: GATEWAY_ACCOUNT,
            auth_secret: dm_server::derive_password(
                master_key.as_bytes(),
                s.plan.server_id,
                GATEWAY_ACCOUNT,
            )
            .expose()
            .to_owned(),
        })
        .collect();
    let text = toml::to_string(&FactoryFile { account })?;
    write_private(path, text.as_bytes())
}

/// The running gateway.
#[derive(Debug)]
pub struct Gateway {
    /// The LAN face's base URL.
    pub lan_url: String,
    /// The admin API's base URL.
    pub admin_url: String,
    /// The admin API's bearer token.
    pub admin_token: String,
    /// The SQLite database.
    pub database: PathBuf,
    /// Store and actors.
    pub state: AppState,
    handle: StopHandle,
    task: actix_rt::task::JoinHandle<Result<(), StartupError>>,
}

/// What the gateway is started with.
#[derive(Debug)]
pub struct GatewayFiles<'a> {
    /// TLS material.
    pub pki: &'a Pki,
    /// The SQLite database file.
    pub database: PathBuf,
    /// The factory accounts file.
    pub accounts: PathBuf,
}

impl Gateway {
    /// Build the gateway (admin API and LAN face on loopback port 0, both HTTPS; the demo's CA
    /// trusted for outgoing HTTPS) and run it on the current actix system.
    pub async fn start(files: GatewayFiles<'_>) -> Result<Gateway, DemoError> {
        let admin_token = random_hex(16);
        let args = ServeArgs {
            database: Some(files.database.clone()),
            admin_listen: Some(loopback()),
            admin_token: Some(admin_token.clone()),
            admin_tls_cert: Some(files.pki.server_cert.clone()),
            admin_tls_key: Some(files.pki.server_key.clone()),
            lan_listen: Some(loopback()),
            lan_tls_cert: Some(files.pki.server_cert.clone()),
            lan_tls_key: Some(files.pki.server_key.clone()),
            ca_cert: Some(files.pki.ca_cert.clone()),
            dev_id: Some(GATEWAY_DEV_ID.to_owned()),
            accounts_file: Some(files.accounts),
            shutdown_timeout: Some(2),
            alert_backoff_ms: Some(250),
            alert_backoff_max_ms: Some(2000),
            ..ServeArgs::default()
        };
        let settings = args.resolve()?;
        let app = Application::build(settings).await?;
        let state = app.state().clone();
        let handle = app.handle();
        let admin_url = format!("https://127.0.0.1:{}", app.admin_port());
        let lan_url = state.settings.lan_public_url.clone();
        let task = actix_rt::spawn(app.run_until_stopped());
        Ok(Gateway {
            lan_url,
            admin_url,
            admin_token,
            database: files.database,
            state,
            handle,
            task,
        })
    }

    /// Stop the HTTP faces, let the actors drain, close the store.
    pub async fn stop(self) {
        let stopped = async {
            self.handle.stop(true).await;
            self.task.await
        };
        match tokio::time::timeout(STOP_TIMEOUT, stopped).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the gateway stopped badly"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the gateway task failed"),
            Err(_) => tracing::warn!("the gateway did not stop in time"),
        }
    }
}

/// The simulated End Devices and their consent callback server.
#[derive(Debug)]
pub struct Devices {
    /// The running devices.
    pub fleet: Fleet,
    callback: CallbackServer,
}

impl Devices {
    /// Start one simulated device per plan, speaking to the gateway's LAN face over HTTPS (the
    /// demo's CA the only trust anchor), with an HTTPS callback server for consent requests.
    pub async fn start(
        plans: &[DevicePlan],
        dm_urls: &BTreeMap<String, String>,
        lan_url: &str,
        pki: &Pki,
    ) -> Result<Devices, DemoError> {
        let specs = plans
            .iter()
            .map(|p| p.spec(dm_urls))
            .collect::<Result<Vec<_>, _>>()?;
        let transport = Transport::new(&HttpSettings {
            ca_cert: Some(pki.ca_cert.clone()),
            policy: TargetPolicy {
                plain_http: false,
                loopback_only: true,
            },
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        })?;
        let base = url::Url::parse(lan_url).map_err(|e| DemoError::Device {
            dev_id: "*".into(),
            reason: format!("gateway LAN URL {lan_url}: {e}"),
        })?;
        let client = GatewayClient::new(transport, &base)?;
        let callback = CallbackServer::start(CallbackConfig {
            listen: loopback(),
            public_base: None,
            tls: Some((pki.server_cert.clone(), pki.server_key.clone())),
            workers: 1,
        })
        .await?;
        let ctx = FleetContext {
            client,
            limits: Limits::default(),
        };
        let fleet = match Fleet::spawn(specs, ctx, &callback, None) {
            Ok(f) => f,
            Err(e) => {
                callback.stop().await;
                return Err(e.into());
            }
        };
        Ok(Devices { fleet, callback })
    }

    /// Stop every device, then the callback server.
    pub async fn stop(self) {
        if tokio::time::timeout(STOP_TIMEOUT, self.fleet.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("the devices did not stop in time");
        }
        if tokio::time::timeout(STOP_TIMEOUT, self.callback.stop())
            .await
            .is_err()
        {
            tracing::warn!("the callback server did not stop in time");
        }
    }
}
