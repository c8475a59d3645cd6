//! Alerting (step 3): the persistent alert outbox and its delivery. `deviceattached`/`devicedetached`
//! rows are enqueued idempotently, then delivered by one DM session per server for all its due alerts.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::BoxFuture;
use omadm::alert::{DEVICE_ATTACHED, DEVICE_DETACHED};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tracing::{Instrument, Span};

use super::{ActorError, Traced};
use crate::config::RetryPolicy;
use crate::domain::{AlertId, AlertRow, Millis, NewAlert, StoredAccount};
use crate::store::{Store, StoreError, outbox};

/// Most alerts carried by one DM session.
pub const MAX_ALERTS_PER_SESSION: u32 = 200;
/// How long a claimed alert stays leased to a delivery before it is due again.
pub const DELIVERY_LEASE: Duration = Duration::from_secs(120);
/// How often the outbox is looked at when nothing wakes it earlier.
pub const TICK: Duration = Duration::from_millis(500);

/// Enqueue `deviceattached` for the matched servers of a device.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Vec<AlertRow>, ActorError>")]
pub struct AttachMatched {
    /// The device.
    pub dev_id: String,
    /// The matched ServerIDs.
    pub server_ids: Vec<String>,
}

/// Enqueue `devicedetached` for the servers that were told of the attach.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Vec<AlertRow>, ActorError>")]
pub struct DeviceDetached {
    /// The device.
    pub dev_id: String,
    /// The ServerIDs.
    pub server_ids: Vec<String>,
}

/// Look at the outbox now (after an enqueue, a delivery, or on the timer).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct DeliverDue;

/// Finish the deliveries in flight (shutdown).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Drain;

/// What one DM session did with the alerts it carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Alerts the server accepted (200/202).
    pub delivered: Vec<AlertId>,
    /// Alerts that failed, with the reason (session-level failures name every alert).
    pub failed: Vec<(AlertId, String)>,
    /// A NextNonce to keep for the account's CLCRED auth entry (its key and the b64 nonce).
    pub next_nonce: Option<(String, String)>,
    /// The DM status the server gave each alert it answered.
    pub statuses: Vec<(AlertId, u16)>,
}

/// Delivers alerts to a DM Server: the real implementation opens a DM session over HTTPS.
pub trait AlertSender: Send + Sync + 'static {
    /// Carry `alerts` (all for `account`'s server) in one DM session.
    fn deliver(
        &self,
        account: StoredAccount,
        alerts: Vec<AlertRow>,
    ) -> BoxFuture<'_, DeliveryReport>;
}

/// The plain logic of Alerting: correlators, backoff, grouping.
#[derive(Debug, Clone, Copy)]
pub struct AlertingLogic;

impl AlertingLogic {
    /// A deterministic correlator for the `epoch`-th alert of a type about a device to a server:
    /// enqueueing the same alert twice is a no-op, a new attach after a detach gets a new one.
    pub fn correlator(alert_type: &str, dev_id: &str, server_id: &str, epoch: u64) -> String {
        let mut h = Sha256::new();
        for part in [alert_type, dev_id, server_id] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(epoch.to_be_bytes());
        let digest = h.finalize();
        let prefix = if alert_type == DEVICE_DETACHED {
            "det"
        } else {
            "att"
        };
        format!(
            "{prefix}-{}",
            hex::encode(digest.get(..16).unwrap_or_default())
        )
    }

    /// The delay before attempt `attempts + 1`: capped exponential, with jitter in [d/2, d].
    /// `jitter` is a number in [0, 1).
    pub fn backoff(attempts: u32, policy: &RetryPolicy, jitter: f64) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let full = policy.base.saturating_mul(1u32 << exp).min(policy.max);
        let half = full / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// Group claimed alerts by server, keeping their order.
    pub fn by_server(alerts: Vec<AlertRow>) -> BTreeMap<String, Vec<AlertRow>> {
        let mut out: BTreeMap<String, Vec<AlertRow>> = BTreeMap::new();
        for a in alerts {
            out.entry(a.server_id.clone()).or_default().push(a);
        }
        out
    }
}

