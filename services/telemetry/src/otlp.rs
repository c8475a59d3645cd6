//! The OTLP span exporter, configured from the standard `OTEL_*` environment variables, and the
//! `service.name`/`service.version` resource.

use std::env;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;

use crate::TelemetryError;

/// Which OTLP exporter a service runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExporterConfig {
    /// The endpoint; `None` lets the exporter read `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`.
    pub endpoint: Option<String>,
}

/// A running exporter, as shown at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exporter {
    /// `http/protobuf`.
    pub protocol: &'static str,
    /// Where spans go (as configured; the exporter appends `/v1/traces` to a base endpoint).
    pub endpoint: String,
}

fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `OTEL_SDK_DISABLED=true`.
pub(crate) fn sdk_disabled() -> bool {
    var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

impl ExporterConfig {
    /// The exporter the environment asks for, or `None` (no exporter, no cost): unset
    /// endpoints, `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
    pub fn from_env() -> Option<Self> {
        if sdk_disabled() {
            return None;
        }
        if var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none")) {
            return None;
        }
        if var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
            && var("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        {
            return None;
        }
        Some(Self { endpoint: None })
    }

    /// An exporter to a given base endpoint (`http://host:4318`), for tests and embedding.
    pub fn endpoint(base: impl Into<String>) -> Self {
        Self {
            endpoint: Some(base.into()),
        }
    }

    pub(crate) fn build(self) -> Result<(SpanExporter, Exporter), TelemetryError> {
        let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_else(|| "http/protobuf".to_owned());
        if protocol.trim() != "http/protobuf" {
            return Err(TelemetryError::Exporter(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported; use http/protobuf"
            )));
        }
        let mut builder = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        let shown = match self.endpoint {
            Some(base) => {
                let url = format!("{}/v1/traces", base.trim_end_matches('/'));
                builder = builder.with_endpoint(url.clone());
                url
            }
            None => var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
                .unwrap_or_default(),
        };
        let exporter = builder
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        Ok((
            exporter,
            Exporter {
                protocol: "http/protobuf",
                endpoint: shown,
            },
        ))
    }
}

/// The resource of every span: `service.name` (unless the environment names the service),
/// `service.version`, and what `OTEL_RESOURCE_ATTRIBUTES` adds.
pub(crate) fn resource(service_name: &'static str, service_version: &'static str) -> Resource {
    let named_by_env = var("OTEL_SERVICE_NAME").is_some()
        || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|v| v.contains("service.name="));
    let builder = Resource::builder();
    let builder = if named_by_env {
        builder
    } else {
        builder.with_service_name(service_name)
    };
    builder
        .with_attribute(KeyValue::new("service.version", service_version))
        .build()
}
