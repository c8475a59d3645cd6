//! Starting and stopping the demo's services in this process: the DM Servers (dm-server library),
//! the gateway (`Application::build`), the DM Bootstrap Server (bootstrap-server library) and the
//! simulated devices (device-sim's `Fleet` and its consent callback server). Every listener is on
//! 127.0.0.1 with an ephemeral port, and TLS with the run's CA.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bootstrap_server::profiles::load_profiles;
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

/// The secrets of one run, all random: each DM Server's master key (shared with the bootstrap
/// server's profile for it), the gateway's HTTP Basic password at the bootstrap server (workflow 1)
/// and the PIN that keys the MAC of pushed bootstraps (workflow 2).
#[derive(Clone)]
pub struct Secrets {
    /// Master key of each DM Server, by ServerID.
    pub master_keys: BTreeMap<&'static str, String>,
    /// The gateway's Basic password at the bootstrap server.
    pub bootstrap_password: String,
    /// The push PIN (USERPIN).
    pub push_pin: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("master_keys", &self.master_keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Secrets {
    /// Fresh secrets for the servers of the plan.
    pub fn generate() -> Secrets {
        Secrets {
            master_keys: plan::SERVERS
                .iter()
                .map(|s| (s.server_id, random_hex(32)))
                .collect(),
            bootstrap_password: random_hex(16),
            push_pin: format!("{:08}", rand::random_range(0..100_000_000u32)),
        }
    }

    /// The master key of `server_id` (empty when the plan has no such server).
    pub fn master_key(&self, server_id: &str) -> &str {
        self.master_keys
            .get(server_id)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// Start the DM Servers of the plan: TLS, md5 client authentication, passwords derived from each
/// one's master key in `secrets`, JSON Lines data files in `dir`.
pub fn start_dm_servers(
    pki: &Pki,
    secrets: &Secrets,
    dir: &Path,
) -> Result<Vec<DmServer>, DemoError> {
    plan::SERVERS
        .into_iter()
        .map(|plan| start_dm_server(plan, pki, secrets.master_key(plan.server_id), dir))
        .collect()
}

fn start_dm_server(
    plan: ServerPlan,
    pki: &Pki,
    master_key: &str,
    dir: &Path,
) -> Result<DmServer, DemoError> {
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
    Ok(DmServer { plan, server })
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

/// Write the gateway's factory accounts: one per DM Server it knows, with the password that server
/// derives for the gateway's account name from its master key.
pub fn write_factory_accounts(
    path: &Path,
    servers: &[DmServer],
    secrets: &Secrets,
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
                secrets.master_key(s.plan.server_id).as_bytes(),
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

/// The path of the gateway's WAN face where bootstrap servers push (workflow 2).
pub const WAN_PUSH_PATH: &str = "/wan/v1/bootstrap";

/// The running gateway.
#[derive(Debug)]
pub struct Gateway {
    /// The LAN face's base URL.
    pub lan_url: String,
    /// The WAN face's base URL (pushed bootstraps arrive at [`Gateway::push_url`]).
    pub wan_url: String,
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
    /// Its bootstrap credentials (Basic password, push PIN).
    pub secrets: &'a Secrets,
}

impl Gateway {
    /// Build the gateway (admin API, LAN and WAN faces on loopback port 0, all HTTPS; the demo's CA
    /// trusted for outgoing HTTPS; bootstrap policy `1,2` with HTTP Basic credentials for workflow 1
    /// and a push PIN for workflow 2) and run it on the current actix system.
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
            wan_listen: Some(loopback()),
            wan_tls_cert: Some(files.pki.server_cert.clone()),
            wan_tls_key: Some(files.pki.server_key.clone()),
            ca_cert: Some(files.pki.ca_cert.clone()),
            dev_id: Some(GATEWAY_DEV_ID.to_owned()),
            accounts_file: Some(files.accounts),
            workflow: Some("1,2".to_owned()),
            bootstrap_auth_name: Some(GATEWAY_ACCOUNT.to_owned()),
            bootstrap_auth_secret: Some(files.secrets.bootstrap_password.clone()),
            push_pin: Some(files.secrets.push_pin.clone()),
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
        let wan_url = state.settings.wan_public_url.clone();
        let task = actix_rt::spawn(app.run_until_stopped());
        Ok(Gateway {
            lan_url,
            wan_url,
            admin_url,
            admin_token,
            database: files.database,
            state,
            handle,
            task,
        })
    }

    /// Where bootstrap servers push (the `GatewayAddress` of its workflow-2 hand-overs).
    pub fn push_url(&self) -> String {
        format!("{}{WAN_PUSH_PATH}", self.wan_url)
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

/// One `[[servers]]` of the bootstrap server's profiles file.
#[derive(Debug, Serialize)]
struct ProfileServer<'a> {
    server_id: &'a str,
    address: String,
    auth_type: &'a str,
    name: &'a str,
    master_key_file: String,
}

/// One `[[gateways]]` of the bootstrap server's profiles file (no `Debug`: it holds secrets).
#[derive(Serialize)]
struct ProfileGateway<'a> {
    gateway_id: &'a str,
    pin: &'a str,
    push_urls: Vec<String>,
    username: &'a str,
    password: &'a str,
    servers: Vec<&'a str>,
}

#[derive(Serialize)]
struct ProfilesFile<'a> {
    servers: Vec<ProfileServer<'a>>,
    gateways: Vec<ProfileGateway<'a>>,
}

/// Write the bootstrap server's profiles file in `dir` (with one master-key file per profile,
/// owner-readable only): a profile for each DM Server of the plan that has one, and the gateway
/// trusted with its Basic credentials (workflow 1), its push PIN and push URL (workflow 2).
pub fn write_bootstrap_profiles(
    dir: &Path,
    servers: &[DmServer],
    secrets: &Secrets,
    push_url: &str,
) -> Result<PathBuf, DemoError> {
    std::fs::create_dir_all(dir).map_err(|source| DemoError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let mut profiles = Vec::new();
    for s in servers.iter().filter(|s| s.plan.bootstrap_profile) {
        let key_file = format!("{}.key", s.plan.server_id);
        write_private(
            &dir.join(&key_file),
            secrets.master_key(s.plan.server_id).as_bytes(),
        )?;
        profiles.push(ProfileServer {
            server_id: s.plan.server_id,
            address: s.dm_url(),
            auth_type: "DIGEST",
            name: s.plan.name,
            master_key_file: key_file,
        });
    }
    let gateway = ProfileGateway {
        gateway_id: GATEWAY_DEV_ID,
        pin: &secrets.push_pin,
        push_urls: vec![push_url.to_owned()],
        username: GATEWAY_ACCOUNT,
        password: &secrets.bootstrap_password,
        servers: profiles.iter().map(|p| p.server_id).collect(),
    };
    let text = toml::to_string(&ProfilesFile {
        servers: profiles,
        gateways: vec![gateway],
    })?;
    let path = dir.join("profiles.toml");
    write_private(&path, text.as_bytes())?;
    Ok(path)
}

/// The running DM Bootstrap Server.
#[derive(Debug)]
pub struct BootstrapServer {
    /// The server.
    pub server: bootstrap_server::RunningServer,
    /// Its profiles file.
    pub profiles: PathBuf,
}

impl BootstrapServer {
    /// Load `profiles` and start the bootstrap server: HTTPS on loopback port 0, End Devices
    /// unauthenticated on `POST /dm`, pushes trusting the demo's CA and retried quickly.
    pub fn start(pki: &Pki, profiles: PathBuf) -> Result<BootstrapServer, DemoError> {
        let loaded = load_profiles(&profiles, &|_| None, false)?;
        let mut cfg = bootstrap_server::Config::new(loaded);
        cfg.listen = loopback();
        cfg.tls = Some(bootstrap_server::config::TlsFiles {
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            client_ca: None,
        });
        cfg.push = bootstrap_server::config::PushSettings {
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
            ca_cert: Some(pki.ca_cert.clone()),
            ..bootstrap_server::config::PushSettings::default()
        };
        cfg.handle_signals = false;
        let server = bootstrap_server::start(cfg)?;
        Ok(BootstrapServer { server, profiles })
    }

    /// Its base URL: what the devices' accounts name as their bootstrap server.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Stop it (pushes still queued are abandoned).
    pub async fn stop(self) {
        if tokio::time::timeout(STOP_TIMEOUT, self.server.stop())
            .await
            .is_err()
        {
            tracing::warn!("the bootstrap server did not stop in time");
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
    /// Start one simulated device per plan, speaking to the gateway's LAN face (and, to relay a
    /// workflow-2 hand-over, to the bootstrap server at `bootstrap_url`) over HTTPS with the demo's
    /// CA the only trust anchor, with an HTTPS callback server for consent requests.
    pub async fn start(
        plans: &[DevicePlan],
        dm_urls: &BTreeMap<String, String>,
        bootstrap_url: &str,
        lan_url: &str,
        pki: &Pki,
    ) -> Result<Devices, DemoError> {
        let specs = plans
            .iter()
            .map(|p| p.spec(dm_urls, bootstrap_url))
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
