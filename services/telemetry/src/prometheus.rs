//! The Prometheus recorder for the `metrics` facade and the `GET /metrics` handler every service
//! mounts; histograms named `*_seconds` get latency buckets.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of every `*_seconds` histogram, in seconds.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the process-wide recorder once (later calls return the same handle; several services
/// in one test process share it).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder was installed first; the handle then renders
            // an empty page, which the caller sees at once.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The `GET /metrics` answer: the Prometheus text exposition format.
pub fn render(handle: &PrometheusHandle) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render())
}
