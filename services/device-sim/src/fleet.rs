//! The devices at work: one tokio task per simulated device walks the LAN contract (announce, consent,
//! provisioning, DM session, heartbeats), and reports each settled onboarding as a `DeviceReport`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use omadm::element::Limits;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{Instrument, debug, info, info_span, warn};
use url::Url;

use crate::callback::{CallbackError, CallbackServer, ConsentCall};
use crate::client::{ClientError, GatewayClient, HeartbeatOutcome};
use crate::device::{DeviceError, SimDevice};
use crate::dm::{self, DmError, SessionSummary};
use crate::lan::{Announce, ConsentAnswer, ConsentRequest, heartbeat_secs};
use crate::relay;
use crate::scenario::DeviceSpec;
use crate::trace::Trace;

/// First pause before announcing again after a transient failure; doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest pause between announcement attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How a device's onboarding ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Announced, consent allowed, provisioned, DM session done.
    Done,
    /// The user refused consent.
    Refused,
    /// Something failed; see the reason.
    Failed,
}

/// One step of an onboarding, with the time since the device started it (its announcement).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepRecord {
    /// `announced`, `consent_requested`, `consent_allowed`, `consent_refused`, `provisioned`,
    /// `session_done`.
    pub step: &'static str,
    /// Milliseconds since the onboarding began.
    pub ms: u64,
}

/// What one device reports when an onboarding settles (one JSON line in `run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceReport {
    /// The device's DevId.
    pub dev_id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Which onboarding of this device this is (1, then 2 after a re-announcement, ...).
    pub onboarding: u32,
    /// The steps taken.
    pub steps: Vec<StepRecord>,
    /// Milliseconds from the announcement to settling.
    pub elapsed_ms: u64,
    /// The gateway that asked for consent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_id: Option<String>,
    /// The ServerIDs reported in `BootstrappedDMSList`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reported_server_ids: Vec<String>,
    /// The DM session, when one ran to its end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionSummary>,
    /// Workflow-2 hand-overs relayed to bootstrap servers, by ServerID.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub relayed: BTreeMap<String, crate::relay::RelayOutcome>,
    /// What the gateway wrote to `./DMAcc/<X>/Ext/AssociatedGateway`, by ServerID.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub associated_gateway: BTreeMap<String, String>,
}

impl DeviceReport {
    /// A report with no steps, session or extras.
    pub fn new(dev_id: &str, outcome: Outcome, reason: Option<String>) -> DeviceReport {
        DeviceReport {
            dev_id: dev_id.to_owned(),
            outcome,
            reason,
            onboarding: 1,
            steps: Vec::new(),
            elapsed_ms: 0,
            gateway_id: None,
            reported_server_ids: Vec::new(),
            session: None,
            associated_gateway: BTreeMap::new(),
            relayed: BTreeMap::new(),
        }
    }
}

/// What the fleet tells its runner.
#[derive(Debug, Clone)]
pub enum DeviceEvent {
    /// A device is about to send its first announcement (the start of load latencies).
    Announcing {
        /// The DevId.
        dev_id: String,
        /// When.
        at: Instant,
    },
    /// A device took a step of its onboarding, or a step failed and will be tried again.
    Progress {
        /// The DevId.
        dev_id: String,
        /// The step (as in [`StepRecord::step`], or `announce_failed`).
        step: &'static str,
        /// The error of a failed step.
        error: Option<String>,
    },
    /// An onboarding settled.
    Settled(Box<DeviceReport>),
}

/// What every device task shares.
#[derive(Debug, Clone)]
pub struct FleetContext {
    /// The gateway's LAN face.
    pub client: GatewayClient,
    /// Decoding bounds for what the gateway sends.
    pub limits: Limits,
}

/// A failed onboarding step.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Dm(#[from] DmError),
    #[error("the gateway accepted the consent but gave no provisioning_url")]
    NoProvisioningUrl,
}

struct Onboarding {
    number: u32,
    started: Instant,
    steps: Vec<StepRecord>,
    gateway_id: Option<String>,
    dev_id: String,
    events: mpsc::UnboundedSender<DeviceEvent>,
    trace: Trace,
    relayed: BTreeMap<String, crate::relay::RelayOutcome>,
}

impl Onboarding {
    fn new(number: u32, dev_id: &str, events: &mpsc::UnboundedSender<DeviceEvent>) -> Onboarding {
        Onboarding {
            number,
            started: Instant::now(),
            steps: Vec::new(),
            gateway_id: None,
            dev_id: dev_id.to_owned(),
            events: events.clone(),
            trace: Trace::random(),
            relayed: BTreeMap::new(),
        }
    }

