//! Start-up and shutdown: open the store (migrations), load factory accounts, start the actors and
//! the HTTP faces; on SIGTERM/SIGINT stop accepting, let in-flight work reach the store, exit 0.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use metrics_exporter_prometheus::PrometheusHandle;
use omadm::codec::Encoding;
use omadm::mo::DevInfo;
use thiserror::Error;

use crate::actors::bootstrap_client::BootstrapSettings;
use crate::actors::{self, ActorAddrs, TracedExt};
use crate::bootstrap::Fetcher;
use crate::config::{ConfigError, ServeArgs, Settings, TlsFiles};
use crate::dm_client::DmClientSender;
use crate::domain::Origin;
use crate::lan::LanState;
use crate::provision::{AccountsFileError, read_accounts_file};
use crate::state::AppState;
use crate::store::{Store, StoreError, StoreOptions};
use crate::wan::WanState;

/// Stops both HTTP faces of a running gateway.
#[derive(Clone)]
pub struct StopHandle {
    faces: Vec<ServerHandle>,
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopHandle")
    }
}

impl StopHandle {
    /// Stop accepting; with `graceful`, let in-flight requests finish.
    pub async fn stop(&self, graceful: bool) {
        futures_util::future::join_all(self.faces.iter().map(|h| h.stop(graceful))).await;
    }
}

/// The gateway could not start (or stop cleanly).
#[derive(Debug, Error)]
pub enum StartupError {
    /// Settings.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The store.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The factory accounts file.
    #[error("factory accounts: {0}")]
    Accounts(#[from] AccountsFileError),
    /// TLS material.
    #[error("TLS: {0}")]
    Tls(String),
    /// Logs and traces.
    #[error("telemetry: {0}")]
    Telemetry(#[from] telemetry::TelemetryError),
    /// Sockets and files.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The WAN HTTP client.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The Prometheus recorder is process-wide by the `metrics` crate's design; installed once.
pub fn metrics_handle() -> PrometheusHandle {
    telemetry::prometheus::install()
}

/// The gateway's own DevInfo (./DevInfo), what DM Servers see of it.
pub fn gateway_devinfo(settings: &Settings) -> DevInfo {
    DevInfo {
        dev_id: settings.dev_id.clone(),
        man: "dmgw".into(),
        model: "OMA DM Gateway".into(),
        dm_v: "1.2".into(),
        lang: "en-US".into(),
        ext: Default::default(),
    }
}

/// Load PEM certificate chain and key into a rustls server configuration (ring provider).
pub fn tls_server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, StartupError> {
    let tls = |what: &str, e: &dyn std::fmt::Display| StartupError::Tls(format!("{what}: {e}"));
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(
        &files.cert,
    )?))
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| tls("certificate", &e))?;
    if certs.is_empty() {
        return Err(StartupError::Tls(format!(
            "{}: no certificate",
            files.cert.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(
        &files.key,
    )?))
    .map_err(|e| tls("key", &e))?
    .ok_or_else(|| StartupError::Tls(format!("{}: no private key", files.key.display())))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls("protocol versions", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls("certificate and key", &e))
}

async fn load_factory_accounts(store: &Store, path: &Path) -> Result<Vec<String>, StartupError> {
    let accounts = read_accounts_file(path)?;
    let mut added = Vec::new();
    for acc in accounts {
        let w = store
            .insert_or_replace_account(&acc, None, Origin::Factory, false)
            .await?;
        if w.outcome == crate::domain::WriteOutcome::Inserted {
            added.push(acc.server_id.clone());
        }
    }
    tracing::info!(added = added.len(), file = %path.display(), "factory accounts loaded");
    Ok(added)
}

/// `url` with port 0 (a public URL derived from a `:0` listen address) replaced by the port
/// actually bound; any other URL is returned as it is.
pub fn bound_public_url(url: &str, bound_port: u16) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.port() == Some(0) => {
            if u.set_port(Some(bound_port)).is_err() {
                return url.to_owned();
            }
            u.as_str().trim_end_matches('/').to_owned()
        }
        _ => url.to_owned(),
    }
}

