//! The HTTP face: `POST /dm` (SyncML DM in XML or WBXML), the JSON API under `/api/v1`, `/healthz`,
//! `/metrics`, a server span per request, TLS through rustls, and [`start`], which runs the server.

use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use omadm::auth::HMAC_HEADER_NAME;
use omadm::codec::{Encoding, MIME_WBXML, MIME_XML};
use omadm::element::Limits;

use crate::accounts::Accounts;
use crate::config::{Config, TlsFiles};
use crate::engine::{DmRequest, Engine, EngineConfig, ListQuery, NewCommand};
use crate::error::{ServiceError, StartError, StoreError};
use crate::store::{AlertQuery, Store};

/// Largest JSON body of the API.
const MAX_JSON_BODY: usize = 64 * 1024;

/// The encoding named by a DM Content-Type; only the two SyncML DM message types are accepted.
pub fn dm_encoding(content_type: &str) -> Option<Encoding> {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case(MIME_XML) {
        Some(Encoding::Xml)
    } else if mime.eq_ignore_ascii_case(MIME_WBXML) {
        Some(Encoding::Wbxml)
    } else {
        None
    }
}

/// The value of query parameter `name` (no percent-decoding: tokens are plain hex).
fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 64)
}

async fn dm(
    req: HttpRequest,
    payload: web::Payload,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, ServiceError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let encoding =
        dm_encoding(&content_type).ok_or_else(|| ServiceError::UnsupportedMediaType {
            content_type: content_type.chars().take(100).collect(),
        })?;
    let limit = engine.config().max_body;
    let too_large = || ServiceError::PayloadTooLarge {
        limit,
        encoding,
        server_uri: engine.config().server_uri.clone(),
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        crate::observe::count_message(413);
        return Err(too_large());
    }
    let body = match payload.to_bytes_limited(limit).await {
        Err(_) => {
            crate::observe::count_message(413);
            return Err(too_large());
        }
        Ok(Err(e)) => {
            return Err(ServiceError::Payload {
                reason: e.to_string(),
            });
        }
        Ok(Ok(b)) => b,
    };
    let request = DmRequest {
        body: body.to_vec(),
        encoding,
        token: query_param(req.query_string(), "s"),
        hmac: req
            .headers()
            .get(HMAC_HEADER_NAME)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let engine = engine.into_inner();
    // The engine's spans are children of this request's span, also on the blocking pool.
    let span = tracing::Span::current();
    let reply = web::block(move || span.in_scope(|| engine.handle(request, Instant::now())))
        .await
        .map_err(|e| ServiceError::Blocking {
            reason: e.to_string(),
        })??;
    Ok(HttpResponse::Ok()
        .content_type(reply.encoding.mime())
        .body(reply.body))
}

async fn alerts(q: web::Query<AlertQuery>, engine: web::Data<Engine>) -> HttpResponse {
    HttpResponse::Ok().json(engine.alerts(&q))
}

async fn sessions(q: web::Query<ListQuery>, engine: web::Data<Engine>) -> HttpResponse {
    HttpResponse::Ok().json(engine.sessions(&q))
}

async fn list_commands(q: web::Query<ListQuery>, engine: web::Data<Engine>) -> HttpResponse {
    HttpResponse::Ok().json(engine.commands(&q))
}

async fn post_command(
    body: web::Json<NewCommand>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, ServiceError> {
    let engine = engine.into_inner();
    let record = web::block(move || engine.queue_command(body.into_inner()))
        .await
        .map_err(|e| ServiceError::Blocking {
            reason: e.to_string(),
        })??;
    Ok(HttpResponse::Created().json(record))
}

async fn healthz(engine: web::Data<Engine>) -> HttpResponse {
    HttpResponse::Ok().json(engine.health())
}

/// `GET /metrics`: the process's Prometheus metrics (text exposition format).
async fn metrics() -> HttpResponse {
    telemetry::prometheus::render(&telemetry::prometheus::install())
}

/// The routes, for `App::configure`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_JSON_BODY)
            .error_handler(|err, _| {
                ServiceError::BadRequest {
                    what: err.to_string(),
                }
                .into()
            }),
    )
    .app_data(web::QueryConfig::default().error_handler(|err, _| {
        ServiceError::BadRequest {
            what: err.to_string(),
        }
        .into()
    }))
    .service(web::resource("/dm").route(web::post().to(dm)))
    .service(web::resource("/api/v1/alerts").route(web::get().to(alerts)))
    .service(web::resource("/api/v1/sessions").route(web::get().to(sessions)))
    .service(
        web::resource("/api/v1/commands")
            .route(web::get().to(list_commands))
            .route(web::post().to(post_command)),
    )
    .service(web::resource("/healthz").route(web::get().to(healthz)))
    .service(web::resource("/metrics").route(web::get().to(metrics)));
}