    fn step(&mut self, step: &'static str) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        info!(step, ms, "step");
        self.steps.push(StepRecord { step, ms });
        let _ = self.events.send(DeviceEvent::Progress {
            dev_id: self.dev_id.clone(),
            step,
            error: None,
        });
    }

    fn report(&self, dev_id: &str, outcome: Outcome, reason: Option<String>) -> DeviceReport {
        DeviceReport {
            onboarding: self.number,
            steps: self.steps.clone(),
            elapsed_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            gateway_id: self.gateway_id.clone(),
            ..DeviceReport::new(dev_id, outcome, reason)
        }
    }
}

struct DeviceTask {
    spec: DeviceSpec,
    ctx: Arc<FleetContext>,
    callback_url: Url,
    consent_rx: mpsc::Receiver<ConsentCall>,
    events: mpsc::UnboundedSender<DeviceEvent>,
    shutdown: watch::Receiver<bool>,
    start_at: Option<Instant>,
}

enum Announced {
    Yes,
    Permanently(ClientError),
}

/// How the user's answer ended, when it did not fail.
enum Consented {
    Refused,
    Provisioned,
}

impl DeviceTask {
    fn emit(&self, ev: DeviceEvent) {
        // The runner may have stopped listening at shutdown; nothing to do then.
        let _ = self.events.send(ev);
    }

    /// Resolves when shutdown is requested or the fleet is gone.
    async fn stopped(mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
    }

    /// Run until shutdown; whatever is in flight then (a request, a session) is dropped.
    async fn run(mut self) {
        let shutdown = self.shutdown.clone();
        tokio::select! {
            _ = self.lifecycle() => {}
            _ = Self::stopped(shutdown) => {}
        }
    }