/// A started gateway.
pub struct Application {
    admin_port: u16,
    lan_port: u16,
    wan_port: u16,
    /// Admin, LAN and WAN faces.
    servers: Vec<Server>,
    mdns: Option<mdns_sd::ServiceDaemon>,
    state: AppState,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("admin_port", &self.admin_port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Open the store, start the actors and bind the admin API. Must run inside an actix system.
    pub async fn build(mut settings: Settings) -> Result<Application, StartupError> {
        // Bind the LAN and WAN faces first: their public URLs, handed to devices (the LAN face,
        // and the WAN push address of a workflow-2 hand-over), must name the bound ports.
        let lan_listener = TcpListener::bind(settings.lan_listen)?;
        let lan_port = lan_listener.local_addr()?.port();
        settings.lan_public_url = bound_public_url(&settings.lan_public_url, lan_port);
        let wan_listener = TcpListener::bind(settings.wan_listen)?;
        let wan_port = wan_listener.local_addr()?.port();
        settings.wan_public_url = bound_public_url(&settings.wan_public_url, wan_port);
        let store = Store::open(&settings.database, &StoreOptions::default()).await?;
        let (alerts, jobs) = store.release_leases(crate::domain::Millis::now()).await?;
        if alerts + jobs > 0 {
            tracing::info!(
                alerts,
                jobs,
                "resuming work left in flight by the previous run"
            );
        }
        let factory = match &settings.accounts_file {
            Some(p) => load_factory_accounts(&store, p).await?,
            None => Vec::new(),
        };
        let metrics = metrics_handle();
        let roots = match &settings.ca_cert {
            Some(p) => reqwest::Certificate::from_pem_bundle(&std::fs::read(p)?)?,
            None => Vec::new(),
        };
        let http = DmClientSender::http_client(Duration::from_secs(30), &roots)?;
        let sender = Arc::new(DmClientSender::new(
            http.clone(),
            store.clone(),
            gateway_devinfo(&settings),
            Encoding::Xml,
        ));
        let mut wan_http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("dmgw/", env!("CARGO_PKG_VERSION")));
        for c in &roots {
            wan_http = wan_http.add_root_certificate(c.clone());
        }
        if let Some(p) = &settings.client_identity {
            wan_http = wan_http.identity(reqwest::Identity::from_pem(&std::fs::read(p)?)?);
        }
        let bootstrap = Arc::new(BootstrapSettings {
            policy: settings.workflow,
            fetcher: Fetcher::new(
                wan_http.build()?,
                settings.dev_id.clone(),
                settings.bootstrap_auth.clone(),
                settings.allow_plain_http,
            ),
            push_timeout: settings.push_timeout,
            max_attempts: settings.bootstrap_max_attempts,
            overwrite: settings.bootstrap_overwrite,
        });
        let state_store = store.clone();
        let actors: ActorAddrs = actors::start(store.clone(), &settings, sender, bootstrap);
        if !factory.is_empty() {
            let _ = actors.accounts_changed(factory).await;
        }
        // A match cut short by a stop or crash is done again (matching is idempotent).
        for dev_id in state_store.devices_to_rematch().await? {
            actors
                .matching
                .do_send(crate::actors::matching::MatchDevice { dev_id }.traced());
        }
        let mdns = if settings.mdns {
            match crate::mdns::start(actors.discovery.clone(), settings.allow_plain_http) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::error!(error = %e, "DNS-SD browsing could not start; HTTP announcements still work");
                    None
                }
            }
        } else {
            None
        };
        let ready = Arc::new(AtomicBool::new(false));
        let settings = Arc::new(settings);
        let state = AppState {
            store,
            actors,
            settings: settings.clone(),
            metrics,
            ready: ready.clone(),
        };
        let listener = TcpListener::bind(settings.admin_listen)?;
        let admin_port = listener.local_addr()?.port();
        let lan_state = web::Data::new(LanState {
            store: state.store.clone(),
            actors: state.actors.clone(),
            settings: settings.clone(),
            http,
            sessions: Arc::new(crate::lan::dm::Sessions::default()),
        });
        let lan_body = settings.max_body_bytes;
        let lan_server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(telemetry::http::server))
                .app_data(lan_state.clone())
                .app_data(web::PayloadConfig::default().limit(lan_body))
                .configure(|cfg| crate::lan::configure(cfg, lan_body))
        })
        .workers(2)
        .shutdown_timeout(settings.shutdown_timeout.as_secs());
        let lan_server = match &settings.lan_tls {
            Some(files) => {
                lan_server.listen_rustls_0_23(lan_listener, tls_server_config(files)?)?
            }
            None => lan_server.listen(lan_listener)?,
        }
        .run();
        let wan_state = web::Data::new(WanState {
            actors: state.actors.clone(),
            settings: settings.clone(),
        });
        let wan_server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(telemetry::http::server))
                .app_data(wan_state.clone())
                .configure(crate::wan::configure)
        })
        .workers(1)
        .shutdown_timeout(settings.shutdown_timeout.as_secs());
        let wan_server = match &settings.wan_tls {
            Some(files) => {
                wan_server.listen_rustls_0_23(wan_listener, tls_server_config(files)?)?
            }
            None => wan_server.listen(wan_listener)?,
        }
        .run();
        let data = web::Data::new(state.clone());
        let max_body = settings.max_body_bytes;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(telemetry::http::server))
                .app_data(data.clone())
                .app_data(web::JsonConfig::default().limit(max_body))
                .app_data(web::PayloadConfig::default().limit(max_body))
                .configure(crate::api::configure)
        })
        .workers(2)
        .shutdown_timeout(settings.shutdown_timeout.as_secs());
        let server = match &settings.admin_tls {
            Some(files) => server.listen_rustls_0_23(listener, tls_server_config(files)?)?,
            None => server.listen(listener)?,
        }
        .run();
        ready.store(true, Ordering::Release);
        tracing::info!(
            port = admin_port,
            tls = settings.admin_tls.is_some(),
            dev_id = %settings.dev_id,
            "dmgw ready"
        );
        Ok(Application {
            admin_port,
            lan_port,
            wan_port,
            servers: vec![server, lan_server, wan_server],
            mdns,
            state,
            shutdown_timeout: settings.shutdown_timeout,
        })
    }

    /// The admin API's port (useful with port 0).
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The LAN face's port (useful with port 0).
    pub fn lan_port(&self) -> u16 {
        self.lan_port
    }

    /// The WAN face's port (useful with port 0).
    pub fn wan_port(&self) -> u16 {
        self.wan_port
    }

    /// The shared state (store, actors).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A handle that stops both HTTP faces (what SIGTERM does).
    pub fn handle(&self) -> StopHandle {
        StopHandle {
            faces: self.servers.iter().map(Server::handle).collect(),
        }
    }

    /// Serve until SIGTERM/SIGINT (or `handle().stop`), then drain the actors and close the store.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        // Any face stopping (a signal stops them all) stops the gateway.
        let stop = self.handle();
        let results = futures_util::future::join_all(self.servers.into_iter().map(|server| {
            let stop = stop.clone();
            async move {
                let r = server.await;
                stop.stop(true).await;
                r
            }
        }))
        .await;
        let result: std::io::Result<()> = results.into_iter().collect();
        self.state.ready.store(false, Ordering::Release);
        tracing::info!("stopping: draining in-flight work");
        if tokio::time::timeout(self.shutdown_timeout, self.state.actors.drain())
            .await
            .is_err()
        {
            tracing::warn!("in-flight work did not finish in time; it resumes at the next start");
        }
        if let Some(d) = self.mdns {
            let _ = d.shutdown();
        }
        self.state.store.close().await;
        tracing::info!("dmgw stopped");
        Ok(result?)
    }
}