fn tls_err(path: &Path, reason: impl std::fmt::Display) -> StartError {
    StartError::Tls {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Load a rustls server configuration (ring provider, TLS 1.2 and 1.3) from PEM files.
pub fn load_tls(files: &TlsFiles) -> Result<rustls::ServerConfig, StartError> {
    let open = |p: &Path| File::open(p).map(BufReader::new).map_err(|e| tls_err(p, e));
    let certs = rustls_pemfile::certs(&mut open(&files.cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(&files.cert, e))?;
    if certs.is_empty() {
        return Err(tls_err(&files.cert, "no certificate in the file"));
    }
    let key = rustls_pemfile::private_key(&mut open(&files.key)?)
        .map_err(|e| tls_err(&files.key, e))?
        .ok_or_else(|| tls_err(&files.key, "no private key in the file"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&files.cert, e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_err(&files.key, e))
}

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    scheme: &'static str,
    server_id: String,
    handle: ServerHandle,
    engine: Arc<Engine>,
    task: actix_rt::task::JoinHandle<std::io::Result<()>>,
    sweeper: actix_rt::task::JoinHandle<()>,
}

impl RunningServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// `<scheme>://<addr>`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The public URL of the DM endpoint (SyncHdr Source, RespURI base).
    pub fn dm_url(&self) -> &str {
        &self.engine.config().server_uri
    }

    /// This server's ServerID.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// The line announcing the server: `dm-server <server_id> listening on <scheme>://<addr>`.
    pub fn listening_line(&self) -> String {
        format!(
            "dm-server {} listening on {}",
            self.server_id,
            self.base_url()
        )
    }

    /// The engine (for in-process inspection).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Wait until the server stops (on SIGTERM/SIGINT, or [`RunningServer::stop`]), then close open
    /// sessions and flush the data file.
    pub async fn wait(self) -> Result<(), StoreError> {
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
            Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
        }
        self.sweeper.abort();
        let flushed = self.engine.shutdown();
        tracing::info!(server_id = %self.server_id, "dm-server stopped");
        flushed
    }

    /// Stop gracefully (finish requests in flight), then as [`RunningServer::wait`].
    pub async fn stop(self) -> Result<(), StoreError> {
        self.handle.stop(true).await;
        self.wait().await
    }
}

/// Bind, load the data file and start serving. Must run inside an actix runtime
/// (`#[actix_web::main]` / `#[actix_web::test]`).
pub fn start(config: Config) -> Result<RunningServer, StartError> {
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let tls = config.tls.as_ref().map(load_tls).transpose()?;
    let listener =
        std::net::TcpListener::bind(config.listen).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let server_uri = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}/dm"));
    let store = match &config.data_file {
        Some(path) => Store::open(config.server_id.clone(), path)?,
        None => Store::in_memory(config.server_id.clone()),
    };
    let accounts = Accounts::new(
        config.server_id.clone(),
        config.accounts.clone(),
        config.master_key.clone(),
    );
    if accounts.is_empty() {
        tracing::warn!("no accounts and no master key: no client can authenticate");
    }
    let limits = Limits {
        max_message_bytes: config.max_body,
        ..Limits::default()
    };
    let engine = Arc::new(Engine::new(
        EngineConfig {
            server_id: config.server_id.clone(),
            server_uri,
            scheme: config.auth,
            accept_status: config.accept_status,
            limits,
            max_body: config.max_body,
            max_sessions: config.max_sessions,
            session_idle: config.session_idle,
        },
        accounts,
        store,
    ));
    // Metrics recorded from now on show on /metrics.
    telemetry::prometheus::install();
    let data = web::Data::from(engine.clone());
    let mut http = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(telemetry::http::server))
            .app_data(data.clone())
            .configure(routes)
    })
    .workers(config.workers)
    .shutdown_timeout(5);
    if !config.handle_signals {
        http = http.disable_signals();
    }
    let bind_err = |source| StartError::Bind {
        addr: config.listen,
        source,
    };
    let http = match tls {
        Some(tls) => http.listen_rustls_0_23(listener, tls).map_err(bind_err)?,
        None => http.listen(listener).map_err(bind_err)?,
    };
    let server = http.run();
    let handle = server.handle();
    let task = actix_rt::spawn(server);
    let period = (config.session_idle / 2).clamp(Duration::from_secs(1), Duration::from_secs(15));
    let sweeper_engine = engine.clone();
    let sweeper = actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            if let Err(e) = sweeper_engine.sweep(Instant::now()) {
                tracing::error!(error = %e, "session sweep failed");
            }
        }
    });
    tracing::info!(
        server_id = %config.server_id,
        addr = %addr,
        scheme,
        dm_url = %engine.config().server_uri,
        auth = %config.auth,
        data = ?config.data_file,
        "dm-server started"
    );
    Ok(RunningServer {
        addr,
        scheme,
        server_id: config.server_id,
        handle,
        engine,
        task,
        sweeper,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            dm_encoding("application/vnd.syncml.dm+xml; charset=UTF-8"),
            Some(Encoding::Xml)
        );
        assert_eq!(
            dm_encoding("APPLICATION/VND.SYNCML.DM+WBXML"),
            Some(Encoding::Wbxml)
        );
        assert_eq!(dm_encoding("application/vnd.syncml.dmtnds+xml"), None);
        assert_eq!(dm_encoding("text/xml"), None);
        assert_eq!(dm_encoding(""), None);
    }

    #[test]
    fn session_token_from_query() {
        assert_eq!(query_param("s=abc", "s").as_deref(), Some("abc"));
        assert_eq!(query_param("x=1&s=abc", "s").as_deref(), Some("abc"));
        assert_eq!(query_param("ss=abc", "s"), None);
        assert_eq!(query_param("s=", "s"), None);
        assert_eq!(query_param(&format!("s={}", "a".repeat(65)), "s"), None);
    }
}
