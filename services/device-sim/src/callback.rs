//! The one HTTP(S) callback server of a device-sim process: `POST /devices/{name}/consent` hands the
//! gateway's consent request to the right simulated device (name = its DevId escaped as a node name).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use actix_web::dev::ServerHandle;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};
use thiserror::Error;
use tokio::sync::mpsc;
use tracing::{info, warn};
use url::Url;

use crate::lan::{CALLBACK_CONSENT_SUFFIX, ConsentRequest, ErrorBody};
use crate::tls::{self, TlsError};

/// Largest consent request body accepted.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Consent requests queued per device before the server answers 503.
pub const QUEUE_PER_DEVICE: usize = 4;

/// The callback server could not start, or a device could not be registered.
#[derive(Debug, Error)]
pub enum CallbackError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The base URL the gateway should call cannot be derived or is invalid.
    #[error("callback base URL: {reason}")]
    BaseUrl {
        /// What is wrong.
        reason: String,
    },
    /// The DevId cannot be written as a path segment.
    #[error("dev_id {dev_id:?} cannot name a callback path: {reason}")]
    DevId {
        /// The DevId.
        dev_id: String,
        /// Why.
        reason: String,
    },
    /// Two devices registered with the same DevId.
    #[error("dev_id {dev_id:?} is registered twice")]
    Duplicate {
        /// The DevId.
        dev_id: String,
    },
}

/// How the callback server runs.
#[derive(Debug, Clone)]
pub struct CallbackConfig {
    /// Where to listen (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The base URL the gateway should use (e.g. `http://device-sim:8080`), when the listen address
    /// is not what the gateway can reach (a wildcard address, NAT, a DNS name).
    pub public_base: Option<Url>,
    /// Certificate and key PEM files for HTTPS; plain HTTP when absent.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Worker threads.
    pub workers: usize,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        CallbackConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_base: None,
            tls: None,
            workers: 1,
        }
    }
}

/// A consent request as a device receives it: the body, and the `traceparent` of the callback's
/// server span (a child of the gateway's span when the request carried a valid `traceparent`), so the
/// device's answer continues the gateway's trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentCall {
    /// The request body.
    pub request: ConsentRequest,
    /// The callback's span context, when tracing is on.
    pub traceparent: Option<String>,
}

type Routes = Arc<RwLock<HashMap<String, mpsc::Sender<ConsentCall>>>>;

/// The running callback server and its device registry.
#[derive(Debug)]
pub struct CallbackServer {
    base: Url,
    local_addr: SocketAddr,
    routes: Routes,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

fn error(status: actix_web::http::StatusCode, text: &str) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        error: text.to_owned(),
    })
}

