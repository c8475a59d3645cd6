//! HTTP on both sides of a hop: the server middleware opens a span per request under the caller's
//! `traceparent` and records the duration histogram; [`send`] does the client side.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::propagation;

/// The server request-duration histogram: labels `method`, `route` (the route pattern, or
/// `unmatched`) and `status`.
pub const HTTP_SERVER_DURATION: &str = "http_server_request_duration_seconds";

/// A method label from a closed set (a client may send any token as a method).
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Middleware (`actix_web::middleware::from_fn(telemetry::http::server)`): a server span per
/// request, child of the caller's `traceparent` when it sent one, and one histogram sample.
/// Labels are bounded: route patterns, not paths; a closed set of methods.
pub async fn server(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method().as_str());
    // Inside a resource or scope the route is known now; wrapped around the whole App it is
    // known only once routing ran (read from the response below).
    let early_route = req.match_pattern();
    let span = tracing::info_span!(
        "HTTP request",
        otel.name = method,
        otel.kind = "server",
        http.request.method = method,
        http.route = Empty,
        url.path = req.path(),
        http.response.status_code = Empty,
        otel.status_code = Empty,
    );
    let parent = propagation::extract(req.headers());
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let res = next.call(req).instrument(span.clone()).await;
    let (status, late_route) = match &res {
        Ok(r) => (r.status(), r.request().match_pattern()),
        Err(e) => (e.as_response_error().status_code(), None),
    };
    let route = early_route
        .or(late_route)
        .unwrap_or_else(|| "unmatched".to_owned());
    span.record("http.route", route.as_str());
    // The OpenTelemetry span started with the request; rename it now that the route is known.
    span.context()
        .span()
        .update_name(format!("{method} {route}"));
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    metrics::histogram!(
        HTTP_SERVER_DURATION,
        "method" => method,
        "route" => route,
        "status" => status.as_str().to_owned()
    )
    .record(started.elapsed().as_secs_f64());
    res
}

/// The scheme, host, port and path of a URL: what a span may show (no user info, no query).
pub fn shown_url(url: &reqwest::Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        shown.push(':');
        shown.push_str(&port.to_string());
    }
    shown.push_str(url.path());
    shown
}

/// Send a request inside a client span, with that span's `traceparent` on it, so the peer's
/// spans nest under it. Errors and 5xx answers set the span status.
pub async fn send(request: reqwest::RequestBuilder) -> reqwest::Result<reqwest::Response> {
    let (client, request) = request.build_split();
    let mut request = request?;
    let method = method_label(request.method().as_str());
    let span = tracing::info_span!(
        "HTTP client",
        otel.name = method,
        otel.kind = "client",
        http.request.method = method,
        server.address = request.url().host_str().unwrap_or_default(),
        url.full = %shown_url(request.url()),
        http.response.status_code = Empty,
        otel.status_code = Empty,
        error = Empty,
    );
    propagation::inject(&span, request.headers_mut());
    let result = client.execute(request).instrument(span.clone()).await;
    match &result {
        Ok(resp) => {
            span.record("http.response.status_code", resp.status().as_u16());
            if resp.status().is_server_error() {
                span.record("otel.status_code", "ERROR");
            }
        }
        Err(e) => {
            span.record("otel.status_code", "ERROR");
            span.record("error", error_kind(e));
        }
    }
    result
}

/// What kind of failure a client error is, without its URL (which may carry a query).
fn error_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_request() {
        "request failed"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else {
        "error"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(method_label(actix_web::http::Method::GET.as_str()), "GET");
        assert_eq!(method_label(reqwest::Method::DELETE.as_str()), "DELETE");
        assert_eq!(method_label("BREW"), "other");
    }

    #[test]
    fn shown_urls_drop_credentials_and_queries() {
        let url = reqwest::Url::parse("https://user:pw@dms.example:8443/dm?secret=1").unwrap();
        assert_eq!(shown_url(&url), "https://dms.example:8443/dm");
    }
}
