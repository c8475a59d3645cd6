//! What can stop the demo before it tells its story: a folder it may not use, TLS material, a
//! service that does not start. Each variant says which part failed and why.

use std::path::PathBuf;

use thiserror::Error;

/// The demo could not run.
#[derive(Debug, Error)]
pub enum DemoError {
    /// The data folder cannot be used.
    #[error("data folder {path}: {reason}")]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file of the demo could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The demo CA or the loopback certificate could not be made.
    #[error("TLS material: {0}")]
    Pki(#[from] rcgen::Error),
    /// A DM Server did not start.
    #[error("DM Server {server_id}: {source}")]
    DmServer {
        /// Its ServerID.
        server_id: String,
        /// Why.
        source: dm_server::error::StartError,
    },
    /// A DM Server setting was refused.
    #[error("DM Server {server_id}: {source}")]
    DmServerConfig {
        /// Its ServerID.
        server_id: String,
        /// Why.
        source: dm_server::error::ConfigError,
    },
    /// The gateway's settings were refused.
    #[error("gateway settings: {0}")]
    GatewayConfig(#[from] gateway::config::ConfigError),
    /// The gateway did not start.
    #[error("gateway: {0}")]
    Gateway(#[from] gateway::startup::StartupError),
    /// The gateway's factory accounts or the bootstrap server's profiles could not be written.
    #[error("cannot write a TOML file: {0}")]
    Toml(#[from] toml::ser::Error),
    /// The bootstrap server's profiles were refused.
    #[error("bootstrap server profiles: {0}")]
    BootstrapProfiles(#[from] bootstrap_server::error::ConfigError),
    /// The bootstrap server did not start.
    #[error("bootstrap server: {0}")]
    BootstrapServer(#[from] bootstrap_server::error::StartError),
    /// The devices' callback server did not start.
    #[error("device callback server: {0}")]
    Callback(#[from] device_sim::callback::CallbackError),
    /// The devices' HTTP client could not be set up.
    #[error("device HTTP client: {0}")]
    DeviceClient(#[from] device_sim::client::ClientError),
    /// A device of the plan cannot be built.
    #[error("device {dev_id}: {reason}")]
    Device {
        /// The DevId.
        dev_id: String,
        /// Why.
        reason: String,
    },
    /// The HTTP client that watches the DM Servers could not be set up.
    #[error("watcher HTTP client: {0}")]
    Watcher(#[from] reqwest::Error),
    /// The runtime could not be started.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
}
