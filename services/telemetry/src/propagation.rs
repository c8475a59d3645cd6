//! W3C trace context (`traceparent`/`tracestate`): read from incoming headers, written to outgoing
//! requests, and kept as a string where a flow must outlive a request (a stored device, an alert).

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `traceparent` header name.
pub const TRACEPARENT: &str = "traceparent";

struct ActixHeaders<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for ActixHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct ReqwestHeaders<'a>(&'a mut reqwest::header::HeaderMap);

impl Injector for ReqwestHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(key.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct One<'a>(Option<&'a str>);

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key == TRACEPARENT { self.0 } else { None }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

struct Capture(Option<String>);

impl Injector for Capture {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

/// The remote parent named by a request's headers (an empty context when there is none or it
/// is malformed: the request then starts a trace of its own).
pub fn extract(headers: &actix_web::http::header::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&ActixHeaders(headers))
}

/// Write the context of `span` into outgoing headers.
pub fn inject(span: &Span, headers: &mut reqwest::header::HeaderMap) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut ReqwestHeaders(headers));
}

/// The `traceparent` of `span` (`00-<trace>-<span>-<flags>`), or `None` when it has no valid
/// context (no OpenTelemetry layer installed).
pub fn traceparent_of(span: &Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut capture = Capture(None);
    TraceContextPropagator::new().inject_context(&cx, &mut capture);
    capture.0
}

/// The `traceparent` of the current span.
pub fn traceparent() -> Option<String> {
    traceparent_of(&Span::current())
}

/// A context whose remote parent is a stored `traceparent` (empty when `None` or malformed).
pub fn context_from_traceparent(traceparent: Option<&str>) -> Context {
    TraceContextPropagator::new().extract(&One(traceparent))
}

/// Make a stored `traceparent` the parent of a span that has not been entered yet. A missing or
/// malformed value leaves the span where it is (under the current span, or a new trace).
pub fn parent_from_traceparent(span: &Span, traceparent: Option<&str>) {
    let cx = context_from_traceparent(traceparent);
    if cx.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed or the span already started.
        let _ = span.set_parent(cx);
    }
}

/// Link `span` to the span a stored `traceparent` names (one DM session carrying the alerts of
/// several onboardings links to each of them). Malformed values are ignored.
pub fn link_traceparent(span: &Span, traceparent: Option<&str>) {
    let cx = context_from_traceparent(traceparent);
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.add_link(sc);
    }
}

/// The trace ID of `span` as 32 hex digits, when it has one.
pub fn trace_id_of(span: &Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_traceparent_gives_no_parent() {
        for bad in [None, Some(""), Some("00-zz-yy-01"), Some("garbage")] {
            let cx = context_from_traceparent(bad);
            assert!(!cx.span().span_context().is_valid(), "{bad:?}");
        }
    }

    #[test]
    fn a_wellformed_traceparent_round_trips() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = context_from_traceparent(Some(tp));
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid());
        assert!(sc.is_remote());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let mut capture = Capture(None);
        TraceContextPropagator::new().inject_context(&cx, &mut capture);
        assert_eq!(capture.0.as_deref(), Some(tp));
    }

    #[test]
    fn incoming_headers_are_read() {
        let mut headers = actix_web::http::header::HeaderMap::new();
        headers.insert(
            actix_web::http::header::HeaderName::from_static("traceparent"),
            actix_web::http::header::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let cx = extract(&headers);
        assert_eq!(
            cx.span().span_context().span_id().to_string(),
            "00f067aa0ba902b7"
        );
    }
}
