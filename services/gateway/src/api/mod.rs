//! The admin API (operators): REST/JSON under `/api/v1`, bearer-token protected, with health,
//! readiness, Prometheus metrics and a generated OpenAPI document. Routes are wired in `configure`.

pub mod health;

use actix_web::web;

/// Register every admin route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
}
