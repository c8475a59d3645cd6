//! Log lines on stderr, text or JSON, each carrying the OpenTelemetry trace and span IDs of the
//! span it was written in, so a line found in the logs leads to its trace in Jaeger.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::{DefaultFields, Format, JsonFields, Writer};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The IDs of the active OpenTelemetry span, if any.
fn current_ids() -> Option<(String, String)> {
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// Text lines: the usual `tracing` format followed by `trace_id=… span_id=…`.
#[derive(Debug, Default)]
pub struct TextWithIds {
    inner: Format,
}

impl<S, N> FormatEvent<S, N> for TextWithIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::with_capacity(160);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n');
        match current_ids() {
            Some((trace, span)) => writeln!(writer, "{line} trace_id={trace} span_id={span}"),
            None => writeln!(writer, "{line}"),
        }
    }
}

/// JSON lines: `timestamp`, `level`, `target`, `fields` (with `message`), `span` (name and
/// fields of the innermost span), `spans` (names, outermost first), `trace_id`, `span_id`.
#[derive(Debug, Default)]
pub struct JsonWithIds;

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonWithIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        line.insert("timestamp".into(), Value::String(now));
        line.insert("level".into(), Value::String(meta.level().to_string()));
        line.insert("target".into(), Value::String(meta.target().to_owned()));
        let mut fields = Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        line.insert("fields".into(), Value::Object(fields));
        if let Some(scope) = ctx.event_scope() {
            let mut names = Vec::new();
            let mut innermost = None;
            for span in scope {
                if innermost.is_none() {
                    let mut obj = Map::new();
                    obj.insert("name".into(), Value::String(span.name().to_owned()));
                    let ext = span.extensions();
                    if let Some(stored) = ext.get::<FormattedFields<JsonFields>>()
                        && let Ok(Value::Object(map)) =
                            serde_json::from_str::<Value>(stored.as_str())
                    {
                        obj.extend(map);
                    }
                    innermost = Some(obj);
                }
                names.push(Value::String(span.name().to_owned()));
            }
            names.reverse();
            if let Some(obj) = innermost {
                line.insert("span".into(), Value::Object(obj));
            }
            line.insert("spans".into(), Value::Array(names));
        }
        if let Some((trace, span)) = current_ids() {
            line.insert("trace_id".into(), Value::String(trace));
            line.insert("span_id".into(), Value::String(span));
        }
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// The text log layer.
pub fn text_layer<S>(writer: BoxMakeWriter) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .fmt_fields(DefaultFields::new())
        .event_format(TextWithIds::default())
        .with_writer(writer)
}

/// The JSON log layer.
pub fn json_layer<S>(writer: BoxMakeWriter) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(JsonWithIds)
        .with_writer(writer)
}
