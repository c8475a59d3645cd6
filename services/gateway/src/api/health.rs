//! `GET /healthz` (the process answers) and `GET /readyz` (migrations ran, actors are up, the store
//! answers); both without a token, for container health checks and orchestrators.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// The body of `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct HealthStatus {
    /// `ok`, `ready`, `starting or stopping`, or `store unavailable`.
    pub status: &'static str,
}

fn status(status: &'static str) -> HealthStatus {
    HealthStatus { status }
}

/// Liveness: the process serves HTTP. No token needed.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    security(()),
    responses((status = 200, description = "alive", body = HealthStatus))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(status("ok"))
}

/// Readiness: migrations applied, actors started, store reachable. No token needed.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "ready", body = HealthStatus),
        (status = 503, description = "not ready (starting, stopping, or the store does not answer)", body = HealthStatus)
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if !state.is_ready() {
        return HttpResponse::ServiceUnavailable().json(status("starting or stopping"));
    }
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(status("ready")),
        Err(e) => {
            tracing::error!(error = %e, "readiness: the store does not answer");
            HttpResponse::ServiceUnavailable().json(status("store unavailable"))
        }
    }
}
