//! The HTTP face: `GET /bootstrap/{server_id}` (workflow 1), `POST /dm` (End Devices' DM sessions,
//! workflow 2), the JSON API, `/healthz`, `/metrics`, a span per request; TLS; and [`start`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use dm_server::engine::DmRequest;
use dm_server::http::dm_encoding;
use omadm::codec::{Encoding, MIME_WBXML, MIME_XML};
use omadm::element::Limits;
use serde::Deserialize;

use crate::config::{Config, DeviceAuth};
use crate::engine::{Engine, EngineConfig};
use crate::error::{ServiceError, StartError, truncate};
use crate::observe;
use crate::push::{self, Pusher};
use crate::records::ListQuery;
use crate::tls::{self, PeerCertificate};

/// Longest `Accept` header considered.
const MAX_ACCEPT_LEN: usize = 2048;

/// A quality value in thousandths (`q=0.5` is 500), `None` when malformed.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        let weight = match i {
            0 => 100,
            1 => 10,
            _ => 1,
        };
        thousandths =
            thousandths.saturating_add(u16::from(b.wrapping_sub(b'0')).saturating_mul(weight));
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The encoding of a workflow-1 answer, from the `Accept` header: the DM message type with the highest
/// quality (a specific type beats a wildcard of the same quality); `*/*` and `application/*` mean XML;
/// no header means XML; anything else is 406.
pub fn negotiate(accept: Option<&str>) -> Result<Encoding, ServiceError> {
    let not_acceptable = |a: &str| ServiceError::NotAcceptable {
        accept: truncate(a, 100),
    };
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Encoding::Xml);
    };
    if accept.len() > MAX_ACCEPT_LEN {
        return Err(not_acceptable(accept));
    }
    // (quality, specific) of the best range so far.
    let mut best: Option<((u16, bool), Encoding)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let mime = parts.next().unwrap_or("").trim();
        let mut q = Some(1000);
        for p in parts {
            if let Some((k, v)) = p.split_once('=')
                && k.trim().eq_ignore_ascii_case("q")
            {
                q = parse_q(v.trim());
            }
        }
        let (encoding, specific) = if mime.eq_ignore_ascii_case(MIME_XML) {
            (Encoding::Xml, true)
        } else if mime.eq_ignore_ascii_case(MIME_WBXML) {
            (Encoding::Wbxml, true)
        } else if mime == "*/*" || mime.eq_ignore_ascii_case("application/*") {
            (Encoding::Xml, false)
        } else {
            continue;
        };
        let Some(q) = q.filter(|q| *q > 0) else {
            continue;
        };
        if best.is_none_or(|(rank, _)| (q, specific) > rank) {
            best = Some(((q, specific), encoding));
        }
    }
    best.map(|(_, e)| e).ok_or_else(|| not_acceptable(accept))
}

/// Workflow 1, in a `bootstrap fetch` span: the requested ServerID, the gateway once authenticated,
/// how it authenticated (never its credentials), the answer; a refusal sets the error status.
fn serve_bootstrap(
    req: &HttpRequest,
    server_id: &str,
    engine: &Engine,
) -> Result<HttpResponse, ServiceError> {
    let span = observe::fetch_span(server_id);
    let _entered = span.enter();
    let result = fetch(req, server_id, engine, &span);
    let (status, outcome) = match &result {
        Ok(resp) => (resp.status().as_u16(), "issued"),
        Err(e) => {
            observe::fail(&span, &e.to_string());
            (
                actix_web::ResponseError::status_code(e).as_u16(),
                observe::fetch_outcome(e),
            )
        }
    };
    span.record("http.response.status_code", status);
    span.record("outcome", outcome);
    observe::count_job(1, outcome);
    result
}

fn fetch(
    req: &HttpRequest,
    server_id: &str,
    engine: &Engine,
    span: &tracing::Span,
) -> Result<HttpResponse, ServiceError> {
    let certificate = req.conn_data::<PeerCertificate>().and_then(|p| p.0);
    let authorization = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let (gateway, how) = engine
        .authenticate_gateway(certificate.as_ref(), authorization)
        .inspect_err(|_| {
            span.record("auth", "failed");
        })?;
    span.record("gateway_id", observe::cut(&gateway.gateway_id));
    span.record(
        "auth",
        match how {
            crate::records::ClientAuth::Certificate => "certificate",
            crate::records::ClientAuth::Basic => "basic",
        },
    );
    let accept = req
        .headers()
        .get(ACCEPT)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let encoding = negotiate(accept)?;
    span.record(
        "encoding",
        match encoding {
            Encoding::Xml => "xml",
            Encoding::Wbxml => "wbxml",
        },
    );
    let body = engine.issue_workflow1(gateway, server_id, encoding, how)?;
    Ok(HttpResponse::Ok()
        .content_type(encoding.mime())
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(body))
}

