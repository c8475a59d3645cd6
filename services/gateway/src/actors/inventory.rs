//! Inventory: the Device Inventory MO records. Every write request joins a batch that is committed
//! in one SQLite transaction (one savepoint per request), so thousands of devices cost few commits.

use actix::prelude::*;
use omadm::mo::DeviceState;
use serde_json::json;
use tokio::sync::oneshot;
use tracing::{Instrument, Span};

use super::alerting::{Alerting, DeviceDetached};
use super::discovery::Via;
use super::matching::{MatchDevice, Matching};
use super::{ActorError, Traced, TracedExt};
use crate::domain::{DeviceUpsert, DeviceView, Millis, NewEvent, ServerReport, StateChange};
use sqlx::{Acquire, SqliteConnection};

use crate::store::{Store, StoreError, devices, events, traces};

/// A device was discovered (or announced itself again).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<DeviceView, ActorError>")]
pub struct DeviceDiscovered {
    /// What is known of it.
    pub upsert: DeviceUpsert,
    /// How it was found.
    pub via: Via,
    /// The `traceparent` of the `onboard device` span this announcement opened, if traced.
    pub traceparent: Option<String>,
}

/// A device moved in the onboarding flow (consented, refused, provisioned...).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct SetState {
    /// The device.
    pub dev_id: String,
    /// Its new state.
    pub state: DeviceState,
    /// The event-log entry kind (e.g. `consent_refused`).
    pub event: &'static str,
    /// Details for the event log (never a secret).
    pub detail: serde_json::Value,
}

/// Step 1-4 done: the device reported the ServerIDs of its DM accounts.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<DeviceView, ActorError>")]
pub struct DeviceReady {
    /// The device.
    pub dev_id: String,
    /// Its DevInfo as reported in the DM session (man, model, DmV, Lang), if any.
    pub devinfo: Option<DeviceUpsert>,
    /// The ServerIDs, with the bootstrap-server URL of each where the device gave one.
    pub servers: Vec<ServerReport>,
}

/// A device fell silent.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct DeviceLost {
    /// The device.
    pub dev_id: String,
}

/// An operator detached a device.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<DeviceView, ActorError>")]
pub struct DetachDevice {
    /// The device.
    pub dev_id: String,
}

/// Commit what is pending now and answer when it is stored (shutdown).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Drain;

#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
struct Flush;

/// One request waiting in the batch.
enum Op {
    Discovered(
        DeviceDiscovered,
        oneshot::Sender<Result<DeviceView, ActorError>>,
    ),
    SetState(SetState, oneshot::Sender<Result<(), ActorError>>),
    Ready(DeviceReady, oneshot::Sender<Result<DeviceView, ActorError>>),
    Lost(DeviceLost, oneshot::Sender<Result<(), ActorError>>),
    Detach(
        DetachDevice,
        oneshot::Sender<Result<DeviceView, ActorError>>,
    ),
}

/// What to tell other actors once a batch is committed.
enum FollowUp {
    Match {
        dev_id: String,
    },
    Detached {
        dev_id: String,
        server_ids: Vec<String>,
    },
}

/// The plain logic of Inventory: one request applied inside a transaction.
#[derive(Debug, Clone)]
pub struct InventoryLogic;

fn event(dev_id: &str, kind: &str, detail: serde_json::Value, at: Millis) -> NewEvent {
    NewEvent {
        dev_id: Some(dev_id.to_owned()),
        kind: kind.to_owned(),
        detail,
        at,
    }
}

