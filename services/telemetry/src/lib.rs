//! Telemetry shared by every dmgw service: `tracing` logs (text or JSON, trace and span IDs on each
//! line), OpenTelemetry traces over OTLP when configured, W3C trace context on HTTP, Prometheus.
//!
//! A service calls [`init`] once at start-up and keeps the returned [`Telemetry`] until it exits;
//! dropping it flushes the spans still queued. The OTLP exporter exists only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set and neither
//! `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` says otherwise. Trace IDs exist
//! either way, so logs and the `traceparent` headers of a service without an exporter still tie
//! into the traces of its peers. `OTEL_SDK_DISABLED=true` removes the OpenTelemetry layer itself.

pub mod health;
pub mod http;
pub mod logs;
mod otlp;
pub mod prometheus;
pub mod propagation;
#[cfg(feature = "receiver")]
pub mod receiver;

use std::fmt;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer as _};

pub use otlp::{Exporter, ExporterConfig};
pub use propagation::{
    context_from_traceparent, link_traceparent, parent_from_traceparent, traceparent,
    traceparent_of,
};
pub use tracing_subscriber::fmt::writer::BoxMakeWriter;

static ACTIVE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True once [`init`] installed the OpenTelemetry layer in this process: spans have trace
/// contexts. Callers skip work that only serves tracing (e.g. looking up a stored parent) when
/// false.
pub fn is_active() -> bool {
    ACTIVE.load(std::sync::atomic::Ordering::Relaxed)
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// What [`init`] needs from a service.
#[derive(Debug, Clone)]
pub struct Options {
    /// `service.name` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names one.
    pub service_name: &'static str,
    /// `service.version`.
    pub service_version: &'static str,
    /// Log line format.
    pub log_format: LogFormat,
    /// The log lines' `EnvFilter` directive (`info`, `gateway=debug,sqlx=warn`, ...); invalid
    /// falls back to `info`. It does not limit the spans exported: see [`TRACE_FILTER_ENV`].
    pub filter: String,
}

/// The variable holding the `EnvFilter` directive of the spans that become OpenTelemetry spans
/// (default [`DEFAULT_TRACE_FILTER`]), independent of the log filter.
pub const TRACE_FILTER_ENV: &str = "DMGW_TRACE_FILTER";

/// Spans at `info` and above, without the HTTP/TLS/SQL libraries' own nor the gateway's per-query
/// store spans (`DMGW_TRACE_FILTER=info,gateway::store=info` brings those back).
pub const DEFAULT_TRACE_FILTER: &str = "info,gateway::store=warn,sqlx=warn,hyper=warn,hyper_util=warn,h2=warn,rustls=warn,reqwest=warn,tower=warn,actix_server=warn,actix_http=warn,mio=warn,mdns_sd=warn,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off";

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built from the `OTEL_*` settings.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
}

/// The installed telemetry; keep it alive for the life of the process. Dropping it flushes and
/// shuts the exporter down (bounded by its timeout).
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporter: Option<Exporter>,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("exporter", &self.exporter)
            .finish()
    }
}

impl Telemetry {
    /// The exporter in use, if any.
    pub fn exporter(&self) -> Option<&Exporter> {
        self.exporter.as_ref()
    }

    /// Export what is queued now (blocks up to the exporter's timeout; call it off the async
    /// runtime's worker threads, e.g. at the end of `main`).
    pub fn flush(&self) {
        if self.exporter.is_some()
            && let Err(e) = self.provider.force_flush()
        {
            eprintln!("telemetry: flushing spans failed: {e}");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if self.exporter.is_some() {
            // The batch processor runs on its own thread; shutting it down joins that thread,
            // which must not happen on an async worker: do it from a plain thread.
            let provider = self.provider.clone();
            let joined = std::thread::spawn(move || provider.shutdown()).join();
            if let Ok(Err(e)) = joined {
                eprintln!("telemetry: shutting the exporter down failed: {e}");
            }
        }
    }
}

/// Install the global subscriber: filter, log lines, and the OpenTelemetry layer. Returns
/// `Ok(None)` when a subscriber is already installed (tests start several services in one
/// process; the first one wins).
pub fn init(options: Options) -> Result<Option<Telemetry>, TelemetryError> {
    let exporter_config = ExporterConfig::from_env();
    init_with(
        options,
        exporter_config,
        BoxMakeWriter::new(std::io::stderr),
    )
}

/// [`init`] for a service binary: logs filtered by `RUST_LOG` (unset or empty: `default_filter`),
/// JSON when `json`; says at `info` where spans are exported.
pub fn init_service(
    service_name: &'static str,
    service_version: &'static str,
    json: bool,
    default_filter: &str,
) -> Result<Option<Telemetry>, TelemetryError> {
    let telemetry = init(Options {
        service_name,
        service_version,
        log_format: if json {
            LogFormat::Json
        } else {
            LogFormat::Text
        },
        filter: std::env::var("RUST_LOG")
            .ok()
            .filter(|f| !f.trim().is_empty())
            .unwrap_or_else(|| default_filter.to_owned()),
    })?;
    if let Some(exporter) = telemetry.as_ref().and_then(|t| t.exporter()) {
        tracing::info!(protocol = exporter.protocol, endpoint = %exporter.endpoint, "exporting traces over OTLP");
    }
    Ok(telemetry)
}

/// [`init`] with an explicit exporter configuration (instead of the `OTEL_*` environment) and
/// log destination (instead of stderr).
pub fn init_with(
    options: Options,
    exporter_config: Option<ExporterConfig>,
    writer: BoxMakeWriter,
) -> Result<Option<Telemetry>, TelemetryError> {
    if tracing::dispatcher::has_been_set() {
        return Ok(None);
    }
    let resource = otlp::resource(options.service_name, options.service_version);
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    let exporter = match exporter_config {
        Some(config) => {
            let (span_exporter, exporter) = config.build()?;
            builder = builder.with_batch_exporter(span_exporter);
            Some(exporter)
        }
        None => None,
    };
    let provider = builder.build();
    let tracer = provider.tracer(options.service_name);
    let trace_filter = std::env::var(TRACE_FILTER_ENV)
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_TRACE_FILTER));
    // `OTEL_SDK_DISABLED=true`: no OpenTelemetry layer at all (no trace IDs, no propagation).
    let sdk_enabled = !otlp::sdk_disabled();
    let otel = sdk_enabled.then(|| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_error_events_to_status(true)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(trace_filter)
    });
    let log_filter = EnvFilter::try_new(&options.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(otel);
    let installed = match options.log_format {
        LogFormat::Text => registry
            .with(logs::text_layer(writer).with_filter(log_filter))
            .try_init()
            .is_ok(),
        LogFormat::Json => registry
            .with(logs::json_layer(writer).with_filter(log_filter))
            .try_init()
            .is_ok(),
    };
    if !installed {
        return Ok(None);
    }
    if sdk_enabled {
        ACTIVE.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(Some(Telemetry { provider, exporter }))
}
