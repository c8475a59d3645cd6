//! `GET /metrics` (Prometheus text, under the bearer token) with gauges refreshed from the store
//! on each scrape; request histograms come from `telemetry::http::server` on every face.

use actix_web::{HttpResponse, web};

use super::error::ErrorBody;
use crate::domain::{AlertCounts, JobCounts};
use crate::state::AppState;
use crate::store::Store;

/// Devices per state (gauge, label `state`).
pub const DEVICES: &str = "dmgw_devices";
/// Outbox alerts per state (gauge, label `state`).
pub const ALERTS: &str = "dmgw_alerts";
/// Bootstrap jobs per state (gauge, label `state`).
pub const BOOTSTRAP_JOBS: &str = "dmgw_bootstrap_jobs";
/// DMAcc accounts (gauge).
pub const ACCOUNTS: &str = "dmgw_accounts";
/// 1 when the last scrape could read the store, else 0 (gauge).
pub const STORE_UP: &str = "dmgw_store_up";

fn count(n: u64) -> f64 {
    // Counts of rows stay far below 2^53; precision loss is theoretical.
    n as f64
}

/// Read the counts and set the gauges.
async fn refresh(store: &Store) -> Result<(), crate::store::StoreError> {
    for (state, n) in store.device_counts().await? {
        metrics::gauge!(DEVICES, "state" => state.as_str()).set(count(n));
    }
    let AlertCounts {
        pending,
        delivered,
        failed,
    } = store.alert_counts().await?;
    for (state, n) in [
        ("pending", pending),
        ("delivered", delivered),
        ("failed", failed),
    ] {
        metrics::gauge!(ALERTS, "state" => state).set(count(n));
    }
    let JobCounts {
        pending,
        in_progress,
        awaiting_push,
        done,
        failed,
    } = store.job_counts().await?;
    for (state, n) in [
        ("pending", pending),
        ("in_progress", in_progress),
        ("awaiting_push", awaiting_push),
        ("done", done),
        ("failed", failed),
    ] {
        metrics::gauge!(BOOTSTRAP_JOBS, "state" => state).set(count(n));
    }
    let accounts = store.server_ids().await?.len();
    metrics::gauge!(ACCOUNTS).set(count(u64::try_from(accounts).unwrap_or(u64::MAX)));
    Ok(())
}

/// Prometheus metrics: HTTP request durations, actor restarts, deliveries, and gauges of
/// devices, alerts and bootstrap jobs per state read from the store at scrape time. Requires the
/// bearer token like every admin route (configure the scraper's `authorization` with it).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String),
        (status = 401, description = "no or wrong bearer token", body = ErrorBody),
    )
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    match refresh(&state.store).await {
        Ok(()) => metrics::gauge!(STORE_UP).set(1.0),
        Err(e) => {
            // Still render: the process metrics are useful exactly when the store is not.
            tracing::warn!(error = %e, "metrics: cannot read the store counts");
            metrics::gauge!(STORE_UP).set(0.0);
        }
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
