//! The bootstrap server's spans (`bootstrap fetch`, `bootstrap request`, `association`,
//! `bootstrap push`) and Prometheus counters. Attributes name things, never credentials or MACs.

use tracing::Span;
use tracing::field::Empty;
use url::Url;

use crate::error::ServiceError;

pub use dm_server::observe::{cut, fail};
pub use telemetry::http::shown_url;

/// Counter of bootstrap jobs by `workflow` (`1`, `2`) and `outcome`: workflow 1 `issued`,
/// `unauthorized`, `unknown_server`, `not_acceptable`, `bad_request`, `error`; workflow 2 (one job
/// per push) `delivered`, `failed`.
pub const JOBS_TOTAL: &str = "bootstrap_server_jobs_total";
/// Counter of AssociatedGateway items by `outcome` (`accepted`, `refused`, `malformed`, `failed`,
/// `repeated`).
pub const ASSOCIATIONS_TOTAL: &str = "bootstrap_server_associations_total";

/// Count one finished bootstrap job.
pub fn count_job(workflow: u8, outcome: &'static str) {
    let workflow = if workflow == 1 { "1" } else { "2" };
    metrics::counter!(JOBS_TOTAL, "workflow" => workflow, "outcome" => outcome).increment(1);
}

/// Count one AssociatedGateway item.
pub fn count_association(outcome: &'static str) {
    metrics::counter!(ASSOCIATIONS_TOTAL, "outcome" => outcome).increment(1);
}

/// The `outcome` of a workflow-1 fetch that failed.
pub fn fetch_outcome(e: &ServiceError) -> &'static str {
    match e {
        ServiceError::Unauthorized { .. } => "unauthorized",
        ServiceError::UnknownServer { .. } => "unknown_server",
        ServiceError::NotAcceptable { .. } => "not_acceptable",
        ServiceError::BadRequest { .. } => "bad_request",
        _ => "error",
    }
}

/// The span of a workflow-1 fetch (child of the request's span); `gateway_id`, `auth`, `encoding`,
/// `outcome` and `http.response.status_code` are filled as the fetch goes.
pub fn fetch_span(server_id: &str) -> Span {
    tracing::info_span!(
        "bootstrap fetch",
        workflow = 1,
        server_id = %cut(server_id),
        gateway_id = Empty,
        auth = Empty,
        encoding = Empty,
        outcome = Empty,
        http.response.status_code = Empty,
        otel.status_code = Empty,
        otel.status_message = Empty,
    )
}

/// The span of one DM message of an End Device (workflow 2), child of the request's span.
pub fn request_span(encoding: &'static str) -> Span {
    tracing::info_span!(
        "bootstrap request",
        workflow = 2,
        dev_id = Empty,
        session_id = Empty,
        msg_id = Empty,
        auth = Empty,
        dm.encoding = encoding,
        dm.status = Empty,
        pushes = Empty,
        otel.status_code = Empty,
        otel.status_message = Empty,
    )
}

/// The span of one AssociatedGateway item (child of its Alert command's span).
pub fn association_span(dev_id: &str) -> Span {
    tracing::info_span!(
        "association",
        workflow = 2,
        dev_id = %cut(dev_id),
        gateway_id = Empty,
        server_ids = Empty,
        outcome = Empty,
        dm.status = Empty,
        otel.status_code = Empty,
        otel.status_message = Empty,
    )
}

/// The span of a push's whole delivery (child of the association it serves, through the job's
/// stored `traceparent`); `attempts`, `outcome` and the last HTTP status are filled at the end.
pub fn push_span(
    record_id: u64,
    server_id: &str,
    gateway_id: &str,
    url: &Url,
    traceparent: Option<&str>,
) -> Span {
    let span = tracing::info_span!(
        parent: None,
        "bootstrap push",
        workflow = 2,
        bootstrap = record_id,
        server_id = %server_id,
        gateway_id = %gateway_id,
        url = %shown_url(url),
        attempts = Empty,
        outcome = Empty,
        http.response.status_code = Empty,
        otel.status_code = Empty,
        otel.status_message = Empty,
    );
    telemetry::parent_from_traceparent(&span, traceparent);
    span
}

/// The span of one push attempt (child of the current `bootstrap push` span).
pub fn attempt_span(attempt: u32) -> Span {
    tracing::info_span!(
        "push attempt",
        attempt,
        outcome = Empty,
        http.response.status_code = Empty,
        retry_in_ms = Empty,
        otel.status_code = Empty,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_have_no_query() {
        let u = Url::parse("https://gw.example:8443/push?token=abc").unwrap();
        assert_eq!(shown_url(&u), "https://gw.example:8443/push");
    }
}