    /// Announce until the gateway takes it; transient failures are retried with a capped backoff.
    async fn announce(&self, trace: Trace) -> Announced {
        let body = Announce {
            dev_id: self.spec.dev_id.clone(),
            man: self.spec.man.clone(),
            model: self.spec.model.clone(),
            dev_type: self.spec.dev_type.clone(),
            callback_url: self.callback_url.to_string(),
            heartbeat_secs: Some(heartbeat_secs(self.spec.heartbeat)),
        };
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.ctx.client.announce(&body, &trace).await {
                Ok(reply) => {
                    debug!(state = ?reply.state, "announced");
                    return Announced::Yes;
                }
                Err(e) if e.is_transient() => {
                    warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "announce failed");
                    self.emit(DeviceEvent::Progress {
                        dev_id: self.spec.dev_id.clone(),
                        step: "announce_failed",
                        error: Some(e.to_string()),
                    });
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
                }
                Err(e) => return Announced::Permanently(e),
            }
        }
    }

    /// Announce and record the step; a permanent refusal settles the onboarding as failed.
    async fn announce_step(&self, ob: &mut Onboarding) -> bool {
        match self.announce(ob.trace).await {
            Announced::Yes => {
                ob.step("announced");
                true
            }
            Announced::Permanently(e) => {
                warn!(error = %e, "announcement refused");
                let report = ob.report(&self.spec.dev_id, Outcome::Failed, Some(e.to_string()));
                self.emit(DeviceEvent::Settled(Box::new(report)));
                false
            }
        }
    }

    /// Steps 1-2 and 1-3: answer the consent request; when allowed, fetch and apply provisioning.
    async fn consent_and_provision(
        &self,
        dev: &mut SimDevice,
        req: &ConsentRequest,
        ob: &mut Onboarding,
    ) -> Result<Consented, StepError> {
        let trace = ob.trace;
        let allow = self.spec.consent.allows();
        let answer = ConsentAnswer {
            dev_id: self.spec.dev_id.clone(),
            consent_token: req.consent_token.clone(),
            allow,
        };
        let provisioning_url = self.ctx.client.consent(&answer, &trace).await?;
        if !allow {
            ob.step("consent_refused");
            return Ok(Consented::Refused);
        }
        ob.step("consent_allowed");
        let url = provisioning_url.ok_or(StepError::NoProvisioningUrl)?;
        let bytes = self
            .ctx
            .client
            .provisioning(&url, self.spec.provisioning_encoding, &trace)
            .await?;
        let gw = dev.apply_provisioning(&bytes, &req.gateway_id, &self.ctx.limits)?;
        info!(gateway = %gw.server_id, dm_url = %gw.dm_url, "provisioned");
        ob.step("provisioned");
        Ok(Consented::Provisioned)
    }

    /// Steps 1-2 to 1-4 after the user's delay; the report of how the onboarding settled.
    async fn settle(
        &self,
        dev: &mut SimDevice,
        req: &ConsentRequest,
        ob: &mut Onboarding,
    ) -> DeviceReport {
        let result = match self.consent_and_provision(dev, req, ob).await {
            Ok(Consented::Refused) => Ok((Outcome::Refused, None)),
            Ok(Consented::Provisioned) => {
                let encoding = self.spec.dm_encoding;
                let limits = &self.ctx.limits;
                let transport = self.ctx.client.transport();
                match dm::run_session(transport, dev, encoding, limits, &ob.trace).await {
                    Ok(summary) => {
                        ob.step("session_done");
                        // Workflow 2: pass each hand-over on to the bootstrap server.
                        let relayed =
                            relay::relay_associations(transport, dev, encoding, limits, &ob.trace)
                                .await;
                        if !relayed.is_empty() {
                            ob.step("handover_relayed");
                        }
                        ob.relayed = relayed;
                        Ok((Outcome::Done, Some(summary)))
                    }
                    Err(e) => Err(StepError::from(e)),
                }
            }
            Err(e) => Err(e),
        };
        let mut report = match result {
            Ok((outcome, session)) => {
                let mut r = ob.report(&self.spec.dev_id, outcome, None);
                r.session = session;
                r
            }
            Err(e) => {
                warn!(error = %e, "onboarding failed");
                ob.report(&self.spec.dev_id, Outcome::Failed, Some(e.to_string()))
            }
        };
        if report.outcome == Outcome::Done {
            report.reported_server_ids = dev.reported_server_ids().unwrap_or_default();
            report.associated_gateway = dev.associated_gateways().unwrap_or_default();
            report.relayed = std::mem::take(&mut ob.relayed);
        }
        info!(outcome = ?report.outcome, elapsed_ms = report.elapsed_ms, "settled");
        report
    }

    /// The device's life: start (paced), announce, then serve consent requests and heartbeat;
    /// a heartbeat answered 404 starts a new onboarding with a new announcement.
    async fn lifecycle(&mut self) {
        if let Some(at) = self.start_at {
            tokio::time::sleep_until(at).await;
        }
        let mut dev = match SimDevice::new(self.spec.clone()) {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "device cannot be built");
                let report =
                    DeviceReport::new(&self.spec.dev_id, Outcome::Failed, Some(e.to_string()));
                self.emit(DeviceEvent::Settled(Box::new(report)));
                return;
            }
        };
        let mut number: u32 = 1;
        let mut ob = Onboarding::new(number, &self.spec.dev_id, &self.events);
        info!(trace_id = %ob.trace.trace_id(), "onboarding trace");
        self.emit(DeviceEvent::Announcing {
            dev_id: self.spec.dev_id.clone(),
            at: ob.started,
        });
        if !self.announce_step(&mut ob).await {
            return;
        }
        let period = self.spec.heartbeat;
        let mut heartbeat = tokio::time::interval_at(Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut pending: Option<(ConsentRequest, Instant)> = None;
        loop {
            let deadline = pending.as_ref().map(|(_, at)| *at);
            tokio::select! {
                call = self.consent_rx.recv() => {
                    let Some(ConsentCall { request, trace }) = call else { return };
                    if let Some(t) = trace {
                        debug!(trace_id = %t.trace_id(), "joining the gateway's trace");
                        ob.trace = t;
                    }
                    info!(gateway = %request.gateway_id, policy = %self.spec.consent, "consent requested");
                    ob.step("consent_requested");
                    ob.gateway_id = Some(request.gateway_id.clone());
                    pending = Some((request, Instant::now() + self.spec.consent.delay()));
                }
                _ = sleep_until_opt(deadline), if deadline.is_some() => {
                    let Some((request, _)) = pending.take() else { continue };
                    let report = self.settle(&mut dev, &request, &mut ob).await;
                    self.emit(DeviceEvent::Settled(Box::new(report)));
                }
                _ = heartbeat.tick() => match self.ctx.client.heartbeat(&self.spec.dev_id).await {
                    Ok(HeartbeatOutcome::Known) => debug!("heartbeat"),
                    Ok(HeartbeatOutcome::Unknown) => {
                        info!("the gateway does not know the device: announcing again");
                        number = number.saturating_add(1);
                        ob = Onboarding::new(number, &self.spec.dev_id, &self.events);
                        pending = None;
                        if !self.announce_step(&mut ob).await {
                            return;
                        }
                    }
                    Err(e) => warn!(error = %e, "heartbeat failed"),
                },
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A set of running simulated devices.
#[derive(Debug)]
pub struct Fleet {
    events: mpsc::UnboundedReceiver<DeviceEvent>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    size: usize,
}

impl Fleet {
    /// Start one task per device. With `rate` (devices per second) device `i` starts at `i / rate`
    /// seconds; otherwise all start at once. Each device registers with the callback server.
    pub fn spawn(
        specs: Vec<DeviceSpec>,
        ctx: FleetContext,
        callback: &CallbackServer,
        rate: Option<f64>,
    ) -> Result<Fleet, CallbackError> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ctx = Arc::new(ctx);
        let mut tasks = JoinSet::new();
        let size = specs.len();
        let t0 = Instant::now();
        let mut prepared = Vec::with_capacity(size);
        for spec in specs {
            let consent_rx = callback.register(&spec.dev_id)?;
            let callback_url = callback.callback_url(&spec.dev_id)?;
            prepared.push((spec, consent_rx, callback_url));
        }
        for (i, (spec, consent_rx, callback_url)) in prepared.into_iter().enumerate() {
            let start_at = rate
                .filter(|r| r.is_finite() && *r > 0.0)
                .map(|r| t0 + Duration::from_secs_f64(i as f64 / r));
            let span = info_span!("device", dev_id = %spec.dev_id);
            let task = DeviceTask {
                spec,
                ctx: ctx.clone(),
                callback_url,
                consent_rx,
                events: events_tx.clone(),
                shutdown: shutdown_rx.clone(),
                start_at,
            };
            tasks.spawn(task.run().instrument(span));
        }
        Ok(Fleet {
            events,
            shutdown,
            tasks,
            size,
        })
    }

    /// Number of devices.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The next event; `None` once every device task has ended.
    pub async fn next_event(&mut self) -> Option<DeviceEvent> {
        self.events.recv().await
    }

    /// Stop every device and wait for the tasks to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(e) = joined
                && e.is_panic()
            {
                warn!(error = %e, "a device task panicked");
            }
        }
    }
}

