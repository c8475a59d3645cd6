//! The story of each device: what the device did (device-sim's events), what the gateway made of
//! it, what the bootstrap server did for it and what the DM Servers received (snapshots), told as
//! lines as it happens, and when a device has settled. Plain data in, lines out: no I/O here.

use std::collections::{BTreeMap, BTreeSet};
use std::mem::discriminant;
use std::time::Duration;

use bootstrap_server::records::{
    AssociationOutcome, AssociationRecord, BootstrapRecord, ClientAuth, DeliveryState,
};
use device_sim::fleet::{DeviceEvent, DeviceReport, Outcome};
use device_sim::relay::RelayOutcome;
use gateway::domain::{AccountView, AlertState, BootstrapJob, DeviceView, JobState, Origin};
use omadm::alert::{DEVICE_ATTACHED, same_type};
use omadm::mo::DeviceState;

use crate::observe::Snapshot;
use crate::plan::{DevicePlan, consent_text, seconds};

/// A consent answered later than this is told with its delay.
const TELL_DELAY_FROM: Duration = Duration::from_millis(500);
/// Who the bootstrap server's lines are from.
const BOOTSTRAP_SERVER: &str = "bootstrap-server";

/// A milestone of a device's onboarding, in the order the story tells them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// 1-1: the gateway took the announcement.
    Announced,
    /// 1-2: the gateway asked the device's user.
    ConsentAsked,
    /// 1-2: the user allowed, this long after being asked.
    Allowed {
        /// The user's delay.
        after: Duration,
    },
    /// 1-2: the user refused.
    Refused,
    /// 1-3: the device installed its DM account for the gateway.
    Provisioned,
    /// 1-4: the gateway received the device's ServerIDs.
    Reported(Vec<String>),
    /// 2-3: the gateway matched them the first time (attached, or waiting for a bootstrap).
    Matched {
        /// The ServerIDs it held an account for.
        known: Vec<String>,
        /// Those it did not.
        unknown: Vec<String>,
    },
    /// The gateway recorded the refusal.
    LeftAlone,
    /// The device's DM session with the gateway ended.
    SessionDone,
    /// Workflow 2 (step 5): the device relayed the gateway's hand-over for this server to its
    /// bootstrap server.
    Relayed(String),
    /// Step 4: the gateway created a bootstrap job for one of the device's unknown servers.
    Job(i64),
    /// Steps 6-7: the gateway's DMAcc gained an account for this server by a bootstrap.
    AccountAdded(String),
    /// The gateway matched the device again after a bootstrap.
    Rematched,
    /// A DM Server received `deviceattached` for the device.
    Alerted(String),
}

impl Step {
    fn rank(&self) -> u8 {
        match self {
            Step::Announced => 0,
            Step::ConsentAsked => 1,
            Step::Allowed { .. } | Step::Refused => 2,
            Step::Provisioned => 3,
            Step::Reported(_) => 4,
            Step::Matched { .. } | Step::LeftAlone => 5,
            Step::SessionDone => 6,
            Step::Relayed(_) => 7,
            Step::Job(_) => 8,
            Step::AccountAdded(_) => 9,
            Step::Rematched => 10,
            Step::Alerted(_) => 11,
        }
    }

    /// Same milestone (servers and jobs count one by one).
    fn same_as(&self, other: &Step) -> bool {
        match (self, other) {
            (Step::Alerted(a), Step::Alerted(b))
            | (Step::Relayed(a), Step::Relayed(b))
            | (Step::AccountAdded(a), Step::AccountAdded(b)) => a == b,
            (Step::Job(a), Step::Job(b)) => a == b,
            _ => discriminant(self) == discriminant(other),
        }
    }
}

/// A bootstrap job as the story knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSeen {
    /// The job's id.
    pub id: i64,
    /// The ServerID it is for.
    pub server_id: String,
    /// 1 or 2.
    pub workflow: i64,
    /// Its state.
    pub state: JobState,
    /// Attempts so far.
    pub attempts: u32,
    /// Its last error (or, when done, a note).
    pub last_error: Option<String>,
    /// The bootstrap-server URL the device gave (workflow 1).
    pub bootstrap_url: Option<String>,
}

impl JobSeen {
    fn of(job: &BootstrapJob) -> JobSeen {
        JobSeen {
            id: job.id.0,
            server_id: job.server_id.clone(),
            workflow: job.workflow.number(),
            state: job.state,
            attempts: job.attempts,
            last_error: job.last_error.clone(),
            bootstrap_url: job.bootstrap_url.clone(),
        }
    }

    fn waiting(&self) -> String {
        let error = self
            .last_error
            .as_deref()
            .map_or(String::new(), |e| format!("; last error: {e}"));
        format!(
            "bootstrap job #{} for {} (workflow {}) to finish (state {}{error})",
            self.id, self.server_id, self.workflow, self.state
        )
    }
}

/// Everything known about one device.
#[derive(Debug, Clone)]
pub struct DeviceTrack {
    /// The device's plan.
    pub plan: DevicePlan,
    /// Milestones reached, in the order seen.
    pub steps: Vec<Step>,
    /// device-sim's report of the first onboarding, once settled on the device's side.
    pub sim: Option<DeviceReport>,
    /// Why the onboarding failed (on the device, or one of its bootstraps), when it did.
    pub failure: Option<String>,
    /// The gateway's state of the device.
    pub state: Option<DeviceState>,
    /// The ServerIDs the gateway recorded for it.
    pub reported: Vec<String>,
    /// Those the gateway holds an account for.
    pub matched: Vec<String>,
    /// Those it does not.
    pub unmatched: Vec<String>,
    /// The DM Servers that received `deviceattached` for it.
    pub alerted: BTreeSet<String>,
    /// Its bootstrap jobs, by id.
    pub jobs: BTreeMap<i64, JobSeen>,
    /// Workflow-2 hand-overs the device relayed to its bootstrap server, by ServerID.
    pub relayed: BTreeMap<String, RelayOutcome>,
    /// Where the bootstrap server's pushes for this device's hand-overs are, by ServerID.
    pub pushes: BTreeMap<String, DeliveryState>,
    /// When it settled (since the devices started).
    pub settled_at: Option<Duration>,
    consent_asked_at: Option<Duration>,
    last_device_step: Option<&'static str>,
}

fn join(ids: &[String]) -> String {
    ids.join(", ")
}

/// `GatewayID=a\nServerID=b` as `GatewayID=a; ServerID=b`.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

impl DeviceTrack {
    fn new(plan: DevicePlan) -> DeviceTrack {
        DeviceTrack {
            plan,
            steps: Vec::new(),
            sim: None,
            failure: None,
            state: None,
            reported: Vec::new(),
            matched: Vec::new(),
            unmatched: Vec::new(),
            alerted: BTreeSet::new(),
            jobs: BTreeMap::new(),
            relayed: BTreeMap::new(),
            pushes: BTreeMap::new(),
            settled_at: None,
            consent_asked_at: None,
            last_device_step: None,
        }
    }

    /// Record a milestone; false when it was already reached.
    fn record(&mut self, step: Step) -> bool {
        if self.steps.iter().any(|s| s.same_as(&step)) {
            return false;
        }
        self.steps.push(step);
        true
    }

