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
use tracing::field::Empty;
use tracing::{Instrument, Span, debug, info, info_span, warn};
use url::Url;

use crate::callback::{CallbackError, CallbackServer, ConsentCall};
use crate::client::{ClientError, GatewayClient, HeartbeatOutcome};
use crate::device::{DeviceError, SimDevice};
use crate::dm::{self, DmError, SessionSummary};
use crate::lan::{Announce, ConsentAnswer, ConsentRequest, heartbeat_secs};
use crate::relay;
use crate::scenario::DeviceSpec;

/// First pause before announcing again after a transient failure; doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest pause between announcement attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Counter of settled onboardings by `outcome` (`done`, `refused`, `failed`).
pub const ONBOARDINGS_TOTAL: &str = "device_sim_onboardings_total";

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

impl Outcome {
    /// The name in reports, spans and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
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

/// One onboarding of a device. It is a root `device onboarding` span (`dev_id`, `outcome`) holding
/// every request of it, so the gateway's spans nest under the device's; the user's answer is a
/// `consent prompt` span (`decision`) under the gateway's consent callback. Heartbeats are short
/// traces of their own.
struct Onboarding {
    number: u32,
    started: Instant,
    steps: Vec<StepRecord>,
    gateway_id: Option<String>,
    dev_id: String,
    events: mpsc::UnboundedSender<DeviceEvent>,
    /// The `device onboarding` span; `Span::none()` once the onboarding settled.
    span: Span,
    relayed: BTreeMap<String, crate::relay::RelayOutcome>,
}

/// A root `device onboarding` span.
fn onboarding_span(dev_id: &str, number: u32) -> Span {
    info_span!(
        parent: None,
        "device onboarding",
        dev_id = %dev_id,
        onboarding = number,
        gateway_id = Empty,
        resumed = Empty,
        outcome = Empty,
        otel.status_code = Empty,
        otel.status_message = Empty,
    )
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
            span: onboarding_span(dev_id, number),
            relayed: BTreeMap::new(),
        }
    }

    /// Make sure the rest of the onboarding runs in the trace of a consent callback whose span
    /// context is `traceparent`: a gateway that continued the device's trace changes nothing; when
    /// the onboarding already settled, or the gateway's callback is in another trace (it lost the
    /// device's), the onboarding goes on in a new `device onboarding` span under the callback.
    fn join(&mut self, traceparent: Option<&str>) {
        let theirs = traceparent.and_then(|t| t.split('-').nth(1));
        let ours = telemetry::propagation::trace_id_of(&self.span);
        let other_trace = theirs.is_some() && ours.as_deref() != theirs;
        if !self.span.is_none() && !other_trace {
            return;
        }
        if !self.span.is_none() {
            self.span.record("outcome", "continued");
        }
        let span = onboarding_span(&self.dev_id, self.number);
        span.record("resumed", true);
        if let Some(g) = &self.gateway_id {
            span.record("gateway_id", g.as_str());
        }
        telemetry::parent_from_traceparent(&span, traceparent);
        self.span = span;
    }

    /// The onboarding settled: record how on its span, count it, and end the span.
    fn finish(&mut self, report: &DeviceReport) {
        let outcome = report.outcome.as_str();
        self.span.record("outcome", outcome);
        if report.outcome == Outcome::Failed {
            self.span.record("otel.status_code", "ERROR");
            if let Some(r) = &report.reason {
                self.span.record("otel.status_message", r.as_str());
            }
        }
        metrics::counter!(ONBOARDINGS_TOTAL, "outcome" => outcome).increment(1);
        self.span = Span::none();
    }

    /// The onboarding is given up before it settled (a new one starts).
    fn abandon(&mut self) {
        if !self.span.is_none() {
            self.span.record("outcome", "abandoned");
        }
        self.span = Span::none();
    }

    fn step(&mut self, step: &'static str) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.span.in_scope(|| info!(step, ms, "step"));
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

/// A consent request waiting for the user's answer: the request, when the user answers, and the
/// `consent prompt` span.
struct Pending {
    request: ConsentRequest,
    at: Instant,
    prompt: Span,
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
    async fn announce(&self) -> Announced {
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
            match self.ctx.client.announce(&body).await {
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

    /// Announce (in the onboarding's span) and record the step; a permanent refusal settles the
    /// onboarding as failed.
    async fn announce_step(&self, ob: &mut Onboarding) -> bool {
        match self.announce().instrument(ob.span.clone()).await {
            Announced::Yes => {
                ob.step("announced");
                true
            }
            Announced::Permanently(e) => {
                ob.span
                    .in_scope(|| warn!(error = %e, "announcement refused"));
                let report = ob.report(&self.spec.dev_id, Outcome::Failed, Some(e.to_string()));
                ob.finish(&report);
                self.emit(DeviceEvent::Settled(Box::new(report)));
                false
            }
        }
    }

    /// Steps 1-2 and 1-3: answer the consent request (in the `consent prompt` span, which ends
    /// with the answer); when allowed, fetch and apply provisioning (in a `provisioning` span).
    async fn consent_and_provision(
        &self,
        dev: &mut SimDevice,
        req: &ConsentRequest,
        ob: &mut Onboarding,
        prompt: Span,
    ) -> Result<Consented, StepError> {
        let allow = self.spec.consent.allows();
        let answer = ConsentAnswer {
            dev_id: self.spec.dev_id.clone(),
            consent_token: req.consent_token.clone(),
            allow,
        };
        let answered = self
            .ctx
            .client
            .consent(&answer)
            .instrument(prompt.clone())
            .await;
        if let Err(e) = &answered {
            prompt.record("otel.status_code", "ERROR");
            prompt.record("otel.status_message", tracing::field::display(e));
        }
        drop(prompt);
        let provisioning_url = answered?;
        if !allow {
            ob.step("consent_refused");
            return Ok(Consented::Refused);
        }
        ob.step("consent_allowed");
        let url = provisioning_url.ok_or(StepError::NoProvisioningUrl)?;
        let span = info_span!(
            "provisioning",
            gateway_id = %req.gateway_id,
            encoding = match self.spec.provisioning_encoding {
                omadm::codec::Encoding::Xml => "xml",
                omadm::codec::Encoding::Wbxml => "wbxml",
            },
            otel.status_code = Empty,
            otel.status_message = Empty,
        );
        let fetched = self
            .ctx
            .client
            .provisioning(&url, self.spec.provisioning_encoding)
            .instrument(span.clone())
            .await;
        let applied = span.in_scope(|| -> Result<(), StepError> {
            let gw = dev.apply_provisioning(&fetched?, &req.gateway_id, &self.ctx.limits)?;
            info!(gateway = %gw.server_id, dm_url = %gw.dm_url, "provisioned");
            Ok(())
        });
        if let Err(e) = &applied {
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_message", tracing::field::display(e));
        }
        drop(span);
        applied?;
        ob.step("provisioned");
        Ok(Consented::Provisioned)
    }

    /// Steps 1-2 to 1-4 after the user's delay; the report of how the onboarding settled. Runs in
    /// the onboarding's span.
    async fn settle(
        &self,
        dev: &mut SimDevice,
        req: &ConsentRequest,
        ob: &mut Onboarding,
        prompt: Span,
    ) -> DeviceReport {
        let result = match self.consent_and_provision(dev, req, ob, prompt).await {
            Ok(Consented::Refused) => Ok((Outcome::Refused, None)),
            Ok(Consented::Provisioned) => {
                let encoding = self.spec.dm_encoding;
                let limits = &self.ctx.limits;
                let transport = self.ctx.client.transport();
                match dm::run_session(transport, dev, encoding, limits).await {
                    Ok(summary) => {
                        ob.step("session_done");
                        // Workflow 2: pass each hand-over on to the bootstrap server.
                        let relayed =
                            relay::relay_associations(transport, dev, encoding, limits).await;
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
                warn!(dev_id = %self.spec.dev_id, error = %e, "device cannot be built");
                let report =
                    DeviceReport::new(&self.spec.dev_id, Outcome::Failed, Some(e.to_string()));
                self.emit(DeviceEvent::Settled(Box::new(report)));
                return;
            }
        };
        let mut number: u32 = 1;
        let mut ob = Onboarding::new(number, &self.spec.dev_id, &self.events);
        ob.span.in_scope(|| info!("onboarding started"));
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
        let mut pending: Option<Pending> = None;
        loop {
            let deadline = pending.as_ref().map(|p| p.at);
            tokio::select! {
                call = self.consent_rx.recv() => {
                    let Some(ConsentCall { request, traceparent }) = call else { return };
                    ob.join(traceparent.as_deref());
                    ob.gateway_id = Some(request.gateway_id.clone());
                    ob.span.record("gateway_id", request.gateway_id.as_str());
                    // The prompt answers the gateway's callback: its span is under the callback's.
                    let prompt = info_span!(
                        parent: &ob.span,
                        "consent prompt",
                        gateway_id = %request.gateway_id,
                        policy = %self.spec.consent,
                        decision = Empty,
                        otel.status_code = Empty,
                        otel.status_message = Empty,
                    );
                    telemetry::parent_from_traceparent(&prompt, traceparent.as_deref());
                    prompt.in_scope(|| info!(gateway = %request.gateway_id, policy = %self.spec.consent, "consent requested"));
                    ob.step("consent_requested");
                    pending = Some(Pending {
                        request,
                        at: Instant::now() + self.spec.consent.delay(),
                        prompt,
                    });
                }
                _ = sleep_until_opt(deadline), if deadline.is_some() => {
                    let Some(Pending { request, prompt, .. }) = pending.take() else { continue };
                    let decision = if self.spec.consent.allows() { "allow" } else { "refuse" };
                    prompt.record("decision", decision);
                    prompt.in_scope(|| info!(decision, "consent decided"));
                    let span = ob.span.clone();
                    let report = self.settle(&mut dev, &request, &mut ob, prompt).instrument(span).await;
                    ob.finish(&report);
                    self.emit(DeviceEvent::Settled(Box::new(report)));
                }
                _ = heartbeat.tick() => {
                    let span = info_span!(parent: None, "heartbeat", dev_id = %self.spec.dev_id);
                    match self.ctx.client.heartbeat(&self.spec.dev_id).instrument(span.clone()).await {
                        Ok(HeartbeatOutcome::Known) => span.in_scope(|| debug!("heartbeat")),
                        Ok(HeartbeatOutcome::Unknown) => {
                            span.in_scope(|| info!("the gateway does not know the device: announcing again"));
                            drop(span);
                            number = number.saturating_add(1);
                            ob.abandon();
                            ob = Onboarding::new(number, &self.spec.dev_id, &self.events);
                            ob.span.in_scope(|| info!("onboarding started"));
                            pending = None;
                            if !self.announce_step(&mut ob).await {
                                return;
                            }
                        }
                        Err(e) => span.in_scope(|| warn!(error = %e, "heartbeat failed")),
                    }
                }
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
            let task = DeviceTask {
                spec,
                ctx: ctx.clone(),
                callback_url,
                consent_rx,
                events: events_tx.clone(),
                shutdown: shutdown_rx.clone(),
                start_at,
            };
            tasks.spawn(task.run());
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