async fn bootstrap_path(
    req: HttpRequest,
    path: web::Path<String>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, ServiceError> {
    serve_bootstrap(&req, &path.into_inner(), &engine)
}

/// `GET /bootstrap?server_id=...`.
#[derive(Debug, Deserialize)]
struct ServerIdQuery {
    server_id: Option<String>,
}

async fn bootstrap_query(
    req: HttpRequest,
    q: web::Query<ServerIdQuery>,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, ServiceError> {
    let server_id = q
        .into_inner()
        .server_id
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ServiceError::BadRequest {
            what: "the server_id query parameter is missing".into(),
        })?;
    serve_bootstrap(&req, &server_id, &engine)
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
    pusher: web::Data<Pusher>,
) -> Result<HttpResponse, ServiceError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let encoding =
        dm_encoding(&content_type).ok_or_else(|| ServiceError::UnsupportedMediaType {
            content_type: truncate(&content_type, 100),
        })?;
    let limit = engine.config().max_body;
    let too_large = || ServiceError::PayloadTooLarge {
        limit,
        encoding,
        server_uri: engine.config().dm_uri.clone(),
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(too_large());
    }
    let body = match payload.to_bytes_limited(limit).await {
        Err(_) => return Err(too_large()),
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
        hmac: None,
    };
    let engine = engine.into_inner();
    // The engine's spans are children of this request's span, also on the blocking pool.
    let span = tracing::Span::current();
    let (reply, jobs) =
        web::block(move || span.in_scope(|| engine.handle(request, Instant::now())))
            .await
            .map_err(|e| ServiceError::Blocking {
                reason: e.to_string(),
            })??;
    pusher.submit(jobs);
    Ok(HttpResponse::Ok()
        .content_type(reply.encoding.mime())
        .body(reply.body))
}

async fn bootstraps(q: web::Query<ListQuery>, engine: web::Data<Engine>) -> HttpResponse {
    HttpResponse::Ok().json(engine.bootstraps(&q))
}

async fn associations(q: web::Query<ListQuery>, engine: web::Data<Engine>) -> HttpResponse {
    HttpResponse::Ok().json(engine.associations(&q))
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
    cfg.app_data(web::QueryConfig::default().error_handler(|err, _| {
        ServiceError::BadRequest {
            what: err.to_string(),
        }
        .into()
    }))
    .app_data(web::PathConfig::default().error_handler(|err, _| {
        ServiceError::BadRequest {
            what: err.to_string(),
        }
        .into()
    }))
    .service(web::resource("/bootstrap").route(web::get().to(bootstrap_query)))
    .service(web::resource("/bootstrap/{server_id}").route(web::get().to(bootstrap_path)))
    .service(web::resource("/dm").route(web::post().to(dm)))
    .service(web::resource("/api/v1/bootstraps").route(web::get().to(bootstraps)))
    .service(web::resource("/api/v1/associations").route(web::get().to(associations)))
    .service(web::resource("/healthz").route(web::get().to(healthz)))
    .service(web::resource("/metrics").route(web::get().to(metrics)));
}

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    scheme: &'static str,
    handle: ServerHandle,
    engine: Arc<Engine>,
    task: actix_rt::task::JoinHandle<std::io::Result<()>>,
    sweeper: actix_rt::task::JoinHandle<()>,
    pusher: tokio::task::JoinHandle<()>,
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

    /// The public base URL (bootstrap SyncHdr Source).
    pub fn public_url(&self) -> &str {
        &self.engine.config().public_url
    }

    /// The public URL of the DM endpoint.
    pub fn dm_url(&self) -> &str {
        &self.engine.config().dm_uri
    }

    /// The line announcing the server: `bootstrap-server listening on <scheme>://<addr>`.
    pub fn listening_line(&self) -> String {
        format!("bootstrap-server listening on {}", self.base_url())
    }

    /// The engine (for in-process inspection).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Wait until the server stops (on SIGTERM/SIGINT, or [`RunningServer::stop`]); pushes still
    /// queued or retrying are abandoned (they are in memory only).
    pub async fn wait(self) {
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
            Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
        }
        self.sweeper.abort();
        self.pusher.abort();
        let pending = self.engine.health().pending_pushes;
        tracing::info!(pending_pushes = pending, "bootstrap-server stopped");
    }

    /// Stop gracefully (finish requests in flight), then as [`RunningServer::wait`].
    pub async fn stop(self) {
        self.handle.stop(true).await;
        self.wait().await;
    }
}