/// The Alerting actor.
pub struct Alerting {
    store: Store,
    retry: RetryPolicy,
    sender: Arc<dyn AlertSender>,
    in_flight: HashSet<String>,
    looking: bool,
    drained: Vec<oneshot::Sender<()>>,
}

impl std::fmt::Debug for Alerting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerting")
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl Alerting {
    /// An Alerting actor delivering through `sender`.
    pub fn new(store: Store, retry: RetryPolicy, sender: Arc<dyn AlertSender>) -> Alerting {
        Alerting {
            store,
            retry,
            sender,
            in_flight: HashSet::new(),
            looking: false,
            drained: Vec::new(),
        }
    }

    fn enqueue(
        &mut self,
        alert_type: &'static str,
        dev_id: String,
        server_ids: Vec<String>,
        span: tracing::Span,
    ) -> ResponseActFuture<Self, Result<Vec<AlertRow>, ActorError>> {
        let store = self.store.clone();
        Box::pin(
            async move {
                let mut tx = store.begin().await?;
                let now = Millis::now();
                let mut rows = Vec::with_capacity(server_ids.len());
                for server_id in server_ids {
                    // The epoch is the number of alerts of the opposite kind already sent: an
                    // attach after a detach is a new alert, a repeated attach is not.
                    let other = if alert_type == DEVICE_ATTACHED {
                        DEVICE_DETACHED
                    } else {
                        DEVICE_ATTACHED
                    };
                    let epoch = outbox::count_for(&mut tx, &dev_id, &server_id, other).await?;
                    rows.push(NewAlert {
                        correlator: AlertingLogic::correlator(
                            alert_type, &dev_id, &server_id, epoch,
                        ),
                        data: Some(dev_id.clone()),
                        dev_id: dev_id.clone(),
                        server_id,
                        alert_type: alert_type.to_owned(),
                        next_attempt_at: now,
                    });
                }
                let done = outbox::enqueue(&mut tx, &rows).await?;
                tx.commit().await.map_err(StoreError::from)?;
                let created = done.iter().filter(|d| d.created).count();
                metrics::counter!("dmgw_alerts_enqueued_total", "type" => alert_type)
                    .increment(created as u64);
                Ok(done.into_iter().map(|d| d.alert).collect())
            }
            .instrument(span)
            .into_actor(self)
            .map(|res, _, ctx: &mut Context<Self>| {
                ctx.notify(DeliverDue);
                res
            }),
        )
    }
}

impl Actor for Alerting {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TICK, |_, ctx| ctx.notify(DeliverDue));
        ctx.notify(DeliverDue);
    }
}

impl Supervised for Alerting {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // Leased alerts of deliveries lost with the old actor become due when their lease ends.
        self.in_flight.clear();
        self.looking = false;
        super::restarted("alerting");
    }
}

impl Handler<Traced<AttachMatched>> for Alerting {
    type Result = ResponseActFuture<Self, Result<Vec<AlertRow>, ActorError>>;

    fn handle(&mut self, m: Traced<AttachMatched>, _: &mut Context<Self>) -> Self::Result {
        self.enqueue(DEVICE_ATTACHED, m.msg.dev_id, m.msg.server_ids, m.span)
    }
}

impl Handler<Traced<DeviceDetached>> for Alerting {
    type Result = ResponseActFuture<Self, Result<Vec<AlertRow>, ActorError>>;

    fn handle(&mut self, m: Traced<DeviceDetached>, _: &mut Context<Self>) -> Self::Result {
        self.enqueue(DEVICE_DETACHED, m.msg.dev_id, m.msg.server_ids, m.span)
    }
}

async fn claim(
    store: Store,
    busy: HashSet<String>,
) -> Result<BTreeMap<String, Vec<AlertRow>>, StoreError> {
    let now = Millis::now();
    let due = store.due_alerts(now, 1000).await?;
    let servers: std::collections::BTreeSet<String> = due
        .into_iter()
        .map(|a| a.server_id)
        .filter(|s| !busy.contains(s))
        .collect();
    let lease = now.saturating_add(DELIVERY_LEASE);
    let mut out = BTreeMap::new();
    for server in servers {
        let rows = store
            .claim_due_alerts(Some(&server), now, lease, MAX_ALERTS_PER_SESSION)
            .await?;
        if !rows.is_empty() {
            out.insert(server, rows);
        }
    }
    Ok(out)
}

