//! The trace of each device's onboarding: the `onboard device` span, kept open from the
//! announcement until matching settles the device, and the parent every later step joins.
//!
//! The span's `traceparent` is stored with the device (`store::traces`), so steps that run in
//! other requests, other actors or after a restart still open their spans under it. The open
//! spans themselves live here, in memory; after a restart the stored parent is used alone.

use std::collections::{HashMap, VecDeque};
use std::sync::{LazyLock, Mutex};

use tracing::Span;

use crate::domain::Millis;
use crate::store::Store;

/// Onboarding latency histogram (announcement to attached), in seconds.
pub const ONBOARDING_SECONDS: &str = "dmgw_onboarding_duration_seconds";

/// Most onboarding spans held open at once; past it the oldest is closed early.
pub const MAX_OPEN: usize = 20_000;

#[derive(Default)]
struct Open {
    /// The open span of each onboarding, with its `traceparent`.
    spans: HashMap<String, (Span, Option<String>)>,
    order: VecDeque<String>,
}

// Process-wide: spans are telemetry only, and two gateways in one (test) process at worst close
// each other's spans early.
static OPEN: LazyLock<Mutex<Open>> = LazyLock::new(Mutex::default);

/// Keep `span` open as the onboarding of `dev_id` (a previous one for it closes now).
pub fn open(dev_id: &str, span: Span) {
    let traceparent = telemetry::traceparent_of(&span);
    let Ok(mut open) = OPEN.lock() else {
        return;
    };
    if open
        .spans
        .insert(dev_id.to_owned(), (span, traceparent))
        .is_none()
    {
        open.order.push_back(dev_id.to_owned());
    }
    while open.spans.len() > MAX_OPEN {
        match open.order.pop_front() {
            Some(oldest) => {
                open.spans.remove(&oldest);
            }
            None => break,
        }
    }
}

/// Close the onboarding span of `dev_id` (the device is settled), recording `outcome` on it.
pub fn close(dev_id: &str, outcome: &'static str) {
    let span = match OPEN.lock() {
        Ok(mut open) => {
            let span = open.spans.remove(dev_id);
            // `order` is pruned lazily: compacted when it holds twice what is open.
            if open.order.len() > 2 * open.spans.len() + 64 {
                let Open { spans, order } = &mut *open;
                order.retain(|d| spans.contains_key(d));
            }
            span
        }
        Err(_) => None,
    };
    if let Some((span, _)) = span {
        span.record("outcome", outcome);
    }
}

/// The `traceparent` of the open onboarding of `dev_id`, if it is open in this process.
fn open_traceparent(dev_id: &str) -> Option<String> {
    OPEN.lock()
        .ok()
        .and_then(|open| open.spans.get(dev_id).and_then(|(_, tp)| tp.clone()))
}

/// Make the onboarding of `dev_id` the parent of `span`, which must not have been entered yet.
/// Without a stored onboarding (a device from before tracing, a store error), `span` stays where
/// it is; telemetry never fails the flow.
pub async fn adopt(store: &Store, span: &Span, dev_id: &str) {
    if joined_open(span, dev_id) {
        return;
    }
    match store.conn().await {
        Ok(mut conn) => adopt_stored(&mut conn, span, dev_id).await,
        Err(e) => tracing::debug!(error = %e, "no onboarding trace to join"),
    }
}

/// [`adopt`] on a connection the caller holds (inside its transaction: never wait for a second
/// pooled connection while holding one).
pub async fn adopt_in(conn: &mut sqlx::SqliteConnection, span: &Span, dev_id: &str) {
    if !joined_open(span, dev_id) {
        adopt_stored(conn, span, dev_id).await;
    }
}

/// True when nothing is left to look up: tracing is off, or the onboarding is open in this
/// process and `span` now hangs under it.
fn joined_open(span: &Span, dev_id: &str) -> bool {
    if !telemetry::is_active() {
        return true;
    }
    match open_traceparent(dev_id) {
        Some(tp) => {
            telemetry::parent_from_traceparent(span, Some(&tp));
            true
        }
        None => false,
    }
}

/// The stored `traceparent` of `dev_id`'s onboarding becomes `span`'s parent.
async fn adopt_stored(conn: &mut sqlx::SqliteConnection, span: &Span, dev_id: &str) {
    match crate::store::traces::of(conn, &[dev_id]).await {
        Ok(found) => {
            telemetry::parent_from_traceparent(span, found.get(dev_id).map(String::as_str))
        }
        Err(e) => tracing::debug!(error = %e, "no onboarding trace to join"),
    }
}

/// Record the onboarding latency of a device that just became attached.
pub fn attached(started_at: Millis, now: Millis) {
    let ms = now.0.saturating_sub(started_at.0).max(0);
    // Milliseconds of an onboarding stay far below 2^53.
    #[allow(clippy::cast_precision_loss)]
    metrics::histogram!(ONBOARDING_SECONDS).record(ms as f64 / 1000.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_spans_are_bounded_and_closed_by_device() {
        open(
            "IMEI:onb-1",
            tracing::info_span!("onboard device", outcome = tracing::field::Empty),
        );
        open(
            "IMEI:onb-1",
            tracing::info_span!("onboard device", outcome = tracing::field::Empty),
        );
        close("IMEI:onb-1", "attached");
        let open = OPEN.lock().unwrap();
        assert!(!open.spans.contains_key("IMEI:onb-1"));
    }
}