/// Bind and start serving. Must run inside an actix runtime (`#[actix_web::main]` /
/// `#[actix_web::test]`).
pub fn start(config: Config) -> Result<RunningServer, StartError> {
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
    let client = push::build_client(&config.push)?;
    let listener =
        std::net::TcpListener::bind(config.listen).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    let dm_uri = format!("{public_url}/dm");
    for g in &config.profiles.gateways {
        if g.push.is_some() && g.push_urls.is_empty() && !config.push.any_address {
            tracing::warn!(gateway_id = %g.gateway_id, "gateway has a push key but no push_urls: workflow 2 will refuse it (see --push-any-address)");
        }
        if g.basic.is_some() && config.tls.is_none() {
            tracing::warn!(gateway_id = %g.gateway_id, "plain HTTP: this gateway's Basic password crosses the network in clear");
        }
    }
    if config.device_auth == DeviceAuth::None {
        tracing::info!("End Devices are not authenticated on POST /dm (--device-auth none)");
    }
    let engine = Arc::new(Engine::new(
        EngineConfig {
            public_url,
            dm_uri,
            device_auth: config.device_auth,
            limits: Limits {
                max_message_bytes: config.max_body,
                ..Limits::default()
            },
            max_body: config.max_body,
            max_sessions: config.max_sessions,
            session_idle: config.session_idle,
            history: config.history,
            push: config.push.clone(),
        },
        config.profiles.clone(),
    ));
    let (pusher, pusher_task) = push::spawn(config.push.clone(), client, engine.clone());
    // Metrics recorded from now on show on /metrics.
    telemetry::prometheus::install();
    let engine_data = web::Data::from(engine.clone());
    let pusher_data = web::Data::new(pusher);
    let mut http = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(telemetry::http::server))
            .app_data(engine_data.clone())
            .app_data(pusher_data.clone())
            .configure(routes)
    })
    .on_connect(tls::on_connect)
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
            sweeper_engine.sweep(Instant::now());
        }
    });
    tracing::info!(
        addr = %addr,
        scheme,
        public_url = %engine.config().public_url,
        profiles = config.profiles.servers.len(),
        gateways = config.profiles.gateways.len(),
        device_auth = ?config.device_auth,
        client_certificates = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        "bootstrap-server started"
    );
    Ok(RunningServer {
        addr,
        scheme,
        handle,
        engine,
        task,
        sweeper,
        pusher: pusher_task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        let n = |a: Option<&str>| negotiate(a).ok();
        assert_eq!(n(None), Some(Encoding::Xml));
        assert_eq!(n(Some("")), Some(Encoding::Xml));
        assert_eq!(n(Some(MIME_WBXML)), Some(Encoding::Wbxml));
        assert_eq!(
            n(Some("APPLICATION/VND.SYNCML.DM+XML")),
            Some(Encoding::Xml)
        );
        assert_eq!(
            n(Some(
                "application/vnd.syncml.dm+xml;q=0.5, application/vnd.syncml.dm+wbxml"
            )),
            Some(Encoding::Wbxml)
        );
        assert_eq!(
            n(Some(
                "application/vnd.syncml.dm+wbxml;q=0.2, application/vnd.syncml.dm+xml;q=0.9"
            )),
            Some(Encoding::Xml)
        );
        assert_eq!(
            n(Some("*/*, application/vnd.syncml.dm+wbxml")),
            Some(Encoding::Wbxml)
        );
        assert_eq!(n(Some("*/*")), Some(Encoding::Xml));
        assert_eq!(n(Some("application/*;q=0.1")), Some(Encoding::Xml));
        assert!(matches!(
            negotiate(Some("text/html")),
            Err(ServiceError::NotAcceptable { .. })
        ));
        assert!(negotiate(Some("application/vnd.syncml.dm+xml;q=0")).is_err());
        assert!(negotiate(Some("application/vnd.syncml.dm+xml;q=bogus")).is_err());
        assert!(negotiate(Some(&"a,".repeat(2000))).is_err());
    }

    #[test]
    fn quality_values() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.25"), Some(250));
        assert_eq!(parse_q("0.001"), Some(1));
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("0.0001"), None);
        assert_eq!(parse_q("2"), None);
        assert_eq!(parse_q("-1"), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_accept_never_panics(a in "\\PC{0,300}") {
            let _ = negotiate(Some(&a));
        }
    }

    #[test]
    fn session_token_from_query() {
        assert_eq!(query_param("s=abc", "s").as_deref(), Some("abc"));
        assert_eq!(query_param("x=1&s=abc", "s").as_deref(), Some("abc"));
        assert_eq!(query_param("s=", "s"), None);
    }
}