/// Options of a scenario run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Stop once every device settled for the first time.
    pub exit_when_settled: bool,
    /// Stop after this long; devices not settled by then are reported failed.
    pub timeout: Option<Duration>,
}

/// What a scenario run ends with.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// The first report of each device that settled, in settling order.
    pub first_reports: Vec<DeviceReport>,
    /// DevIds that never settled (timeout).
    pub unsettled: Vec<String>,
    /// True when the timeout stopped the run.
    pub timed_out: bool,
}

impl RunSummary {
    /// True when any device failed or never settled.
    pub fn any_failed(&self) -> bool {
        !self.unsettled.is_empty()
            || self
                .first_reports
                .iter()
                .any(|r| r.outcome == Outcome::Failed)
    }
}

/// Run the devices of a scenario until `exit_when_settled` is met, the timeout passes, or
/// `stop` resolves. Every settled report is handed to `on_report` as it arrives (the `run` command
/// prints it as a JSON line); devices still unsettled at a timeout get a failed report.
pub async fn run_scenario<F, S>(
    specs: Vec<DeviceSpec>,
    ctx: FleetContext,
    callback: &CallbackServer,
    opts: RunOptions,
    mut on_report: F,
    stop: S,
) -> Result<RunSummary, CallbackError>
where
    F: FnMut(&DeviceReport),
    S: std::future::Future<Output = ()>,
{
    let ids: Vec<String> = specs.iter().map(|s| s.dev_id.clone()).collect();
    let mut fleet = Fleet::spawn(specs, ctx, callback, None)?;
    let mut summary = RunSummary::default();
    let mut settled = std::collections::HashSet::new();
    let mut last: std::collections::HashMap<String, (&'static str, Option<String>)> =
        std::collections::HashMap::new();
    let started = Instant::now();
    let deadline = opts.timeout.map(|t| started + t);
    tokio::pin!(stop);
    loop {
        if opts.exit_when_settled && settled.len() == ids.len() {
            break;
        }
        tokio::select! {
            ev = fleet.next_event() => match ev {
                Some(DeviceEvent::Settled(report)) => {
                    on_report(&report);
                    if settled.insert(report.dev_id.clone()) {
                        summary.first_reports.push(*report);
                    }
                }
                Some(DeviceEvent::Progress { dev_id, step, error }) => {
                    last.insert(dev_id, (step, error));
                }
                Some(DeviceEvent::Announcing { .. }) => {}
                None => break,
            },
            _ = sleep_until_opt(deadline), if deadline.is_some() => {
                summary.timed_out = true;
                break;
            }
            _ = &mut stop => break,
        }
    }
    fleet.shutdown().await;
    if summary.timed_out {
        for id in ids.iter().filter(|id| !settled.contains(*id)) {
            let reason = match last.get(id) {
                None => "timed out before settling (not announced yet)".to_owned(),
                Some((step, None)) => format!("timed out before settling (last step: {step})"),
                Some((step, Some(e))) => {
                    format!("timed out before settling (last step: {step}: {e})")
                }
            };
            let report = DeviceReport {
                elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                ..DeviceReport::new(id, Outcome::Failed, Some(reason))
            };
            on_report(&report);
            summary.unsettled.push(id.clone());
        }
    }
    Ok(summary)
}
