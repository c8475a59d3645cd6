//! The state the admin API's handlers share: the store, the actors' addresses, the settings, the
//! metrics handle and the readiness flag. Built once in `startup`, cloned into each worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use metrics_exporter_prometheus::PrometheusHandle;

use crate::actors::ActorAddrs;
use crate::config::Settings;
use crate::store::Store;

/// Shared application state.
#[derive(Clone)]
pub struct AppState {
    /// The SQLite store.
    pub store: Store,
    /// The actors.
    pub actors: ActorAddrs,
    /// The resolved settings.
    pub settings: Arc<Settings>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// True once migrations ran and the actors are up; false again during shutdown.
    pub ready: Arc<AtomicBool>,
}

impl AppState {
    /// True when the gateway serves.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.settings)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}
