//! `GET /metrics` (Prometheus text, under the bearer token) with gauges refreshed from the store
//! on each scrape, and the middleware recording every admin request in a duration histogram.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};

use super::error::ErrorBody;
use crate::domain::{AlertCounts, JobCounts};
use crate::state::AppState;
use crate::store::Store;

/// The request-duration histogram: labels `method`, `route` (the route pattern, or `unmatched`)
/// and `status`.
pub const HTTP_DURATION: &str = "dmgw_http_request_duration_seconds";
/// Its buckets, in seconds.
pub const HTTP_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
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

/// A method label from a closed set (a client may send any token as a method).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware (`from_fn(track_http)`): one histogram sample per request. Labels are bounded:
/// route patterns, not paths; a closed set of methods.
pub async fn track_http(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let res = next.call(req).await;
    let status = match &res {
        Ok(r) => r.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    metrics::histogram!(
        HTTP_DURATION,
        "method" => method,
        "route" => route,
        "status" => status.as_str().to_owned()
    )
    .record(started.elapsed().as_secs_f64());
    res
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&odd), "other");
    }
}