/// The spans of one delivery: `alert session` for the DM session (under the first alert's
/// onboarding, linked to the others) and one `alert <server>` per alert, under its device's
/// onboarding and linked to the session.
async fn delivery_spans(store: &Store, server_id: &str, alerts: &[AlertRow]) -> (Span, Vec<Span>) {
    let session = tracing::info_span!(
        "alert session",
        server_id = %server_id,
        count = alerts.len(),
        otel.status_code = tracing::field::Empty,
    );
    let dev_ids: Vec<&str> = alerts.iter().map(|a| a.dev_id.as_str()).collect();
    let traces = if telemetry::is_active() {
        store.onboarding_traces(&dev_ids).await.unwrap_or_default()
    } else {
        Default::default()
    };
    let mut first = true;
    let mut seen = HashSet::new();
    for a in alerts {
        let Some(tp) = traces.get(&a.dev_id) else {
            continue;
        };
        if !seen.insert(tp.as_str()) {
            continue;
        }
        if first {
            telemetry::parent_from_traceparent(&session, Some(tp));
            first = false;
        } else {
            telemetry::link_traceparent(&session, Some(tp));
        }
    }
    let session_tp = telemetry::traceparent_of(&session);
    let per_alert = alerts
        .iter()
        .map(|a| {
            let span = tracing::info_span!(
                parent: None,
                "alert",
                otel.name = %format_args!("alert {server_id}"),
                dev_id = %a.dev_id,
                server_id = %server_id,
                alert.type = %a.alert_type,
                alert.correlator = %a.correlator,
                attempt = a.attempts.saturating_add(1),
                dm.status = tracing::field::Empty,
                outcome = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            );
            telemetry::parent_from_traceparent(&span, traces.get(&a.dev_id).map(String::as_str));
            telemetry::link_traceparent(&span, session_tp.as_deref());
            span
        })
        .collect();
    (session, per_alert)
}

async fn deliver(
    store: Store,
    sender: Arc<dyn AlertSender>,
    retry: RetryPolicy,
    server_id: String,
    alerts: Vec<AlertRow>,
) -> Result<(), StoreError> {
    let (session, per_alert) = delivery_spans(&store, &server_id, &alerts).await;
    let spans: BTreeMap<AlertId, Span> = alerts.iter().map(|a| a.id).zip(per_alert).collect();
    deliver_in(store, sender, retry, server_id, alerts, &spans)
        .instrument(session)
        .await
}

async fn deliver_in(
    store: Store,
    sender: Arc<dyn AlertSender>,
    retry: RetryPolicy,
    server_id: String,
    alerts: Vec<AlertRow>,
    spans: &BTreeMap<AlertId, Span>,
) -> Result<(), StoreError> {
    let ids: Vec<AlertId> = alerts.iter().map(|a| a.id).collect();
    let attempts: BTreeMap<AlertId, u32> = alerts.iter().map(|a| (a.id, a.attempts)).collect();
    let report = match store.load_account(&server_id).await {
        Ok(account) => sender.deliver(account, alerts).await,
        Err(StoreError::NotFound { .. }) => DeliveryReport {
            failed: ids
                .iter()
                .map(|id| (*id, format!("no account for server {server_id}")))
                .collect(),
            ..DeliveryReport::default()
        },
        Err(e) => return Err(e),
    };
    let now = Millis::now();
    for (id, code) in &report.statuses {
        if let Some(span) = spans.get(id) {
            span.record("dm.status", *code);
        }
    }
    for id in &report.delivered {
        if let Some(span) = spans.get(id) {
            span.record("outcome", "delivered");
        }
        metrics::counter!("dmgw_alerts_total", "outcome" => "delivered").increment(1);
    }
    if !report.failed.is_empty() {
        Span::current().record("otel.status_code", "ERROR");
    }
    if !report.delivered.is_empty() {
        store.mark_delivered(&report.delivered, now).await?;
        metrics::counter!("dmgw_alerts_delivered_total").increment(report.delivered.len() as u64);
    }
    if let Some((key, nonce)) = &report.next_nonce {
        store
            .update_auth_data(
                &server_id,
                key,
                Some(&omadm::secret::Secret::new(nonce.clone())),
            )
            .await?;
    }
    for (id, error) in &report.failed {
        let tried = attempts.get(id).copied().unwrap_or(0).saturating_add(1);
        let give_up = tried >= retry.max_attempts;
        let delay = AlertingLogic::backoff(tried, &retry, rand::random::<f64>());
        tracing::warn!(server_id = %server_id, alert = id.0, attempts = tried, give_up, error = %error, "alert delivery failed");
        if let Some(span) = spans.get(id) {
            span.record("outcome", if give_up { "failed" } else { "retry" });
            span.record("otel.status_code", "ERROR");
            span.in_scope(|| tracing::warn!(error = %error, give_up, "alert not delivered"));
        }
        metrics::counter!("dmgw_alerts_total", "outcome" => if give_up { "failed" } else { "retry" })
            .increment(1);
        metrics::counter!("dmgw_alert_failures_total", "final" => if give_up { "yes" } else { "no" })
            .increment(1);
        store
            .record_failure(&[*id], error, now.saturating_add(delay), give_up)
            .await?;
    }
    Ok(())
}

