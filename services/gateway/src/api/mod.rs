//! The admin API (operators): REST/JSON under `/api/v1`, bearer-token protected, with health,
//! readiness, Prometheus metrics and a generated OpenAPI document. Routes are wired in `configure`.
//!
//! | route | token | answers |
//! | --- | --- | --- |
//! | `GET /healthz`, `GET /readyz` | no | 200 / 503 |
//! | `GET /metrics` | yes | 200 Prometheus text |
//! | `GET /api-docs/openapi.json` | yes | 200 the OpenAPI document |
//! | `GET /api/v1/devices[?state=&limit=&after=]` | yes | 200 page; 400 bad parameter |
//! | `GET /api/v1/devices/{dev_id}` | yes | 200 device + servers + latest 50 events; 404 |
//! | `DELETE /api/v1/devices/{dev_id}` | yes | 200 the detached device; 404; 503 |
//! | `GET /api/v1/accounts[?limit=&after=]` | yes | 200 page; 400 |
//! | `POST /api/v1/accounts` | yes | 201 + `Location`; 400 malformed JSON; 409 taken; 413; 415; 422 field |
//! | `GET /api/v1/accounts/{server_id}` | yes | 200; 404 |
//! | `DELETE /api/v1/accounts/{server_id}` | yes | 204; 404 |
//! | `GET /api/v1/alerts[?state=&server_id=&dev_id=&limit=&after=]` | yes | 200 page; 400 |
//! | `GET /api/v1/bootstraps[?state=&server_id=&limit=&after=]` | yes | 200 page; 400 |
//! | `GET /api/v1/tree[?uri=./DMAcc]` | yes | 200 subtree, secrets redacted; 400 bad URI; 404 |
//!
//! Every route without a token answers 401 (`WWW-Authenticate: Bearer`) unless the gateway runs
//! with `--insecure-admin`. Unknown paths answer 404 and known paths with another method 405, both
//! as JSON errors. Every request is recorded in `dmgw_http_request_duration_seconds`.

pub mod accounts;
pub mod alerts;
pub mod auth;
pub mod bootstraps;
pub mod devices;
pub mod error;
pub mod extract;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod tree;

use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, web};

pub use error::ApiError;

async fn method_not_allowed() -> Result<&'static str, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

async fn no_such_endpoint(_: HttpRequest) -> Result<&'static str, ApiError> {
    Err(ApiError::NoSuchEndpoint)
}

/// The `/api/v1` routes (the scope adds the token check and the extractor error handlers).
fn v1(cfg: &mut web::ServiceConfig) {
    let resource = |path: &str| web::resource(path).default_service(web::to(method_not_allowed));
    cfg.service(resource("/devices").route(web::get().to(devices::list_devices)))
        .service(
            resource("/devices/{dev_id}")
                .route(web::get().to(devices::get_device))
                .route(web::delete().to(devices::detach_device)),
        )
        .service(
            resource("/accounts")
                .route(web::get().to(accounts::list_accounts))
                .route(web::post().to(accounts::create_account)),
        )
        .service(
            resource("/accounts/{server_id}")
                .route(web::get().to(accounts::get_account))
                .route(web::delete().to(accounts::delete_account)),
        )
        .service(resource("/alerts").route(web::get().to(alerts::list_alerts)))
        .service(resource("/bootstraps").route(web::get().to(bootstraps::list_bootstraps)))
        .service(resource("/tree").route(web::get().to(tree::get_tree)));
}

/// Register every admin route. Request bodies are read by [`extract::ApiJson`], bounded by
/// `Settings::max_body_bytes` from the application state; query and path errors go through
/// [`ApiError`] like every other failure.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let open = |path: &str| web::resource(path).default_service(web::to(method_not_allowed));
    let guarded = |path: &str| {
        web::resource(path)
            .wrap(from_fn(auth::require_token))
            .default_service(web::to(method_not_allowed))
    };
    cfg.service(open("/healthz").route(web::get().to(health::healthz)))
        .service(open("/readyz").route(web::get().to(health::readyz)))
        .service(guarded("/metrics").route(web::get().to(metrics::metrics)))
        .service(guarded("/api-docs/openapi.json").route(web::get().to(openapi::openapi_json)))
        .service(
            web::scope("/api/v1")
                .app_data(
                    web::QueryConfig::default()
                        .error_handler(|e, _| ApiError::from_query(&e).into()),
                )
                .app_data(
                    web::PathConfig::default().error_handler(|e, _| ApiError::from_path(&e).into()),
                )
                .configure(v1)
                .default_service(web::to(no_such_endpoint))
                .wrap(from_fn(auth::require_token)),
        );
}