/// `dmgw serve`: resolve settings, set up logging, run until a signal.
pub fn serve(args: ServeArgs) -> Result<(), StartupError> {
    let settings = args.resolve()?;
    let telemetry = telemetry::init(telemetry::Options {
        service_name: "dmgw",
        service_version: env!("CARGO_PKG_VERSION"),
        log_format: match settings.log_format {
            crate::config::LogFormat::Text => telemetry::LogFormat::Text,
            crate::config::LogFormat::Json => telemetry::LogFormat::Json,
        },
        filter: settings.log.clone(),
    })?;
    if let Some(exporter) = telemetry.as_ref().and_then(|t| t.exporter()) {
        tracing::info!(protocol = exporter.protocol, endpoint = %exporter.endpoint, "exporting traces over OTLP");
    }
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        app.run_until_stopped().await
    });
    // Dropping the telemetry flushes the spans still queued (bounded by the export timeout).
    drop(telemetry);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_url_on_port_0_takes_the_bound_port() {
        assert_eq!(
            bound_public_url("https://127.0.0.1:0", 40123),
            "https://127.0.0.1:40123"
        );
        assert_eq!(
            bound_public_url("http://127.0.0.1:0/base", 8),
            "http://127.0.0.1:8/base"
        );
        assert_eq!(
            bound_public_url("https://gw.lan:8443", 40123),
            "https://gw.lan:8443"
        );
        assert_eq!(bound_public_url("https://gw.lan", 1), "https://gw.lan");
        assert_eq!(bound_public_url("not a url", 1), "not a url");
    }

    #[actix_rt::test]
    async fn faces_on_port_0_publish_the_ports_they_bound() {
        let dir = tempfile::tempdir().unwrap();
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let settings = ServeArgs {
            database: Some(dir.path().join("gw.db")),
            admin_listen: Some(any),
            admin_token: Some("0123456789abcdef0123".into()),
            allow_plain_http: true,
            lan_listen: Some(any),
            wan_listen: Some(any),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(settings.wan_public_url, "http://127.0.0.1:0");
        let app = Application::build(settings).await.unwrap();
        let s = &app.state().settings;
        assert_ne!(app.lan_port(), 0);
        assert_ne!(app.wan_port(), 0);
        assert_eq!(
            s.lan_public_url,
            format!("http://127.0.0.1:{}", app.lan_port())
        );
        assert_eq!(
            s.wan_public_url,
            format!("http://127.0.0.1:{}", app.wan_port())
        );
        let handle = app.handle();
        let running = actix_rt::spawn(app.run_until_stopped());
        handle.stop(false).await;
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