impl Handler<DeliverDue> for Alerting {
    type Result = ();

    fn handle(&mut self, _: DeliverDue, ctx: &mut Context<Self>) {
        if self.looking {
            return;
        }
        self.looking = true;
        let store = self.store.clone();
        let busy = self.in_flight.clone();
        ctx.spawn(claim(store, busy).into_actor(self).map(|res, act, ctx| {
            act.looking = false;
            let groups = match res {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the alert outbox");
                    return;
                }
            };
            for (server_id, alerts) in groups {
                act.in_flight.insert(server_id.clone());
                let fut = deliver(
                    act.store.clone(),
                    act.sender.clone(),
                    act.retry,
                    server_id.clone(),
                    alerts,
                );
                ctx.spawn(fut.into_actor(act).map(move |res, act, ctx| {
                    if let Err(e) = res {
                        tracing::error!(error = %e, server_id = %server_id, "recording a delivery failed");
                    }
                    act.in_flight.remove(&server_id);
                    if act.in_flight.is_empty() {
                        for d in act.drained.drain(..) {
                            let _ = d.send(());
                        }
                    }
                    // More may be waiting for this server.
                    ctx.notify(DeliverDue);
                }));
            }
        }));
    }
}

impl Handler<Drain> for Alerting {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> Self::Result {
        if self.in_flight.is_empty() {
            return Box::pin(async {});
        }
        let (tx, rx) = oneshot::channel();
        self.drained.push(tx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlators_are_deterministic_per_epoch() {
        let a = AlertingLogic::correlator(DEVICE_ATTACHED, "d", "s", 0);
        assert_eq!(a, AlertingLogic::correlator(DEVICE_ATTACHED, "d", "s", 0));
        assert_ne!(a, AlertingLogic::correlator(DEVICE_ATTACHED, "d", "s", 1));
        assert_ne!(a, AlertingLogic::correlator(DEVICE_ATTACHED, "d", "t", 0));
        assert!(a.starts_with("att-") && a.len() == 36);
        assert!(AlertingLogic::correlator(DEVICE_DETACHED, "d", "s", 0).starts_with("det-"));
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        let top = AlertingLogic::backoff(1, &p, 0.999_999);
        assert!(top > Duration::from_millis(999) && top <= Duration::from_secs(1));
        assert_eq!(
            AlertingLogic::backoff(1, &p, 0.0),
            Duration::from_millis(500)
        );
        assert_eq!(AlertingLogic::backoff(3, &p, 0.0), Duration::from_secs(2));
        assert_eq!(AlertingLogic::backoff(40, &p, 0.0), Duration::from_secs(30));
        assert!(AlertingLogic::backoff(40, &p, 1.0) <= Duration::from_secs(60));
    }
}