    /// Note the first failure (later ones are consequences).
    fn fail(&mut self, why: String) {
        if self.failure.is_none() {
            self.failure = Some(why);
        }
    }

    /// The device's job for `server_id`, if any.
    fn job_for(&self, server_id: &str) -> Option<&JobSeen> {
        self.jobs.values().find(|j| j.server_id == server_id)
    }

    /// The ServerIDs the gateway knew when it first matched the device.
    fn first_known(&self) -> Vec<String> {
        self.steps
            .iter()
            .find_map(|s| match s {
                Step::Matched { known, .. } => Some(known.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// What the gateway, the bootstrap server and the DM Servers still owe an attached device.
    fn open_items(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.unmatched {
            match self.job_for(s) {
                None => out.push(format!("a bootstrap job for {s}")),
                Some(j) if j.state == JobState::Done => out.push(format!(
                    "the gateway to match it again now that {s} is bootstrapped"
                )),
                Some(j) if j.state == JobState::Failed => {}
                Some(j) => out.push(j.waiting()),
            }
        }
        for j in self.jobs.values() {
            if j.state.is_open() && !self.unmatched.contains(&j.server_id) {
                out.push(j.waiting());
            }
            if j.workflow == 2
                && j.state == JobState::Done
                && !self
                    .pushes
                    .get(&j.server_id)
                    .is_some_and(|d| matches!(d, DeliveryState::Delivered | DeliveryState::Failed))
            {
                out.push(format!(
                    "the bootstrap server to record its push of {} as delivered",
                    j.server_id
                ));
            }
        }
        for s in self.matched.iter().filter(|s| !self.alerted.contains(*s)) {
            out.push(format!("{s} to receive deviceattached"));
        }
        out
    }

    /// True once the device and everyone else agree it is done: the device's onboarding ended;
    /// the gateway refused it, or holds it as attached with every bootstrap job finished (a
    /// workflow-2 push also recorded by the bootstrap server) and every matched server told by
    /// `deviceattached`. A failed device counts as settled (the run then fails).
    pub fn is_settled(&self) -> bool {
        if self.failure.is_some() {
            return true;
        }
        if self.sim.is_none() {
            return false;
        }
        match self.state {
            Some(DeviceState::Refused) => true,
            Some(DeviceState::Attached) => self.open_items().is_empty(),
            _ => false,
        }
    }

    /// What an unsettled device still waits for, in words.
    pub fn waiting_for(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.sim.is_none() {
            out.push(format!(
                "the device to finish its onboarding (last step: {})",
                self.last_device_step.unwrap_or("none yet")
            ));
        }
        match self.state {
            None => out.push("the gateway to record it".into()),
            Some(DeviceState::Attached | DeviceState::Refused) => {}
            Some(s) => out.push(format!("the gateway to finish with it (state {s})")),
        }
        if self.state != Some(DeviceState::Refused) {
            out.extend(self.open_items());
        }
        out
    }

    fn job_text(&self, j: &JobSeen) -> String {
        match j.state {
            JobState::Done => {
                let how = if j.workflow == 1 {
                    "fetched by the gateway"
                } else {
                    "pushed by the bootstrap server"
                };
                format!(
                    "{} bootstrapped by workflow {} (job #{}, {how})",
                    j.server_id, j.workflow, j.id
                )
            }
            JobState::Failed => format!(
                "workflow-{} bootstrap of {} failed (job #{})",
                j.workflow, j.server_id, j.id
            ),
            open => format!(
                "workflow-{} bootstrap of {} under way (job #{}, {open})",
                j.workflow, j.server_id, j.id
            ),
        }
    }

    /// The whole story in one line: `announced → consent asked → allowed → ...`.
    pub fn chain(&self) -> String {
        let mut steps: Vec<&Step> = self.steps.iter().collect();
        steps.sort_by_key(|s| s.rank());
        let mut parts: Vec<String> = Vec::new();
        for step in steps {
            match step {
                Step::Announced => parts.push("announced".into()),
                Step::ConsentAsked => parts.push("consent asked".into()),
                Step::Allowed { after } if *after >= TELL_DELAY_FROM => {
                    parts.push(format!("allowed after {}", seconds(*after)));
                }
                Step::Allowed { .. } => parts.push("allowed".into()),
                Step::Refused => parts.push("refused".into()),
                Step::Provisioned => parts.push("provisioned".into()),
                Step::Reported(ids) => {
                    parts.push(format!("reported {}", join(ids)));
                    // The servers it had to be bootstrapped for are those with a job (however
                    // quickly the looks caught the gateway's states).
                    let unknown: Vec<String> =
                        self.jobs.values().map(|j| j.server_id.clone()).collect();
                    let known: Vec<String> = ids
                        .iter()
                        .filter(|s| !unknown.contains(*s))
                        .cloned()
                        .collect();
                    if !unknown.is_empty() {
                        parts.push(if known.is_empty() {
                            format!("gateway knew none ({} unknown)", join(&unknown))
                        } else {
                            format!("gateway knew {}, not {}", join(&known), join(&unknown))
                        });
                    }
                }
                Step::Relayed(s) => {
                    let status = self
                        .relayed
                        .get(s)
                        .and_then(|r| r.status)
                        .map_or(String::new(), |c| format!(" ({c})"));
                    parts.push(format!(
                        "hand-over for {s} relayed to the bootstrap server{status}"
                    ));
                }
                Step::Job(id) => {
                    if let Some(j) = self.jobs.get(id) {
                        parts.push(self.job_text(j));
                    }
                }
                Step::Matched { .. }
                | Step::Rematched
                | Step::LeftAlone
                | Step::SessionDone
                | Step::AccountAdded(_)
                | Step::Alerted(_) => {}
            }
        }
        if let Some(f) = &self.failure {
            parts.push(format!("failed: {f}"));
            return parts.join(" → ");
        }
        if self.state == Some(DeviceState::Attached)
            && self.jobs.values().any(|j| j.state == JobState::Done)
        {
            parts.push("re-matched".into());
        }
        match self.state {
            Some(DeviceState::Refused) => parts.push("left alone".into()),
            Some(DeviceState::Attached | DeviceState::WaitingBootstrap) => {
                let mut end = Vec::new();
                if !self.matched.is_empty() {
                    let got: Vec<String> = self
                        .matched
                        .iter()
                        .filter(|s| self.alerted.contains(*s))
                        .cloned()
                        .collect();
                    let told = if got.is_empty() {
                        "deviceattached not received yet".to_owned()
                    } else {
                        format!("deviceattached received by {}", join(&got))
                    };
                    end.push(format!("attached to {} ({told})", join(&self.matched)));
                }
                if !self.unmatched.is_empty() {
                    let servers: Vec<String> = self
                        .unmatched
                        .iter()
                        .map(|s| match self.job_for(s) {
                            Some(j) => {
                                format!("{s} (job #{}, workflow {}, {})", j.id, j.workflow, j.state)
                            }
                            None => s.clone(),
                        })
                        .collect();
                    end.push(format!(
                        "waiting for a bootstrap for {}",
                        servers.join(", ")
                    ));
                }
                if end.is_empty() {
                    end.push("attached (no DM Server to tell)".into());
                }
                parts.push(end.join("; "));
            }
            Some(other) => parts.push(format!("gateway state {other}")),
            None => {}
        }
        parts.join(" → ")
    }
}

/// A story line: `[+  1.02s] [who] text`.
pub fn line(at: Duration, who: &str, text: impl std::fmt::Display) -> String {
    format!("[+{:>6.2}s] [{who}] {text}", at.as_secs_f64())
}

/// The `deviceattached` of `urn:oma:at:oma-gwmo:deviceattached:1.0`.
pub fn short_type(urn: &str) -> &str {
    urn.rsplit(':')
        .nth(1)
        .filter(|s| !s.is_empty())
        .unwrap_or(urn)
}

/// How a gateway authenticated a workflow-1 GET, in words.
fn client_auth_text(a: Option<ClientAuth>) -> &'static str {
    match a {
        Some(ClientAuth::Basic) => "HTTP Basic",
        Some(ClientAuth::Certificate) => "client certificate",
        None => "unauthenticated",
    }
}

/// The lines of one look, grouped so they read in the order things happen.
#[derive(Debug, Default)]
struct Lines {
    matched: Vec<String>,
    jobs: Vec<String>,
    bootstrap_server: Vec<String>,
    accounts: Vec<String>,
    rematched: Vec<String>,
    outbox: Vec<String>,
    received: Vec<String>,
}

impl Lines {
    fn into_vec(self) -> Vec<String> {
        [
            self.matched,
            self.jobs,
            self.bootstrap_server,
            self.accounts,
            self.rematched,
            self.outbox,
            self.received,
        ]
        .concat()
    }
}

/// Follows every device of the plan and tells what happens to it.
#[derive(Debug, Clone)]
pub struct Tracker {
    devices: Vec<DeviceTrack>,
    seen_alerts: BTreeSet<(String, u64)>,
    outbox: BTreeMap<i64, (u32, AlertState)>,
    jobs: BTreeMap<i64, (JobState, u32)>,
    accounts: BTreeSet<String>,
    /// Bootstrap-server records seen: id → (delivery state, attempts) of a push.
    issued: BTreeMap<u64, Option<(DeliveryState, u32)>>,
    /// AssociatedGateway records seen: id → the device that sent it.
    associations: BTreeMap<u64, String>,
}

impl Tracker {
    /// A tracker of these devices.
    pub fn new(plans: &[DevicePlan]) -> Tracker {
        Tracker {
            devices: plans.iter().copied().map(DeviceTrack::new).collect(),
            seen_alerts: BTreeSet::new(),
            outbox: BTreeMap::new(),
            jobs: BTreeMap::new(),
            accounts: BTreeSet::new(),
            issued: BTreeMap::new(),
            associations: BTreeMap::new(),
        }
    }

    /// The devices, in plan order.
    pub fn devices(&self) -> &[DeviceTrack] {
        &self.devices
    }

    fn track(&mut self, dev_id: &str) -> Option<&mut DeviceTrack> {
        self.devices.iter_mut().find(|d| d.plan.dev_id == dev_id)
    }

    /// How many devices have settled.
    pub fn settled_count(&self) -> usize {
        self.devices
            .iter()
            .filter(|d| d.settled_at.is_some())
            .count()
    }

    /// True when every device has settled.
    pub fn all_settled(&self) -> bool {
        self.devices.iter().all(|d| d.settled_at.is_some())
    }

    /// True when a device failed.
    pub fn any_failed(&self) -> bool {
        self.devices.iter().any(|d| d.failure.is_some())
    }

    /// For each unsettled device, what it waits for: `dev_id: a; b`.
    pub fn unsettled(&self) -> Vec<String> {
        self.devices
            .iter()
            .filter(|d| d.settled_at.is_none())
            .map(|d| {
                format!(
                    "{}: waiting for {}",
                    d.plan.dev_id,
                    d.waiting_for().join("; ")
                )
            })
            .collect()
    }

    /// Take in one of device-sim's events; the lines it tells.
    pub fn on_device_event(&mut self, ev: DeviceEvent, at: Duration) -> Vec<String> {
        let mut out = Vec::new();
        match ev {
            DeviceEvent::Announcing { .. } => {}
            DeviceEvent::Progress {
                dev_id,
                step,
                error,
            } => {
                if let Some(t) = self.track(&dev_id) {
                    t.on_progress(step, error, at, &mut out);
                }
            }
            DeviceEvent::Settled(report) => {
                if let Some(t) = self.track(&report.dev_id) {
                    t.on_settled(*report, at, &mut out);
                }
            }
        }
        self.check_settled(at, &mut out);
        out
    }

    /// Take in a look at the gateway, the bootstrap server and the DM Servers; the lines it tells.
    pub fn on_snapshot(&mut self, snap: &Snapshot, at: Duration) -> Vec<String> {
        let mut lines = Lines::default();
        // Jobs first: how a device is matched is told knowing which of its servers were bootstrapped.
        for job in &snap.jobs {
            self.on_job(job, at, &mut lines.jobs);
        }
        for a in &snap.associations {
            self.on_association(a, at, &mut lines.bootstrap_server);
        }
        for r in &snap.bootstraps {
            self.on_issued(r, at, &mut lines.bootstrap_server);
        }
        for acc in &snap.accounts {
            self.on_account(acc, at, &mut lines.accounts);
        }
        for view in &snap.devices {
            if let Some(t) = self.track(&view.dev_id) {
                t.on_view(view, at, &mut lines.matched, &mut lines.rematched);
            }
        }
        for row in &snap.outbox {
            let before = self.outbox.insert(row.id.0, (row.attempts, row.state));
            let (attempts, state) = before.unwrap_or((0, AlertState::Pending));
            let what = format!("{} to {}", short_type(&row.alert_type), row.server_id);
            if row.attempts > attempts
                && let Some(e) = &row.last_error
            {
                lines.outbox.push(line(
                    at,
                    "gateway",
                    format!(
                        "delivery of {what} failed (attempt {}): {e}; will retry",
                        row.attempts
                    ),
                ));
            }
            if row.state == AlertState::Failed && state != AlertState::Failed {
                lines.outbox.push(line(
                    at,
                    "gateway",
                    format!("gave up delivering {what} for {}", row.dev_id),
                ));
            }
        }
        for (server_id, alerts) in &snap.received {
            for a in alerts {
                if !self.seen_alerts.insert((server_id.clone(), a.id)) {
                    continue;
                }
                let device = a.data.as_deref().map(str::trim).unwrap_or("?").to_owned();
                lines.received.push(line(
                    at,
                    server_id,
                    format!(
                        "received {} for {device} from {}",
                        short_type(&a.alert_type),
                        a.dev_id
                    ),
                ));
                if same_type(&a.alert_type, DEVICE_ATTACHED)
                    && let Some(t) = self.track(&device)
                {
                    t.alerted.insert(server_id.clone());
                    t.record(Step::Alerted(server_id.clone()));
                }
            }
        }
        let mut out = lines.into_vec();
        self.check_settled(at, &mut out);
        out
    }

    /// A bootstrap job of the gateway: created, or moved on.
    fn on_job(&mut self, job: &BootstrapJob, at: Duration, out: &mut Vec<String>) {
        let before = self.jobs.insert(job.id.0, (job.state, job.attempts));
        let Some(t) = self.track(&job.dev_id) else {
            return;
        };
        let seen = JobSeen::of(job);
        t.jobs.insert(job.id.0, seen.clone());
        let who = t.plan.dev_id;
        let (id, server) = (seen.id, seen.server_id.as_str());
        if before.is_none() {
            t.record(Step::Job(id));
            let how = if seen.workflow == 1 {
                format!(
                    "the device names {server}'s bootstrap server ({}), so the gateway GETs \
                     its bootstrap from there",
                    seen.bootstrap_url.as_deref().unwrap_or("?")
                )
            } else {
                format!(
                    "the gateway cannot read a bootstrap-server URL for {server} on the device, \
                     so it handed {server} over in its DM session and waits for a push"
                )
            };
            out.push(line(
                at,
                who,
                format!(
                    "bootstrap job #{id} for {server} created: workflow {}; {how}",
                    seen.workflow
                ),
            ));
        }
        let (old_state, old_attempts) = before.unwrap_or((JobState::Pending, 0));
        if before.is_some() && old_state == seen.state && old_attempts == seen.attempts {
            return;
        }
        match seen.state {
            JobState::Done if old_state != JobState::Done => {
                let what = if seen.workflow == 1 {
                    format!("fetched and applied the workflow-1 bootstrap for {server}")
                } else {
                    format!("the bootstrap server's push for {server} arrived and was applied")
                };
                let note = seen
                    .last_error
                    .as_deref()
                    .map_or(String::new(), |n| format!(" ({n})"));
                out.push(line(
                    at,
                    who,
                    format!("bootstrap job #{id}: {what} → done{note}"),
                ));
            }
            JobState::Failed if old_state != JobState::Failed => {
                let why = seen
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "no reason".into());
                out.push(line(
                    at,
                    who,
                    format!("bootstrap job #{id} for {server} failed: {why}"),
                ));
                t.fail(format!("bootstrap job #{id} for {server} failed: {why}"));
            }
            JobState::Pending if seen.attempts > old_attempts => {
                let why = seen.last_error.as_deref().unwrap_or("no reason given");
                out.push(line(
                    at,
                    who,
                    format!(
                        "bootstrap job #{id}: attempt {} failed ({why}); will retry",
                        seen.attempts
                    ),
                ));
            }
            JobState::AwaitingPush if old_state != JobState::AwaitingPush => out.push(line(
                at,
                who,
                format!("bootstrap job #{id}: waiting for the bootstrap server's push"),
            )),
            _ => {}
        }
    }

    /// An AssociatedGateway alert the bootstrap server received.
    fn on_association(&mut self, a: &AssociationRecord, at: Duration, out: &mut Vec<String>) {
        if self.associations.contains_key(&a.id) {
            return;
        }
        self.associations.insert(a.id, a.dev_id.clone());
        let servers = join(&a.server_ids);
        let text = if a.outcome == AssociationOutcome::Accepted {
            format!(
                "{} relayed the hand-over for {servers} (AssociatedGateway): gateway {} at {} is \
                 trusted → accepted ({}), bootstrap signed and push queued",
                a.dev_id,
                a.gateway_id.as_deref().unwrap_or("?"),
                a.gateway_address.as_deref().unwrap_or("?"),
                a.status
            )
        } else {
            format!(
                "{} relayed AssociatedGateway for {servers}: {:?} ({}): {}",
                a.dev_id,
                a.outcome,
                a.status,
                a.reason.as_deref().unwrap_or("no reason given")
            )
        };
        out.push(line(at, BOOTSTRAP_SERVER, text));
    }

    /// A bootstrap the bootstrap server issued (workflow 1) or is pushing (workflow 2).
    fn on_issued(&mut self, r: &BootstrapRecord, at: Duration, out: &mut Vec<String>) {
        let delivery = r.delivery.as_ref().map(|d| (d.state, d.attempts));
        let before = self.issued.insert(r.id, delivery);
        let server = r.server_id.as_str();
        if before.is_none() {
            out.push(line(
                at,
                BOOTSTRAP_SERVER,
                match &r.delivery {
                    None => format!(
                        "issued {server}'s DM account to {} (workflow 1: HTTPS GET, {}, {})",
                        r.gateway_id,
                        client_auth_text(r.client_auth),
                        r.encoding
                    ),
                    Some(d) => format!(
                        "bootstrap #{} of {server}'s DM account for {} (workflow 2, {}, SEC={} MAC) \
                         queued for {}",
                        r.id, r.gateway_id, r.encoding, d.sec, d.url
                    ),
                },
            ));
        }
        let Some(d) = &r.delivery else {
            return;
        };
        let dev = r
            .association
            .and_then(|a| self.associations.get(&a))
            .cloned();
        let track = dev.as_deref().and_then(|dev| self.track(dev));
        let old = before.flatten().unwrap_or((DeliveryState::Pending, 0));
        if old == (d.state, d.attempts) {
            return;
        }
        let status = d
            .last_http_status
            .map_or(String::new(), |s| format!(", HTTP {s}"));
        let error = d.last_error.as_deref().unwrap_or("no reason given");
        let text = match d.state {
            DeliveryState::Delivered => format!(
                "push of {server}'s account delivered to the gateway (attempt {}{status})",
                d.attempts
            ),
            DeliveryState::Retrying => format!(
                "push of {server}'s account: attempt {} failed ({error}{status}); will retry",
                d.attempts
            ),
            DeliveryState::Failed => format!("gave up pushing {server}'s account: {error}"),
            DeliveryState::Pending => return,
        };
        if let Some(t) = track {
            t.pushes.insert(r.server_id.clone(), d.state);
            if d.state == DeliveryState::Failed {
                t.fail(format!(
                    "the bootstrap server could not push {server}: {error}"
                ));
            }
        }
        out.push(line(at, BOOTSTRAP_SERVER, text));
    }

    /// An account of the gateway's DMAcc; a new one from a bootstrap is told.
    fn on_account(&mut self, acc: &AccountView, at: Duration, out: &mut Vec<String>) {
        if !self.accounts.insert(acc.server_id.clone()) || acc.origin == Origin::Factory {
            return;
        }
        let server = acc.server_id.as_str();
        let addr = acc
            .addresses
            .first()
            .map_or(String::new(), |a| format!(", DM Server at {}", a.addr));
        out.push(line(
            at,
            "gateway",
            format!(
                "DMAcc account {server} added (origin {}{addr}); matching again the devices that \
                 reported {server}",
                acc.origin
            ),
        ));
        for t in &mut self.devices {
            if t.jobs.values().any(|j| j.server_id == server) {
                t.record(Step::AccountAdded(server.to_owned()));
            }
        }
    }

    fn check_settled(&mut self, at: Duration, out: &mut Vec<String>) {
        for t in &mut self.devices {
            if t.settled_at.is_none() && t.is_settled() {
                t.settled_at = Some(at);
                let mark = if t.failure.is_some() { "✘" } else { "✔" };
                out.push(line(at, t.plan.dev_id, format!("{mark} {}", t.chain())));
            }
        }
    }
}

impl DeviceTrack {
    fn on_progress(
        &mut self,
        step: &'static str,
        error: Option<String>,
        at: Duration,
        out: &mut Vec<String>,
    ) {
        let who = self.plan.dev_id;
        if step != "announce_failed" {
            self.last_device_step = Some(step);
        }
        let (milestone, text) = match step {
            "announced" => (
                Step::Announced,
                "announced itself to the gateway".to_owned(),
            ),
            "consent_requested" => {
                self.consent_asked_at = Some(at);
                (
                    Step::ConsentAsked,
                    format!(
                        "consent asked; its user will answer: {}",
                        consent_text(self.plan.consent)
                    ),
                )
            }
            "consent_allowed" => {
                let after = self
                    .consent_asked_at
                    .map_or(Duration::ZERO, |asked| at.saturating_sub(asked));
                let text = if after >= TELL_DELAY_FROM {
                    format!("allowed (after {})", seconds(after))
                } else {
                    "allowed".to_owned()
                };
                (Step::Allowed { after }, text)
            }
            "consent_refused" => (Step::Refused, "refused".to_owned()),
            "provisioned" => (
                Step::Provisioned,
                "provisioned: installed its DM account for the gateway".to_owned(),
            ),
            "session_done" => {
                self.record(Step::SessionDone);
                return;
            }
            // Told with its details when the onboarding settles on the device, right after.
            "handover_relayed" => return,
            "announce_failed" => {
                out.push(line(
                    at,
                    who,
                    format!(
                        "announcement failed ({}); trying again",
                        error.unwrap_or_default()
                    ),
                ));
                return;
            }
            other => {
                out.push(line(at, who, other));
                return;
            }
        };
        if self.record(milestone) {
            out.push(line(at, who, text));
        }
    }

    fn on_settled(&mut self, report: DeviceReport, at: Duration, out: &mut Vec<String>) {
        let who = self.plan.dev_id;
        if self.sim.is_some() {
            out.push(line(
                at,
                who,
                format!(
                    "onboarding #{} ended on the device: {:?}",
                    report.onboarding, report.outcome
                ),
            ));
            return;
        }
        let step_ms = |name: &str| report.steps.iter().find(|s| s.step == name).map(|s| s.ms);
        if let (Some(asked), Some(allowed)) =
            (step_ms("consent_requested"), step_ms("consent_allowed"))
        {
            // The device's own clock is exact; the live line used the time events were seen.
            let after = Duration::from_millis(allowed.saturating_sub(asked));
            for s in &mut self.steps {
                if let Step::Allowed { after: a } = s {
                    *a = after;
                }
            }
        }
        match report.outcome {
            Outcome::Done => {
                if !report.reported_server_ids.is_empty() {
                    self.record(Step::Reported(report.reported_server_ids.clone()));
                }
                let reported = if report.reported_server_ids.is_empty() {
                    "no other DM Server".to_owned()
                } else {
                    join(&report.reported_server_ids)
                };
                let detail = report.session.as_ref().map_or(String::new(), |s| {
                    let challenged = if s.challenged {
                        " after a digest challenge"
                    } else {
                        ""
                    };
                    format!(
                        " ({} messages{challenged}; alert answered {})",
                        s.messages, s.alert_status
                    )
                });
                out.push(line(
                    at,
                    who,
                    format!("reported {reported} in a DM session with the gateway{detail}"),
                ));
                if let Some(s) = report
                    .session
                    .as_ref()
                    .filter(|s| !s.gateway_commands.is_empty())
                {
                    out.push(line(
                        at,
                        who,
                        format!("the gateway's commands: {}", s.gateway_commands.join(", ")),
                    ));
                }
                for (server, text) in &report.associated_gateway {
                    out.push(line(
                        at,
                        who,
                        format!(
                            "the gateway handed {server} over (workflow 2) in Ext/AssociatedGateway: \
                             {}",
                            one_line(text)
                        ),
                    ));
                }
                for (server, r) in &report.relayed {
                    match (r.status, &r.error) {
                        (Some(200), None) => {
                            self.record(Step::Relayed(server.clone()));
                            out.push(line(
                                at,
                                who,
                                format!(
                                    "relayed the hand-over for {server} to its bootstrap server \
                                     ({}) in an AssociatedGateway alert: answered 200",
                                    r.url
                                ),
                            ));
                        }
                        (status, error) => {
                            let why = match (status, error) {
                                (_, Some(e)) => e.clone(),
                                (Some(c), None) => format!("the alert was answered {c}"),
                                (None, None) => "no answer".to_owned(),
                            };
                            out.push(line(
                                at,
                                who,
                                format!("relaying the hand-over for {server} failed: {why}"),
                            ));
                            self.fail(format!("relaying the hand-over for {server} failed: {why}"));
                        }
                    }
                }
                self.relayed = report.relayed.clone();
            }
            Outcome::Refused => {}
            Outcome::Failed => {
                let reason = report
                    .reason
                    .clone()
                    .unwrap_or_else(|| "no reason given".into());
                out.push(line(at, who, format!("onboarding failed: {reason}")));
                self.fail(reason);
            }
        }
        self.sim = Some(report);
    }

    /// The gateway's record of the device: the first match (`first`), a match again after a
    /// bootstrap (`again`).
    fn on_view(
        &mut self,
        view: &DeviceView,
        at: Duration,
        first: &mut Vec<String>,
        again: &mut Vec<String>,
    ) {
        let who = self.plan.dev_id;
        let reported: Vec<String> = view.servers.iter().map(|s| s.server_id.clone()).collect();
        if !reported.is_empty() {
            self.record(Step::Reported(reported.clone()));
        }
        self.reported = reported;
        self.matched = view
            .servers
            .iter()
            .filter(|s| s.matched)
            .map(|s| s.server_id.clone())
            .collect();
        self.unmatched = view
            .servers
            .iter()
            .filter(|s| !s.matched)
            .map(|s| s.server_id.clone())
            .collect();
        if self.state == Some(view.state) {
            return;
        }
        let previous = self.state.replace(view.state);
        let already_matched = self.steps.iter().any(|s| matches!(s, Step::Matched { .. }));
        match view.state {
            DeviceState::Attached | DeviceState::WaitingBootstrap if !already_matched => {
                // What the gateway did not know when it matched: the servers it still does not
                // know and those it got a bootstrap job for (a push may land before the first
                // look, and even before the gateway first matches the device).
                let unknown: Vec<String> = self
                    .reported
                    .iter()
                    .filter(|s| self.unmatched.contains(*s) || self.job_for(s).is_some())
                    .cloned()
                    .collect();
                let known: Vec<String> = self
                    .reported
                    .iter()
                    .filter(|s| !unknown.contains(*s))
                    .cloned()
                    .collect();
                self.record(Step::Matched {
                    known: known.clone(),
                    unknown: unknown.clone(),
                });
                let bootstrapped: Vec<String> = self
                    .matched
                    .iter()
                    .filter(|s| self.job_for(s).is_some_and(|j| j.state == JobState::Done))
                    .cloned()
                    .collect();
                if view.state == DeviceState::Attached && !bootstrapped.is_empty() {
                    self.record(Step::Rematched);
                    again.push(line(
                        at,
                        who,
                        format!(
                            "matched after the bootstrap of {}: the gateway knows {} → {}; \
                             deviceattached queued for {}",
                            join(&bootstrapped),
                            join(&self.matched),
                            view.state,
                            join(&self.matched)
                        ),
                    ));
                    return;
                }
                let mut text = Vec::new();
                if !known.is_empty() {
                    text.push(format!("the gateway knows {}", join(&known)));
                }
                if !unknown.is_empty() {
                    let not = if known.is_empty() {
                        "the gateway does not know"
                    } else {
                        "does not know"
                    };
                    text.push(format!("{not} {}", join(&unknown)));
                }
                if text.is_empty() {
                    text.push("no DM Server reported".to_owned());
                }
                let queued = if known.is_empty() {
                    String::new()
                } else {
                    format!("; deviceattached queued for {}", join(&known))
                };
                first.push(line(
                    at,
                    who,
                    format!("{} → {}{queued}", text.join(", "), view.state),
                ));
            }
            DeviceState::Attached if previous == Some(DeviceState::WaitingBootstrap) => {
                self.record(Step::Rematched);
                let known_before = self.first_known();
                let new: Vec<String> = self
                    .matched
                    .iter()
                    .filter(|s| !known_before.contains(*s))
                    .cloned()
                    .collect();
                let queued = if new.is_empty() {
                    String::new()
                } else {
                    format!("; deviceattached queued for {}", join(&new))
                };
                again.push(line(
                    at,
                    who,
                    format!(
                        "matched again after the bootstrap: the gateway now knows {} → {}{queued}",
                        join(&self.matched),
                        view.state
                    ),
                ));
            }
            DeviceState::Refused => {
                self.record(Step::LeftAlone);
                first.push(line(
                    at,
                    who,
                    "the gateway recorded the refusal and leaves the device alone",
                ));
            }
            DeviceState::Attached
            | DeviceState::WaitingBootstrap
            | DeviceState::Lost
            | DeviceState::Detached => {
                first.push(line(at, who, format!("gateway state: {}", view.state)));
            }
            // Discovered, consented, provisioned: the device's own steps already told them.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::ReceivedAlert;
    use crate::plan::DEVICES;
    use device_sim::dm::SessionSummary;
    use gateway::domain::{JobId, Millis, ServerView, Workflow};

    const MS: Duration = Duration::from_millis(1);
    const GW: &str = "urn:dmgw:demo-gateway";

    fn progress(dev: &str, step: &'static str) -> DeviceEvent {
        DeviceEvent::Progress {
            dev_id: dev.into(),
            step,
            error: None,
        }
    }

    fn settled_report(dev: &str, outcome: Outcome, servers: &[&str]) -> DeviceReport {
        let mut r = DeviceReport::new(dev, outcome, None);
        r.reported_server_ids = servers.iter().map(|s| (*s).to_owned()).collect();
        if outcome == Outcome::Done {
            r.session = Some(SessionSummary {
                session_id: "1".into(),
                messages: 3,
                challenged: true,
                alert_status: 200,
                gateway_commands: vec!["Get ./DMAcc".into()],
            });
        }
        r
    }

    fn view(dev: &str, state: DeviceState, servers: &[(&str, bool)]) -> DeviceView {
        DeviceView {
            dev_id: dev.into(),
            man: None,
            model: None,
            dev_type: None,
            dm_v: None,
            lang: None,
            address: None,
            state,
            first_seen: Millis(0),
            last_seen: Millis(0),
            updated_at: Millis(0),
            servers: servers
                .iter()
                .map(|(s, m)| ServerView {
                    server_id: (*s).into(),
                    matched: *m,
                    bootstrap_url: None,
                    reported_at: Millis(0),
                })
                .collect(),
        }
    }

    fn received(id: u64, dev: &str) -> ReceivedAlert {
        ReceivedAlert {
            id,
            alert_type: DEVICE_ATTACHED.into(),
            data: Some(dev.into()),
            correlator: Some(format!("c{id}")),
            dev_id: GW.into(),
            received_at: "2024-05-01T12:00:00Z".into(),
        }
    }

    fn job(id: i64, dev: &str, server: &str, workflow: Workflow, state: JobState) -> BootstrapJob {
        BootstrapJob {
            id: JobId(id),
            server_id: server.into(),
            dev_id: dev.into(),
            workflow,
            bootstrap_url: (workflow == Workflow::One).then(|| "https://127.0.0.1:9".into()),
            state,
            attempts: u32::from(state == JobState::Done),
            next_attempt_at: Millis(0),
            last_error: None,
            created_at: Millis(0),
            updated_at: Millis(0),
        }
    }

    fn account(server: &str, origin: Origin) -> AccountView {
        AccountView {
            server_id: server.into(),
            node_name: server.into(),
            name: None,
            pref_con_ref: None,
            aauth_pref: None,
            addresses: Vec::new(),
            auths: Vec::new(),
            bootstrap_server_url: None,
            origin,
            created_at: Millis(0),
            updated_at: Millis(0),
        }
    }

    fn issued(id: u64, server: &str, delivery: Option<(u64, DeliveryState)>) -> BootstrapRecord {
        // Built from the API's JSON, as the observer gets it.
        let delivery_json = delivery.map(|(_, state)| {
            let delivered = state == DeliveryState::Delivered;
            serde_json::json!({
                "url": "https://127.0.0.1:7/wan/v1/bootstrap",
                "sec": "USERPIN",
                "state": state,
                "attempts": u32::from(delivered),
                "max_attempts": 8,
                "last_http_status": delivered.then_some(200),
                "last_error": null,
            })
        });
        serde_json::from_value(serde_json::json!({
            "id": id,
            "issued_at": "2024-05-01T12:00:00Z",
            "workflow": if delivery.is_some() { 2 } else { 1 },
            "gateway_id": GW,
            "server_id": server,
            "encoding": "wbxml",
            "client_auth": delivery.is_none().then_some("basic"),
            "association": delivery.map(|(a, _)| a),
            "delivery": delivery_json,
        }))
        .unwrap()
    }

    fn association(id: u64, dev: &str, server: &str, bootstraps: Vec<u64>) -> AssociationRecord {
        serde_json::from_value(serde_json::json!({
            "id": id,
            "received_at": "2024-05-01T12:00:00Z",
            "dev_id": dev,
            "account": null,
            "session_id": "9",
            "correlator": "assoc-1",
            "gateway_id": GW,
            "gateway_address": "https://127.0.0.1:7/wan/v1/bootstrap",
            "server_ids": [server],
            "unknown_server_ids": [],
            "status": 200,
            "outcome": "accepted",
            "reason": null,
            "bootstraps": bootstraps,
        }))
        .unwrap()
    }

    fn device_side(t: &mut Tracker, report: DeviceReport, allow: bool) -> Vec<String> {
        let dev = report.dev_id.clone();
        let mut lines = Vec::new();
        for step in ["announced", "consent_requested"] {
            lines.extend(t.on_device_event(progress(&dev, step), 10 * MS));
        }
        let mut events = if allow {
            vec![
                (progress(&dev, "consent_allowed"), 1100),
                (progress(&dev, "provisioned"), 1200),
                (progress(&dev, "session_done"), 1300),
            ]
        } else {
            vec![(progress(&dev, "consent_refused"), 20)]
        };
        let at = if allow { 1300 } else { 20 };
        events.push((DeviceEvent::Settled(Box::new(report)), at));
        for (ev, ms) in events {
            lines.extend(t.on_device_event(ev, ms * MS));
        }
        lines
    }

    #[test]
    fn workflow_1_brings_the_unknown_server_and_the_device_settles_attached_to_both() {
        let plug = DEVICES[1].dev_id;
        let mut t = Tracker::new(&DEVICES[1..2]);
        let lines = device_side(
            &mut t,
            settled_report(plug, Outcome::Done, &["dms-1", "dms-2"]),
            true,
        );
        assert!(
            lines.iter().any(|l| l.contains(
                "reported dms-1, dms-2 in a DM session with the gateway (3 messages after a digest \
                 challenge; alert answered 200)"
            )),
            "{lines:?}"
        );
        assert!(!t.all_settled(), "the gateway has not been seen yet");

        // The first match: dms-1 known, dms-2 not; a workflow-1 job.
        let mut snap = Snapshot {
            devices: vec![view(
                plug,
                DeviceState::WaitingBootstrap,
                &[("dms-1", true), ("dms-2", false)],
            )],
            jobs: vec![job(1, plug, "dms-2", Workflow::One, JobState::Pending)],
            accounts: vec![account("dms-1", Origin::Factory)],
            ..Snapshot::default()
        };
        snap.received
            .insert("dms-1".into(), vec![received(1, plug)]);
        let lines = t.on_snapshot(&snap, 1400 * MS);
        let text = lines.join("\n");
        assert!(
            text.contains(
                "the gateway knows dms-1, does not know dms-2 → waiting_bootstrap; \
                 deviceattached queued for dms-1"
            ),
            "{text}"
        );
        assert!(
            text.contains("bootstrap job #1 for dms-2 created: workflow 1; the device names"),
            "{text}"
        );
        assert!(
            !text.contains("DMAcc account dms-1"),
            "factory accounts are not news"
        );
        assert!(!t.all_settled());
        let waiting = t.unsettled().join("\n");
        assert!(waiting.contains("state waiting_bootstrap"), "{waiting}");
        assert!(
            waiting.contains("bootstrap job #1 for dms-2 (workflow 1) to finish"),
            "{waiting}"
        );

        // The fetch: the bootstrap server issues, the job is done, the account appears.
        snap.jobs = vec![job(1, plug, "dms-2", Workflow::One, JobState::Done)];
        snap.bootstraps = vec![issued(1, "dms-2", None)];
        snap.accounts.push(account("dms-2", Origin::Bootstrap));
        let text = t.on_snapshot(&snap, 1500 * MS).join("\n");
        assert!(
            text.contains("fetched and applied the workflow-1 bootstrap for dms-2 → done"),
            "{text}"
        );
        assert!(
            text.contains("issued dms-2's DM account to urn:dmgw:demo-gateway (workflow 1: HTTPS GET, HTTP Basic, wbxml)"),
            "{text}"
        );
        assert!(
            text.contains("DMAcc account dms-2 added (origin bootstrap)"),
            "{text}"
        );
        assert!(!t.all_settled());
        assert!(
            t.unsettled()
                .join("\n")
                .contains("the gateway to match it again now that dms-2 is bootstrapped")
        );

        // Matched again: attached; dms-2 is told.
        snap.devices = vec![view(
            plug,
            DeviceState::Attached,
            &[("dms-1", true), ("dms-2", true)],
        )];
        let text = t.on_snapshot(&snap, 1600 * MS).join("\n");
        assert!(
            text.contains(
                "matched again after the bootstrap: the gateway now knows dms-1, dms-2 → attached; \
                 deviceattached queued for dms-2"
            ),
            "{text}"
        );
        assert!(!t.all_settled(), "dms-2 has not received its alert");
        snap.received
            .insert("dms-2".into(), vec![received(1, plug)]);
        let lines = t.on_snapshot(&snap, 1700 * MS);
        assert!(t.all_settled(), "{lines:?}");
        let last = lines.last().unwrap();
        assert!(
            last.contains(
                "✔ announced → consent asked → allowed after 1.1s → provisioned → reported dms-1, \
                 dms-2 → gateway knew dms-1, not dms-2 → dms-2 bootstrapped by workflow 1 (job #1, \
                 fetched by the gateway) → re-matched → attached to dms-1, dms-2 (deviceattached \
                 received by dms-1, dms-2)"
            ),
            "{last}"
        );
        // The same snapshot again tells nothing new.
        assert!(t.on_snapshot(&snap, 1800 * MS).is_empty());
    }

    #[test]
    fn workflow_2_settles_once_the_push_is_recorded_delivered() {
        let meter = DEVICES[3].dev_id;
        let mut t = Tracker::new(&DEVICES[3..4]);
        let mut report = settled_report(meter, Outcome::Done, &["dms-3"]);
        report.associated_gateway.insert(
            "dms-3".into(),
            format!("GatewayID={GW}\nGatewayAddress=https://127.0.0.1:7/wan/v1/bootstrap\nServerID=dms-3"),
        );
        report.relayed.insert(
            "dms-3".into(),
            RelayOutcome {
                url: "https://127.0.0.1:8/dm".into(),
                status: Some(200),
                error: None,
            },
        );
        let text = device_side(&mut t, report, true).join("\n");
        assert!(
            text.contains(&format!(
                "the gateway handed dms-3 over (workflow 2) in Ext/AssociatedGateway: GatewayID={GW}; \
                 GatewayAddress=https://127.0.0.1:7/wan/v1/bootstrap; ServerID=dms-3"
            )),
            "{text}"
        );
        assert!(
            text.contains(
                "relayed the hand-over for dms-3 to its bootstrap server (https://127.0.0.1:8/dm)"
            ),
            "{text}"
        );
        let mut snap = Snapshot {
            devices: vec![view(
                meter,
                DeviceState::WaitingBootstrap,
                &[("dms-3", false)],
            )],
            jobs: vec![job(
                2,
                meter,
                "dms-3",
                Workflow::Two,
                JobState::AwaitingPush,
            )],
            associations: vec![association(1, meter, "dms-3", vec![2])],
            bootstraps: vec![issued(2, "dms-3", Some((1, DeliveryState::Pending)))],
            ..Snapshot::default()
        };
        let text = t.on_snapshot(&snap, 1400 * MS).join("\n");
        assert!(
            text.contains("the gateway does not know dms-3 → waiting_bootstrap"),
            "{text}"
        );
        assert!(text.contains("created: workflow 2"), "{text}");
        assert!(
            text.contains("relayed the hand-over for dms-3 (AssociatedGateway)"),
            "{text}"
        );
        assert!(text.contains("SEC=USERPIN MAC"), "{text}");

        // The push lands: the job is done, the account added, the device matched again and alerted;
        // the bootstrap server has not yet recorded the delivery.
        snap.jobs = vec![job(2, meter, "dms-3", Workflow::Two, JobState::Done)];
        snap.accounts = vec![account("dms-3", Origin::Bootstrap)];
        snap.devices = vec![view(meter, DeviceState::Attached, &[("dms-3", true)])];
        snap.received
            .insert("dms-3".into(), vec![received(1, meter)]);
        let text = t.on_snapshot(&snap, 1500 * MS).join("\n");
        assert!(
            text.contains("the bootstrap server's push for dms-3 arrived and was applied → done"),
            "{text}"
        );
        assert!(!t.all_settled());
        assert!(
            t.unsettled()
                .join("\n")
                .contains("the bootstrap server to record its push of dms-3 as delivered")
        );
        snap.bootstraps = vec![issued(2, "dms-3", Some((1, DeliveryState::Delivered)))];
        let lines = t.on_snapshot(&snap, 1600 * MS);
        assert!(t.all_settled(), "{lines:?}");
        assert!(
            lines.iter().any(|l| l.contains(
                "push of dms-3's account delivered to the gateway (attempt 1, HTTP 200)"
            )),
            "{lines:?}"
        );
        let last = lines.last().unwrap();
        assert!(
            last.contains(
                "→ reported dms-3 → gateway knew none (dms-3 unknown) → hand-over for dms-3 relayed \
                 to the bootstrap server (200) → dms-3 bootstrapped by workflow 2 (job #2, pushed \
                 by the bootstrap server) → re-matched → attached to dms-3 (deviceattached received \
                 by dms-3)"
            ),
            "{last}"
        );
    }

    #[test]
    fn a_push_seen_with_the_first_match_is_told_in_order() {
        let meter = DEVICES[3].dev_id;
        let mut t = Tracker::new(&DEVICES[3..4]);
        device_side(
            &mut t,
            settled_report(meter, Outcome::Done, &["dms-3"]),
            true,
        );
        let mut snap = Snapshot {
            devices: vec![view(meter, DeviceState::Attached, &[("dms-3", true)])],
            jobs: vec![job(1, meter, "dms-3", Workflow::Two, JobState::Done)],
            accounts: vec![account("dms-3", Origin::Bootstrap)],
            associations: vec![association(1, meter, "dms-3", vec![1])],
            bootstraps: vec![issued(1, "dms-3", Some((1, DeliveryState::Delivered)))],
            ..Snapshot::default()
        };
        snap.received
            .insert("dms-3".into(), vec![received(1, meter)]);
        let lines = t.on_snapshot(&snap, 200 * MS);
        let pos = |needle: &str| {
            lines
                .iter()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{needle:?} not in {lines:#?}"))
        };
        assert!(pos("created: workflow 2") < pos("arrived and was applied"));
        assert!(pos("arrived and was applied") < pos("(AssociatedGateway)"));
        assert!(pos("delivered to the gateway") < pos("DMAcc account dms-3 added"));
        assert!(
            pos("DMAcc account dms-3 added")
                < pos("matched after the bootstrap of dms-3: the gateway knows dms-3 → attached")
        );
        assert!(pos("matched after the bootstrap") < pos("[dms-3] received deviceattached"));
        assert!(t.all_settled());
        assert!(
            lines.last().unwrap().contains(
                "reported dms-3 → gateway knew none (dms-3 unknown) → dms-3 bootstrapped by \
                 workflow 2 (job #1, pushed by the bootstrap server) → re-matched → attached to dms-3"
            ),
            "{lines:#?}"
        );
    }

    #[test]
    fn a_match_older_than_the_push_is_told_as_waiting() {
        // The gateway wrote waiting_bootstrap from a match older than the push, whose own match
        // (attached) is not written yet, while the server is already flagged as matched.
        let meter = DEVICES[3].dev_id;
        let mut t = Tracker::new(&DEVICES[3..4]);
        device_side(
            &mut t,
            settled_report(meter, Outcome::Done, &["dms-3"]),
            true,
        );
        let mut snap = Snapshot {
            devices: vec![view(
                meter,
                DeviceState::WaitingBootstrap,
                &[("dms-3", true)],
            )],
            jobs: vec![job(1, meter, "dms-3", Workflow::Two, JobState::Done)],
            ..Snapshot::default()
        };
        let text = t.on_snapshot(&snap, 200 * MS).join("\n");
        assert!(
            text.contains("the gateway does not know dms-3 → waiting_bootstrap"),
            "{text}"
        );
        snap.devices = vec![view(meter, DeviceState::Attached, &[("dms-3", true)])];
        let text = t.on_snapshot(&snap, 300 * MS).join("\n");
        assert!(
            text.contains(
                "matched again after the bootstrap: the gateway now knows dms-3 → attached; \
                 deviceattached queued for dms-3"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_failed_job_or_relay_settles_the_device_as_failed() {
        let meter = DEVICES[3].dev_id;
        let mut t = Tracker::new(&DEVICES[3..4]);
        let mut report = settled_report(meter, Outcome::Done, &["dms-3"]);
        report.relayed.insert(
            "dms-3".into(),
            RelayOutcome {
                url: "https://127.0.0.1:8/dm".into(),
                status: Some(403),
                error: None,
            },
        );
        let lines = device_side(&mut t, report, true);
        assert!(t.all_settled() && t.any_failed(), "{lines:?}");
        assert!(
            lines.last().unwrap().contains(
                "failed: relaying the hand-over for dms-3 failed: the alert was answered 403"
            ),
            "{lines:?}"
        );

        let plug = DEVICES[1].dev_id;
        let mut t = Tracker::new(&DEVICES[1..2]);
        device_side(
            &mut t,
            settled_report(plug, Outcome::Done, &["dms-1", "dms-2"]),
            true,
        );
        let mut failed = job(1, plug, "dms-2", Workflow::One, JobState::Failed);
        failed.last_error = Some("bootstrap server answered HTTP 401".into());
        let snap = Snapshot {
            devices: vec![view(
                plug,
                DeviceState::Attached,
                &[("dms-1", true), ("dms-2", false)],
            )],
            jobs: vec![failed],
            ..Snapshot::default()
        };
        let lines = t.on_snapshot(&snap, 1400 * MS);
        assert!(t.all_settled() && t.any_failed(), "{lines:?}");
        assert!(
            lines.last().unwrap().contains(
                "✘ announced → consent asked → allowed after 1.1s → provisioned → reported dms-1, dms-2 \
                 → gateway knew dms-1, not dms-2 → workflow-1 bootstrap of dms-2 failed (job #1) → failed: bootstrap job #1 for dms-2 \
                 failed: bootstrap server answered HTTP 401"
            ),
            "{lines:?}"
        );
    }

    #[test]
    fn a_refusing_device_is_left_alone() {
        let cam = DEVICES[2].dev_id;
        let mut t = Tracker::new(&DEVICES[2..3]);
        device_side(&mut t, settled_report(cam, Outcome::Refused, &[]), false);
        let snap = Snapshot {
            devices: vec![view(cam, DeviceState::Refused, &[])],
            ..Snapshot::default()
        };
        let lines = t.on_snapshot(&snap, 30 * MS);
        assert!(t.all_settled());
        assert!(
            lines
                .last()
                .unwrap()
                .ends_with("✔ announced → consent asked → refused → left alone"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_failed_device_settles_as_failed() {
        let dev = DEVICES[0].dev_id;
        let mut t = Tracker::new(&DEVICES[0..1]);
        t.on_device_event(progress(dev, "announced"), MS);
        let mut r = DeviceReport::new(dev, Outcome::Failed, Some("boom".into()));
        r.onboarding = 1;
        let lines = t.on_device_event(DeviceEvent::Settled(Box::new(r)), 2 * MS);
        assert!(t.all_settled() && t.any_failed());
        assert!(lines.last().unwrap().contains("✘ announced → failed: boom"));
    }

    #[test]
    fn short_types() {
        assert_eq!(short_type(DEVICE_ATTACHED), "deviceattached");
        assert_eq!(short_type("plain"), "plain");
    }
}