async fn consent(
    routes: web::Data<Routes>,
    name: web::Path<String>,
    body: web::Json<ConsentRequest>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let req = body.into_inner();
    if req.consent_token.trim().is_empty() || req.gateway_id.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "gateway_id and consent_token are required",
        );
    }
    let sender = routes
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(name.as_str())
        .cloned();
    let Some(sender) = sender else {
        warn!(device = %name, "consent request for an unknown device");
        return error(StatusCode::NOT_FOUND, "no such device");
    };
    match sender.try_send(ConsentCall {
        request: req,
        traceparent: telemetry::traceparent(),
    }) {
        Ok(()) => HttpResponse::Accepted().finish(),
        Err(mpsc::error::TrySendError::Full(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many consent requests pending for this device",
        ),
        Err(mpsc::error::TrySendError::Closed(_)) => {
            error(StatusCode::GONE, "the device is no longer running")
        }
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

/// `GET /metrics`: the process's Prometheus metrics (text exposition format).
async fn metrics() -> HttpResponse {
    telemetry::prometheus::render(&telemetry::prometheus::install())
}

fn json_error(
    err: actix_web::error::JsonPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    let text = err.to_string();
    actix_web::error::InternalError::from_response(
        err,
        error(actix_web::http::StatusCode::BAD_REQUEST, &text),
    )
    .into()
}

fn path_error(err: actix_web::error::PathError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    let text = err.to_string();
    actix_web::error::InternalError::from_response(
        err,
        error(actix_web::http::StatusCode::NOT_FOUND, &text),
    )
    .into()
}

impl CallbackServer {
    /// Bind and start the server on the current tokio runtime. Every request is a server span under
    /// the caller's `traceparent`; `GET /metrics` shows the process's Prometheus metrics.
    pub async fn start(cfg: CallbackConfig) -> Result<CallbackServer, CallbackError> {
        if cfg.public_base.is_none() && cfg.listen.ip().is_unspecified() {
            return Err(CallbackError::BaseUrl {
                reason: format!(
                    "listening on {}: give the URL the gateway can reach with --callback-base",
                    cfg.listen
                ),
            });
        }
        let listener = TcpListener::bind(cfg.listen).map_err(|source| CallbackError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| CallbackError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        let base = match &cfg.public_base {
            Some(u) => crate::client::as_base(u),
            None => Url::parse(&format!("{scheme}://{local_addr}/")).map_err(|e| {
                CallbackError::BaseUrl {
                    reason: e.to_string(),
                }
            })?,
        };
        let routes: Routes = Arc::new(RwLock::new(HashMap::new()));
        let data = web::Data::new(routes.clone());
        // Metrics recorded from now on show on /metrics.
        telemetry::prometheus::install();
        let factory = move || {
            App::new()
                .wrap(from_fn(telemetry::http::server))
                .app_data(data.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(MAX_REQUEST_BYTES)
                        .error_handler(json_error),
                )
                .app_data(web::PathConfig::default().error_handler(path_error))
                .route(
                    &format!("/devices/{{name}}/{CALLBACK_CONSENT_SUFFIX}"),
                    web::post().to(consent),
                )
                .route("/healthz", web::get().to(healthz))
                .route("/metrics", web::get().to(metrics))
        };
        let server = HttpServer::new(factory)
            .workers(cfg.workers.max(1))
            .disable_signals()
            .shutdown_timeout(1);
        let server = match &cfg.tls {
            Some((cert, key)) => {
                let config = tls::load_server_config(cert, key)?;
                server.listen_rustls_0_23(listener, config)
            }
            None => server.listen(listener),
        }
        .map_err(|source| CallbackError::Bind {
            addr: local_addr,
            source,
        })?
        .run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        info!(%local_addr, base = %base, "callback server listening");
        Ok(CallbackServer {
            base,
            local_addr,
            routes,
            handle,
            task,
        })
    }

    /// The base URL the gateway calls (with a trailing `/`).
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The socket address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The `callback_url` of a device: `{base}/devices/{escape_name(dev_id)}`.
    pub fn callback_url(&self, dev_id: &str) -> Result<Url, CallbackError> {
        let name = route_name(dev_id)?;
        self.base
            .join(&format!("devices/{name}"))
            .map_err(|e| CallbackError::DevId {
                dev_id: dev_id.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Register a device: consent requests for it arrive on the returned channel.
    pub fn register(&self, dev_id: &str) -> Result<mpsc::Receiver<ConsentCall>, CallbackError> {
        let name = route_name(dev_id)?;
        let (tx, rx) = mpsc::channel(QUEUE_PER_DEVICE);
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        if routes.contains_key(&name) {
            return Err(CallbackError::Duplicate {
                dev_id: dev_id.to_owned(),
            });
        }
        routes.insert(name, tx);
        Ok(rx)
    }

    /// Stop the server (in-flight requests get a second to finish).
    pub async fn stop(self) {
        self.handle.stop(true).await;
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "callback server stopped with an error"),
            Err(e) => warn!(error = %e, "callback server task failed"),
        }
    }
}

/// The path segment naming a device: its DevId escaped as in `omadm::mo::escape_name`
/// (`[A-Za-z0-9-]` kept, every other byte `_XX`), so it needs no percent-encoding.
pub fn route_name(dev_id: &str) -> Result<String, CallbackError> {
    omadm::mo::escape_name(dev_id).map_err(|e| CallbackError::DevId {
        dev_id: dev_id.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn routes_consent_requests_to_the_registered_device() {
        let server = CallbackServer::start(CallbackConfig::default())
            .await
            .unwrap();
        let mut rx = server.register("IMEI:1").unwrap();
        assert!(matches!(
            server.register("IMEI:1"),
            Err(CallbackError::Duplicate { .. })
        ));
        let url = server.callback_url("IMEI:1").unwrap();
        assert!(url.as_str().ends_with("/devices/IMEI_3A1"), "{url}");
        let http = reqwest::Client::new();
        let body = ConsentRequest {
            gateway_id: "GW".into(),
            gateway_name: Some("Home gateway".into()),
            consent_token: "tok".into(),
        };
        // With tracing on, the device gets the callback's span context: the gateway's trace, the
        // callback's server span as parent.
        let _ = telemetry::init_with(
            telemetry::Options {
                service_name: "device-sim",
                service_version: env!("CARGO_PKG_VERSION"),
                log_format: telemetry::LogFormat::Text,
                filter: "info".into(),
            },
            None,
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::sink),
        );
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let resp = http
            .post(format!("{url}/consent"))
            .header("traceparent", tp)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        let call = rx.recv().await.unwrap();
        assert_eq!(call.request, body);
        let got = call.traceparent.unwrap();
        assert!(
            got.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && got != tp,
            "{got}"
        );

        let unknown = server.callback_url("IMEI:2").unwrap();
        let resp = http
            .post(format!("{unknown}/consent"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 404);
        let resp = http
            .post(format!("{url}/consent"))
            .header("content-type", "application/json")
            .body("{\"gateway_id\": 1}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let err: ErrorBody = resp.json().await.unwrap();
        assert!(!err.error.is_empty());
        server.stop().await;
    }

    #[tokio::test]
    async fn wildcard_listen_needs_a_public_base() {
        let cfg = CallbackConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            ..CallbackConfig::default()
        };
        assert!(matches!(
            CallbackServer::start(cfg).await,
            Err(CallbackError::BaseUrl { .. })
        ));
    }
}
