//! Start-up and shutdown: open the store (migrations), load factory accounts, start the actors and
//! the HTTP faces; on SIGTERM/SIGINT stop accepting, let in-flight work reach the store, exit 0.

use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use omadm::codec::Encoding;
use omadm::mo::DevInfo;
use thiserror::Error;

use crate::actors::{self, ActorAddrs};
use crate::config::{ConfigError, ServeArgs, Settings, TlsFiles};
use crate::dm_client::DmClientSender;
use crate::domain::Origin;
use crate::provision::{AccountsFileError, read_accounts_file};
use crate::state::AppState;
use crate::store::{Store, StoreError, StoreOptions};

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
    /// Sockets and files.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The WAN HTTP client.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The Prometheus recorder is process-wide by the `metrics` crate's design; installed once.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Request durations render as a Prometheus histogram (not the default summary).
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(crate::api::metrics::HTTP_DURATION.to_owned()),
                    crate::api::metrics::HTTP_DURATION_BUCKETS,
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // A recorder installed by someone else (another test) keeps working; ours then only renders.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
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

/// A started gateway.
pub struct Application {
    admin_port: u16,
    server: Server,
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
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        let store = Store::open(&settings.database, &StoreOptions::default()).await?;
        let factory = match &settings.accounts_file {
            Some(p) => load_factory_accounts(&store, p).await?,
            None => Vec::new(),
        };
        let metrics = metrics_handle();
        let http = DmClientSender::http_client(Duration::from_secs(30), &[])?;
        let sender = Arc::new(DmClientSender::new(
            http,
            store.clone(),
            gateway_devinfo(&settings),
            Encoding::Xml,
        ));
        let actors: ActorAddrs = actors::start(store.clone(), &settings, sender);
        if !factory.is_empty() {
            let _ = actors.accounts_changed(factory).await;
        }
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
        let data = web::Data::new(state.clone());
        let max_body = settings.max_body_bytes;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(tracing_actix_web::TracingLogger::default())
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
            server,
            state,
            shutdown_timeout: settings.shutdown_timeout,
        })
    }

    /// The admin API's port (useful with port 0).
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The shared state (store, actors).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A handle that stops the HTTP server (what SIGTERM does).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serve until SIGTERM/SIGINT (or `handle().stop`), then drain the actors and close the store.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        let result = self.server.await;
        self.state.ready.store(false, Ordering::Release);
        tracing::info!("stopping: draining in-flight work");
        if tokio::time::timeout(self.shutdown_timeout, self.state.actors.drain())
            .await
            .is_err()
        {
            tracing::warn!("in-flight work did not finish in time; it resumes at the next start");
        }
        self.state.store.close().await;
        tracing::info!("dmgw stopped");
        Ok(result?)
    }
}

/// `dmgw serve`: resolve settings, set up logging, run until a signal.
pub fn serve(args: ServeArgs) -> Result<(), StartupError> {
    let settings = args.resolve()?;
    crate::telemetry::init(settings.log_format, &settings.log);
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        app.run_until_stopped().await
    })
}
