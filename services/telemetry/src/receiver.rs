//! An OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf decoded by `opentelemetry-proto`) that
//! keeps every span in memory and lists them as JSON (`GET /spans`): for tests and offline runs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prost::Message;
use serde::Serialize;

/// Largest export request accepted (bytes).
pub const MAX_EXPORT_BYTES: usize = 16 * 1024 * 1024;

/// One received span, flattened.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CollectedSpan {
    /// `service.name` of the resource that sent it.
    pub service: String,
    /// All attributes of that resource (`service.version`, `OTEL_RESOURCE_ATTRIBUTES`, ...).
    pub resource: HashMap<String, String>,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, empty for a root span.
    pub parent_span_id: String,
    /// Span name.
    pub name: String,
    /// OTLP span kind (1 internal, 2 server, 3 client, 4 producer, 5 consumer).
    pub kind: i32,
    /// Attributes, values rendered as strings.
    pub attributes: HashMap<String, String>,
    /// Status code (0 unset, 1 ok, 2 error).
    pub status: i32,
    /// Status message.
    pub status_message: String,
    /// Start, Unix nanoseconds.
    pub start_unix_nano: u64,
    /// End, Unix nanoseconds.
    pub end_unix_nano: u64,
    /// Links as (trace ID, span ID).
    pub links: Vec<(String, String)>,
    /// Names of the span's events (log lines recorded in it).
    pub events: Vec<String>,
    /// All of the span's event attributes, rendered as strings (to check for secrets).
    pub event_attributes: Vec<String>,
}

/// The spans received so far.
#[derive(Debug, Clone, Default)]
pub struct Collected(Arc<Mutex<Vec<CollectedSpan>>>);

impl Collected {
    /// A copy of every span received so far.
    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn push(&self, spans: Vec<CollectedSpan>) {
        if let Ok(mut v) = self.0.lock() {
            v.extend(spans);
        }
    }
}

fn render(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex(b),
        Some(any_value::Value::ArrayValue(a)) => {
            a.values.iter().map(render).collect::<Vec<_>>().join(",")
        }
        Some(any_value::Value::KvlistValue(kv)) => kv
            .values
            .iter()
            .map(|kv| {
                format!(
                    "{}={}",
                    kv.key,
                    kv.value.as_ref().map(render).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Flatten an export request.
pub fn flatten(req: ExportTraceServiceRequest) -> Vec<CollectedSpan> {
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let resource: HashMap<String, String> = rs
            .resource
            .as_ref()
            .map(|r| {
                r.attributes
                    .iter()
                    .map(|kv| {
                        (
                            kv.key.clone(),
                            kv.value.as_ref().map(render).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                let attributes = s
                    .attributes
                    .iter()
                    .map(|kv| {
                        (
                            kv.key.clone(),
                            kv.value.as_ref().map(render).unwrap_or_default(),
                        )
                    })
                    .collect();
                let (status, status_message) = s
                    .status
                    .as_ref()
                    .map(|st| (st.code, st.message.clone()))
                    .unwrap_or_default();
                out.push(CollectedSpan {
                    service: service.clone(),
                    resource: resource.clone(),
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    name: s.name.clone(),
                    kind: s.kind,
                    attributes,
                    status,
                    status_message,
                    start_unix_nano: s.start_time_unix_nano,
                    end_unix_nano: s.end_time_unix_nano,
                    links: s
                        .links
                        .iter()
                        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                    events: s.events.iter().map(|e| e.name.clone()).collect(),
                    event_attributes: s
                        .events
                        .iter()
                        .flat_map(|e| e.attributes.iter())
                        .map(|kv| {
                            format!(
                                "{}={}",
                                kv.key,
                                kv.value.as_ref().map(render).unwrap_or_default()
                            )
                        })
                        .collect(),
                });
            }
        }
    }
    out
}

async fn traces(collected: web::Data<Collected>, body: web::Bytes) -> HttpResponse {
    match ExportTraceServiceRequest::decode(body) {
        Ok(req) => {
            collected.push(flatten(req));
            HttpResponse::Ok()
                .content_type("application/x-protobuf")
                .body(ExportTraceServiceResponse::default().encode_to_vec())
        }
        Err(e) => HttpResponse::BadRequest().body(format!("not an OTLP trace export: {e}")),
    }
}

async fn list(collected: web::Data<Collected>) -> HttpResponse {
    HttpResponse::Ok().json(collected.spans())
}

/// A running receiver.
#[derive(Debug)]
pub struct Receiver {
    /// Where it listens; point `OTEL_EXPORTER_OTLP_ENDPOINT` at `http://{addr}`.
    pub addr: SocketAddr,
    /// What it received.
    pub collected: Collected,
    handle: actix_web::dev::ServerHandle,
}

impl Receiver {
    /// Start on `addr` (port 0 for an ephemeral port), on the current actix/tokio runtime.
    pub fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let collected = Collected::default();
        let data = web::Data::new(collected.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(MAX_EXPORT_BYTES))
                .route("/v1/traces", web::post().to(traces))
                .route("/spans", web::get().to(list))
                .route("/health", web::get().to(HttpResponse::NoContent))
        })
        .workers(1)
        .disable_signals()
        .bind(addr)?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("receiver bound no address"))?;
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            addr,
            collected,
            handle,
        })
    }

    /// The base endpoint for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop listening.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

/// Log lines kept in memory: give [`LogLines::make_writer`] to `init_with` in a test, read the
/// lines back with [`LogLines::text`].
#[derive(Debug, Clone, Default)]
pub struct LogLines(Arc<Mutex<Vec<u8>>>);

impl LogLines {
    /// A writer for [`crate::init_with`] appending here.
    pub fn make_writer(&self) -> crate::BoxMakeWriter {
        let lines = self.clone();
        crate::BoxMakeWriter::new(move || lines.clone())
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    }
}

impl std::io::Write for LogLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut v) => {
                v.extend_from_slice(buf);
                Ok(buf.len())
            }
            Err(_) => Err(std::io::Error::other("log buffer poisoned")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