impl InventoryLogic {
    /// Upsert a discovered device; a lost, detached or unknown device starts over as discovered.
    pub async fn discovered(
        tx: &mut SqliteConnection,
        m: &DeviceDiscovered,
    ) -> Result<DeviceView, StoreError> {
        let mut up = m.upsert.clone();
        let previous = match devices::get(tx, &up.dev_id).await {
            Ok(d) => Some(d.state),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        if matches!(
            previous,
            None | Some(DeviceState::Lost | DeviceState::Detached)
        ) {
            up.state = Some(DeviceState::Discovered);
        }
        let mut done = devices::upsert(tx, std::slice::from_ref(&up)).await?;
        let stored = done.pop().ok_or(StoreError::Corrupt {
            what: "device upsert",
            reason: "no row returned".into(),
        })?;
        let new_onboarding = stored.created || previous != Some(stored.device.state);
        if let Some(tp) = &m.traceparent {
            traces::begin(tx, &up.dev_id, tp, new_onboarding).await?;
        }
        if new_onboarding {
            events::log(
                tx,
                &[event(
                    &up.dev_id,
                    "discovered",
                    json!({ "via": m.via.as_str(), "address": up.address }),
                    up.seen_at,
                )],
            )
            .await?;
        }
        Ok(stored.device)
    }

    /// Record a state change and its event.
    pub async fn set_state(tx: &mut SqliteConnection, m: &SetState) -> Result<(), StoreError> {
        let n = devices::set_states(
            tx,
            &[StateChange {
                dev_id: m.dev_id.clone(),
                state: m.state,
            }],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "device",
                key: m.dev_id.clone(),
            });
        }
        events::log(
            tx,
            &[event(&m.dev_id, m.event, m.detail.clone(), Millis::now())],
        )
        .await?;
        Ok(())
    }

    /// Record the reported ServerIDs (the store sets each one's match flag).
    pub async fn ready(
        tx: &mut SqliteConnection,
        m: &DeviceReady,
    ) -> Result<DeviceView, StoreError> {
        if let Some(up) = &m.devinfo {
            devices::upsert(tx, std::slice::from_ref(up)).await?;
        }
        let view = devices::report_servers(tx, &m.dev_id, &m.servers).await?;
        let ids: Vec<&str> = m.servers.iter().map(|s| s.server_id.as_str()).collect();
        events::log(
            tx,
            &[event(
                &m.dev_id,
                "servers_reported",
                json!({ "server_ids": ids }),
                Millis::now(),
            )],
        )
        .await?;
        Ok(view)
    }

    /// Mark a device lost or detached; returns the servers that must hear `devicedetached`.
    pub async fn leave(
        tx: &mut SqliteConnection,
        dev_id: &str,
        state: DeviceState,
        kind: &str,
    ) -> Result<(DeviceView, Vec<String>), StoreError> {
        let before = devices::get(tx, dev_id).await?;
        let was_attached = matches!(
            before.state,
            DeviceState::Attached | DeviceState::WaitingBootstrap
        );
        devices::set_states(
            tx,
            &[StateChange {
                dev_id: dev_id.to_owned(),
                state,
            }],
        )
        .await?;
        events::log(tx, &[event(dev_id, kind, json!({}), Millis::now())]).await?;
        let servers = if was_attached {
            before
                .servers
                .iter()
                .filter(|s| s.matched)
                .map(|s| s.server_id.clone())
                .collect()
        } else {
            Vec::new()
        };
        let after = devices::get(tx, dev_id).await?;
        Ok((after, servers))
    }
}

/// The Inventory actor.
pub struct Inventory {
    store: Store,
    matching: Addr<Matching>,
    alerting: Addr<Alerting>,
    pending: Vec<(Span, Op)>,
    flushing: bool,
    drained: Vec<oneshot::Sender<()>>,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory")
            .field("pending", &self.pending.len())
            .field("flushing", &self.flushing)
            .finish()
    }
}

impl Inventory {
    /// An Inventory actor.
    pub fn new(store: Store, matching: Addr<Matching>, alerting: Addr<Alerting>) -> Inventory {
        Inventory {
            store,
            matching,
            alerting,
            pending: Vec::new(),
            flushing: false,
            drained: Vec::new(),
        }
    }

    fn enqueue(&mut self, span: Span, op: Op, ctx: &mut Context<Self>) {
        self.pending.push((span, op));
        if !self.flushing {
            self.flushing = true;
            // Queued behind the messages already in the mailbox: they all join this batch.
            ctx.notify(Flush);
        }
    }
}

impl Actor for Inventory {
    type Context = Context<Self>;
}

impl Supervised for Inventory {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // Requests of a batch that was lost are answered with an error by their dropped senders.
        self.pending.clear();
        self.flushing = false;
        super::restarted("inventory");
    }
}

/// Answers one request once the batch's fate is known: `Some(reason)` when the whole batch failed.
type Reply = Box<dyn FnOnce(Option<&str>) + Send>;

fn reply_with<T: Send + 'static>(
    tx: oneshot::Sender<Result<T, ActorError>>,
    res: Result<T, StoreError>,
) -> Reply {
    Box::new(move |fatal| {
        let answer = match fatal {
            Some(reason) => Err(ActorError::Batch {
                reason: reason.to_owned(),
            }),
            None => res.map_err(ActorError::from),
        };
        let _ = tx.send(answer);
    })
}

/// Apply one request inside its savepoint; returns its reply, what to tell others, and success.
async fn apply(sp: &mut SqliteConnection, op: Op) -> (Reply, Option<FollowUp>, bool) {
    match op {
        Op::Discovered(m, tx) => {
            let res = InventoryLogic::discovered(sp, &m).await;
            let ok = res.is_ok();
            (reply_with(tx, res), None, ok)
        }
        Op::SetState(m, tx) => {
            let res = InventoryLogic::set_state(sp, &m).await;
            let ok = res.is_ok();
            (reply_with(tx, res), None, ok)
        }
        Op::Ready(m, tx) => {
            let res = InventoryLogic::ready(sp, &m).await;
            let ok = res.is_ok();
            let follow = ok.then_some(FollowUp::Match { dev_id: m.dev_id });
            (reply_with(tx, res), follow, ok)
        }
        Op::Lost(m, tx) => {
            match InventoryLogic::leave(sp, &m.dev_id, DeviceState::Lost, "lost").await {
                Ok((_, server_ids)) => {
                    let follow = (!server_ids.is_empty()).then_some(FollowUp::Detached {
                        dev_id: m.dev_id,
                        server_ids,
                    });
                    (reply_with(tx, Ok(())), follow, true)
                }
                Err(e) => (reply_with::<()>(tx, Err(e)), None, false),
            }
        }
        Op::Detach(m, tx) => {
            match InventoryLogic::leave(sp, &m.dev_id, DeviceState::Detached, "detached").await {
                Ok((view, server_ids)) => {
                    let follow = (!server_ids.is_empty()).then_some(FollowUp::Detached {
                        dev_id: m.dev_id,
                        server_ids,
                    });
                    (reply_with(tx, Ok(view)), follow, true)
                }
                Err(e) => (reply_with::<DeviceView>(tx, Err(e)), None, false),
            }
        }
    }
}

/// Run a batch in one transaction, one savepoint per request. On a failure of the transaction
/// itself every request of the batch is answered with the error and nothing is followed up.
async fn run_batch(store: Store, batch: Vec<(Span, Op)>) -> Vec<FollowUp> {
    let size = batch.len();
    let mut replies: Vec<Reply> = Vec::with_capacity(size);
    let mut follow = Vec::new();
    let mut ops = batch.into_iter();
    let outcome: Result<(), StoreError> = async {
        let mut tx = store.begin().await?;
        for (span, op) in ops.by_ref() {
            let mut sp = (&mut *tx).begin().await?;
            let (reply, f, ok) = apply(&mut sp, op).instrument(span).await;
            replies.push(reply);
            if ok {
                sp.commit().await?;
                follow.extend(f);
            } else {
                sp.rollback().await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => {
            for r in replies {
                r(None);
            }
            follow
        }
        Err(e) => {
            tracing::error!(error = %e, size, "inventory batch failed; nothing of it was stored");
            metrics::counter!("dmgw_inventory_batch_failures_total").increment(1);
            let reason = e.to_string();
            for r in replies {
                r(Some(&reason));
            }
            for (_, op) in ops {
                fail(op, &reason);
            }
            Vec::new()
        }
    }
}

/// Answer a request that never ran because its batch failed.
fn fail(op: Op, reason: &str) {
    let err = || ActorError::Batch {
        reason: reason.to_owned(),
    };
    match op {
        Op::Discovered(_, r) | Op::Ready(_, r) | Op::Detach(_, r) => {
            let _ = r.send(Err(err()));
        }
        Op::SetState(_, r) | Op::Lost(_, r) => {
            let _ = r.send(Err(err()));
        }
    }
}

impl Handler<Flush> for Inventory {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        let batch = std::mem::take(&mut self.pending);
        let size = batch.len();
        let store = self.store.clone();
        let started = std::time::Instant::now();
        Box::pin(
            async move { run_batch(store, batch).await }
                .into_actor(self)
                .map(move |follow, act, ctx| {
                    metrics::histogram!("dmgw_inventory_batch_size").record(size as f64);
                    metrics::histogram!("dmgw_inventory_batch_seconds")
                        .record(started.elapsed().as_secs_f64());
                    for f in follow {
                        match f {
                            FollowUp::Match { dev_id } => {
                                act.matching.do_send(MatchDevice { dev_id }.traced());
                            }
                            FollowUp::Detached { dev_id, server_ids } => {
                                act.alerting
                                    .do_send(DeviceDetached { dev_id, server_ids }.traced());
                            }
                        }
                    }
                    if act.pending.is_empty() {
                        act.flushing = false;
                        for d in act.drained.drain(..) {
                            let _ = d.send(());
                        }
                    } else {
                        ctx.notify(Flush);
                    }
                }),
        )
    }
}

macro_rules! batched {
    ($msg:ty, $variant:ident, $res:ty) => {
        impl Handler<Traced<$msg>> for Inventory {
            type Result = ResponseFuture<Result<$res, ActorError>>;

            fn handle(&mut self, m: Traced<$msg>, ctx: &mut Context<Self>) -> Self::Result {
                let (tx, rx) = oneshot::channel();
                let span = m.span.clone();
                self.enqueue(m.span, Op::$variant(m.msg, tx), ctx);
                Box::pin(
                    async move {
                        rx.await.unwrap_or_else(|_| {
                            Err(ActorError::Batch {
                                reason: "inventory restarted".into(),
                            })
                        })
                    }
                    .instrument(span),
                )
            }
        }
    };
}

batched!(DeviceDiscovered, Discovered, DeviceView);
batched!(SetState, SetState, ());
batched!(DeviceReady, Ready, DeviceView);
batched!(DeviceLost, Lost, ());
batched!(DetachDevice, Detach, DeviceView);

impl Handler<Drain> for Inventory {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> Self::Result {
        if !self.flushing && self.pending.is_empty() {
            return Box::pin(async {});
        }
        let (tx, rx) = oneshot::channel();
        self.drained.push(tx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
